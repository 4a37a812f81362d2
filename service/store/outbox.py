"""The event outbox of one tenant: events appended in the writer's transaction, read by cursor.

Numbers come from the tenant's `event_sequence` counter row. Whoever numbers
an event updates that row and so holds its lock until commit: a second
writer in the same tenant waits for the first to commit (or roll back)
before it is numbered, numbers are gapless and follow commit order, and a
reader that has consumed everything up to N loses nothing by asking for
`sequence > N` next. Tenants never contend with each other.

Since tenant schema version 8 (`NUMBERED_AT_COMMIT_VERSION`) a SCIM write
inserts its events without numbers and a deferred trigger numbers them as
the transaction commits, so the counter is held only through the commit
itself. Before, the insert took the numbers, and the lock was held from
there through the round trip back to the service and its COMMIT: a
tenant's writes queued behind each other for that long (one tenant's
creates from 32 connections: 361-386/s with a p99 of 327-371 ms, against
458-463/s and 84 ms). A write that is one statement, outside a
transaction block (the common creates and PATCHes), numbers its events in
that statement instead (`_storing`, ``numbered``): the lock is then taken
within the commit's own statement, and each event is written once rather
than inserted and then updated with its number. Operator actions, and
tenants not yet migrated, number in the insert too. All ways take the same
lock, so together they keep the same order.

A NOTIFY on `CHANNEL` with the tenant's schema wakes the webhook worker
without polling, and is never sent for a rollback. PostgreSQL serialises the
commits of all transactions that NOTIFY (one lock, held through the commit's
WAL flush), so SCIM writes do not NOTIFY themselves: inside `announced`, the
schemas a transaction appended to are handed after its commit to the
process's `Announcer`, which sends them in one statement with whatever other
writes committed meanwhile. Other callers (operator actions) NOTIFY in their
own transaction.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg
import msgspec

from service.postgres import Connection, Pool
from service.store.resources import AlongStatements
from tenants.schemas import quoted_schema

CHANNEL = "scim_events"
NUMBERED_AT_COMMIT_VERSION: Final = 8
"""The tenant schema version whose events can be numbered by the commit."""
log = logging.getLogger(__name__)


class NewEvent(msgspec.Struct, frozen=True):
    """An event a write stores. A Struct, not a frozen dataclass: a member change
    builds one per member, and a Struct is made in a tenth of the time (0.12
    against 1.3 us)."""

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


_EVENT_ROWS: Final = (
    "unnest(${0}::uuid[], ${1}::text[], ${2}::text[], ${3}::uuid[], ${4}::jsonb[], "
    "${5}::jsonb[]) WITH ORDINALITY AS e(id, type, resource_type, resource_id, data, previous, n)"
)


EVENT_PARAMS: Final = 6
"""How many parameters (arrays) carry a statement's events."""


def event_rows(first_param: int) -> str:
    """The events as rows of `e`, from the `EVENT_PARAMS` arrays numbered from ``first_param``."""
    return _EVENT_ROWS.format(*range(first_param, first_param + EVENT_PARAMS))


def _arrays(events: Sequence[NewEvent]) -> list[list[Any]]:
    return [
        [event.id for event in events],
        [event.type for event in events],
        [event.resource_type for event in events],
        [event.resource_id for event in events],
        [event.data for event in events],
        [event.previous for event in events],
    ]


