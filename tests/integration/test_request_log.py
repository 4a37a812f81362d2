"""The provisioning request log: what is recorded, how it is searched, masked, bounded, purged."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar

from service.postgres import Pool
from service.request_log.masking import Masker
from service.request_log.recorder import ROWS_PER_SLICE, Captured, RequestLog, purge_expired
from tests.support.application import (
    BASE_URL,
    Client,
    TenantHandle,
    admin_headers,
    bearer,
    make_tenant,
    schema_of,
)

ENTRA_AGENT = "Microsoft.Identity.Provisioning/1.0 (SCIM client)"
PASSWORD = "Corr3ct-H0rse-Battery!"


def flush(client: Client) -> None:
    """Write the app's buffered requests now, instead of waiting for the flush interval."""
    app: Litestar = client.app
    client.blocking_portal.call(app.state.request_log.flush)


async def logged(client: Client, slug: str, **params: str) -> dict[str, Any]:
    response = await client.get(
        f"/admin/v1/tenants/{slug}/requests", params=params, headers=admin_headers()
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_each_request_is_recorded_with_what_support_needs(
    client: Client, tenant: TenantHandle
) -> None:
    headers = tenant.auth() | {"User-Agent": ENTRA_AGENT}
    created = await client.post(
        f"{tenant.scim}/Users",
        json={"userName": "ada@example.com", "password": PASSWORD},
        headers=headers,
    )
    assert created.status_code == 201
    user_id = created.json()["id"]
    clash = await client.post(
        f"{tenant.scim}/Users", json={"userName": "ada@example.com"}, headers=headers
    )
    assert clash.status_code == 409
    patch = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": False}],
    }
    assert (
        await client.patch(f"{tenant.scim}/Users/{user_id}", json=patch, headers=headers)
    ).status_code == 200
    assert (
        await client.get(
            f"{tenant.scim}/Users",
            params={"filter": 'userName eq "ada@example.com"'},
            headers=headers,
        )
    ).status_code == 200
    assert (
        await client.delete(f"{tenant.scim}/Users/{user_id}", headers=headers)
    ).status_code == 204
    # Neither the admin API nor health checks are SCIM requests of the tenant.
    await client.get(f"/admin/v1/tenants/{tenant.slug}", headers=admin_headers())
    await client.get("/healthz")

    flush(client)
    entries = (await logged(client, tenant.slug))["requests"]
    assert [(e["method"], e["operation"], e["status"]) for e in entries] == [
        ("DELETE", "delete", 204),
        ("GET", "list", 200),
        ("PATCH", "patch", 200),
        ("POST", "create", 409),
        ("POST", "create", 201),
    ]
    deleted, listed, patched, clashed, first = entries
    assert first["resource_id"] == user_id  # from the Location of the 201
    assert patched["resource_id"] == deleted["resource_id"] == user_id
    assert first["path"] == f"{tenant.scim}/Users"
    assert first["client"] == "entra"
    assert first["user_agent"] == ENTRA_AGENT
    assert first["latency_ms"] > 0
    assert first["scim_type"] is None
    assert clashed["scim_type"] == "uniqueness"
    assert "already exists" in clashed["detail"]
    assert listed["query"] == 'filter=userName eq "ada@example.com"'
    assert listed["body"] is None
    assert '"op":"replace"' in patched["body"]
    assert '"password":"***"' in first["body"]
    assert PASSWORD not in first["body"]
    assert not first["body_truncated"]
    assert first["body_bytes"] > len(first["body"]) - len("***")
    assert datetime.fromisoformat(first["received_at"]) > datetime.now(UTC) - timedelta(minutes=1)


