"""The event outbox of one tenant: events appended in the writer's transaction, read by cursor.

Numbers come from the tenant's `event_sequence` counter row, taken with an
UPDATE in the same transaction as the change. Its row lock is held until
commit, so a second writer in the same tenant waits for the first to commit
(or roll back) before it is numbered: numbers are gapless and follow commit
order, and a reader that has consumed everything up to N loses nothing by
asking for `sequence > N` next. The price is that a tenant's writes serialise
on that row from their event insert to their commit, which is why callers
append events as the last statement of a transaction. Tenants never contend
with each other.

A NOTIFY on `CHANNEL` with the tenant's schema goes out with the commit (and
never for a rollback), so the webhook worker wakes without polling.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from service.postgres import Connection, Pool
from tenants.schemas import quoted_schema

CHANNEL = "scim_events"


@dataclass(frozen=True, slots=True)
class NewEvent:
    id: uuid.UUID
    type: str
    resource_type: str
    resource_id: uuid.UUID
    data: dict[str, Any]
    previous: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    sequence: int
    id: uuid.UUID
    type: str
    resource_type: str
    resource_id: uuid.UUID
    occurred_at: datetime
    data: dict[str, Any]
    previous: dict[str, Any] | None


async def append(conn: Connection, schema: str, events: Sequence[NewEvent]) -> None:
    """Number and store ``events`` in the caller's transaction; call it last in the transaction."""
    if not events:
        return
    qualified = quoted_schema(schema)
    # One round trip: take the numbers, insert the rows, queue the NOTIFY.
    await conn.execute(
        f"WITH numbered AS (UPDATE {qualified}.event_sequence SET last = last + $1 "
        "RETURNING last - $1 AS base), "
        f"inserted AS (INSERT INTO {qualified}.events "
        "(sequence, id, type, resource_type, resource_id, data, previous) "
        "SELECT numbered.base + e.n, e.id, e.type, e.resource_type, e.resource_id, e.data, "
        "e.previous FROM numbered, unnest($2::uuid[], $3::text[], $4::text[], $5::uuid[], "
        "$6::jsonb[], $7::jsonb[]) WITH ORDINALITY "
        "AS e(id, type, resource_type, resource_id, data, previous, n)) "
        "SELECT pg_notify($8, $9)",
        len(events),
        [event.id for event in events],
        [event.type for event in events],
        [event.resource_type for event in events],
        [event.resource_id for event in events],
        [event.data for event in events],
        [event.previous for event in events],
        CHANNEL,
        schema,
    )


def _stored(row: asyncpg.Record) -> StoredEvent:
    return StoredEvent(
        sequence=row["sequence"],
        id=row["id"],
        type=row["type"],
        resource_type=row["resource_type"],
        resource_id=row["resource_id"],
        occurred_at=row["occurred_at"],
        data=row["data"],
        previous=row["previous"],
    )


async def read(
    conn: Connection | Pool, schema: str, *, after: int, limit: int
) -> list[StoredEvent]:
    """Events numbered above ``after``, oldest first."""
    rows = await conn.fetch(
        "SELECT sequence, id, type, resource_type, resource_id, occurred_at, data, previous "
        f"FROM {quoted_schema(schema)}.events WHERE sequence > $1 ORDER BY sequence LIMIT $2",
        after,
        limit,
    )
    return [_stored(row) for row in rows]


async def purge(conn: Connection | Pool, schema: str, *, older_than: datetime) -> int:
    """Delete events that occurred before ``older_than``; returns how many."""
    result: str = await conn.execute(
        f"DELETE FROM {quoted_schema(schema)}.events WHERE occurred_at < $1", older_than
    )
    return int(result.rsplit(maxsplit=1)[-1])
