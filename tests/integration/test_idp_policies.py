"""Linking existing users, attribute mapping, deprovisioning policy, passwords: over HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from service.passwords import verify_password
from service.postgres import Pool
from tests.integration.test_scim_edge import assert_scim_error
from tests.support.application import Client, TenantHandle, admin_headers, schema_of

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CUSTOM = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"
ENTRA_AGENT = {"User-Agent": "Microsoft.Identity.Provisioning"}


def admin(tenant: TenantHandle, path: str) -> str:
    return f"/admin/v1/tenants/{tenant.slug}{path}"


async def set_policy(tenant: TenantHandle, **changes: Any) -> dict[str, Any]:
    response = await tenant.client.put(
        admin(tenant, "/provisioning-policy"), json=changes, headers=admin_headers()
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def preload(tenant: TenantHandle, **user: Any) -> dict[str, Any]:
    response = await tenant.client.post(admin(tenant, "/users"), json=user, headers=admin_headers())
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def admin_user(tenant: TenantHandle, user_id: str) -> dict[str, Any]:
    response = await tenant.client.get(admin(tenant, f"/users/{user_id}"), headers=admin_headers())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def post_user(tenant: TenantHandle, **user: Any) -> Any:
    return await tenant.client.post(
        f"{tenant.scim}/Users", json=user, headers=tenant.auth() | ENTRA_AGENT
    )


async def find(tenant: TenantHandle, filter_text: str) -> list[dict[str, Any]]:
    response = await tenant.client.get(
        f"{tenant.scim}/Users", params={"filter": filter_text}, headers=tenant.auth()
    )
    assert response.status_code == 200, response.text
    resources: list[dict[str, Any]] = response.json()["Resources"]
    return resources


# --- Policies --------------------------------------------------------------------------------


async def test_default_policy_and_changes(tenant: TenantHandle) -> None:
    response = await tenant.client.get(
        admin(tenant, "/provisioning-policy"), headers=admin_headers()
    )
    assert response.status_code == 200
    assert response.json() | {"updated_at": None} == {
        "link_mode": "link",
        "match_order": ["externalId", "userName", "email"],
        "deprovision_mode": "soft_delete",
        "retention_days": 30,
        "updated_at": None,
    }
    changed = await set_policy(tenant, link_mode="refuse", match_order=["email"])
    assert changed["link_mode"] == "refuse"
    assert changed["match_order"] == ["email"]
    assert changed["deprovision_mode"] == "soft_delete"  # left as it was
    assert changed["updated_at"] is not None


@pytest.mark.parametrize(
    "changes",
    [
        {"link_mode": "merge"},
        {"match_order": []},
        {"match_order": ["email", "email"]},
        {"match_order": ["phone"]},
        {"deprovision_mode": "archive"},
        {"retention_days": -1},
        {"retention_days": 100000},
        {"unknown": 1},
    ],
)
async def test_invalid_policy_is_refused(tenant: TenantHandle, changes: dict[str, Any]) -> None:
    response = await tenant.client.put(
        admin(tenant, "/provisioning-policy"), json=changes, headers=admin_headers()
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_policy_endpoints_need_the_admin_token_and_a_tenant(client: Client) -> None:
    response = await client.get("/admin/v1/tenants/nosuch/provisioning-policy")
    assert response.status_code == 401
    response = await client.get(
        "/admin/v1/tenants/nosuch/provisioning-policy", headers=admin_headers()
    )
    assert response.status_code == 404


# --- Linking existing users ------------------------------------------------------------------


async def test_preloaded_user_is_hidden_until_linked_by_username(tenant: TenantHandle) -> None:
    existing = await preload(
        tenant, userName="Ada@Example.com", title="Countess", emails=[{"value": "ada@example.com"}]
    )
    assert existing["state"] == "preloaded"
    assert await find(tenant, 'userName eq "ada@example.com"') == []
    response = await tenant.client.get(
        f"{tenant.scim}/Users/{existing['id']}", headers=tenant.auth()
    )
    assert response.status_code == 404

    response = await post_user(tenant, userName="ada@example.com", externalId="obj-1")
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["id"] == existing["id"]  # adopted, not duplicated
    assert created["title"] == "Countess"  # what the operator knew is kept
    assert created["externalId"] == "obj-1"
    assert [u["id"] for u in await find(tenant, 'userName eq "ada@example.com"')] == [created["id"]]

    linked = await admin_user(tenant, created["id"])
    assert linked["state"] == "managed"
    links = (await tenant.client.get(admin(tenant, "/links"), headers=admin_headers())).json()
    assert links["links"] == [
        {
            "user_id": created["id"],
            "kind": "linked",
            "matched_by": "userName",
            "matched_value": "ada@example.com",
            "client": "entra",
            "user_agent": "Microsoft.Identity.Provisioning",
            "linked_at": links["links"][0]["linked_at"],
        }
    ]


async def test_match_order_externalid_first(tenant: TenantHandle) -> None:
    by_external = await preload(tenant, userName="old-name@example.com", externalId="obj-9")
    by_name = await preload(tenant, userName="new-name@example.com")
    response = await post_user(tenant, userName="new-name@example.com", externalId="obj-9")
    # externalId comes first: the user with obj-9 is adopted, and takes the new userName
    # only if no one else holds it - here the other pre-loaded user does.
    assert_scim_error(response, 409, "uniqueness")
    await set_policy(tenant, match_order=["userName", "externalId"])
    response = await post_user(tenant, userName="new-name@example.com", externalId="obj-9")
    assert response.status_code == 201, response.text
    assert response.json()["id"] == by_name["id"]
    assert (await admin_user(tenant, by_external["id"]))["state"] == "preloaded"


async def test_match_by_email_case_insensitively(tenant: TenantHandle) -> None:
    existing = await preload(
        tenant, userName="ada", emails=[{"value": "Ada.Lovelace@Example.com", "type": "work"}]
    )
    await set_policy(tenant, match_order=["email"])
    response = await post_user(
        tenant,
        userName="ada.lovelace@example.com",
        emails=[{"value": "ada.lovelace@EXAMPLE.com", "type": "work", "primary": True}],
    )
    assert response.status_code == 201, response.text
    assert response.json()["id"] == existing["id"]
    links = (await tenant.client.get(admin(tenant, "/links"), headers=admin_headers())).json()
    assert links["links"][0]["matched_by"] == "email"


async def test_no_match_creates_a_new_user(tenant: TenantHandle) -> None:
    await preload(tenant, userName="someone@example.com")
    await set_policy(tenant, match_order=["externalId"])
    response = await post_user(tenant, userName="other@example.com", externalId="obj-2")
    assert response.status_code == 201
    listed = (await tenant.client.get(admin(tenant, "/users"), headers=admin_headers())).json()
    assert listed["total"] == 2
    assert sorted(u["state"] for u in listed["users"]) == ["managed", "preloaded"]


async def test_users_are_found_by_user_name_display_name_or_external_id(
    tenant: TenantHandle,
) -> None:
    await preload(tenant, userName="grace@example.com", displayName="Grace Hopper")
    await post_user(tenant, userName="ada@example.com", externalId="obj-7")
    await post_user(tenant, userName="alan@example.org", displayName="Alan Turing")

    async def found(search: str, **page: int) -> tuple[int, list[str]]:
        listed = await tenant.client.get(
            admin(tenant, "/users"), params={"search": search, **page}, headers=admin_headers()
        )
        assert listed.status_code == 200, listed.text
        body = listed.json()
        return body["total"], [user["userName"] for user in body["users"]]

    assert await found("EXAMPLE.COM") == (2, ["grace@example.com", "ada@example.com"])
    assert await found("example.com", offset=1, limit=1) == (2, ["ada@example.com"])
    assert await found("hopper") == (1, ["grace@example.com"])
    assert await found("obj-7") == (1, ["ada@example.com"])
    assert await found("OBJ-7") == (0, [])  # externalId is caseExact
    assert await found("%") == (0, [])


async def test_refuse_policy_answers_409(tenant: TenantHandle) -> None:
    await preload(tenant, userName="ada@example.com")
    await set_policy(tenant, link_mode="refuse")
    response = await post_user(tenant, userName="ADA@example.com")
    assert_scim_error(response, 409, "uniqueness")
    listed = (await tenant.client.get(admin(tenant, "/users"), headers=admin_headers())).json()
    assert [u["state"] for u in listed["users"]] == ["preloaded"]
    assert (await tenant.client.get(admin(tenant, "/links"), headers=admin_headers())).json() == {
        "links": []
    }


async def test_bulk_preload(tenant: TenantHandle) -> None:
    await tenant.create_user("taken@example.com")
    response = await tenant.client.post(
        admin(tenant, "/users/bulk"),
        json={
            "users": [
                {"userName": "a@example.com"},
                {"userName": "TAKEN@example.com"},
                {"displayName": "no userName"},
                {"userName": "b@example.com", "active": "False"},
            ]
        },
        headers=admin_headers(),
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["created"] == 2
    assert [r["status"] for r in report["results"]] == ["created", "conflict", "invalid", "created"]
    assert (await admin_user(tenant, report["results"][3]["id"]))["active"] is False


async def test_preload_errors(tenant: TenantHandle) -> None:
    await preload(tenant, userName="a@example.com")
    for body, status in (({"userName": "A@example.com"}, 409), ({"name": {}}, 400)):
        response = await tenant.client.post(
            admin(tenant, "/users"), json=body, headers=admin_headers()
        )
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    response = await tenant.client.get(admin(tenant, "/users/not-a-uuid"), headers=admin_headers())
    assert response.status_code == 404


# --- Attribute mapping -----------------------------------------------------------------------


async def test_attribute_mapping_is_validated_and_served(tenant: TenantHandle) -> None:
    mapping = {
        "email": "userName",
        "first_name": "name.givenName",
        "department": f"{ENTERPRISE}:department",
        "cost_centre": f"{CUSTOM}:costCentre",
    }
    response = await tenant.client.put(
        admin(tenant, "/attribute-mapping"), json={"mapping": mapping}, headers=admin_headers()
    )
    assert response.status_code == 200, response.text
    bad_bodies: list[dict[str, Any]] = [
        {"mapping": {"x": "nosuch"}},
        {"mapping": {"Bad": "userName"}},
        {"x": {}},
    ]
    for bad in bad_bodies:
        response = await tenant.client.put(
            admin(tenant, "/attribute-mapping"), json=bad, headers=admin_headers()
        )
        assert response.status_code == 400, response.text
    saved = await tenant.client.get(admin(tenant, "/attribute-mapping"), headers=admin_headers())
    assert saved.json() == {"mapping": mapping}

    user = await tenant.create_user(
        "grace@example.com",
        name={"givenName": "Grace"},
        nickNameOfTheIdp="kept",
        **{ENTERPRISE: {"department": "Navy"}, CUSTOM: {"costCentre": "C-7", "site": "Arlington"}},
    )
    # Unknown attributes and extensions are kept and returned.
    assert user[CUSTOM] == {"costCentre": "C-7", "site": "Arlington"}
    assert user["nickNameOfTheIdp"] == "kept"
    assert CUSTOM in user["schemas"]
    assert (await admin_user(tenant, user["id"]))["profile"] == {
        "email": "grace@example.com",
        "first_name": "Grace",
        "department": "Navy",
        "cost_centre": "C-7",
    }
    listed = (await tenant.client.get(admin(tenant, "/users"), headers=admin_headers())).json()
    assert listed["users"][0]["profile"]["cost_centre"] == "C-7"

    # Projection still trims them, and filters on known attributes still work.
    response = await tenant.client.get(
        f"{tenant.scim}/Users/{user['id']}?attributes=userName", headers=tenant.auth()
    )
    assert set(response.json()) == {"schemas", "id", "userName", "meta"}
    assert CUSTOM not in response.json()["schemas"]
    assert [u["id"] for u in await find(tenant, f'{ENTERPRISE}:department eq "Navy"')] == [
        user["id"]
    ]


# --- Deprovisioning --------------------------------------------------------------------------


async def _member_of_group(tenant: TenantHandle) -> tuple[dict[str, Any], str]:
    user = await tenant.create_user("leaver@example.com", title="Engineer")
    group = await tenant.client.post(
        f"{tenant.scim}/Groups",
        json={"displayName": "Staff", "members": [{"value": user["id"]}]},
        headers=tenant.auth(),
    )
    assert group.status_code == 201
    return user, group.json()["id"]


async def _group_members(tenant: TenantHandle, group_id: str) -> list[str]:
    response = await tenant.client.get(f"{tenant.scim}/Groups/{group_id}", headers=tenant.auth())
    return [m["value"] for m in response.json().get("members", [])]


async def test_deactivation_keeps_the_user_visible(tenant: TenantHandle) -> None:
    user, group_id = await _member_of_group(tenant)
    response = await tenant.client.patch(
        f"{tenant.scim}/Users/{user['id']}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
        },
        headers=tenant.auth(),
    )
    assert response.status_code == 200
    got = await tenant.client.get(f"{tenant.scim}/Users/{user['id']}", headers=tenant.auth())
    assert got.status_code == 200
    assert got.json()["active"] is False
    assert [u["id"] for u in await find(tenant, "active eq false")] == [user["id"]]
    assert [u["id"] for u in await find(tenant, 'userName eq "leaver@example.com"')] == [user["id"]]
    assert await _group_members(tenant, group_id) == [user["id"]]


@pytest.mark.parametrize("mode", ["deactivate", "soft_delete"])
async def test_delete_keeps_the_data(db: Pool, tenant: TenantHandle, mode: str) -> None:
    await set_policy(tenant, deprovision_mode=mode, retention_days=0)
    user, group_id = await _member_of_group(tenant)
    response = await tenant.client.delete(
        f"{tenant.scim}/Users/{user['id']}", headers=tenant.auth()
    )
    assert response.status_code == 204
    got = await tenant.client.get(f"{tenant.scim}/Users/{user['id']}", headers=tenant.auth())
    assert got.status_code == 404  # what RFC 7644 clients expect after DELETE
    assert await find(tenant, 'userName eq "leaver@example.com"') == []
    assert await _group_members(tenant, group_id) == []
    kept = await admin_user(tenant, user["id"])
    assert kept["state"] == "deleted"
    assert kept["active"] is False
    assert kept["attributes"]["title"] == "Engineer"
    assert kept["deleted_from_groups"] == [group_id]

    purged = await tenant.client.post(admin(tenant, "/purge"), headers=admin_headers())
    assert purged.json() == {"purged": 0 if mode == "deactivate" else 1}
    remaining = await tenant.client.get(
        admin(tenant, f"/users/{user['id']}"), headers=admin_headers()
    )
    assert remaining.status_code == (200 if mode == "deactivate" else 404)


async def test_soft_deleted_user_waits_for_its_retention(db: Pool, tenant: TenantHandle) -> None:
    await set_policy(tenant, deprovision_mode="soft_delete", retention_days=30)
    user = await tenant.create_user("leaver@example.com")
    await tenant.client.delete(f"{tenant.scim}/Users/{user['id']}", headers=tenant.auth())
    purged = await tenant.client.post(admin(tenant, "/purge"), headers=admin_headers())
    assert purged.json() == {"purged": 0}
    schema = await schema_of(db, tenant.slug)
    await db.execute(
        f"UPDATE {schema}.users SET deleted_at = now() - interval '31 days' WHERE id = $1",
        uuid.UUID(user["id"]),
    )
    purged = await tenant.client.post(admin(tenant, "/purge"), headers=admin_headers())
    assert purged.json() == {"purged": 1}


async def test_soft_deleted_user_is_restored_when_posted_again(tenant: TenantHandle) -> None:
    user = await tenant.create_user("comeback@example.com", title="Engineer")
    await tenant.client.delete(f"{tenant.scim}/Users/{user['id']}", headers=tenant.auth())
    response = await post_user(tenant, userName="comeback@example.com", displayName="Back")
    assert response.status_code == 201, response.text
    restored = response.json()
    assert restored["id"] == user["id"]
    assert restored["active"] is True
    assert restored["title"] == "Engineer"
    links = (await tenant.client.get(admin(tenant, "/links"), headers=admin_headers())).json()
    assert links["links"][0]["kind"] == "restored"


async def test_hard_delete(tenant: TenantHandle) -> None:
    await set_policy(tenant, deprovision_mode="hard_delete")
    user, group_id = await _member_of_group(tenant)
    response = await tenant.client.delete(
        f"{tenant.scim}/Users/{user['id']}", headers=tenant.auth()
    )
    assert response.status_code == 204
    gone = await tenant.client.get(admin(tenant, f"/users/{user['id']}"), headers=admin_headers())
    assert gone.status_code == 404
    assert await _group_members(tenant, group_id) == []
    again = await post_user(tenant, userName="leaver@example.com")
    assert again.status_code == 201
    assert again.json()["id"] != user["id"]


# --- Passwords -------------------------------------------------------------------------------


async def test_password_is_stored_only_as_a_hash(db: Pool, tenant: TenantHandle) -> None:
    secret = "Okta-Sends-Th1s!"
    response = await tenant.client.post(
        f"{tenant.scim}/Users",
        json={"userName": "pw@example.com", "password": secret},
        headers=tenant.auth() | {"User-Agent": "Okta SCIM Client 1.0.0"},
    )
    assert response.status_code == 201
    assert secret not in response.text
    assert "password" not in response.json()
    user_id = response.json()["id"]
    schema = await schema_of(db, tenant.slug)
    row = await db.fetchrow(
        f"SELECT password_hash, resource::text AS resource FROM {schema}.users WHERE id = $1",
        uuid.UUID(user_id),
    )
    assert row is not None
    assert secret not in row["resource"]
    assert secret not in row["password_hash"]
    assert verify_password(secret, row["password_hash"])

    changed = "N3w-Passw0rd"
    response = await tenant.client.patch(
        f"{tenant.scim}/Users/{user_id}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"password": changed}}],
        },
        headers=tenant.auth(),
    )
    assert response.status_code == 200
    assert changed not in response.text
    stored = await db.fetchval(
        f"SELECT password_hash FROM {schema}.users WHERE id = $1", uuid.UUID(user_id)
    )
    assert verify_password(changed, stored)
    # A PUT without a password keeps the one set; the admin API says only that there is one.
    response = await tenant.client.put(
        f"{tenant.scim}/Users/{user_id}", json={"userName": "pw@example.com"}, headers=tenant.auth()
    )
    assert response.status_code == 200
    assert (await admin_user(tenant, user_id))["has_password"] is True
    assert (
        changed
        not in (
            await tenant.client.get(admin(tenant, f"/users/{user_id}"), headers=admin_headers())
        ).text
    )


# --- Setup guide and CLI ---------------------------------------------------------------------


async def test_setup_guide_has_the_tenant_url_and_no_secret(tenant: TenantHandle) -> None:
    response = await tenant.client.get(
        admin(tenant, "/setup-guide?idp=entra&product=Acme"), headers=admin_headers()
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert f"http://scim.test/scim/v2/{tenant.slug}" in response.text
    assert tenant.token not in response.text
    for idp, field in (
        ("okta", "SCIM connector base URL"),
        ("onelogin", "SCIM Bearer Token"),
        ("jumpcloud", "Token Key"),
    ):
        guide = await tenant.client.get(
            admin(tenant, f"/setup-guide?idp={idp}"), headers=admin_headers()
        )
        assert guide.status_code == 200, guide.text
        assert field in guide.text
        assert f"http://scim.test/scim/v2/{tenant.slug}" in guide.text
    bad = await tenant.client.get(admin(tenant, "/setup-guide?idp=ping"), headers=admin_headers())
    assert bad.status_code == 400


async def test_deleted_user_is_not_restored_by_email_alone(tenant: TenantHandle) -> None:
    await set_policy(tenant, match_order=["email"])
    gone = await tenant.create_user(
        "old.hire@example.com", emails=[{"value": "shared@example.com", "type": "work"}]
    )
    await tenant.client.delete(f"{tenant.scim}/Users/{gone['id']}", headers=tenant.auth())
    response = await post_user(
        tenant, userName="new.hire@example.com", emails=[{"value": "shared@example.com"}]
    )
    assert response.status_code == 201, response.text
    assert response.json()["id"] != gone["id"]
    assert (await admin_user(tenant, gone["id"]))["state"] == "deleted"
