"""The tenant a request acts for, as resolved from its URL and token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from tenants.migrations import LATEST_VERSION
from tenants.ratelimit import RateLimitOverride


@dataclass(frozen=True, slots=True)
class TenantContext:
    id: uuid.UUID
    slug: str
    schema: str
    """The tenant's Postgres schema; validated again wherever it reaches SQL."""
    enabled: bool
    idp_type: str
    rate_limit: RateLimitOverride | None = None
    """The tenant's own rate limits, cached with the tenant; None: the service defaults."""
    schema_version: int = LATEST_VERSION
    """Its schema's version, as cached with the tenant (`migrate` tells every process)."""
