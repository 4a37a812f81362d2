"""The purge step of the deprovisioning policy: soft-deleted users past their retention go.

`scim-platform purge` runs it (from cron or a Kubernetes CronJob), as does
`POST /admin/v1/tenants/{slug}/purge`. Under ``deactivate`` nothing is ever
purged; under ``soft_delete`` and ``hard_delete`` users soft-deleted more than
`retention_days` ago are (``hard_delete`` soft-deletes nothing itself, but
keeps honouring what an earlier policy kept).
"""

from __future__ import annotations

import uuid

from service.postgres import Pool
from service.store import lifecycle
from tenants import policies

PURGE_SCHEMA_VERSION = 4
"""The tenant schema version that has soft-deleted users at all."""


async def purge_tenant(pool: Pool, tenant_id: uuid.UUID, schema: str) -> int:
    """Purge one tenant by its policy; returns how many users were deleted for good."""
    policy = await policies.load(pool, tenant_id)
    if policy.deprovision_mode == "deactivate":
        return 0
    return await lifecycle.purge(pool, schema, policy.retention_days)


async def purge_all(pool: Pool, slug: str | None = None) -> dict[str, int]:
    """Purge every tenant (or the one `slug` names): slug -> users purged."""
    rows = await pool.fetch(
        "SELECT id, slug, schema_name FROM scim_control.tenants "
        "WHERE schema_version >= $1 AND ($2::text IS NULL OR slug = $2) ORDER BY slug",
        PURGE_SCHEMA_VERSION,
        slug,
    )
    return {row["slug"]: await purge_tenant(pool, row["id"], row["schema_name"]) for row in rows}
