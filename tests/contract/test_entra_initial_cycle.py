"""A simulated Entra initial cycle of 1,000 users and 50 groups, then the same cycle again.

Entra's initial cycle (Microsoft Learn, "How application provisioning works"
and the SCIM tutorial): for each user in scope it looks the user up by its
matching attribute (userName) and POSTs it when absent, then sets references
(the manager) with PATCH; for each group it looks it up by displayName with
`excludedAttributes=members`, POSTs it without members, then adds members
with PATCH in batches. A second identical cycle finds everything and, where it
re-sends values (the periodic `active` and manager replaces, member adds), must
change nothing: no version moves.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from service.postgres import Pool
from tests.support.application import TenantHandle, schema_of

USERS = 1000
GROUPS = 50
MEMBER_BATCH = 20
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
# What Entra's requests carry (MicrosoftDocs/azure-docs issue 12728 for the media type's
# parameter); see data/entra_default.json.
ENTRA = {
    "User-Agent": "Microsoft.Identity.Provisioning",
    "Content-Type": "application/scim+json; charset=utf-8",
}
NAMESPACE = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")


def object_id(kind: str, number: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}-{number}"))


def user_body(number: int) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "externalId": object_id("user", number),
        "userName": f"user{number:04d}@contoso.com",
        "active": "False" if number % 25 == 0 else "True",
        "displayName": f"User {number:04d}",
        "emails": [{"primary": True, "type": "work", "value": f"user{number:04d}@contoso.com"}],
        "meta": {"resourceType": "User"},
        "name": {"familyName": f"Family{number}", "givenName": f"Given{number}"},
        "roles": [],
        ENTERPRISE: {"department": f"Dept {number % 7}", "employeeNumber": str(number)},
    }


def lead_of(number: int) -> int | None:
    lead = number - number % 10
    return None if lead == number else lead


def groups_of(number: int) -> set[int]:
    return {number % GROUPS, (number * 7 + 3) % GROUPS}


def members_of(group: int) -> list[int]:
    return [n for n in range(USERS) if group in groups_of(n)]


async def _lookup(tenant: TenantHandle, resource: str, filter_text: str) -> list[dict[str, Any]]:
    extra = "&excludedAttributes=members" if resource == "Groups" else ""
    response = await tenant.client.get(
        f"{tenant.scim}/{resource}?filter={quote(filter_text, safe='')}{extra}",
        headers=tenant.auth() | ENTRA,
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["Resources"]
    return found


async def _patch(tenant: TenantHandle, path: str, *operations: dict[str, Any]) -> None:
    response = await tenant.client.patch(
        f"{tenant.scim}{path}",
        json={"schemas": [PATCH_OP], "Operations": list(operations)},
        headers=tenant.auth() | ENTRA,
    )
    # Groups answer a PATCH with 204 (as Microsoft documents), users with 200.
    assert response.status_code == (204 if path.startswith("/Groups") else 200), response.text


async def entra_cycle(tenant: TenantHandle) -> tuple[dict[int, str], dict[int, str]]:
    """One cycle; returns the ids of users and groups by number."""
    user_ids: dict[int, str] = {}
    for number in range(USERS):
        body = user_body(number)
        found = await _lookup(tenant, "Users", f'userName eq "{body["userName"]}"')
        if found:
            user_ids[number] = found[0]["id"]
            await _patch(
                tenant,
                f"/Users/{found[0]['id']}",
                {"op": "Replace", "path": "active", "value": body["active"]},
            )
            continue
        response = await tenant.client.post(
            f"{tenant.scim}/Users", json=body, headers=tenant.auth() | ENTRA
        )
        assert response.status_code == 201, response.text
        user_ids[number] = response.json()["id"]
    for number in range(USERS):
        lead = lead_of(number)
        if lead is not None:
            await _patch(
                tenant,
                f"/Users/{user_ids[number]}",
                {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": user_ids[lead]},
            )
    group_ids: dict[int, str] = {}
    for group in range(GROUPS):
        name = f"Team {group:02d}"
        found = await _lookup(tenant, "Groups", f'displayName eq "{name}"')
        if found:
            group_ids[group] = found[0]["id"]
        else:
            response = await tenant.client.post(
                f"{tenant.scim}/Groups",
                json={
                    "schemas": [
                        "urn:ietf:params:scim:schemas:core:2.0:Group",
                        "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group",
                    ],
                    "externalId": object_id("group", group),
                    "displayName": name,
                    "meta": {"resourceType": "Group"},
                },
                headers=tenant.auth() | ENTRA,
            )
            assert response.status_code == 201, response.text
            group_ids[group] = response.json()["id"]
        members = members_of(group)
        for start in range(0, len(members), MEMBER_BATCH):
            batch = members[start : start + MEMBER_BATCH]
            await _patch(
                tenant,
                f"/Groups/{group_ids[group]}",
                {
                    "op": "Add",
                    "path": "members",
                    "value": [{"$ref": None, "value": user_ids[n]} for n in batch],
                },
            )
    return user_ids, group_ids


async def _versions(db: Pool, tenant: TenantHandle) -> dict[str, int]:
    schema = await schema_of(db, tenant.slug)
    rows = await db.fetch(
        f"SELECT id, version FROM {schema}.users UNION ALL SELECT id, version FROM {schema}.groups"
    )
    return {str(row["id"]): row["version"] for row in rows}


async def test_initial_cycle_then_an_identical_one(db: Pool, tenant: TenantHandle) -> None:
    # The replay runs faster than Entra would; the tenant's rate limit is not under test.
    await tenant.unlimited()
    user_ids, group_ids = await entra_cycle(tenant)

    response = await tenant.client.get(
        f"{tenant.scim}/Users?count=1000&excludedAttributes=groups", headers=tenant.auth()
    )
    listed = response.json()
    assert listed["totalResults"] == USERS
    by_id = {user["id"]: user for user in listed["Resources"]}
    assert set(by_id) == set(user_ids.values())
    for number, user_id in user_ids.items():
        user, sent = by_id[user_id], user_body(number)
        assert user["userName"] == sent["userName"]
        assert user["externalId"] == sent["externalId"]
        assert user["active"] is (sent["active"] == "True")
        assert user["emails"] == sent["emails"]
        assert user["name"] == sent["name"]
        lead = lead_of(number)
        expected = dict(sent[ENTERPRISE])
        if lead is not None:
            expected["manager"] = {"value": user_ids[lead]}
        assert user[ENTERPRISE] == expected
    for group, group_id in group_ids.items():
        response = await tenant.client.get(
            f"{tenant.scim}/Groups/{group_id}", headers=tenant.auth()
        )
        body = response.json()
        assert body["displayName"] == f"Team {group:02d}"
        assert sorted(m["value"] for m in body["members"]) == sorted(
            user_ids[n] for n in members_of(group)
        )

    before = await _versions(db, tenant)
    assert len(before) == USERS + GROUPS
    again_users, again_groups = await entra_cycle(tenant)
    assert (again_users, again_groups) == (user_ids, group_ids)
    assert await _versions(db, tenant) == before
