"""Rate limits on real `scim-platform serve` processes: concurrency, capacity, Redis.

These need requests truly in flight at once, which the in-process test client
cannot give (it runs one request at a time), and, for Redis, two processes.
A request is held in flight by locking its tenant's `users` table from the
test, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.postgres import Pool
from service.ratelimit import RateLimiter
from service.settings import Settings
from tests.support.application import ADMIN_TOKEN, schema_of
from tests.support.ports import free_port
from tests.support.redis_server import redis_server
from tests.support.serving import served
from tests.unit.test_ratelimit import tenant

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
POOL_MAX = 4  # so SCIM requests get 3 slots: one connection stays for auth and admin


def serve_env(database_url: str, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_")}
    env.pop("REDIS_URL", None)
    return (
        env
        | {
            "DATABASE_URL": database_url,
            "SCIM_DATA_DIR": str(tmp / "unused-data"),
            "SCIM_ADMIN_TOKEN": ADMIN_TOKEN,
            "SCIM_DB_POOL_MIN": "1",
            "SCIM_DB_POOL_MAX": str(POOL_MAX),
            "SCIM_POOL_WAIT_SECONDS": "1",
            "SCIM_LOG_LEVEL": "WARNING",
        }
        | extra
    )


@pytest.fixture(scope="module")
def server(migrated_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("served")
    with served(serve_env(migrated_database, tmp), free_port(), tmp / "serve.log") as url:
        yield url


def new_tenant(base_url: str, **limits: int) -> tuple[str, dict[str, str]]:
    """A tenant with its own limits: its slug and the headers of its requests."""
    slug = f"rl-{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=base_url, headers=ADMIN, timeout=30) as admin:
        assert admin.post("/admin/v1/tenants", json={"slug": slug, "name": slug}).is_success
        token = admin.post(f"/admin/v1/tenants/{slug}/tokens").json()["token"]
        if limits:
            changed = admin.put(f"/admin/v1/tenants/{slug}/rate-limit", json=limits)
            assert changed.status_code == 200, changed.text
    return slug, {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def users_table_locked(db: Pool, slug: str) -> AsyncIterator[Any]:
    """Hold an exclusive lock on the tenant's users, so its reads wait (in flight)."""
    schema = await schema_of(db, slug)
    table = f'"{schema}".users'
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield table


async def wait_until_blocked(db: Pool, table: str, count: int) -> None:
    """Until ``count`` requests wait on the lock, each holding its slot and a connection."""
    for _ in range(600):
        waiting = await db.fetchval(
            "SELECT count(*) FROM pg_locks WHERE relation = $1::regclass AND NOT granted", table
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} requests never reached the database")


def assert_scim_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/scim+json"
    assert response.json()["status"] == str(status)
    assert int(response.headers["retry-after"]) >= 1


async def test_concurrency_cap_answers_429_while_the_tenant_is_at_it(server: str, db: Pool) -> None:
    slug, auth = new_tenant(server, concurrency=2)
    url = f"{server}/scim/v2/{slug}/Users"
    async with httpx.AsyncClient(headers=auth, timeout=60) as http:
        async with users_table_locked(db, slug) as table:
            held = [asyncio.create_task(http.get(url)) for _ in range(2)]
            await wait_until_blocked(db, table, 2)
            refused = await http.get(url)
            assert_scim_error(refused, 429)
            assert "concurrent" in refused.json()["detail"]
            assert refused.headers["retry-after"] == "1"
            assert refused.headers["ratelimit"] == '"concurrency";r=0'
            assert 'q=2;qu="concurrent-requests"' in refused.headers["ratelimit-policy"]
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        # The slots were given back: the tenant is served again.
        assert (await http.get(url)).headers["ratelimit"].endswith('"concurrency";r=1')


async def test_saturated_service_answers_503_instead_of_queueing(server: str, db: Pool) -> None:
    busy, busy_auth = new_tenant(server)
    other, other_auth = new_tenant(server)
    other_url = f"{server}/scim/v2/{other}/Users"
    async with httpx.AsyncClient(timeout=60) as http:
        async with users_table_locked(db, busy) as table:
            # Every SCIM slot of the process is taken by a request stuck in the database.
            held = [
                asyncio.create_task(http.get(f"{server}/scim/v2/{busy}/Users", headers=busy_auth))
                for _ in range(POOL_MAX - 1)
            ]
            await wait_until_blocked(db, table, POOL_MAX - 1)
            # Another tenant, well within its own limits, is not queued behind them for
            # ever: after SCIM_POOL_WAIT_SECONDS it is told to come back. The lock is
            # still held, so an answer at all proves the request did not queue.
            refused = await http.get(other_url, headers=other_auth)
            assert_scim_error(refused, 503)
            assert "capacity" in refused.json()["detail"]
            assert "ratelimit-policy" in refused.headers
            # The admin API and health checks still get the connection kept for them.
            assert (await http.get(f"{server}/readyz")).status_code == 200
        assert [r.status_code for r in await asyncio.gather(*held)] == [200] * (POOL_MAX - 1)
        assert (await http.get(other_url, headers=other_auth)).status_code == 200


def test_replicas_share_one_limit_through_redis(
    migrated_database: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("replicas")
    with redis_server() as redis_url, contextlib.ExitStack() as stack:
        env = serve_env(migrated_database, tmp, REDIS_URL=redis_url)
        first, second = (
            stack.enter_context(served(env, free_port(), tmp / f"serve-{n}.log")) for n in (1, 2)
        )
        # 10 requests in any 10 s: the test sends 16 well within one window.
        slug, auth = new_tenant(first, per_second=1, burst=10)
        statuses: dict[str, list[int]] = {first: [], second: []}
        remaining: list[int] = []
        with httpx.Client(headers=auth, timeout=30) as http:
            started = time.monotonic()
            for i in range(16):
                base_url = (first, second)[i % 2]
                response = http.get(f"{base_url}/scim/v2/{slug}/Users")
                assert response.headers["ratelimit-policy"].startswith('"requests";q=10;w=10')
                statuses[base_url].append(response.status_code)
                if response.status_code == 200:
                    remaining.append(int(response.headers["ratelimit"].split(";")[1][2:]))
                else:
                    assert_scim_error(response, 429)
            elapsed = time.monotonic() - started

    admitted = statuses[first].count(200) + statuses[second].count(200)
    assert admitted <= 10 * (1 + math.floor(elapsed / 10))
    # Each process alone saw only 8 requests, under the limit of 10: a 429 from
    # either one means it counted the other's requests too.
    assert 429 in statuses[first]
    assert 429 in statuses[second]
    # One window for both: what remains falls by one per request, whichever served it.
    assert remaining == sorted(remaining, reverse=True)
    assert len(set(remaining)) == len(remaining)


async def test_redis_outage_fails_open_by_default() -> None:
    acme = tenant(per_second=1, burst=5)
    with redis_server() as redis_url:
        limiter = RateLimiter(dataclasses.replace(Settings(), redis_url=redis_url))
        shared = await limiter.admit(acme)
        assert dict(shared.headers)["RateLimit"].startswith('"requests";r=4;t=5')
        shared.release()
    # The server is gone: requests are still served, without a rate (and counted).
    try:
        unlimited = await limiter.admit(acme)
        assert dict(unlimited.headers)["RateLimit"] == '"concurrency";r=9'
        unlimited.release()
        assert limiter.storage_failures == 1
    finally:
        await limiter.close()
