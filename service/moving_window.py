"""The in-process moving window of the rate limiter, without threads or locks.

The `limits` package's in-memory storage answers each check with a task that
walks every key and hands each one to a thread (`asyncio.to_thread`), plus two
awaits on a lock; under load those handoffs cost more than the rest of the
check. Here a check is one synchronous function: on a single event loop,
nothing can interleave between reading a window and adding to it, so no lock
is needed. The semantics are those of `limits.MovingWindowRateLimiter` over
`MemoryStorage`, which the Redis path keeps using:

- a request is admitted when fewer than ``limit`` requests of the key fall in
  the last ``seconds`` (moving, not fixed, window), and then counted;
- ``remaining`` is ``limit`` minus the requests in the window after the check;
- ``reset`` is when the oldest request in the window leaves it.

Each key keeps at most ``limit`` timestamps (older ones can never decide a
check), and keys whose window emptied are dropped in a sweep at most every
`SWEEP_SECONDS`, so idle tenants cost no memory.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable
from typing import Final, NamedTuple

SWEEP_SECONDS: Final = 10.0


class WindowCheck(NamedTuple):
    allowed: bool
    reset: float
    """Epoch seconds when the oldest request in the window leaves it."""
    remaining: int


class MovingWindows:
    """Moving windows of many keys, each with its own limit and length."""

    def __init__(self) -> None:
        self._windows: dict[Hashable, tuple[deque[float], float]] = {}
        self._swept_at = time.monotonic()

    def __len__(self) -> int:
        return len(self._windows)

    def hit(self, key: Hashable, limit: int, seconds: float) -> WindowCheck:
        """Count one request of ``key`` if its window has room; the window after the check."""
        now = time.time()
        self._sweep(now)
        found = self._windows.get(key)
        if found is None:
            stamps: deque[float] = deque(maxlen=limit)
            self._windows[key] = (stamps, seconds)
        else:
            stamps = found[0]
        cutoff = now - seconds
        while stamps and stamps[0] <= cutoff:
            stamps.popleft()
        allowed = len(stamps) < limit
        if allowed:
            stamps.append(now)
        return WindowCheck(allowed, stamps[0] + seconds, limit - len(stamps))

    def _sweep(self, now: float) -> None:
        clock = time.monotonic()
        if clock - self._swept_at < SWEEP_SECONDS:
            return
        self._swept_at = clock
        idle = [
            key
            for key, (stamps, seconds) in self._windows.items()
            if not stamps or stamps[-1] <= now - seconds
        ]
        for key in idle:
            del self._windows[key]
