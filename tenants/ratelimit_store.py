"""Where tenants' rate-limit overrides live: `scim_control.rate_limits`.

A row exists only for a tenant with an override, and a NULL column means "the
service default". Every change sends the tenant-changed notification in its
own transaction, so every replica drops its cached tenant (the override is
cached with it, see `tenants.auth`) the moment the change commits: a new limit
takes effect without a restart and without a query per request.
"""

from __future__ import annotations

import uuid

from tenants import notifications
from tenants.control import engine
from tenants.errors import InvalidInput
from tenants.models import RateLimit
from tenants.ratelimit import (
    RateLimitChanges,
    RateLimitInfo,
    RateLimitOverride,
    RateLimitPolicy,
    policy_problem,
)
from tenants.registry import TenantRegistry


class RateLimitStore:
    def __init__(self, registry: TenantRegistry, defaults: RateLimitPolicy) -> None:
        self._registry = registry
        self._defaults = defaults

    def _info(self, slug: str, override: RateLimitOverride) -> RateLimitInfo:
        policy = self._defaults.with_override(override)
        return RateLimitInfo(
            slug=slug,
            per_second=policy.per_second,
            burst=policy.burst,
            concurrency=policy.concurrency,
            window_seconds=policy.window_seconds,
            override=RateLimitChanges(
                per_second=override.per_second,
                burst=override.burst,
                concurrency=override.concurrency,
            ),
        )

    async def get(self, slug: str) -> RateLimitInfo:
        tenant_id = await self._registry.tenant_id(slug)
        row: dict[str, int | None] | None = (
            await RateLimit.select(RateLimit.per_second, RateLimit.burst, RateLimit.concurrency)
            .where(RateLimit.tenant == tenant_id)
            .first()
        )
        override = RateLimitOverride() if row is None else RateLimitOverride(**row)
        return self._info(slug, override)

    async def set(self, slug: str, changes: RateLimitChanges) -> RateLimitInfo:
        """Replace the tenant's override; fields left out use the defaults."""
        override = RateLimitOverride(
            per_second=changes.per_second, burst=changes.burst, concurrency=changes.concurrency
        )
        problem = policy_problem(self._defaults.with_override(override))
        if problem is not None:
            raise InvalidInput(problem)
        tenant_id = await self._registry.tenant_id(slug)
        if override.is_empty():
            await self._delete(tenant_id)
        else:
            async with engine().transaction() as transaction:
                conn = transaction.connection
                await conn.execute(
                    "INSERT INTO scim_control.rate_limits "
                    "(tenant, per_second, burst, concurrency) VALUES ($1, $2, $3, $4) "
                    "ON CONFLICT (tenant) DO UPDATE SET per_second = EXCLUDED.per_second, "
                    "burst = EXCLUDED.burst, concurrency = EXCLUDED.concurrency, "
                    "updated_at = now()",
                    tenant_id,
                    override.per_second,
                    override.burst,
                    override.concurrency,
                )
                await notifications.notify_tenant_changed(conn, tenant_id)
        return self._info(slug, override)

    async def reset(self, slug: str) -> RateLimitInfo:
        """Back to the service defaults."""
        await self._delete(await self._registry.tenant_id(slug))
        return self._info(slug, RateLimitOverride())

    async def _delete(self, tenant_id: uuid.UUID) -> None:
        async with engine().transaction() as transaction:
            conn = transaction.connection
            await conn.execute("DELETE FROM scim_control.rate_limits WHERE tenant = $1", tenant_id)
            await notifications.notify_tenant_changed(conn, tenant_id)
