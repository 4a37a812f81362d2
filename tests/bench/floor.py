# ruff: noqa: S311 - random picks the workload, never a secret
"""The floor: the service's database work done straight with asyncpg, nothing else.

From one process, with the same number of concurrent clients as the HTTP
workloads, on the tables of tenant schemas the service created: what the
database and the driver allow before HTTP, authentication, JSON and SCIM.
The create cycle (a lookup and an insert in one transaction) fills a tenant
of its own; the lookups run the statement the service runs for a
`userName eq` filter, built by the service's own code, on the tenants and
users the service's lookups were measured on (users in groups, which the
statement reads).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import msgspec

from service.postgres import Connection
from service.provisioning import Scope, search_statements
from service.scim.attributes import USER_RESOURCE
from service.scim.filter import parse_filter
from service.scim.projection import parse_projection
from service.store.paging import ListQuery
from service.store.resources import USERS
from tenants.schemas import quoted_schema
from tests.bench.loadgen import Samples, Window, user_body

_INSERT = (
    "INSERT INTO {schema}.users (id, resource, user_name, external_id, display_name, active) "
    "VALUES ($1, $2::jsonb, $3, $4, $5, $6) RETURNING id, created, last_modified, version"
)

_PLACEHOLDER = "floor@placeholder.example"


@dataclass(frozen=True, slots=True)
class Lookup:
    """A `userName eq` lookup in one tenant as the service runs it
    (`provisioning.search_statements`: each user with its groups)."""

    statement: str
    params: tuple[object, ...]
    """For a placeholder name, at `name_at`."""
    name_at: int

    def args(self, user_name: str) -> tuple[object, ...]:
        return (*self.params[: self.name_at], user_name, *self.params[self.name_at + 1 :])


def lookup(schema: str) -> Lookup:
    """The service's lookup in the tenant schema ``schema`` (its bare name)."""
    query = ListQuery(filter=parse_filter(f'userName eq "{_PLACEHOLDER}"'))
    projection = parse_projection(USER_RESOURCE, None, None)
    statements = search_statements(USERS, Scope(schema=schema, base_url=""), query, projection)
    return Lookup(statements.rows, statements.params, statements.params.index(_PLACEHOLDER))


async def _drive(  # noqa: PLR0917
    dsn: str,
    connections: int,
    count: int,
    seconds: float,
    label: str,
    operation: Callable[[Connection, int], Awaitable[None]],
    window: Window | None,
) -> Samples:
    samples = Samples()
    pool: asyncpg.Pool[asyncpg.Record] = await asyncpg.create_pool(
        dsn, min_size=connections, max_size=connections
    )
    counter = iter(range(count)) if count else None
    deadline = time.perf_counter() + seconds if seconds else None
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while True:
            if deadline is not None and time.perf_counter() >= deadline:
                return
            n = next(counter, None) if counter is not None else issued
            if n is None:
                return
            issued += 1
            started = time.perf_counter()
            async with pool.acquire() as conn:
                await operation(conn, n)
            samples.latencies[label].append((time.perf_counter() - started) * 1000)

    try:
        if window:
            window.start()
        cpu = time.process_time()
        samples.started = time.time()
        await asyncio.gather(*(worker() for _ in range(connections)))
        samples.ended = time.time()
        samples.cpu_seconds = time.process_time() - cpu
        if window:
            window.stop()
        samples.jobs = len(samples.latencies[label])
    finally:
        await pool.close()
    return samples


def create_cycle(
    dsn: str,
    schema: str,
    connections: int,
    count: int,
    prefix: str,
    *,
    window: Window | None = None,
) -> Samples:
    """Per user, in one transaction: look the userName up (no match), then insert the user."""
    found = lookup(schema)
    insert = _INSERT.format(schema=quoted_schema(schema))

    async def operation(conn: Connection, n: int) -> None:
        name = f"{prefix}{n}@floor.example"
        body = user_body(name, n)
        async with conn.transaction():
            await conn.fetch(found.statement, *found.args(name))
            await conn.fetchrow(
                insert,
                uuid.uuid4(),
                msgspec.json.encode(body).decode(),
                name,
                body["externalId"],
                body["displayName"],
                True,
            )

    return asyncio.run(
        _drive(dsn, connections, count, 0, "create (lookup+insert)", operation, window)
    )


def lookups(
    dsn: str,
    connections: int,
    seconds: float,
    users: list[tuple[str, list[str]]],
    *,
    window: Window | None = None,
) -> Samples:
    """The service's `userName eq` lookups, for existing users: (tenant schema, userNames) each."""
    tenants = [(lookup(schema), names) for schema, names in users]
    rng = random.Random(1)

    async def operation(conn: Connection, n: int) -> None:
        found, names = rng.choice(tenants)
        await conn.fetch(found.statement, *found.args(rng.choice(names)))

    return asyncio.run(_drive(dsn, connections, 0, seconds, "lookup", operation, window))