def _storing(qualified: str, rows: str, *, data: str = "e.data", numbered: bool) -> str:
    """`WITH` queries that store the events `e` of the `FROM` items ``rows`` (the columns
    of `event_rows`, with any joins and conditions choosing which are stored), the
    last one (`along`) inserting them; ``data`` is stored as their data.

    ``numbered``: number them in this statement, locking the tenant's counter row
    from here to the end of the transaction: for a statement that is its own
    transaction, through the rest of the statement (the insert) and its commit,
    where the commit's trigger held it through the commit alone but updated the
    counter and the event row just inserted, per event, under it. The events are
    written once. Otherwise they are inserted for the commit to number.
    """
    columns = "id, type, resource_type, resource_id, data, previous"
    if not numbered:
        # In insertion order: the deferred trigger numbers rows in the order they came.
        return (
            f"along AS (INSERT INTO {qualified}.events ({columns}) SELECT e.id, e.type, "
            f"e.resource_type, e.resource_id, {data}, e.previous FROM {rows} ORDER BY e.n)"
        )
    # The counter is read as a scalar, not joined: PostgreSQL estimates the rarely
    # analyzed one-row table at 2,200 rows, and a join would multiply that by the
    # events a generic plan cannot count, pricing it far above a plan for the values,
    # so every execution would be planned afresh (`tests/integration/test_plans.py`).
    return (
        "new_events AS (SELECT e.id, e.type, e.resource_type, e.resource_id, "
        f"{data} AS data, e.previous, row_number() OVER (ORDER BY e.n) AS k, "
        f"count(*) OVER () AS total FROM {rows}), "
        f"event_numbers AS (UPDATE {qualified}.event_sequence SET last = last + "
        "(SELECT count(*) FROM new_events) WHERE EXISTS (SELECT FROM new_events) "
        "RETURNING last), "
        f"along AS (INSERT INTO {qualified}.events (sequence, {columns}) "
        "SELECT (SELECT last FROM event_numbers) - s.total + s.k, s.id, s.type, "
        "s.resource_type, s.resource_id, s.data, s.previous FROM new_events s ORDER BY s.k)"
    )


def _announce(schema: str) -> bool:
    """Have the transaction's announcer send ``schema``'s NOTIFY after commit; False
    when there is none (the transaction must NOTIFY itself)."""
    pending = _announce_after_commit.get()
    if pending is None:
        return False
    pending.add(schema)
    return True


async def append(
    conn: Connection,
    schema: str,
    events: Sequence[NewEvent],
    *,
    at_commit: bool = False,
    ahead: AlongStatements | None = None,
) -> None:
    """Store ``events`` in the caller's transaction, call it last in the transaction.

    ``at_commit``: leave the numbering to the commit (the tenant's schema must
    be at `NUMBERED_AT_COMMIT_VERSION`); otherwise take the numbers now.
    ``ahead``: `WITH` queries (arguments from `$1`) the same statement runs first,
    the write's last change, saving it a round trip.
    """
    if not events and ahead is None:
        return
    ctes = [] if ahead is None else [ahead.ctes]
    args = [] if ahead is None else [*ahead.args]
    notify = "SELECT 1"
    if events:
        rows = event_rows(len(args) + 1)
        ctes.append(_storing(quoted_schema(schema), rows, numbered=not at_commit))
        args += _arrays(events)
        if not _announce(schema):
            notify = f"SELECT pg_notify(${len(args) + 1}, ${len(args) + 2})"
            args += [CHANNEL, schema]
    await conn.execute(f"WITH {', '.join(ctes)} {notify}", *args)


def announcing() -> bool:
    """Whether the current transaction's events are announced after it commits
    (inside `announced` with an announcer)."""
    return _announce_after_commit.get() is not None


def appending(
    schema: str,
    events: Sequence[NewEvent],
    first_param: int,
    only_with: str | None = None,
    *,
    numbered: bool = False,
    data: str = "e.data",
) -> AlongStatements:
    """``events`` as statements (the last, `along`) to run within another statement of
    the transaction, with their arguments numbered from ``first_param`` (the events'
    arrays, `event_rows`); with ``only_with``, the name of a `WITH` query of that
    statement, they are stored only if it returns a row. ``numbered``: as for
    `_storing`, when that statement is its own transaction; ``data``, SQL over the
    event `e`, what is stored as its data.

    Saves the write a round trip: its last change and its events leave as one
    statement. Only where the commit numbers the events (the caller checks the
    tenant's schema is at `NUMBERED_AT_COMMIT_VERSION`) and `announcing()`, so
    the statement is the insert alone.
    """
    _announce_along(schema)
    where = "" if only_with is None else f" WHERE EXISTS (SELECT FROM {only_with})"
    rows = f"{event_rows(first_param)}{where}"
    storing = _storing(quoted_schema(schema), rows, data=data, numbered=numbered)
    return AlongStatements(storing, _arrays(events))


