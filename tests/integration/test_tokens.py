"""Secret Tokens over HTTP: isolation, malformed and revoked tokens, expiry, rotation overlap."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Litestar

from service.postgres import Pool
from tenants.auth import Authenticator
from tenants.secrets import generate_secret, hash_secret
from tests.support.application import Client, TenantHandle, admin_headers, bearer

UNAUTHORISED_BODY = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
    "status": "401",
    "detail": "The bearer token is not valid for this Tenant URL.",
}


async def get_users(client: Client, slug: str, headers: dict[str, str]) -> Any:
    return await client.get(f"/scim/v2/{slug}/Users", headers=headers)


def assert_unauthorised(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == UNAUTHORISED_BODY
    assert response.headers["www-authenticate"] == 'Bearer realm="scim"'


async def issue(client: Client, slug: str, **body: Any) -> dict[str, Any]:
    response = await client.post(
        f"/admin/v1/tenants/{slug}/tokens", json=body, headers=admin_headers()
    )
    assert response.status_code == 201, response.text
    issued: dict[str, Any] = response.json()
    return issued


async def test_issued_token_is_shown_once_and_stored_only_as_hash(
    db: Pool, tenant: TenantHandle
) -> None:
    listed = await tenant.client.get(
        f"/admin/v1/tenants/{tenant.slug}/tokens", headers=admin_headers()
    )
    [token] = listed.json()["tokens"]
    assert "token" not in token
    assert tenant.token.startswith(token["display_prefix"])
    assert token["status"] == "active"
    row = await db.fetchrow("SELECT * FROM scim_control.tokens WHERE id = $1::uuid", token["id"])
    assert row is not None
    assert row["secret_hash"] == hash_secret(tenant.token)
    stored = " ".join(str(value) for value in row.values())
    assert tenant.token not in stored


async def test_tenants_never_mix(tenant: TenantHandle, other_tenant: TenantHandle) -> None:
    client = tenant.client
    alice = await tenant.create_user("alice@a.example")
    await other_tenant.create_user("bob@b.example")

    mine = await get_users(client, tenant.slug, tenant.auth())
    theirs = await get_users(client, other_tenant.slug, other_tenant.auth())
    assert [u["userName"] for u in mine.json()["Resources"]] == ["alice@a.example"]
    assert [u["userName"] for u in theirs.json()["Resources"]] == ["bob@b.example"]

    # A's resource id does not exist on B's URL, even with B's valid token.
    cross = await client.get(
        f"/scim/v2/{other_tenant.slug}/Users/{alice['id']}", headers=other_tenant.auth()
    )
    assert cross.status_code == 404
    # The same userName may exist in two tenants.
    await other_tenant.create_user("alice@a.example")

    # A's token on B's URL is refused exactly like a wrong token.
    assert_unauthorised(await get_users(client, other_tenant.slug, tenant.auth()))
    assert_unauthorised(await get_users(client, other_tenant.slug, bearer(generate_secret())))


async def test_malformed_and_missing_tokens(tenant: TenantHandle) -> None:
    good = tenant.token
    tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
    for headers in (
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {good}"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Bearer {tampered}"},
        {"Authorization": f"Bearer {good}x"},
        {"Authorization": f"Bearer {good.replace('scimsk_', 'scimadm_')}"},
    ):
        assert_unauthorised(await get_users(tenant.client, tenant.slug, headers))
    # The scheme name is case-insensitive (RFC 7235).
    ok = await get_users(tenant.client, tenant.slug, {"Authorization": f"bearer {good}"})
    assert ok.status_code == 200


async def test_unknown_tenant_looks_like_a_wrong_token(tenant: TenantHandle) -> None:
    assert_unauthorised(await get_users(tenant.client, "no-such-tenant", tenant.auth()))
    assert_unauthorised(
        await get_users(tenant.client, "x'; DROP SCHEMA scim_control; --", tenant.auth())
    )


async def test_revoke_takes_effect_at_once(tenant: TenantHandle) -> None:
    client = tenant.client
    assert (await get_users(client, tenant.slug, tenant.auth())).status_code == 200
    revoked = await client.delete(
        f"/admin/v1/tenants/{tenant.slug}/tokens/{tenant.token_id}", headers=admin_headers()
    )
    assert revoked.status_code == 204
    # The verified token was cached (for 300 s in these tests); the revocation's
    # NOTIFY must evict it before the next request is answered.
    for _ in range(50):
        response = await get_users(client, tenant.slug, tenant.auth())
        if response.status_code == 401:
            break
        await asyncio.sleep(0.02)
    assert_unauthorised(response)
    listed = await client.get(f"/admin/v1/tenants/{tenant.slug}/tokens", headers=admin_headers())
    assert listed.json()["tokens"][0]["status"] == "revoked"


async def test_expired_token_is_refused(tenant: TenantHandle) -> None:
    issued = await issue(tenant.client, tenant.slug, name="short", expires_in_seconds=1)
    assert issued["expires_at"] is not None
    assert (await get_users(tenant.client, tenant.slug, tenant.auth(issued["token"]))).is_success
    await asyncio.sleep(1.2)
    assert_unauthorised(await get_users(tenant.client, tenant.slug, tenant.auth(issued["token"])))
    # Other tokens of the tenant are untouched.
    assert (await get_users(tenant.client, tenant.slug, tenant.auth())).is_success


async def test_rotation_overlap_then_end(tenant: TenantHandle) -> None:
    client = tenant.client
    rotated = await client.post(
        f"/admin/v1/tenants/{tenant.slug}/tokens/{tenant.token_id}/rotate",
        json={"grace_seconds": 1},
        headers=admin_headers(),
    )
    assert rotated.status_code == 201, rotated.text
    new_token = rotated.json()["token"]
    assert new_token != tenant.token
    # During the overlap both tokens work, so the IdP never sees an outage.
    assert (await get_users(client, tenant.slug, tenant.auth(new_token))).is_success
    assert (await get_users(client, tenant.slug, tenant.auth())).is_success
    await asyncio.sleep(1.2)
    assert_unauthorised(await get_users(client, tenant.slug, tenant.auth()))
    assert (await get_users(client, tenant.slug, tenant.auth(new_token))).is_success

    listed = {
        t["id"]: t
        for t in (
            await client.get(f"/admin/v1/tenants/{tenant.slug}/tokens", headers=admin_headers())
        ).json()["tokens"]
    }
    assert listed[tenant.token_id]["status"] == "expired"
    assert listed[tenant.token_id]["replaced_by"] == rotated.json()["id"]


async def test_rotation_with_zero_grace_ends_the_old_token_at_once(tenant: TenantHandle) -> None:
    assert (await get_users(tenant.client, tenant.slug, tenant.auth())).is_success
    rotated = await tenant.client.post(
        f"/admin/v1/tenants/{tenant.slug}/tokens/{tenant.token_id}/rotate",
        json={"grace_seconds": 0},
        headers=admin_headers(),
    )
    assert rotated.status_code == 201
    assert_unauthorised(await get_users(tenant.client, tenant.slug, tenant.auth()))
    # A token that has ended cannot be rotated again.
    again = await tenant.client.post(
        f"/admin/v1/tenants/{tenant.slug}/tokens/{tenant.token_id}/rotate",
        headers=admin_headers(),
    )
    assert again.status_code == 400


async def test_default_grace_is_24_hours_and_tenant_setting_overrides_it(
    tenant: TenantHandle,
) -> None:
    client = tenant.client
    rotated = await client.post(
        f"/admin/v1/tenants/{tenant.slug}/tokens/{tenant.token_id}/rotate",
        headers=admin_headers(),
    )
    tokens = (
        await client.get(f"/admin/v1/tenants/{tenant.slug}/tokens", headers=admin_headers())
    ).json()["tokens"]
    old = next(t for t in tokens if t["id"] == tenant.token_id)
    from datetime import datetime, timedelta

    expires = datetime.fromisoformat(old["expires_at"])
    created = datetime.fromisoformat(rotated.json()["created_at"])
    assert abs((expires - created) - timedelta(hours=24)) < timedelta(seconds=5)

    patched = await client.patch(
        f"/admin/v1/tenants/{tenant.slug}",
        json={"token_rotation_grace_seconds": 0},
        headers=admin_headers(),
    )
    assert patched.json()["token_rotation_grace_seconds"] == 0
    newest = rotated.json()
    await client.post(
        f"/admin/v1/tenants/{tenant.slug}/tokens/{newest['id']}/rotate", headers=admin_headers()
    )
    assert_unauthorised(await get_users(client, tenant.slug, tenant.auth(newest["token"])))


async def test_last_used_is_recorded_without_a_write_per_request(
    app: Litestar, db: Pool, client: Client, tenant: TenantHandle
) -> None:
    for _ in range(3):
        await get_users(tenant.client, tenant.slug, tenant.auth())
    query = "SELECT last_used_at FROM scim_control.tokens WHERE id = $1::uuid"
    assert await db.fetchval(query, tenant.token_id) is None
    authenticator: Authenticator = app.state.authenticator
    client.blocking_portal.call(authenticator.flush_last_used)
    assert await db.fetchval(query, tenant.token_id) is not None


async def test_unknown_token_ids_are_404(tenant: TenantHandle) -> None:
    for token_id in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        response = await tenant.client.delete(
            f"/admin/v1/tenants/{tenant.slug}/tokens/{token_id}", headers=admin_headers()
        )
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
