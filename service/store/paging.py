"""Index-based pages (SCIM `startIndex`/`count`) over a tenant table."""

from __future__ import annotations

import asyncpg

from service.postgres import Pool

RESOURCE_COLUMNS = "id, resource, created, last_modified, version"


async def page(
    pool: Pool, table: str, *, offset: int, limit: int
) -> tuple[int, list[asyncpg.Record]]:
    """One page in creation order, and the total; the order is stable across pages.

    ``table`` must already be schema-qualified and quoted by the caller.
    """
    total: int = await pool.fetchval(f"SELECT count(*) FROM {table}")
    if limit == 0 or offset >= total:
        return total, []
    rows = await pool.fetch(
        f"SELECT {RESOURCE_COLUMNS} FROM {table} ORDER BY created, id OFFSET $1 LIMIT $2",
        offset,
        limit,
    )
    return total, rows
