"""Tenant lifecycle through the admin API: create, disable, enable, delete, bad input."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar import Litestar

from service.postgres import Pool
from tenants import notifications
from tenants.auth import Authenticator
from tests.integration.test_guard import trip_the_guard
from tests.support.application import (
    BASE_URL,
    Client,
    TenantHandle,
    admin_headers,
    make_tenant,
    schema_of,
)


async def schema_exists(db: Pool, slug: str) -> bool:
    exists: bool = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace n JOIN scim_control.tenants t "
        "ON t.schema_name = n.nspname WHERE t.slug = $1)",
        slug,
    )
    return exists


async def tenant_count(db: Pool) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM scim_control.tenants")
    return count


async def schema_count(db: Pool) -> int:
    """Tenant schemas, not counting spares (the keeper makes them in the background)."""
    count: int = await db.fetchval(
        "SELECT count(*) FROM pg_namespace n WHERE nspname LIKE 't\\_%' AND NOT EXISTS ("
        " SELECT 1 FROM scim_control.spare_schemas s"
        " WHERE n.nspname = 't_' || replace(s.id::text, '-', ''))"
    )
    return count


async def test_create_returns_tenant_with_scim_url(db: Pool, client: Client) -> None:
    response = await client.post(
        "/admin/v1/tenants",
        json={"slug": "acme-corp", "name": "Acme Corp", "idp_type": "okta"},
        headers=admin_headers(),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["scim_url"] == f"{BASE_URL}/scim/v2/acme-corp"
    assert (body["slug"], body["name"], body["status"], body["idp_type"]) == (
        "acme-corp",
        "Acme Corp",
        "enabled",
        "okta",
    )
    assert body["schema_version"] >= 1
    schema = await db.fetchval(
        "SELECT schema_name FROM scim_control.tenants WHERE slug = 'acme-corp'"
    )
    # Named from the immutable id, never from the slug.
    assert schema == "t_" + body["id"].replace("-", "")
    assert await schema_exists(db, "acme-corp")

    fetched = await client.get("/admin/v1/tenants/acme-corp", headers=admin_headers())
    assert fetched.json() == body
    listed = await client.get(
        "/admin/v1/tenants", params={"after": "acme-corm", "limit": 1}, headers=admin_headers()
    )
    assert [t["slug"] for t in listed.json()["tenants"]] == ["acme-corp"]


async def test_tenants_are_listed_a_page_at_a_time_in_slug_order(client: Client) -> None:
    prefix = f"page-{uuid.uuid4().hex[:8]}"
    for suffix in ("c", "a", "b"):
        created = await client.post(
            "/admin/v1/tenants",
            json={"slug": f"{prefix}-{suffix}", "name": suffix},
            headers=admin_headers(),
        )
        assert created.status_code == 201, created.text

    async def listed(**params: Any) -> Any:
        response = await client.get("/admin/v1/tenants", params=params, headers=admin_headers())
        assert response.status_code == 200, response.text
        return response.json()

    first = await listed(after=f"{prefix}-", limit=2)
    assert [t["slug"] for t in first["tenants"]] == [f"{prefix}-a", f"{prefix}-b"]
    assert first["next"] == f"{prefix}-b"
    second = await listed(after=first["next"], limit=2)
    assert second["tenants"][0]["slug"] == f"{prefix}-c"
    assert second["tenants"][0]["scim_url"].endswith(f"/scim/v2/{prefix}-c")
    # Past the last slug there is nothing, and no next page.
    assert await listed(after="z" * 63) == {"tenants": [], "next": None}
    # A search keeps its pages: slugs starting with it, names containing it.
    searched = await listed(search=prefix.upper(), limit=2)
    assert [t["slug"] for t in searched["tenants"]] == [f"{prefix}-a", f"{prefix}-b"]
    rest = await listed(search=prefix, after=searched["next"], limit=2)
    assert rest == {"tenants": [second["tenants"][0]], "next": None}
    assert [t["slug"] for t in (await listed(search=prefix[2:]))["tenants"]] == []
    named = await client.post(
        "/admin/v1/tenants",
        json={"slug": f"{prefix}-d", "name": f"{prefix} 100%_done"},
        headers=admin_headers(),
    )
    assert named.status_code == 201, named.text
    by_name = await listed(search="0%_DONE")
    assert [t["slug"] for t in by_name["tenants"]] == [f"{prefix}-d"]
    # `%` and `_` are themselves, not patterns.
    assert [t["slug"] for t in (await listed(search=f"{prefix}%"))["tenants"]] == []
    assert [t["slug"] for t in (await listed(search="0__done"))["tenants"]] == []
    for bad in ({"limit": 0}, {"limit": 1001}, {"limit": "many"}):
        response = await client.get("/admin/v1/tenants", params=bad, headers=admin_headers())
        assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    "payload",
    [
        {"slug": "x'; DROP SCHEMA scim_control CASCADE; --", "name": "Evil"},
        {"slug": "Upper", "name": "Upper case"},
        {"slug": "-leading", "name": "Leading hyphen"},
        {"slug": "a" * 64, "name": "Too long"},
        {"slug": "ok-slug", "name": ""},
        {"slug": "ok-slug", "name": "Bad IdP", "idp_type": "ldap"},
        {"slug": "ok-slug"},
        {"slug": "ok-slug", "name": "x", "surprise": True},
    ],
)
async def test_bad_tenant_input_changes_nothing(
    db: Pool, client: Client, payload: dict[str, Any]
) -> None:
    before = (await tenant_count(db), await schema_count(db))
    response = await client.post("/admin/v1/tenants", json=payload, headers=admin_headers())
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"]
    assert (await tenant_count(db), await schema_count(db)) == before


async def test_malformed_admin_json(client: Client) -> None:
    response = await client.post(
        "/admin/v1/tenants",
        content=b'{"slug": ',
        headers=admin_headers() | {"Content-Type": "application/json"},
    )
    assert response.status_code == 400


async def test_duplicate_slug_conflicts(db: Pool, tenant: TenantHandle) -> None:
    before = await schema_count(db)
    response = await tenant.client.post(
        "/admin/v1/tenants", json={"slug": tenant.slug, "name": "Again"}, headers=admin_headers()
    )
    assert response.status_code == 409
    assert await schema_count(db) == before


async def test_admin_api_requires_the_admin_token(tenant: TenantHandle) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, tenant.auth()):
        response = await tenant.client.get("/admin/v1/tenants", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"


async def test_unknown_tenant_in_admin_api_is_404(client: Client) -> None:
    for method, path in (
        ("GET", "/admin/v1/tenants/nobody"),
        ("PATCH", "/admin/v1/tenants/nobody"),
        ("GET", "/admin/v1/tenants/nobody/tokens"),
        ("POST", "/admin/v1/tenants/nobody/tokens"),
    ):
        kwargs: dict[str, Any] = {"json": {}} if method in ("PATCH", "POST") else {}
        response = await client.request(method, path, headers=admin_headers(), **kwargs)
        assert response.status_code == 404, (method, path, response.text)


async def test_disable_refuses_scim_and_enable_restores_data(tenant: TenantHandle) -> None:
    client = tenant.client
    alice = await tenant.create_user("alice")
    disabled = await client.patch(
        f"/admin/v1/tenants/{tenant.slug}", json={"status": "disabled"}, headers=admin_headers()
    )
    assert disabled.json()["status"] == "disabled"
    refused = await client.get(f"{tenant.scim}/Users", headers=tenant.auth())
    assert refused.status_code == 403
    assert refused.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    write = await client.post(f"{tenant.scim}/Users", json={"userName": "x"}, headers=tenant.auth())
    assert write.status_code == 403
    # A wrong token still gets 401: only a real token holder learns the tenant is disabled.
    wrong = await client.get(f"{tenant.scim}/Users", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401

    await client.patch(
        f"/admin/v1/tenants/{tenant.slug}", json={"status": "enabled"}, headers=admin_headers()
    )
    back = await client.get(f"{tenant.scim}/Users/{alice['id']}", headers=tenant.auth())
    assert back.status_code == 200
    assert back.json()["userName"] == "alice"


async def test_bad_patch_changes_nothing(tenant: TenantHandle) -> None:
    for payload in ({"status": "paused"}, {"name": ""}, {"token_rotation_grace_seconds": -1}):
        response = await tenant.client.patch(
            f"/admin/v1/tenants/{tenant.slug}", json=payload, headers=admin_headers()
        )
        assert response.status_code == 400, payload
    current = await tenant.client.get(f"/admin/v1/tenants/{tenant.slug}", headers=admin_headers())
    assert current.json()["status"] == "enabled"
    assert current.json()["token_rotation_grace_seconds"] is None


async def test_delete_needs_confirmation_then_drops_the_schema(
    db: Pool, tenant: TenantHandle
) -> None:
    client = tenant.client
    await tenant.create_user("alice")
    for confirm in ("", "?confirm=someone-else"):
        refused = await client.delete(
            f"/admin/v1/tenants/{tenant.slug}{confirm}", headers=admin_headers()
        )
        assert refused.status_code == 400
    assert await schema_exists(db, tenant.slug)
    schema = await schema_of(db, tenant.slug)

    deleted = await client.delete(
        f"/admin/v1/tenants/{tenant.slug}?confirm={tenant.slug}", headers=admin_headers()
    )
    assert deleted.status_code == 204
    assert not await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema
    )
    tokens = await db.fetchval(
        "SELECT count(*) FROM scim_control.tokens t LEFT JOIN scim_control.tenants n "
        "ON n.id = t.tenant WHERE n.id IS NULL"
    )
    assert tokens == 0
    gone = await client.get(f"{tenant.scim}/Users", headers=tenant.auth())
    assert gone.status_code == 401
    missing = await client.get(f"/admin/v1/tenants/{tenant.slug}", headers=admin_headers())
    assert missing.status_code == 404

    # The slug is free again, and the new tenant starts empty.
    reborn = await make_tenant(client, tenant.slug)
    users = await client.get(f"{reborn.scim}/Users", headers=reborn.auth())
    assert users.json()["totalResults"] == 0


async def test_tenants_created_concurrently_each_get_a_schema(db: Pool, client: Client) -> None:
    handles = await asyncio.gather(*(make_tenant(client) for _ in range(8)))
    for handle in handles:
        assert await schema_exists(db, handle.slug)
        await handle.create_user("same-name")


async def test_a_tenant_says_when_its_idp_was_last_heard_from_and_whether_its_guard_holds(
    app: Litestar, client: Client, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    async def listed() -> dict[str, dict[str, Any]]:
        found = await client.get("/admin/v1/tenants?limit=1000", headers=admin_headers())
        return {t["slug"]: t for t in found.json()["tenants"] if t["slug"] in slugs}

    slugs = {tenant.slug, other_tenant.slug}
    for shown in (await listed()).values():
        assert (shown["last_request_at"], shown["guard_tripped_at"]) == (None, None)

    before = datetime.now(UTC)
    await trip_the_guard(client, tenant)
    authenticator: Authenticator = app.state.authenticator
    client.blocking_portal.call(authenticator.flush_last_used)
    one = (await client.get(f"/admin/v1/tenants/{tenant.slug}", headers=admin_headers())).json()
    assert datetime.fromisoformat(one["last_request_at"]) >= before
    assert datetime.fromisoformat(one["guard_tripped_at"]) >= before
    both = await listed()
    assert both[tenant.slug] == one
    assert (
        both[other_tenant.slug]["last_request_at"],
        both[other_tenant.slug]["guard_tripped_at"],
    ) == (None, None)

    released = await client.post(
        f"/admin/v1/tenants/{tenant.slug}/guard/release", headers=admin_headers()
    )
    assert released.status_code == 200, released.text
    again = (await client.get(f"/admin/v1/tenants/{tenant.slug}", headers=admin_headers())).json()
    assert again["guard_tripped_at"] is None
    assert again["last_request_at"] == one["last_request_at"]


async def test_a_change_made_through_this_process_holds_for_its_next_request_at_once(
    monkeypatch: pytest.MonkeyPatch, client: Client, tenant: TenantHandle
) -> None:
    """Every process learns of a change by the NOTIFY sent with it, this one too, but a
    moment after the commit; the process that made it does not wait for its own."""
    monkeypatch.setattr(notifications, "parse", lambda payload: None)  # none arrives
    admin = f"/admin/v1/tenants/{tenant.slug}"

    async def answer() -> int:
        found = await client.get(f"{tenant.scim}/Users", headers=tenant.auth())
        return found.status_code

    assert await answer() == 200  # cached
    await client.patch(admin, json={"status": "disabled"}, headers=admin_headers())
    assert await answer() == 403
    await client.patch(admin, json={"status": "enabled"}, headers=admin_headers())
    assert await answer() == 200
    limited = {"per_second": 1, "burst": 1}
    assert (
        await client.put(f"{admin}/rate-limit", json=limited, headers=admin_headers())
    ).status_code == 200
    assert [await answer() for _ in range(2)] == [200, 429]
    assert (await client.delete(f"{admin}/rate-limit", headers=admin_headers())).status_code == 204
    await asyncio.sleep(1)  # the one-a-second window passed
    assert [await answer() for _ in range(2)] == [200, 200]
    rotated = await client.post(
        f"{admin}/tokens/{tenant.token_id}/rotate",
        json={"grace_seconds": 0},
        headers=admin_headers(),
    )
    assert rotated.status_code == 201, rotated.text
    assert await answer() == 401
    tenant.token = rotated.json()["token"]
    assert await answer() == 200
    revoked = await client.delete(f"{admin}/tokens/{rotated.json()['id']}", headers=admin_headers())
    assert revoked.status_code == 204
    assert await answer() == 401
    deleted = await client.delete(f"{admin}?confirm={tenant.slug}", headers=admin_headers())
    assert deleted.status_code == 204
    reborn = await make_tenant(client, tenant.slug)
    tenant.token = reborn.token
    assert await answer() == 200
