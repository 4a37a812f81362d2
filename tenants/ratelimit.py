"""Per-tenant rate-limit policy: the service defaults, a tenant's override, where it is stored.

A policy has three numbers: a sustained rate (`per_second`), a `burst`, and a
cap on requests in flight at once (`concurrency`). The rate and burst are
enforced as a moving window of `burst` requests per `burst / per_second`
seconds (see `service.ratelimit`), so the window must be a whole number of
seconds: `burst` is a whole multiple of `per_second`. The RateLimit-Policy
header field cannot express a sub-second window either.

Overrides are stored by `tenants.ratelimit_store`. This module is pure, so
settings, the tenant context and the enforcement can all use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec

MAX_PER_SECOND: Final = 10_000
MAX_BURST: Final = 10_000
"""Bounds memory: the moving window keeps one timestamp per request in the window."""
MAX_CONCURRENCY: Final = 1_000


@dataclass(frozen=True, slots=True)
class RateLimitOverride:
    """What an operator chose for one tenant; None means the service default."""

    per_second: int | None = None
    burst: int | None = None
    concurrency: int | None = None

    def is_empty(self) -> bool:
        return self.per_second is None and self.burst is None and self.concurrency is None


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    """The limits in force for a tenant."""

    per_second: int
    burst: int
    concurrency: int

    @property
    def window_seconds(self) -> int:
        return self.burst // self.per_second

    def with_override(self, override: RateLimitOverride | None) -> RateLimitPolicy:
        if override is None:
            return self
        return RateLimitPolicy(
            per_second=self.per_second if override.per_second is None else override.per_second,
            burst=self.burst if override.burst is None else override.burst,
            concurrency=self.concurrency if override.concurrency is None else override.concurrency,
        )


def policy_problem(policy: RateLimitPolicy) -> str | None:
    """Why ``policy`` cannot be enforced, or None when it can."""
    if not 1 <= policy.per_second <= MAX_PER_SECOND:
        return f"per_second must be between 1 and {MAX_PER_SECOND}"
    if not 1 <= policy.burst <= MAX_BURST:
        return f"burst must be between 1 and {MAX_BURST}"
    if not 1 <= policy.concurrency <= MAX_CONCURRENCY:
        return f"concurrency must be between 1 and {MAX_CONCURRENCY}"
    if policy.burst % policy.per_second:
        return (
            f"burst ({policy.burst}) must be a whole multiple of per_second "
            f"({policy.per_second}): the limit is enforced as `burst` requests in any window "
            "of burst/per_second seconds, and windows are whole seconds"
        )
    return None


class RateLimitChanges(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A tenant's override as the admin API takes it; an absent or null field uses the default."""

    per_second: int | None = None
    burst: int | None = None
    concurrency: int | None = None


class RateLimitInfo(msgspec.Struct, kw_only=True):
    """The limits in force for a tenant, and which of them are its own."""

    slug: str
    per_second: int
    burst: int
    concurrency: int
    window_seconds: int
    override: RateLimitChanges
    """The tenant's own values; null where the service default applies."""
