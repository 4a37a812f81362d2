"""The in-process moving window: admission, remaining quota, reset time and the idle sweep."""

from __future__ import annotations

import time

import pytest

from service import moving_window
from service.moving_window import MovingWindows


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.monotonic = 50.0

    def time(self) -> float:
        return self.now

    def tick(self) -> float:
        return self.monotonic


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(time, "time", fake.time)
    monkeypatch.setattr(time, "monotonic", fake.tick)
    return fake


def test_a_full_window_refuses_until_its_oldest_request_leaves(clock: Clock) -> None:
    windows = MovingWindows()
    first = windows.hit("a", 3, 2)
    assert first == (True, 1002.0, 2)
    clock.now = 1000.5
    assert windows.hit("a", 3, 2) == (True, 1002.0, 1)
    clock.now = 1001.0
    assert windows.hit("a", 3, 2) == (True, 1002.0, 0)
    refused = windows.hit("a", 3, 2)
    assert refused == (False, 1002.0, 0)
    # Refused requests are not counted: once the first leaves, one more fits.
    clock.now = 1002.0
    assert windows.hit("a", 3, 2) == (True, 1002.5, 0)
    assert windows.hit("a", 3, 2).allowed is False
    # Other keys have windows of their own.
    assert windows.hit("b", 3, 2) == (True, 1004.0, 2)


def test_a_window_that_moved_past_every_request_is_empty_again(clock: Clock) -> None:
    windows = MovingWindows()
    for _ in range(3):
        windows.hit("a", 3, 2)
    clock.now = 1010.0
    assert windows.hit("a", 3, 2) == (True, 1012.0, 2)


def test_idle_keys_are_swept(clock: Clock) -> None:
    windows = MovingWindows()
    windows.hit("idle", 5, 1)
    clock.now, clock.monotonic = 1001.5, 50.0 + moving_window.SWEEP_SECONDS
    windows.hit("busy", 5, 1)
    assert len(windows) == 1
    # Between sweeps nothing is scanned, even when keys went idle.
    clock.now = 1003.0
    windows.hit("other", 5, 1)
    assert len(windows) == 2