async def test_refused_requests_are_recorded_without_the_token(
    client: Client, tenant: TenantHandle, db: Pool
) -> None:
    """Test Connection with a wrong token: the operator sees the 401s, never the token."""
    wrong = "scimsk_" + "A" * 38
    response = await client.get(
        f"{tenant.scim}/Users",
        params={"filter": 'userName eq "probe"'},
        headers=bearer(wrong) | {"User-Agent": ENTRA_AGENT},
    )
    assert response.status_code == 401
    # A slug that names no tenant is nobody's to see.
    await client.get("/scim/v2/no-such-tenant/Users", headers=bearer(wrong))
    flush(client)

    (entry,) = (await logged(client, tenant.slug, status="401"))["requests"]
    assert entry["operation"] == "list"
    assert entry["client"] == "entra"
    schema = await schema_of(db, tenant.slug)
    leaks = await db.fetchval(
        f'SELECT count(*) FROM "{schema}".requests r WHERE r::text LIKE $1', f"%{wrong[7:]}%"
    )
    assert leaks == 0
    assert (
        await db.fetchval("SELECT count(*) FROM scim_control.tenants WHERE slug = 'no-such-tenant'")
        == 0
    )


async def test_search_filters_and_pages(client: Client, tenant: TenantHandle) -> None:
    user = await tenant.create_user("grace@example.com")
    for _ in range(3):
        response = await client.get(f"{tenant.scim}/Users/{user['id']}", headers=tenant.auth())
        assert response.status_code == 200
    missing = str(uuid.uuid4())
    assert (
        await client.get(f"{tenant.scim}/Users/{missing}", headers=tenant.auth())
    ).status_code == 404
    bad_filter = await client.get(
        f"{tenant.scim}/Users", params={"filter": "userName eq"}, headers=tenant.auth()
    )
    assert bad_filter.status_code == 400
    middle = datetime.now(UTC)
    await asyncio.sleep(0.01)
    search = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": 'userName sw "g"',
    }
    assert (
        await client.post(f"{tenant.scim}/Users/.search", json=search, headers=tenant.auth())
    ).status_code == 200
    flush(client)

    everything = (await logged(client, tenant.slug))["requests"]
    assert len(everything) == 7
    errors = (await logged(client, tenant.slug, status="4xx"))["requests"]
    assert {(e["status"], e["scim_type"]) for e in errors} == {(404, None), (400, "invalidFilter")}
    exact = (await logged(client, tenant.slug, status="404,201"))["requests"]
    assert sorted(e["status"] for e in exact) == [201, 404]
    assert len((await logged(client, tenant.slug, status="2xx,5xx"))["requests"]) == 5
    gets = await logged(client, tenant.slug, operation="get", resource_id=user["id"])
    assert len(gets["requests"]) == 3
    searches = (await logged(client, tenant.slug, operation="search,bulk"))["requests"]
    assert [e["operation"] for e in searches] == ["search"]
    since = (await logged(client, tenant.slug, since=middle.isoformat()))["requests"]
    assert [e["operation"] for e in since] == ["search"]
    until = (await logged(client, tenant.slug, until=middle.isoformat()))["requests"]
    assert len(until) == 6

    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await logged(client, tenant.slug, limit="3", **({"after": cursor} if cursor else {}))
        seen.extend(e["id"] for e in page["requests"])
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [e["id"] for e in everything]


