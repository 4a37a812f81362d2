"""Users and Groups over HTTP on a tenant's schema: the happy path and every client error."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.application import BASE_URL, SCIM_JSON, Client, TenantHandle, bearer

ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"


def assert_scim_error(response: Any, status: int, scim_type: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    body = response.json()
    assert body["schemas"] == [ERROR_URN]
    assert body["status"] == str(status)
    assert body["detail"]
    assert body.get("scimType") == scim_type


async def count_users(tenant: TenantHandle) -> int:
    response = await tenant.client.get(f"{tenant.scim}/Users?count=0", headers=tenant.auth())
    total: int = response.json()["totalResults"]
    return total


async def test_user_lifecycle(tenant: TenantHandle) -> None:
    created = await tenant.create_user(
        "Alice@Example.com",
        name={"givenName": "Alice", "familyName": "Liddell"},
        emails=[{"value": "alice@example.com", "type": "work", "primary": True}],
        externalId="entra-42",
        **{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}},
    )
    user_id = created["id"]
    assert created["userName"] == "Alice@Example.com"
    assert created["active"] is True
    assert created["meta"]["location"] == f"{BASE_URL}{tenant.scim}/Users/{user_id}"
    assert created["meta"]["version"] == 'W/"1"'
    assert "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User" in created["schemas"]

    fetched = await tenant.client.get(f"{tenant.scim}/Users/{user_id}", headers=tenant.auth())
    assert fetched.status_code == 200
    assert fetched.headers["content-type"].startswith("application/scim+json")
    assert fetched.headers["etag"] == 'W/"1"'
    assert fetched.json() == created

    deleted = await tenant.client.delete(f"{tenant.scim}/Users/{user_id}", headers=tenant.auth())
    assert deleted.status_code == 204
    gone = await tenant.client.get(f"{tenant.scim}/Users/{user_id}", headers=tenant.auth())
    assert_scim_error(gone, 404)
    again = await tenant.client.delete(f"{tenant.scim}/Users/{user_id}", headers=tenant.auth())
    assert_scim_error(again, 404)


async def test_created_user_has_location_header_and_ignores_server_owned_attributes(
    tenant: TenantHandle,
) -> None:
    response = await tenant.client.post(
        f"{tenant.scim}/Users",
        json={
            "userName": "bob",
            "id": "chosen-by-client",
            "meta": {"version": 'W/"99"'},
            "password": "hunter2",
            "groups": [{"value": str(uuid.uuid4())}],
        },
        headers=tenant.auth(),
    )
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == body["meta"]["location"]
    assert body["id"] != "chosen-by-client"
    assert body["meta"]["version"] == 'W/"1"'
    assert "password" not in body
    assert "groups" not in body


async def test_list_users_paginates_with_correct_totals(tenant: TenantHandle) -> None:
    names = [f"user{i:02d}" for i in range(7)]
    for name in names:
        await tenant.create_user(name)

    async def page(query: str) -> dict[str, Any]:
        response = await tenant.client.get(f"{tenant.scim}/Users?{query}", headers=tenant.auth())
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    first = await page("startIndex=1&count=3")
    assert first["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
    assert (first["totalResults"], first["startIndex"], first["itemsPerPage"]) == (7, 1, 3)
    second = await page("startIndex=4&count=3")
    third = await page("startIndex=7&count=3")
    seen = [u["userName"] for body in (first, second, third) for u in body["Resources"]]
    assert seen == names
    assert (await page("startIndex=50"))["Resources"] == []
    assert (await page("count=0"))["itemsPerPage"] == 0
    # RFC 7644 section 3.4.2.4: startIndex below 1 means 1, a negative count means 0.
    assert (await page("startIndex=-5&count=1"))["startIndex"] == 1
    assert (await page("count=-1"))["Resources"] == []
    bad = await tenant.client.get(f"{tenant.scim}/Users?count=many", headers=tenant.auth())
    assert_scim_error(bad, 400, "invalidValue")


async def test_user_name_is_unique_case_insensitively(tenant: TenantHandle) -> None:
    await tenant.create_user("carol@example.com")
    duplicate = await tenant.client.post(
        f"{tenant.scim}/Users", json={"userName": "CAROL@example.com"}, headers=tenant.auth()
    )
    assert_scim_error(duplicate, 409, "uniqueness")
    assert await count_users(tenant) == 1


async def test_bad_user_input_changes_nothing(tenant: TenantHandle) -> None:
    cases: list[tuple[bytes, dict[str, str], int, str | None]] = [
        (b'{"userName": ', SCIM_JSON, 400, "invalidSyntax"),
        (b"[1, 2]", SCIM_JSON, 400, "invalidSyntax"),
        (b'{"displayName": "no user name"}', SCIM_JSON, 400, "invalidValue"),
        (b'{"userName": "   "}', SCIM_JSON, 400, "invalidValue"),
        (b'{"userName": 7}', SCIM_JSON, 400, "invalidValue"),
        (b'{"userName": "x", "active": "maybe"}', SCIM_JSON, 400, "invalidValue"),
        (b'{"userName": "x"}', {"Content-Type": "text/plain"}, 415, None),
        (b"userName=x", {"Content-Type": "application/x-www-form-urlencoded"}, 415, None),
    ]
    for body, headers, status, scim_type in cases:
        response = await tenant.client.post(
            f"{tenant.scim}/Users", content=body, headers=bearer(tenant.token) | headers
        )
        assert_scim_error(response, status, scim_type)
    assert await count_users(tenant) == 0


async def test_plain_json_content_type_is_accepted(tenant: TenantHandle) -> None:
    response = await tenant.client.post(
        f"{tenant.scim}/Users",
        content=b'{"userName": "dave"}',
        headers=bearer(tenant.token) | {"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201


async def test_oversized_body_is_refused(tenant: TenantHandle) -> None:
    huge = b'{"userName": "big", "displayName": "' + b"x" * (128 * 1024) + b'"}'
    response = await tenant.client.post(f"{tenant.scim}/Users", content=huge, headers=tenant.auth())
    assert_scim_error(response, 413)
    assert await count_users(tenant) == 0


async def test_unknown_ids_endpoints_and_methods(tenant: TenantHandle) -> None:
    client = tenant.client
    for path in (
        f"/Users/{uuid.uuid4()}",
        "/Users/not-a-uuid",
        f"/Groups/{uuid.uuid4()}",
        "/Widgets",
    ):
        assert_scim_error(await client.get(f"{tenant.scim}{path}", headers=tenant.auth()), 404)
    user = await tenant.create_user("erin")
    not_allowed = await client.post(
        f"{tenant.scim}/Users/{user['id']}", json={}, headers=tenant.auth()
    )
    assert_scim_error(not_allowed, 405)


async def test_service_provider_config(tenant: TenantHandle) -> None:
    response = await tenant.client.get(
        f"{tenant.scim}/ServiceProviderConfig", headers=tenant.auth()
    )
    assert response.status_code == 200
    body = response.json()
    assert body["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"]
    assert body["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    assert body["meta"]["location"] == f"{BASE_URL}{tenant.scim}/ServiceProviderConfig"


async def test_group_lifecycle_with_members(tenant: TenantHandle) -> None:
    alice = await tenant.create_user("alice", displayName="Alice A.")
    bob = await tenant.create_user("bob")
    inner = await tenant.client.post(
        f"{tenant.scim}/Groups", json={"displayName": "Inner"}, headers=tenant.auth()
    )
    assert inner.status_code == 201
    members = [{"value": alice["id"]}, {"value": bob["id"]}, {"value": inner.json()["id"]}]
    created = await tenant.client.post(
        f"{tenant.scim}/Groups",
        json={"displayName": "Engineering", "externalId": "g-1", "members": members},
        headers=tenant.auth(),
    )
    assert created.status_code == 201, created.text
    group = created.json()
    by_id = {m["value"]: m for m in group["members"]}
    assert by_id[alice["id"]]["display"] == "Alice A."
    assert by_id[bob["id"]]["display"] == "bob"
    assert by_id[alice["id"]]["type"] == "User"
    assert by_id[inner.json()["id"]]["type"] == "Group"
    assert by_id[alice["id"]]["$ref"] == f"{BASE_URL}{tenant.scim}/Users/{alice['id']}"

    listed = await tenant.client.get(f"{tenant.scim}/Groups", headers=tenant.auth())
    assert listed.json()["totalResults"] == 2

    # Deleting a member takes it out of the group and bumps the group's version.
    await tenant.client.delete(f"{tenant.scim}/Users/{bob['id']}", headers=tenant.auth())
    after = await tenant.client.get(f"{tenant.scim}/Groups/{group['id']}", headers=tenant.auth())
    assert {m["value"] for m in after.json()["members"]} == {alice["id"], inner.json()["id"]}
    assert after.json()["meta"]["version"] == 'W/"2"'

    deleted = await tenant.client.delete(
        f"{tenant.scim}/Groups/{group['id']}", headers=tenant.auth()
    )
    assert deleted.status_code == 204
    listed = await tenant.client.get(f"{tenant.scim}/Groups", headers=tenant.auth())
    assert [g["displayName"] for g in listed.json()["Resources"]] == ["Inner"]


async def test_group_with_unknown_member_is_not_created(tenant: TenantHandle) -> None:
    alice = await tenant.create_user("alice")
    response = await tenant.client.post(
        f"{tenant.scim}/Groups",
        json={
            "displayName": "Half valid",
            "members": [{"value": alice["id"]}, {"value": str(uuid.uuid4())}],
        },
        headers=tenant.auth(),
    )
    assert_scim_error(response, 400, "invalidValue")
    listed = await tenant.client.get(f"{tenant.scim}/Groups", headers=tenant.auth())
    assert listed.json()["totalResults"] == 0


async def test_member_from_another_tenant_is_unknown(
    tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    stranger = await other_tenant.create_user("stranger")
    response = await tenant.client.post(
        f"{tenant.scim}/Groups",
        json={"displayName": "Poachers", "members": [{"value": stranger["id"]}]},
        headers=tenant.auth(),
    )
    assert_scim_error(response, 400, "invalidValue")


async def test_healthz_readyz_and_openapi(client: Client) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ok"}
    schema = await client.get("/schema/openapi.json")
    assert schema.status_code == 200
    assert "/admin/v1/tenants" in schema.json()["paths"]
