"""Counting the asks for a deployment's chores, to test that one asker of several runs each."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from service import chores
from service.postgres import Pool


class ClaimAsks:
    """Every `chores.claim` that ``counted`` (given the pool and the chore) picks out,
    counted by pool; `enough` is set once ``askers`` pools have asked ``times`` times
    each.

    A test of "one run per period" counts rounds of asking rather than wall-clock
    time, which a loaded machine stretches: each round runs the chore once at
    most, and without claims every ask would run it."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        counted: Callable[[Pool, str], bool],
        *,
        askers: int,
        times: int,
    ) -> None:
        self.asks: Counter[Pool] = Counter()
        self.enough = asyncio.Event()
        claim = chores.claim

        async def counting(pool: Pool, chore: str, *args: Any, **kwargs: Any) -> bool:
            claimed = await claim(pool, chore, *args, **kwargs)
            if counted(pool, chore):
                self.asks[pool] += 1
                # Not "every pool": a pool the test did not mean to count may ask too.
                if sum(asked >= times for asked in self.asks.values()) >= askers:
                    self.enough.set()
            return claimed

        monkeypatch.setattr(chores, "claim", counting)

    def bounds(self) -> tuple[int, int]:
        """The most asks of one pool and the asks of all: the runs of a chore that only
        one asker per round gets lie between 1 and the first, below the second."""
        return max(self.asks.values()), sum(self.asks.values())