def built(schema: str, rows: str) -> str:
    """A `WITH` query (`along`, after those of `_storing`: none) storing the events a
    statement builds itself: ``rows``, `FROM` items naming them `e`, with the columns
    of `event_rows`, for the commit to number (the caller is a transaction block of a
    tenant at `NUMBERED_AT_COMMIT_VERSION`, announced as `appending` is)."""
    _announce_along(schema)
    return _storing(quoted_schema(schema), rows, numbered=False)


def _announce_along(schema: str) -> None:
    if not _announce(schema):
        raise RuntimeError("events stored along another statement need an announcer")


MEMBER_EVENT_DATA: Final = "jsonb_set(e.data, '{member,type}', to_jsonb(c.member_type))"
"""A membership event's data (`e`) with its member's type from the statement (`c`)."""


def member_join(changed: str, *, kind: str = "JOIN") -> str:
    """Each membership event `e` with its member's row `c` of the `WITH` query ``changed``
    (``kind``: `LEFT JOIN` keeps the events without one, `c` null)."""
    return f" {kind} {changed} c ON c.member_id = (e.data #>> '{{member,value}}')::uuid"


def appending_members(
    schema: str,
    events: Sequence[NewEvent],
    first_param: int,
    changed: str,
    *,
    numbered: bool = False,
    unless: str | None = None,
    data: str = MEMBER_EVENT_DATA,
    also: str | None = None,
) -> AlongStatements:
    """As `appending`, for membership events (`service.events.MembershipChanges.events`)
    of members a statement may or may not change: each is stored only if the
    statement's `WITH` query ``changed`` (`member_id, member_type`) returns its
    member (`data.member.value`), and with that member's type (`data.member.type`),
    which only the statement knows (``data``: SQL over the event `e` and its
    member's row `c`, `MEMBER_EVENT_DATA` or more). ``unless``: SQL over `c`; the
    events of the members it holds for are left to the caller
    (`guard.appending_members` holds them). ``also``: a query of more events the
    statement builds itself, stored after these (the columns of `event_rows`, its
    `n` past theirs): one insert, so ``numbered`` numbers them all at once."""
    _announce_along(schema)
    held = "" if unless is None else f" AND NOT {unless}"
    rows = f"{event_rows(first_param)}{member_join(changed)}{held}"
    if also is not None:
        rows = (
            f"(SELECT e.id, e.type, e.resource_type, e.resource_id, {data} AS data, e.previous, "
            f"e.n FROM {rows} UNION ALL {also}) AS e"
        )
        data = "e.data"
    storing = _storing(quoted_schema(schema), rows, data=data, numbered=numbered)
    return AlongStatements(storing, _arrays(events))


def appending_created(
    schema: str,
    events: Sequence[NewEvent],
    first_param: int,
    inserted: str,
    changed: str,
    *,
    created_data: str,
) -> AlongStatements:
    """`appending` and `appending_members` in one statement that inserts a group with
    its members: ``events`` are the group's `created` event, stored only if the
    `WITH` query ``inserted`` returns a row, its data ``created_data`` (SQL over
    `e`), then the events of its members, each stored only with its member in
    ``changed`` and with that member's type. Numbered by the statement, which is
    its own transaction: one counter update for them all."""
    _announce_along(schema)
    rows = (
        f"{event_rows(first_param)}{member_join(changed, kind='LEFT JOIN')} "
        f"WHERE EXISTS (SELECT FROM {inserted}) AND (e.n = 1 OR c.member_id IS NOT NULL)"
    )
    data = f"CASE WHEN e.n = 1 THEN {created_data} ELSE {MEMBER_EVENT_DATA} END"
    storing = _storing(quoted_schema(schema), rows, data=data, numbered=True)
    return AlongStatements(storing, _arrays(events))