@pytest.mark.parametrize(
    "query",
    ["?status=4x", "?status=700", "?since=yesterday", "?operation=fetch", "?limit=0", "?after=@@"],
)
async def test_bad_search_parameters_are_problems(
    client: Client, tenant: TenantHandle, query: str
) -> None:
    response = await client.get(
        f"/admin/v1/tenants/{tenant.slug}/requests{query}", headers=admin_headers()
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_search_needs_the_admin_token_and_a_tenant(
    client: Client, tenant: TenantHandle
) -> None:
    path = f"/admin/v1/tenants/{tenant.slug}/requests"
    assert (await client.get(path, headers=tenant.auth())).status_code == 401
    missing = await client.get("/admin/v1/tenants/nobody-here/requests", headers=admin_headers())
    assert missing.status_code == 404


async def test_secrets_and_configured_pii_never_reach_the_table(
    client: Client, tenant: TenantHandle, db: Pool
) -> None:
    """The session app masks PII as `SCIM_REQUEST_LOG_MASK=emails.value,phoneNumbers.value,name`."""
    secrets = {
        PASSWORD,
        "S3cond-Passw0rd",
        "Th1rd-Passw0rd",
        tenant.token,
        "lovelace@example.com",
        "+44 20 7946 0000",
        "Augusta",
        "King",
    }
    user = {
        "userName": "ada",
        "password": PASSWORD,
        "name": {"givenName": "Augusta", "familyName": "King"},
        "emails": [{"value": "lovelace@example.com", "type": "work", "primary": True}],
        "phoneNumbers": [{"value": "+44 20 7946 0000", "type": "work"}],
        # A token pasted into the wrong field is still a token.
        "externalId": tenant.token,
    }
    created = await client.post(f"{tenant.scim}/Users", json=user, headers=tenant.auth())
    assert created.status_code == 201
    user_id = created.json()["id"]
    patch = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "replace", "path": "password", "value": "S3cond-Passw0rd"},
            {"op": "replace", "value": {"name.givenName": "Augusta", "password": "Th1rd-Passw0rd"}},
            {"op": "remove", "path": 'emails[value eq "lovelace@example.com"]'},
        ],
    }
    assert (
        await client.patch(f"{tenant.scim}/Users/{user_id}", json=patch, headers=tenant.auth())
    ).status_code == 200
    by_email = await client.get(
        f"{tenant.scim}/Users",
        params={"filter": 'emails.value eq "lovelace@example.com"'},
        headers=tenant.auth(),
    )
    assert by_email.status_code == 200
    # RFC 7644 section 7.5.2 refuses a password in a URI; the log must not keep it either.
    in_uri = await client.get(
        f"{tenant.scim}/Users",
        params={"filter": f'password eq "{PASSWORD}"'},
        headers=tenant.auth(),
    )
    assert in_uri.status_code == 403
    broken = await client.post(
        f"{tenant.scim}/Users",
        content=b'{"userName": "x", "password": "Th1rd-Passw0rd", ',
        headers=tenant.auth(),
    )
    assert broken.status_code == 400
    flush(client)

    schema = await schema_of(db, tenant.slug)
    rows = await db.fetch(f'SELECT r::text AS line FROM "{schema}".requests r')
    assert len(rows) == 5
    for row in rows:
        for secret in secrets:
            assert secret not in row["line"]
    kept = await db.fetchval(
        f"""SELECT body FROM "{schema}".requests WHERE operation = 'create' AND status = 201"""
    )
    assert '"userName":"ada"' in kept  # what is not configured as PII stays readable
    assert '"name":{"givenName":"***","familyName":"***"}' in kept
    assert '"type":"work"' in kept


async def test_a_full_buffer_drops_instead_of_waiting(db: Pool, client: Client) -> None:
    """With the table locked (a stalled database), recording still returns at once."""
    tenant = await make_tenant(client)
    schema = await schema_of(db, tenant.slug)
    request_log = RequestLog(Masker(), max_entries=5, batch_size=1000, flush_seconds=3600)
    await request_log.start(db)
    try:
        async with db.acquire() as blocker, blocker.transaction():
            await blocker.execute(f'LOCK TABLE "{schema}".requests IN ACCESS EXCLUSIVE MODE')
            for _ in range(5):
                request_log.record(_captured(tenant.slug))
            stalled = asyncio.create_task(request_log.flush())
            await asyncio.sleep(0.2)
            assert not stalled.done()  # the write waits on the lock
            started = time.perf_counter()
            for _ in range(20):
                request_log.record(_captured(tenant.slug))
            assert time.perf_counter() - started < 0.5
            assert len(request_log) == 5
            assert request_log.dropped == 15
        assert await stalled == 5
        assert await request_log.flush() == 5
    finally:
        await request_log.stop()
    count = await db.fetchval(f'SELECT count(*) FROM "{schema}".requests')
    assert count == 10


