"""The migrate progress bar: periodic plain lines off a terminal, one bar on it."""

from __future__ import annotations

import io

from service.cli import ProgressBar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_non_tty_writes_periodic_lines_and_ends_with_total() -> None:
    stream = io.StringIO()
    progress = ProgressBar("migrating tenants", stream)
    for done in range(101):
        progress(done, 100)
    lines = stream.getvalue().splitlines()
    assert lines == [f"migrating tenants: {n}/100" for n in range(0, 101, 10)]
    assert "\r" not in stream.getvalue()
    assert stream.getvalue().endswith("\n")


def test_non_tty_does_not_write_a_line_per_step() -> None:
    stream = io.StringIO()
    progress = ProgressBar("x", stream)
    for done in range(1, 10_001):
        progress(done, 10_000)
    lines = stream.getvalue().splitlines()
    # The first call, then one line per tenth.
    assert len(lines) == 11
    assert lines[0] == "x: 1/10000"
    assert lines[1] == "x: 1000/10000"
    assert lines[-1] == "x: 10000/10000"


def test_non_tty_small_total_shows_every_step() -> None:
    stream = io.StringIO()
    progress = ProgressBar("m", stream)
    for done in range(1, 4):
        progress(done, 3)
    assert stream.getvalue() == "m: 1/3\nm: 2/3\nm: 3/3\n"


def test_non_tty_final_line_shows_total_when_steps_are_skipped() -> None:
    stream = io.StringIO()
    progress = ProgressBar("m", stream)
    for done in (1, 2, 997):
        progress(done, 997)
    assert stream.getvalue().splitlines()[-1] == "m: 997/997"


def test_zero_total_writes_nothing() -> None:
    stream = io.StringIO()
    progress = ProgressBar("m", stream)
    progress(0, 0)
    assert stream.getvalue() == ""
    terminal = _Terminal()
    ProgressBar("m", terminal)(0, 0)
    assert terminal.getvalue() == ""


def test_tty_redraws_one_line_and_ends_it() -> None:
    stream = _Terminal()
    progress = ProgressBar("migrating", stream)
    for done in range(5):
        progress(done, 4)
    output = stream.getvalue()
    frames = output.split("\r")[1:]
    assert len(frames) == 5
    assert frames[0] == "migrating [" + "." * 30 + "] 0/4"
    assert frames[2] == "migrating [" + "#" * 15 + "." * 15 + "] 2/4"
    assert frames[-1] == "migrating [" + "#" * 30 + "] 4/4\n"
    assert output.count("\n") == 1
