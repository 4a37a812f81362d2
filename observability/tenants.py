"""Which tenants get a metric label of their own, and how many tenants are active.

With 10,000 tenants a `tenant` label on every series would multiply the
series count by 10,000. `SCIM_METRICS_TENANT_LABELS` bounds it:

- ``top:N`` (the default, N=50): the N busiest tenants of this process get
  their own label, every other tenant is counted under ``other``. Until N
  tenants have been seen, each new one is admitted at once; after that the
  set is recomputed every `refresh_seconds` from request counts that halve
  at each refresh, so a tenant that stops calling makes room for a busy one.
  Series of a tenant that leaves the set stop growing (Prometheus sees them
  as constant), so the series count grows only with turnover in the top N.
- ``allow:slug,slug``: exactly these tenants, everyone else ``other``.
- ``all``: every tenant (small fleets only).
- ``none``: everything under ``other``.

Sums over the label stay exact in every mode: ``other`` holds the rest.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from observability.attributes import OTHER_TENANT

DEFAULT_STRATEGY: Final = "top:50"
ACTIVE_WINDOW_SECONDS: Final = 300.0


@dataclass(frozen=True, slots=True)
class Strategy:
    mode: str
    """`all`, `none`, `top` or `allow`."""
    top: int = 0
    allowed: frozenset[str] = frozenset()


def parse_strategy(raw: str) -> Strategy:
    """`all`, `none`, `top:N` or `allow:slug,slug`; ValueError otherwise."""
    text = raw.strip()
    if text in ("all", "none"):
        return Strategy(text)
    mode, _, argument = text.partition(":")
    if mode == "top":
        if not argument.isdigit() or int(argument) < 1:
            raise ValueError(f"top:N needs a positive N, got {raw!r}")
        return Strategy("top", top=int(argument))
    if mode == "allow":
        slugs = frozenset(slug.strip() for slug in argument.split(",") if slug.strip())
        if not slugs:
            raise ValueError(f"allow: needs at least one tenant slug, got {raw!r}")
        return Strategy("allow", allowed=slugs)
    raise ValueError(f"expected all, none, top:N or allow:slug,slug; got {raw!r}")


@dataclass(slots=True)
class _Activity:
    requests: float = 0.0
    last_seen: float = 0.0


@dataclass
class TenantLabels:
    """Maps a tenant slug to its metric label, and keeps what that needs."""

    strategy: Strategy
    refresh_seconds: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _activity: dict[str, _Activity] = field(default_factory=dict)
    _labelled: set[str] = field(default_factory=set)
    _next_refresh: float = 0.0

    def __post_init__(self) -> None:
        self._next_refresh = self.clock() + self.refresh_seconds
        if self.strategy.mode == "allow":
            self._labelled = set(self.strategy.allowed)

    def seen(self, slug: str) -> str:
        """An authenticated request of ``slug``: count it and return its label."""
        now = self.clock()
        activity = self._activity.get(slug)
        if activity is None:
            activity = self._activity[slug] = _Activity()
        activity.requests += 1
        activity.last_seen = now
        mode = self.strategy.mode
        if mode == "all":
            self._labelled.add(slug)
        elif mode == "top":
            if now >= self._next_refresh:
                self._refresh(now)
            if slug not in self._labelled and len(self._labelled) < self.strategy.top:
                self._labelled.add(slug)
        return slug if slug in self._labelled else OTHER_TENANT

    def label(self, slug: str | None) -> str:
        """The label of ``slug`` without counting a request (unauthenticated calls)."""
        return slug if slug is not None and slug in self._labelled else OTHER_TENANT

    def active(self) -> int:
        """Tenants with an authenticated request in the last five minutes."""
        since = self.clock() - ACTIVE_WINDOW_SECONDS
        # A copy: the OTLP metric reader calls this from its own thread.
        return sum(1 for activity in tuple(self._activity.values()) if activity.last_seen >= since)

    def _refresh(self, now: float) -> None:
        self._next_refresh = now + self.refresh_seconds
        busiest = heapq.nlargest(
            self.strategy.top, self._activity.items(), key=lambda item: item[1].requests
        )
        self._labelled = {slug for slug, _ in busiest}
        # Halving forgets old traffic geometrically; tenants long gone are dropped.
        forget_before = now - ACTIVE_WINDOW_SECONDS
        for slug in list(self._activity):
            activity = self._activity[slug]
            activity.requests /= 2
            if activity.last_seen < forget_before and activity.requests < 1:
                del self._activity[slug]
