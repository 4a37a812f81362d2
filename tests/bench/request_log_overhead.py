"""What the request log costs the SCIM path: throughput with it on and off, as a ratio.

`python -m tests.bench.request_log_overhead [--seconds S] [--rounds R] [--clients C]`

Builds two applications over one database, identical but for
`SCIM_REQUEST_LOG_ENABLED`, and drives both in this process over ASGI (no
sockets, so the measurement is the application's own cost per request) with
C concurrent clients, alternating rounds so that drift on a shared machine
hits both alike (which side goes first alternates too). Each client repeats
what an IdP sync does: create a user, look it up by filter, PATCH it, read
it (no password: its deliberately slow hash would dwarf everything else).
Reports requests per second for each, the median ratio of the round pairs,
and what the log did meanwhile (rows written, requests dropped); then the
log's own CPU cost per request, measured alone: the middleware on the
request path, and the masking the writer does in the background. Uses
`DATABASE_URL` when set (a fresh database in that server, dropped
afterwards), else a throw-away embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
from litestar import Litestar

from service.app import create_app
from service.settings import Settings
from tests.bench.environment import database

_ADMIN = "bench-admin-token"
_PATCH = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{"op": "replace", "path": "active", "value": False}],
}


@dataclasses.dataclass(frozen=True)
class _Target:
    scim: str
    headers: dict[str, str]


@asynccontextmanager
async def _running(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.lifespan(),
        httpx.AsyncClient(
            # Litestar types its scopes more narrowly than httpx's generic ASGI signature.
            transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
            base_url="http://bench",
        ) as http,
    ):
        yield http


async def _sync_cycle(http: httpx.AsyncClient, scim: str, headers: dict[str, str], n: int) -> int:
    """One user's provisioning as an IdP does it; returns the requests made."""
    user_name = f"bench{n}@example.com"
    created = await http.post(
        f"{scim}/Users",
        json={
            "userName": user_name,
            "name": {"givenName": "Bench", "familyName": f"User {n}"},
            "emails": [{"value": user_name, "type": "work", "primary": True}],
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    found = await http.get(
        f"{scim}/Users", params={"filter": f'userName eq "{user_name}"'}, headers=headers
    )
    assert found.status_code == 200, found.text
    patched = await http.patch(f"{scim}/Users/{user_id}", json=_PATCH, headers=headers)
    assert patched.status_code == 200, patched.text
    read = await http.get(f"{scim}/Users/{user_id}", headers=headers)
    assert read.status_code == 200, read.text
    return 4


async def _round(
    http: httpx.AsyncClient, target: _Target, clients: int, seconds: float, numbers: Iterator[int]
) -> float:
    """Requests per second over ``seconds`` with ``clients`` concurrent clients."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            # Awaited first: `done += await ...` would read `done` before the await
            # and lose the other clients' counts made meanwhile.
            made = await _sync_cycle(http, target.scim, target.headers, next(numbers))
            done += made

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return done / (time.perf_counter() - started)


async def _measure(dsn: str, seconds: float, rounds: int, clients: int) -> None:
    from tenants.control import close_pool, migrate_control_plane, open_pool

    pool = await open_pool(dsn, min_size=1, max_size=2)
    try:
        await migrate_control_plane(pool)
    finally:
        await close_pool(pool)
    base = Settings.from_env(
        {
            "DATABASE_URL": dsn,
            "SCIM_ADMIN_TOKEN": _ADMIN,
            "SCIM_PUBLIC_URL": "http://bench",
            "SCIM_DB_POOL_MAX": str(clients + 4),
            # The tenant's rate limit would cap both sides alike and hide the difference.
            "SCIM_RATE_LIMIT_PER_SECOND": "10000",
            "SCIM_RATE_LIMIT_BURST": "10000",
            "SCIM_RATE_LIMIT_CONCURRENCY": "1000",
            "SCIM_WORKER_IN_PROCESS": "false",
        }
    )
    on_app = create_app(dataclasses.replace(base, request_log_enabled=True))
    off_app = create_app(dataclasses.replace(base, request_log_enabled=False))
    async with AsyncExitStack() as stack:
        on = await stack.enter_async_context(_running(on_app))
        off = await stack.enter_async_context(_running(off_app))
        admin = {"Authorization": f"Bearer {_ADMIN}"}
        created = await on.post(
            "/admin/v1/tenants", json={"slug": "bench", "name": "Bench"}, headers=admin
        )
        assert created.status_code == 201, created.text
        issued = await on.post("/admin/v1/tenants/bench/tokens", headers=admin)
        assert issued.status_code == 201, issued.text
        headers = {
            "Authorization": f"Bearer {issued.json()['token']}",
            "Content-Type": "application/scim+json",
            "User-Agent": "Microsoft.Identity.Provisioning (bench)",
        }
        target = _Target("/scim/v2/bench", headers)
        numbers = itertools.count()
        for http in (on, off):  # warm-up: connections, caches, prepared statements
            await _round(http, target, clients, 1.0, numbers)
        on_rates: list[float] = []
        off_rates: list[float] = []
        for pair in range(rounds):
            # Which side goes first alternates, so neither always follows the other's writes.
            if pair % 2:
                off_rates.append(await _round(off, target, clients, seconds, numbers))
                on_rates.append(await _round(on, target, clients, seconds, numbers))
            else:
                on_rates.append(await _round(on, target, clients, seconds, numbers))
                off_rates.append(await _round(off, target, clients, seconds, numbers))
        request_log = on_app.state.request_log
        await request_log.flush()
        schema = await on_app.state.pool.fetchval(
            "SELECT schema_name FROM scim_control.tenants WHERE slug = 'bench'"
        )
        rows = await on_app.state.pool.fetchval(f'SELECT count(*) FROM "{schema}".requests')
        ratio = statistics.median(a / b for a, b in zip(on_rates, off_rates, strict=True))
        print(f"clients {clients}, {rounds} round pair(s) of {seconds:g} s, in-process ASGI")
        print(f"  request log on : {statistics.median(on_rates):8.0f} requests/s")
        print(f"  request log off: {statistics.median(off_rates):8.0f} requests/s")
        print(f"  on/off ratio   : {ratio:8.3f}  (median of the round pairs)")
        print(
            f"  log rows written: {rows}, dropped (buffer full): {request_log.dropped}, "
            f"lost (write failed): {request_log.lost}"
        )


_CREATE_BODY = (
    b'{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bench@example.com",'
    b'"password":"Bench-Passw0rd","name":{"givenName":"Bench","familyName":"User"},'
    b'"emails":[{"value":"bench@example.com","type":"work","primary":true}],"active":true}'
)


async def _per_request_costs(iterations: int) -> None:
    """Microseconds the log adds per request, without a database or other load in the way."""
    from service.request_log.masking import Masker
    from service.request_log.middleware import RequestLogMiddleware
    from service.request_log.recorder import RequestLog, classify

    request_log = RequestLog(Masker(["emails.value", "name"]), max_entries=iterations + 1)
    middleware = RequestLogMiddleware(request_log)
    scope: Any = {
        "type": "http",
        "method": "POST",
        "path": "/scim/v2/bench/Users",
        "query_string": b"",
        "headers": [(b"user-agent", b"Microsoft.Identity.Provisioning")],
    }
    message: Any = {"type": "http.request", "body": _CREATE_BODY, "more_body": False}

    async def receive() -> Any:
        return message

    async def send(_: Any) -> None:
        return None

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}", "more_body": False})

    def per_call(seconds: float) -> float:
        return seconds / iterations * 1e6

    started = time.perf_counter()
    for _ in range(iterations):
        await handler(scope, receive, send)
    bare = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(iterations):
        await middleware.handle(scope, receive, send, handler)
    wrapped = time.perf_counter() - started
    masker = Masker(["emails.value", "name"])
    started = time.perf_counter()
    for _ in range(iterations):
        masker.body(_CREATE_BODY)
        classify("POST", "/scim/v2/bench/Users", "http://bench/scim/v2/bench/Users/1")
    background = time.perf_counter() - started
    print(f"per request, {iterations} iterations, no database:")
    print(f"  on the request path (middleware): {per_call(wrapped - bare):6.1f} us")
    print(f"  in the writer (mask, classify)  : {per_call(background):6.1f} us")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="on/off round pairs")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    args = parser.parse_args(argv)
    with database() as db:
        asyncio.run(_measure(db.dsn, args.seconds, args.rounds, args.clients))
    asyncio.run(_per_request_costs(20_000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
