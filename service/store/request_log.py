"""The provisioning request log in PostgreSQL: each tenant's `requests` table.

Written in batches with COPY, read newest first with a keyset cursor, purged
by age. The table arrives with tenant schema version `REQUEST_LOG_VERSION`;
a tenant not migrated yet has no log, and nothing here fails because of it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg

from service.postgres import Pool, discarded_after
from tenants.schemas import quoted_schema

REQUEST_LOG_VERSION: Final = 5
COLUMNS: Final = (
    "received_at",
    "client",
    "user_agent",
    "method",
    "path",
    "query",
    "operation",
    "resource_id",
    "status",
    "scim_type",
    "detail",
    "latency_ms",
    "trace_id",
    "body",
    "body_bytes",
    "body_truncated",
)
_PURGE_CHUNK: Final = 10_000
# The schema or its table went away under us (tenant deleted) or is not there yet.
_GONE: Final = (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError)


@dataclass(frozen=True, slots=True)
class LoggedTenant:
    id: uuid.UUID
    slug: str
    schema: str
    idp_type: str
    created_at: datetime
    has_log: bool
    """False while the tenant's schema is below `REQUEST_LOG_VERSION`."""


async def tenants_by_slug(pool: Pool, slugs: Sequence[str]) -> dict[str, LoggedTenant]:
    rows = await pool.fetch(
        "SELECT id, slug, schema_name, idp_type, created_at, schema_version "
        "FROM scim_control.tenants WHERE slug = ANY($1::text[])",
        list(slugs),
    )
    return {
        row["slug"]: LoggedTenant(
            id=row["id"],
            slug=row["slug"],
            schema=row["schema_name"],
            idp_type=row["idp_type"],
            created_at=row["created_at"],
            has_log=row["schema_version"] >= REQUEST_LOG_VERSION,
        )
        for row in rows
    }


async def insert(pool: Pool, schema: str, rows: Sequence[tuple[Any, ...]]) -> bool:
    """Append rows (values in `COLUMNS` order); False if the tenant's schema is gone."""
    quoted_schema(schema)  # only a schema we generated reaches SQL, even through COPY
    try:
        async with pool.acquire() as conn:
            await conn.copy_records_to_table(
                "requests", schema_name=schema, columns=list(COLUMNS), records=rows
            )
    except _GONE:
        return False
    return True


@dataclass(frozen=True, slots=True)
class RequestQuery:
    status_codes: tuple[int, ...] = ()
    status_classes: tuple[int, ...] = ()
    """Hundreds: 4 for `4xx`."""
    since: datetime | None = None
    until: datetime | None = None
    operations: tuple[str, ...] = ()
    resource_id: str | None = None
    limit: int = 100
    after: tuple[datetime, int] | None = None
    """The (received_at, id) of the last row of the previous page."""


def _where(query: RequestQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    status: list[str] = []
    if query.status_codes:
        status.append(f"status = ANY({arg(list(query.status_codes))}::smallint[])")
    for hundred in query.status_classes:
        status.append(f"status BETWEEN {arg(hundred * 100)} AND {arg(hundred * 100 + 99)}")
    if status:
        clauses.append(f"({' OR '.join(status)})")
    if query.since is not None:
        clauses.append(f"received_at >= {arg(query.since)}")
    if query.until is not None:
        clauses.append(f"received_at < {arg(query.until)}")
    if query.operations:
        clauses.append(f"operation = ANY({arg(list(query.operations))}::text[])")
    if query.resource_id is not None:
        clauses.append(f"resource_id = {arg(query.resource_id)}")
    if query.after is not None:
        at, last_id = query.after
        clauses.append(f"(received_at, id) < ({arg(at)}, {arg(last_id)})")
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), args


async def search(pool: Pool, schema: str, query: RequestQuery) -> list[asyncpg.Record]:
    """Newest first; one row more than `limit`, so the caller knows a next page exists."""
    where, args = _where(query)
    args.append(query.limit + 1)
    rows: list[asyncpg.Record] = await pool.fetch(
        f"SELECT id, {', '.join(COLUMNS)} FROM {quoted_schema(schema)}.requests {where} "
        f"ORDER BY received_at DESC, id DESC LIMIT ${len(args)}",
        *args,
    )
    return rows


@dataclass(slots=True)
class PurgeReport:
    tenants: int = 0
    deleted: int = 0


async def purge(pool: Pool, older_than: datetime) -> PurgeReport:
    """Delete every tenant's requests received before ``older_than``.

    In chunks, so a large backlog never holds one long transaction or lock; on a
    connection closed afterwards, as it opens every tenant's table.
    """
    async with discarded_after(pool) as conn:
        tenants = await conn.fetch(
            "SELECT schema_name FROM scim_control.tenants WHERE schema_version >= $1",
            REQUEST_LOG_VERSION,
        )
        report = PurgeReport(tenants=len(tenants))
        for tenant in tenants:
            table = f"{quoted_schema(tenant['schema_name'])}.requests"
            while True:
                try:
                    status = await conn.execute(
                        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "
                        f"WHERE received_at < $1 LIMIT {_PURGE_CHUNK})",
                        older_than,
                    )
                except _GONE:
                    break
                deleted = int(status.rsplit(" ", 1)[-1])
                report.deleted += deleted
                if deleted < _PURGE_CHUNK:
                    break
    return report