async def test_a_flush_lets_requests_run_while_it_prepares_rows(
    db: Pool, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Preparing rows (masking, classifying) is CPU work on the event loop that serves
    SCIM: a flush does it a slice at a time, never holding the loop for all of them."""
    tenant = await make_tenant(client)
    request_log = RequestLog(Masker(), batch_size=10_000, flush_seconds=3600)
    await request_log.start(db)
    ticks = 0

    async def other_requests() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    seen: list[int] = []
    prepare = RequestLog._row

    def counting(self: RequestLog, entry: Captured, logged: Any) -> tuple[Any, ...]:
        seen.append(ticks)
        return prepare(self, entry, logged)

    monkeypatch.setattr(RequestLog, "_row", counting)
    ticker = asyncio.create_task(other_requests())
    try:
        for _ in range(300):
            request_log.record(_captured(tenant.slug))
        assert await request_log.flush() == 300
    finally:
        ticker.cancel()
        await request_log.stop()
    runs = [seen.count(tick) for tick in dict.fromkeys(seen)]
    assert sum(runs) == 300
    assert max(runs) <= ROWS_PER_SLICE, runs
    assert len(runs) >= 300 // ROWS_PER_SLICE


async def test_long_bodies_are_cut_and_marked(db: Pool, client: Client) -> None:
    tenant = await make_tenant(client)
    request_log = RequestLog(Masker(), body_max_bytes=1024, flush_seconds=3600)
    await request_log.start(db)
    try:
        body = b'{"userName": "x", "title": "' + "é".encode() * 2000 + b'"}'
        request_log.record(_captured(tenant.slug, body=body))
        assert await request_log.flush() == 1
    finally:
        await request_log.stop()
    schema = await schema_of(db, tenant.slug)
    row = await db.fetchrow(f'SELECT body, body_bytes, body_truncated FROM "{schema}".requests')
    assert row is not None
    assert row["body_truncated"]
    assert row["body_bytes"] == len(body)
    assert len(row["body"].encode()) <= 1024


async def test_retention_purge_deletes_only_old_requests(db: Pool, client: Client) -> None:
    tenant = await make_tenant(client)
    schema = await schema_of(db, tenant.slug)
    now = datetime.now(UTC)
    for age in (timedelta(days=30), timedelta(days=15), timedelta(days=1), timedelta(0)):
        await db.execute(
            f'INSERT INTO "{schema}".requests (received_at, method, path, operation, status, '
            "latency_ms) VALUES ($1, 'GET', '/scim/v2/x/Users', 'list', 200, 1.0)",
            now - age,
        )
    report = await purge_expired(db, timedelta(days=14))
    assert report.tenants >= 1
    left = await db.fetch(f'SELECT received_at FROM "{schema}".requests ORDER BY received_at')
    assert [row["received_at"] for row in left] == [now - timedelta(days=1), now]


def _captured(slug: str, body: bytes = b'{"userName": "x"}') -> Captured:
    return Captured(
        slug=slug,
        received_at=time.time(),
        method="POST",
        path=f"/scim/v2/{slug}/Users",
        query=b"",
        user_agent="bench",
        body=body,
        status=201,
        error_body=b"",
        location=f"{BASE_URL}/scim/v2/{slug}/Users/{uuid.uuid4()}",
        latency_ms=1.0,
        trace_id=None,
    )


def test_purge_command(migrated_database: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_")}
    env.update(
        DATABASE_URL=migrated_database,
        SCIM_DATA_DIR=str(tmp_path),
        SCIM_REQUEST_LOG_RETENTION_DAYS="3",
    )
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "requests", "purge", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["retention_days"] == 3
    assert report["tenants"] >= 1
    assert report["deleted"] >= 0