_announce_after_commit: ContextVar[set[str] | None] = ContextVar(
    "scim_events_announce_after_commit", default=None
)


class Announcer:
    """Sends the NOTIFYs of committed writes, many schemas per statement.

    One flush runs at a time; schemas announced while it runs go out in the
    next, so under load a statement carries many writes and at rest each
    write's NOTIFY leaves at once.
    """

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._pending: set[str] = set()
        self._flushing: asyncio.Task[None] | None = None

    def announce(self, schemas: set[str]) -> None:
        if not schemas:
            return
        self._pending |= schemas
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending:
            schemas, self._pending = sorted(self._pending), set()
            try:
                await self._pool.execute(
                    "SELECT pg_notify($1, s) FROM unnest($2::text[]) AS s", CHANNEL, schemas
                )
            except (OSError, asyncpg.PostgresError) as exc:
                # The webhook worker's periodic sweep finds these events anyway.
                log.warning("could not announce new events of %d tenant(s): %s", len(schemas), exc)

    async def stop(self) -> None:
        """Send what is pending (the last writes' NOTIFYs) before the pool closes."""
        if self._flushing is not None:
            await self._flushing


@asynccontextmanager
async def announced(
    pool: Pool, announcer: Announcer | None, *, transaction: bool = True
) -> AsyncIterator[Connection]:
    """A pooled connection in a transaction whose appended events `announcer`
    announces once it has committed (without one, `append` NOTIFYs in the transaction).

    Without ``transaction`` each statement commits on its own (or in a transaction the
    caller opens), and what they appended is announced when the block ends without
    an error.
    """

    @asynccontextmanager
    async def connection() -> AsyncIterator[Connection]:
        async with pool.acquire() as conn:
            if not transaction:
                yield conn
                return
            async with conn.transaction():
                yield conn

    if announcer is None:
        async with connection() as conn:
            yield conn
        return
    schemas: set[str] = set()
    token = _announce_after_commit.set(schemas)
    try:
        async with connection() as conn:
            yield conn
    finally:
        _announce_after_commit.reset(token)
    announcer.announce(schemas)  # reached only when what it appended committed


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


_EVENT_COLUMNS: Final = (
    "sequence, id, type, resource_type, resource_id, occurred_at, data, previous"
)
"""What `_stored` reads of an event row."""


async def read(
    conn: Connection | Pool, schema: str, *, after: int, limit: int
) -> list[StoredEvent]:
    """Events numbered above ``after``, oldest first."""
    rows = await conn.fetch(
        f"SELECT {_EVENT_COLUMNS} "
        f"FROM {quoted_schema(schema)}.events WHERE sequence > $1 ORDER BY sequence LIMIT $2",
        after,
        limit,
    )
    return [_stored(row) for row in rows]


async def read_back(
    conn: Connection | Pool, schema: str, *, before: int | None, limit: int
) -> list[StoredEvent]:
    """Events numbered below ``before`` (all when None), newest first: what happened
    lately, for a person looking; consumers read forward (`read`)."""
    rows = await conn.fetch(
        f"SELECT {_EVENT_COLUMNS} "
        f"FROM {quoted_schema(schema)}.events WHERE $1::bigint IS NULL OR sequence < $1 "
        "ORDER BY sequence DESC LIMIT $2",
        before,
        limit,
    )
    return [_stored(row) for row in rows]


async def purge(conn: Connection | Pool, schema: str, *, older_than: datetime) -> int:
    """Delete events that occurred before ``older_than``; returns how many."""
    result: str = await conn.execute(
        f"DELETE FROM {quoted_schema(schema)}.events WHERE occurred_at < $1", older_than
    )
    return int(result.rsplit(maxsplit=1)[-1])
