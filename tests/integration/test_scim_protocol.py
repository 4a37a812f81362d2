"""RFC 7644 over HTTP: filters, sorting, projection, search, ETags, PUT, PATCH, discovery."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote
from uuid import uuid4

import pytest

from tests.integration.test_events import all_events
from tests.integration.test_roles import create_group
from tests.integration.test_scim_edge import assert_scim_error
from tests.support.application import TenantHandle

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


async def list_users(tenant: TenantHandle, query: str) -> dict[str, Any]:
    response = await tenant.client.get(f"{tenant.scim}/Users?{query}", headers=tenant.auth())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def user_names(body: dict[str, Any]) -> list[str]:
    return [user["userName"] for user in body["Resources"]]


@pytest.fixture
async def people(tenant: TenantHandle) -> dict[str, dict[str, Any]]:
    alice = await tenant.create_user(
        "Alice@Example.com",
        externalId="EXT-1",
        displayName="Alice Liddell",
        name={"givenName": "Alice", "familyName": "Liddell"},
        emails=[
            {"value": "alice@example.com", "type": "work", "primary": True},
            {"value": "alice@home.example", "type": "home"},
        ],
        title="Engineer",
        **{ENTERPRISE: {"department": "R&D", "employeeNumber": "42"}},
    )
    bob = await tenant.create_user(
        "bob@example.com",
        externalId="ext-2",
        displayName="Bob Builder",
        active=False,
        name={"givenName": "Bob"},
        emails=[{"value": "Bob@Example.com", "type": "work"}],
        **{ENTERPRISE: {"department": "Sales"}},
    )
    carol = await tenant.create_user(
        "carol@other.example", emails=[{"value": "carol@other.example", "type": "home"}]
    )
    return {"alice": alice, "bob": bob, "carol": carol}


def q(filter_text: str) -> str:
    return "filter=" + quote(filter_text)


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        ('userName eq "alice@example.com"', ["Alice@Example.com"]),
        ('USERNAME EQ "ALICE@EXAMPLE.COM"', ["Alice@Example.com"]),
        ('externalId eq "EXT-1"', ["Alice@Example.com"]),
        ('externalId eq "ext-1"', []),  # externalId is caseExact
        ('emails.value eq "bob@example.com"', ["bob@example.com"]),
        ('emails eq "alice@home.example"', ["Alice@Example.com"]),
        (
            'emails[type eq "work" and value co "@example.com"]',
            ["Alice@Example.com", "bob@example.com"],
        ),
        ('emails[value eq "carol@other.example"]', ["carol@other.example"]),
        ('emails[type eq "home"]', ["Alice@Example.com", "carol@other.example"]),
        ('displayName eq "bob builder"', ["bob@example.com"]),
        ("active eq false", ["bob@example.com"]),
        ("active eq true", ["Alice@Example.com", "carol@other.example"]),
        ('name.givenName sw "Al"', ["Alice@Example.com"]),
        ('userName ew "example.com"', ["Alice@Example.com", "bob@example.com"]),
        ('userName co "OTHER"', ["carol@other.example"]),
        ("title pr", ["Alice@Example.com"]),
        ("not (title pr)", ["bob@example.com", "carol@other.example"]),
        ('userName sw "a" or userName sw "c"', ["Alice@Example.com", "carol@other.example"]),
        ('userName sw "a" and active eq false', []),
        (f'{ENTERPRISE}:department eq "sales"', ["bob@example.com"]),
        (f"{ENTERPRISE}:employeeNumber pr", ["Alice@Example.com"]),
        (
            'urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bob@example.com"',
            ["bob@example.com"],
        ),
        (
            'meta.created gt "2000-01-01T00:00:00Z"',
            ["Alice@Example.com", "bob@example.com", "carol@other.example"],
        ),
        ('meta.lastModified lt "2000-01-01T00:00:00Z"', []),
        ('userName gt "b" and userName lt "c"', ["bob@example.com"]),
        ('id eq "not-a-uuid"', []),
        # A comparison needs a value to match, ne as well; not() takes the rest.
        ('title ne "CEO"', ["Alice@Example.com"]),
        ('not (title eq "CEO")', ["Alice@Example.com", "bob@example.com", "carol@other.example"]),
        (f'{ENTERPRISE}:employeeNumber ne "7"', ["Alice@Example.com"]),
        ("active ne true", ["bob@example.com"]),
        # Unassigned (RFC 7643 section 2.5): no value, or no element (no one has a phone).
        ("title eq null", ["bob@example.com", "carol@other.example"]),
        ("phoneNumbers eq null", ["Alice@Example.com", "bob@example.com", "carol@other.example"]),
        (
            "phoneNumbers.value eq null",
            ["Alice@Example.com", "bob@example.com", "carol@other.example"],
        ),
        ("emails.value eq null", []),
    ],
)
async def test_user_filters(
    tenant: TenantHandle, people: dict[str, Any], filter_text: str, expected: list[str]
) -> None:
    body = await list_users(tenant, q(filter_text))
    assert sorted(user_names(body)) == sorted(expected)
    assert body["totalResults"] == len(expected)


async def test_users_are_filtered_by_the_groups_they_are_in(
    tenant: TenantHandle, people: dict[str, Any]
) -> None:
    """A user's `groups` are its memberships, direct and through nesting, as a GET shows
    them, not part of its stored document: filters on them find the users in them."""
    alice, bob = people["alice"]["id"], people["bob"]["id"]
    engineers = await create_group(tenant, "Engineers", alice)
    await create_group(tenant, "Staff", bob, engineers)

    async def found(filter_text: str) -> list[str]:
        return sorted(user_names(await list_users(tenant, q(filter_text))))

    assert await found(f'groups eq "{engineers}"') == ["Alice@Example.com"]
    assert await found('groups.display eq "staff"') == ["Alice@Example.com", "bob@example.com"]
    assert await found('groups[display eq "Staff" and type eq "indirect"]') == ["Alice@Example.com"]
    assert await found('groups[display eq "Staff" and type eq "direct"]') == ["bob@example.com"]
    assert await found("groups pr") == ["Alice@Example.com", "bob@example.com"]
    assert await found("groups eq null") == ["carol@other.example"]
    assert await found('not (groups.display co "eng")') == [
        "bob@example.com",
        "carol@other.example",
    ]


async def test_filter_by_id(tenant: TenantHandle, people: dict[str, Any]) -> None:
    bob = people["bob"]["id"]
    body = await list_users(tenant, q(f'id eq "{bob}"'))
    assert user_names(body) == ["bob@example.com"]
    # An id is caseExact (RFC 7643 section 3.1), as a PATCH path compares it.
    assert user_names(await list_users(tenant, q(f'id eq "{bob.upper()}"'))) == []
    unlike = user_names(await list_users(tenant, q(f'id ne "{bob.upper()}"')))
    assert "bob@example.com" in unlike


async def test_entra_test_connection_probe(tenant: TenantHandle) -> None:
    # Entra sends a random GUID as userName and expects 200 with no results, never 404.
    body = await list_users(tenant, "filter=userName+eq+%2273ab4fd1-5c3b-4aea-9bb2-0b8e3c9cb1f5%22")
    assert body == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 0,
        "startIndex": 1,
        "itemsPerPage": 0,
        "Resources": [],
    }
    groups = await tenant.client.get(
        f"{tenant.scim}/Groups?" + q('displayName eq "73ab4fd1"'), headers=tenant.auth()
    )
    assert groups.json()["totalResults"] == 0


@pytest.mark.parametrize(
    ("filter_text", "hint"),
    [
        ('userName eq "unterminated', "string"),
        ('userName xx "a"', "operator"),
        ('nosuchattribute eq "a"', "unknown attribute"),
        ('name eq "complex"', "sub-attribute"),
        ('active eq "yes"', "boolean"),
        ('meta.created gt "yesterday"', "dateTime"),
    ],
)
async def test_bad_filters_are_invalid_filter(
    tenant: TenantHandle, filter_text: str, hint: str
) -> None:
    response = await tenant.client.get(
        f"{tenant.scim}/Users?{q(filter_text)}", headers=tenant.auth()
    )
    assert_scim_error(response, 400, "invalidFilter")
    assert hint in response.json()["detail"]


async def test_filtered_pagination_counts_all_matches(tenant: TenantHandle) -> None:
    for i in range(5):
        await tenant.create_user(f"page{i}@example.com")
    await tenant.create_user("other@else.example")
    body = await list_users(tenant, q('userName ew "@example.com"') + "&startIndex=2&count=2")
    assert body["totalResults"] == 5
    assert user_names(body) == ["page1@example.com", "page2@example.com"]
    beyond = await list_users(tenant, q('userName ew "@example.com"') + "&startIndex=9")
    assert (beyond["totalResults"], beyond["Resources"]) == (5, [])


async def test_sorting(tenant: TenantHandle, people: dict[str, Any]) -> None:
    ascending = await list_users(tenant, "sortBy=userName")
    assert user_names(ascending) == ["Alice@Example.com", "bob@example.com", "carol@other.example"]
    descending = await list_users(tenant, "sortBy=userName&sortOrder=descending")
    assert user_names(descending) == list(reversed(user_names(ascending)))
    by_department = await list_users(tenant, f"sortBy={ENTERPRISE}:department")
    # Resources without a value sort last.
    assert user_names(by_department) == [
        "Alice@Example.com",
        "bob@example.com",
        "carol@other.example",
    ]
    by_email = await list_users(tenant, "sortBy=emails&sortOrder=descending")
    assert user_names(by_email)[0] == "carol@other.example"
    bad = await tenant.client.get(f"{tenant.scim}/Users?sortBy=nope", headers=tenant.auth())
    assert_scim_error(bad, 400, "invalidValue")


async def test_sorting_by_a_list_takes_its_primary_value_or_else_its_first(
    tenant: TenantHandle,
) -> None:
    """RFC 7644 section 3.4.2.3; a value marked `primary: false` is no better than one
    not marked, and a user's groups are listed as a response lists them."""
    first = {"value": "b@example.com"}
    second = {"value": "a@example.com", "primary": False}
    dan = await tenant.create_user("dan@example.com", emails=[first, second])
    eve = await tenant.create_user(
        "eve@example.com", emails=[{"value": "c@example.com", "primary": True}, second]
    )
    await create_group(tenant, "Zeta", dan["id"])
    await create_group(tenant, "Alpha", eve["id"])
    await create_group(tenant, "Beta", dan["id"])
    by_email = await list_users(tenant, "sortBy=emails.value")
    assert user_names(by_email) == ["dan@example.com", "eve@example.com"]
    by_group = await list_users(tenant, "sortBy=groups.display&sortOrder=descending")
    assert user_names(by_group) == ["dan@example.com", "eve@example.com"]  # Beta, Alpha
    order = await tenant.client.get(
        f"{tenant.scim}/Users?sortOrder=sideways", headers=tenant.auth()
    )
    assert_scim_error(order, 400, "invalidValue")


async def test_attributes_and_excluded_attributes(
    tenant: TenantHandle, people: dict[str, Any]
) -> None:
    body = await list_users(tenant, q('userName eq "alice@example.com"') + "&attributes=userName")
    [alice] = body["Resources"]
    assert set(alice) == {"schemas", "id", "meta", "userName"}
    nested = await list_users(
        tenant, q('userName eq "alice@example.com"') + "&attributes=name.givenName,emails.value"
    )
    [alice] = nested["Resources"]
    assert alice["name"] == {"givenName": "Alice"}
    assert alice["emails"] == [{"value": "alice@example.com"}, {"value": "alice@home.example"}]
    excluded = await tenant.client.get(
        f"{tenant.scim}/Users/{people['alice']['id']}?excludedAttributes=emails,{ENTERPRISE}",
        headers=tenant.auth(),
    )
    assert "emails" not in excluded.json()
    assert ENTERPRISE not in excluded.json()
    assert excluded.json()["userName"] == "Alice@Example.com"


async def test_groups_without_members_when_excluded(
    tenant: TenantHandle, people: dict[str, Any]
) -> None:
    created = await tenant.client.post(
        f"{tenant.scim}/Groups",
        json={"displayName": "Staff", "members": [{"value": people["alice"]["id"]}]},
        headers=tenant.auth(),
    )
    group_id = created.json()["id"]
    listed = await tenant.client.get(
        f"{tenant.scim}/Groups?excludedAttributes=members", headers=tenant.auth()
    )
    [group] = listed.json()["Resources"]
    assert "members" not in group
    assert group["displayName"] == "Staff"
    single = await tenant.client.get(
        f"{tenant.scim}/Groups/{group_id}?attributes=displayName", headers=tenant.auth()
    )
    assert set(single.json()) == {"schemas", "id", "meta", "displayName"}
    by_member = await tenant.client.get(
        f"{tenant.scim}/Groups?" + q(f'members.value eq "{people["alice"]["id"]}"'),
        headers=tenant.auth(),
    )
    assert by_member.json()["totalResults"] == 1
    not_member = await tenant.client.get(
        f"{tenant.scim}/Groups?" + q(f'members[value eq "{people["bob"]["id"]}"]'),
        headers=tenant.auth(),
    )
    assert not_member.json()["totalResults"] == 0


async def test_groups_are_filtered_by_members_without_case(
    tenant: TenantHandle, people: dict[str, Any]
) -> None:
    """A member's `type` and `value` are not caseExact (RFC 7643 section 8.7.1), and a group
    without members has them unassigned."""
    alice = people["alice"]["id"]
    staff = await create_group(tenant, "Staff", alice)
    await create_group(tenant, "All", staff)
    await create_group(tenant, "Empty")

    async def found(filter_text: str) -> list[str]:
        response = await tenant.client.get(
            f"{tenant.scim}/Groups?" + q(filter_text), headers=tenant.auth()
        )
        assert response.status_code == 200, response.text
        return sorted(group["displayName"] for group in response.json()["Resources"])

    assert await found('members[type eq "user"]') == ["Staff"]
    assert await found('members.type eq "GROUP"') == ["All"]
    assert await found(f'members.value sw "{alice[:8].upper()}"') == ["Staff"]
    assert await found("members eq null") == ["Empty"]
    assert await found("members.value eq null") == ["Empty"]
    assert await found("members pr") == ["All", "Staff"]


async def test_groups_are_filtered_sorted_and_patched_by_their_members_names(
    tenant: TenantHandle, people: dict[str, Any]
) -> None:
    """A member's `display` is what the group shows: a user's displayName, else its
    userName, or a group's displayName. Lists filter and sort by it; a PATCH removes
    the members it names."""
    staff = await create_group(tenant, "Staff", people["alice"]["id"])
    await create_group(tenant, "All", staff)
    others = await create_group(tenant, "Others", people["carol"]["id"])
    await create_group(tenant, "Empty")

    async def found(query: str) -> list[str]:
        response = await tenant.client.get(f"{tenant.scim}/Groups?{query}", headers=tenant.auth())
        assert response.status_code == 200, response.text
        return [group["displayName"] for group in response.json()["Resources"]]

    assert await found(q('members.display eq "alice liddell"')) == ["Staff"]
    assert await found(q('members[display sw "CAROL@" and type eq "User"]')) == ["Others"]
    assert await found(q('members.display eq "staff"')) == ["All"]
    assert await found(q('not (members.display co "a")')) == ["Empty"]
    # By its first member (as listed, by id); a group without one last.
    assert await found("sortBy=members.display") == ["Staff", "Others", "All", "Empty"]
    assert await found("sortBy=members.display&sortOrder=descending") == [
        "All",
        "Others",
        "Staff",
        "Empty",
    ]

    removed = await tenant.client.patch(
        f"{tenant.scim}/Groups/{others}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "remove", "path": 'members[display eq "Carol@Other.Example"]'}],
        },
        headers=tenant.auth(),
    )
    assert removed.status_code in (200, 204), removed.text
    assert await found(q('displayName eq "Others" and members pr')) == []
    assert sorted(await found(q("members pr"))) == ["All", "Staff"]


async def test_post_search(tenant: TenantHandle, people: dict[str, Any]) -> None:
    response = await tenant.client.post(
        f"{tenant.scim}/Users/.search",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'emails.value co "example"',
            "attributes": ["userName", "displayName"],
            "sortBy": "userName",
            "sortOrder": "descending",
            "startIndex": 1,
            "count": 10,
        },
        headers=tenant.auth(),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert user_names(body) == ["carol@other.example", "bob@example.com", "Alice@Example.com"]
    assert set(body["Resources"][0]) == {"schemas", "id", "meta", "userName"}
    wrong = await tenant.client.post(
        f"{tenant.scim}/Users/.search", json={"filter": "title pr"}, headers=tenant.auth()
    )
    assert_scim_error(wrong, 400, "invalidSyntax")


async def test_etags(tenant: TenantHandle) -> None:
    user = await tenant.create_user("etag@example.com")
    url = f"{tenant.scim}/Users/{user['id']}"
    fetched = await tenant.client.get(url, headers=tenant.auth())
    etag = fetched.headers["etag"]
    assert etag == user["meta"]["version"] == 'W/"1"'
    unchanged = await tenant.client.get(url, headers=tenant.auth() | {"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    changed = await tenant.client.get(url, headers=tenant.auth() | {"If-None-Match": 'W/"7"'})
    assert changed.status_code == 200

    stale = await tenant.client.put(
        url,
        json={"userName": "etag@example.com", "displayName": "Stale"},
        headers=tenant.auth() | {"If-Match": 'W/"9"'},
    )
    assert_scim_error(stale, 412)
    assert "displayName" not in (await tenant.client.get(url, headers=tenant.auth())).json()

    fresh = await tenant.client.put(
        url,
        json={"userName": "etag@example.com", "displayName": "Fresh"},
        headers=tenant.auth() | {"If-Match": etag},
    )
    assert fresh.status_code == 200
    assert fresh.headers["etag"] == 'W/"2"'
    stale_delete = await tenant.client.delete(url, headers=tenant.auth() | {"If-Match": etag})
    assert_scim_error(stale_delete, 412)
    deleted = await tenant.client.delete(url, headers=tenant.auth() | {"If-Match": 'W/"2"'})
    assert deleted.status_code == 204


async def test_put_replaces_the_whole_resource(
    tenant: TenantHandle, people: dict[str, Any]
) -> None:
    alice = people["alice"]
    url = f"{tenant.scim}/Users/{alice['id']}"
    response = await tenant.client.put(
        url,
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "ignored",
            "userName": "alice@example.com",
            "active": False,
            "meta": {"created": "1999-01-01T00:00:00Z"},
        },
        headers=tenant.auth(),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == alice["id"]
    assert body["userName"] == "alice@example.com"
    assert body["active"] is False
    assert "emails" not in body
    assert ENTERPRISE not in body
    assert body["meta"]["created"] == alice["meta"]["created"]
    assert body["meta"]["version"] == 'W/"2"'
    # The filter columns follow the new state.
    found = await list_users(tenant, q("emails pr"))
    assert "alice@example.com" not in user_names(found)

    taken = await tenant.client.put(
        url, json={"userName": "BOB@example.com"}, headers=tenant.auth()
    )
    assert_scim_error(taken, 409, "uniqueness")
    missing = await tenant.client.put(url, json={"displayName": "x"}, headers=tenant.auth())
    assert_scim_error(missing, 400, "invalidValue")


async def patch(tenant: TenantHandle, path: str, operations: list[dict[str, Any]]) -> Any:
    return await tenant.client.patch(
        f"{tenant.scim}/{path}",
        json={"schemas": [PATCH_OP], "Operations": operations},
        headers=tenant.auth(),
    )


async def test_patch_user(tenant: TenantHandle, people: dict[str, Any]) -> None:
    alice = people["alice"]
    response = await patch(
        tenant,
        f"Users/{alice['id']}",
        [
            {"op": "replace", "path": "displayName", "value": "Alice L."},
            {"op": "replace", "path": 'emails[type eq "work"].value', "value": "al@example.com"},
            {"op": "add", "path": f"{ENTERPRISE}:costCenter", "value": "CC-7"},
            {"op": "remove", "path": "title"},
            {"op": "replace", "value": {"active": False, "name.familyName": "L."}},
        ],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["displayName"] == "Alice L."
    assert body["emails"][0]["value"] == "al@example.com"
    assert body[ENTERPRISE]["costCenter"] == "CC-7"
    assert "title" not in body
    assert body["active"] is False
    assert body["name"] == {"givenName": "Alice", "familyName": "L."}
    assert body["meta"]["version"] == 'W/"2"'
    # Indexed columns follow a PATCH too.
    found = await list_users(tenant, q('emails.value eq "al@example.com" and active eq false'))
    assert user_names(found) == ["Alice@Example.com"]


async def test_patch_is_all_or_nothing(tenant: TenantHandle, people: dict[str, Any]) -> None:
    alice = people["alice"]
    response = await patch(
        tenant,
        f"Users/{alice['id']}",
        [
            {"op": "replace", "path": "displayName", "value": "Never stored"},
            {"op": "replace", "path": "nosuchattribute", "value": "x"},
        ],
    )
    assert_scim_error(response, 400, "invalidPath")
    current = await tenant.client.get(f"{tenant.scim}/Users/{alice['id']}", headers=tenant.auth())
    assert current.json()["displayName"] == "Alice Liddell"
    assert current.json()["meta"]["version"] == 'W/"1"'


@pytest.mark.parametrize(
    ("body", "status", "scim_type"),
    [
        ({"Operations": [{"op": "add", "path": "title", "value": "x"}]}, 400, "invalidSyntax"),
        ({"schemas": [PATCH_OP], "Operations": []}, 400, "invalidSyntax"),
        (
            {"schemas": [PATCH_OP], "Operations": [{"op": "move", "path": "title"}]},
            400,
            "invalidSyntax",
        ),
        ({"schemas": [PATCH_OP], "Operations": [{"op": "remove"}]}, 400, "noTarget"),
        (
            {"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "id", "value": "x"}]},
            400,
            "mutability",
        ),
        (
            {"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "userName"}]},
            400,
            "invalidValue",
        ),
        (
            {
                "schemas": [PATCH_OP],
                "Operations": [{"op": "add", "path": "emails[type eq", "value": "x"}],
            },
            400,
            "invalidPath",
        ),
    ],
)
async def test_patch_errors(
    tenant: TenantHandle, body: dict[str, Any], status: int, scim_type: str
) -> None:
    user = await tenant.create_user("patchme@example.com")
    response = await tenant.client.patch(
        f"{tenant.scim}/Users/{user['id']}", json=body, headers=tenant.auth()
    )
    assert_scim_error(response, status, scim_type)


async def test_patch_group_members(tenant: TenantHandle, people: dict[str, Any]) -> None:
    created = await tenant.client.post(
        f"{tenant.scim}/Groups", json={"displayName": "Team"}, headers=tenant.auth()
    )
    group_id = created.json()["id"]
    ids = [people[name]["id"] for name in ("alice", "bob", "carol")]

    async def state() -> dict[str, Any]:
        response = await tenant.client.get(
            f"{tenant.scim}/Groups/{group_id}", headers=tenant.auth()
        )
        body: dict[str, Any] = response.json()
        return body

    added = await patch(
        tenant,
        f"Groups/{group_id}",
        [{"op": "Add", "path": "members", "value": [{"value": i} for i in ids]}],
    )
    # A group PATCH answers 204 with the new ETag, and never renders its members.
    assert added.status_code == 204, added.text
    assert added.headers["etag"] == 'W/"2"'
    assert {m["value"] for m in (await state())["members"]} == set(ids)

    removed = await patch(
        tenant, f"Groups/{group_id}", [{"op": "remove", "path": f'members[value eq "{ids[0]}"]'}]
    )
    assert removed.status_code == 204
    assert {m["value"] for m in (await state())["members"]} == set(ids[1:])
    # Entra's legacy form: remove on `members` with a value list removes exactly those.
    await patch(
        tenant,
        f"Groups/{group_id}",
        [{"op": "Remove", "path": "members", "value": [{"value": ids[1]}]}],
    )
    assert [m["value"] for m in (await state())["members"]] == [ids[2]]
    # Asking for attributes gets the 200 with the (projected) resource instead.
    renamed = await tenant.client.patch(
        f"{tenant.scim}/Groups/{group_id}?attributes=displayName,members",
        json={
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "value": {"id": group_id, "displayName": "Renamed"}}],
        },
        headers=tenant.auth(),
    )
    assert renamed.status_code == 200
    assert renamed.json()["displayName"] == "Renamed"
    assert [m["value"] for m in renamed.json()["members"]] == [ids[2]]
    unknown = await patch(
        tenant,
        f"Groups/{group_id}",
        [{"op": "add", "path": "members", "value": [{"value": ids[0]}, {"value": group_id}]}],
    )
    assert_scim_error(unknown, 400, "invalidValue")
    assert [m["value"] for m in (await state())["members"]] == [ids[2]]
    # One member that does not exist fails the whole step: the others are not added.
    version = (await state())["meta"]["version"]
    missing = await patch(
        tenant,
        f"Groups/{group_id}",
        [{"op": "add", "path": "members", "value": [{"value": ids[0]}, {"value": str(uuid4())}]}],
    )
    assert_scim_error(missing, 400, "invalidValue")
    assert [m["value"] for m in (await state())["members"]] == [ids[2]]
    assert (await state())["meta"]["version"] == version
    cleared = await patch(tenant, f"Groups/{group_id}", [{"op": "remove", "path": "members"}])
    assert cleared.status_code == 204
    assert (await state())["members"] == []


async def test_a_single_member_step_answers_a_missing_group_and_a_change_of_nothing(
    tenant: TenantHandle, people: dict[str, Any]
) -> None:
    """The common member PATCH is one statement that reads the group as it changes it:
    a group that does not exist is a 404 (its member found or not), and adding a
    member already in or removing one not in changes nothing: the version stays,
    no event is stored."""
    alice, bob = people["alice"]["id"], people["bob"]["id"]
    for value in (alice, str(uuid4())):
        missing = await patch(
            tenant,
            f"Groups/{uuid4()}",
            [{"op": "add", "path": "members", "value": [{"value": value}]}],
        )
        assert_scim_error(missing, 404)
    created = await tenant.client.post(
        f"{tenant.scim}/Groups", json={"displayName": "Pair"}, headers=tenant.auth()
    )
    group_id = created.json()["id"]
    added = {"op": "add", "path": "members", "value": [{"value": alice}]}
    assert (await patch(tenant, f"Groups/{group_id}", [added])).headers["etag"] == 'W/"2"'
    before = await all_events(tenant.client, tenant.slug)
    for nothing in (added, {"op": "remove", "path": "members", "value": [{"value": bob}]}):
        response = await patch(tenant, f"Groups/{group_id}", [nothing])
        assert response.status_code == 204, response.text
        assert response.headers["etag"] == 'W/"2"'
    assert await all_events(tenant.client, tenant.slug) == before
    read = await tenant.client.get(f"{tenant.scim}/Groups/{group_id}", headers=tenant.auth())
    assert [member["value"] for member in read.json()["members"]] == [alice]


async def test_put_group_replaces_members(tenant: TenantHandle, people: dict[str, Any]) -> None:
    created = await tenant.client.post(
        f"{tenant.scim}/Groups",
        json={"displayName": "Old", "members": [{"value": people["alice"]["id"]}]},
        headers=tenant.auth(),
    )
    replaced = await tenant.client.put(
        f"{tenant.scim}/Groups/{created.json()['id']}",
        json={"displayName": "New", "members": [{"value": people["bob"]["id"]}]},
        headers=tenant.auth(),
    )
    assert replaced.status_code == 200
    assert replaced.json()["displayName"] == "New"
    assert [m["value"] for m in replaced.json()["members"]] == [people["bob"]["id"]]


async def test_discovery(tenant: TenantHandle) -> None:
    config = (
        await tenant.client.get(f"{tenant.scim}/ServiceProviderConfig", headers=tenant.auth())
    ).json()
    assert config["patch"]["supported"] is True
    assert config["filter"]["supported"] is True
    assert config["etag"]["supported"] is True
    types = (await tenant.client.get(f"{tenant.scim}/ResourceTypes", headers=tenant.auth())).json()
    assert {t["id"] for t in types["Resources"]} == {"User", "Group"}
    user_type = await tenant.client.get(f"{tenant.scim}/ResourceTypes/User", headers=tenant.auth())
    assert user_type.json()["schemaExtensions"] == [{"schema": ENTERPRISE, "required": False}]
    schemas = (await tenant.client.get(f"{tenant.scim}/Schemas", headers=tenant.auth())).json()
    assert schemas["totalResults"] == 3
    user_schema = await tenant.client.get(
        f"{tenant.scim}/Schemas/urn:ietf:params:scim:schemas:core:2.0:User", headers=tenant.auth()
    )
    user_name = next(a for a in user_schema.json()["attributes"] if a["name"] == "userName")
    assert (user_name["required"], user_name["uniqueness"]) == (True, "server")
    assert user_schema.json()["meta"]["location"].endswith(
        f"{tenant.scim}/Schemas/urn:ietf:params:scim:schemas:core:2.0:User"
    )
    missing = await tenant.client.get(f"{tenant.scim}/Schemas/urn:nope", headers=tenant.auth())
    assert_scim_error(missing, 404)


async def test_user_reports_its_direct_and_indirect_groups(
    tenant: TenantHandle, people: dict[str, Any]
) -> None:
    alice = people["alice"]["id"]
    inner = await tenant.client.post(
        f"{tenant.scim}/Groups",
        json={"displayName": "Inner", "members": [{"value": alice}]},
        headers=tenant.auth(),
    )
    outer = await tenant.client.post(
        f"{tenant.scim}/Groups",
        json={"displayName": "Outer", "members": [{"value": inner.json()["id"]}]},
        headers=tenant.auth(),
    )
    user = (await tenant.client.get(f"{tenant.scim}/Users/{alice}", headers=tenant.auth())).json()
    assert [(g["display"], g["type"]) for g in user["groups"]] == [
        ("Inner", "direct"),
        ("Outer", "indirect"),
    ]
    assert user["groups"][1]["value"] == outer.json()["id"]
    bob = (
        await tenant.client.get(f"{tenant.scim}/Users/{people['bob']['id']}", headers=tenant.auth())
    ).json()
    assert "groups" not in bob
    # groups is readOnly: sending it changes nothing.
    ignored = await tenant.client.put(
        f"{tenant.scim}/Users/{people['bob']['id']}",
        json={"userName": "bob@example.com", "groups": [{"value": inner.json()["id"]}]},
        headers=tenant.auth(),
    )
    assert "groups" not in ignored.json()


async def test_a_sorted_page_carries_each_users_own_groups(
    tenant: TenantHandle, people: dict[str, Any]
) -> None:
    """Groups ride on the page's own statement: the page keeps its order and each row its groups."""
    ids = {name: person["id"] for name, person in people.items()}
    for display, members in (("Zeta", ["alice", "carol"]), ("Alpha", ["carol"])):
        created = await tenant.client.post(
            f"{tenant.scim}/Groups",
            json={"displayName": display, "members": [{"value": ids[m]} for m in members]},
            headers=tenant.auth(),
        )
        assert created.status_code == 201
    page = await list_users(tenant, "sortBy=userName&sortOrder=descending&startIndex=1&count=2")
    assert page["totalResults"] == 3
    assert [
        (u["userName"], [g["display"] for g in u.get("groups", [])]) for u in page["Resources"]
    ] == [
        ("carol@other.example", ["Alpha", "Zeta"]),
        ("bob@example.com", []),
    ]
    rest = await list_users(tenant, "sortBy=userName&sortOrder=descending&startIndex=3&count=2")
    assert [(u["userName"], len(u["groups"])) for u in rest["Resources"]] == [
        ("Alice@Example.com", 1)
    ]
    without = await list_users(tenant, "excludedAttributes=groups")
    assert all("groups" not in user for user in without["Resources"])


async def test_a_users_put_and_patch_answer_with_its_groups(
    tenant: TenantHandle, people: dict[str, Any]
) -> None:
    """The groups in a write's response are read with the user, not by another query; the
    rest is the user as its event shows it, which is what a read returns."""
    alice = people["alice"]["id"]
    team = await tenant.client.post(
        f"{tenant.scim}/Groups",
        json={"displayName": "Team", "members": [{"value": alice}]},
        headers=tenant.auth(),
    )
    response = await patch(
        tenant, f"Users/{alice}", [{"op": "replace", "path": "title", "value": "Lead"}]
    )
    patched = response.json()
    assert patched["title"] == "Lead"
    assert [(g["value"], g["type"]) for g in patched["groups"]] == [(team.json()["id"], "direct")]
    read = await tenant.client.get(f"{tenant.scim}/Users/{alice}", headers=tenant.auth())
    assert patched == read.json()
    put = await tenant.client.put(
        f"{tenant.scim}/Users/{alice}?excludedAttributes=groups",
        json={"userName": "Alice@Example.com", "title": "Lead"},
        headers=tenant.auth(),
    )
    assert put.status_code == 200
    assert "groups" not in put.json()
    again = await tenant.client.put(
        f"{tenant.scim}/Users/{alice}",
        json={"userName": "Alice@Example.com", "title": "Staff"},
        headers=tenant.auth(),
    )
    assert [g["display"] for g in again.json()["groups"]] == ["Team"]
    read = await tenant.client.get(f"{tenant.scim}/Users/{alice}", headers=tenant.auth())
    assert again.json() == read.json()
    assert again.headers["etag"] == read.headers["etag"]


async def test_search_at_the_root_spans_users_and_groups(
    tenant: TenantHandle, people: dict[str, Any]
) -> None:
    await tenant.client.post(
        f"{tenant.scim}/Groups", json={"displayName": "Alpha team"}, headers=tenant.auth()
    )
    everything = await tenant.client.post(
        f"{tenant.scim}/.search",
        json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]},
        headers=tenant.auth(),
    )
    assert everything.json()["totalResults"] == 4
    kinds = [r["meta"]["resourceType"] for r in everything.json()["Resources"]]
    assert kinds == ["User", "User", "User", "Group"]
    # userName exists only on users: groups simply do not match.
    users_only = await tenant.client.post(
        f"{tenant.scim}/.search",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'userName sw "bob"',
        },
        headers=tenant.auth(),
    )
    assert [r["userName"] for r in users_only.json()["Resources"]] == ["bob@example.com"]
    paged = await tenant.client.post(
        f"{tenant.scim}/.search",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "startIndex": 3,
            "count": 2,
        },
        headers=tenant.auth(),
    )
    assert paged.json()["totalResults"] == 4
    assert [r["meta"]["resourceType"] for r in paged.json()["Resources"]] == ["User", "Group"]
    unknown = await tenant.client.post(
        f"{tenant.scim}/.search",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'nothing eq "x"',
        },
        headers=tenant.auth(),
    )
    assert_scim_error(unknown, 400, "invalidFilter")


async def test_password_is_sensitive_in_uris_and_never_filterable(tenant: TenantHandle) -> None:
    in_uri = await tenant.client.get(
        f"{tenant.scim}/Users?" + q('password eq "hunter2"'), headers=tenant.auth()
    )
    assert_scim_error(in_uri, 403, "sensitive")
    in_body = await tenant.client.post(
        f"{tenant.scim}/Users/.search",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'password eq "hunter2"',
        },
        headers=tenant.auth(),
    )
    assert_scim_error(in_body, 400, "invalidFilter")


async def test_other_scim_versions_are_invalid_vers(tenant: TenantHandle) -> None:
    response = await tenant.client.get(f"/scim/v1/{tenant.slug}/Users", headers=tenant.auth())
    assert_scim_error(response, 400, "invalidVers")


async def test_patch_changing_attributes_and_members_bumps_the_version_once(
    tenant: TenantHandle, people: dict[str, Any]
) -> None:
    created = await tenant.client.post(
        f"{tenant.scim}/Groups", json={"displayName": "Before"}, headers=tenant.auth()
    )
    group_id = created.json()["id"]
    response = await patch(
        tenant,
        f"Groups/{group_id}",
        [
            {"op": "replace", "path": "displayName", "value": "After"},
            {"op": "add", "path": "members", "value": [{"value": people["alice"]["id"]}]},
        ],
    )
    assert response.status_code == 204
    assert response.headers["etag"] == 'W/"2"'


async def test_member_patches_bump_the_version_once_and_only_when_members_change(
    tenant: TenantHandle, people: dict[str, Any]
) -> None:
    alice, bob = people["alice"]["id"], people["bob"]["id"]
    created = await tenant.client.post(
        f"{tenant.scim}/Groups", json={"displayName": "Crew"}, headers=tenant.auth()
    )
    group_id = created.json()["id"]

    async def etag_after(*operations: dict[str, Any]) -> str:
        response = await patch(tenant, f"Groups/{group_id}", list(operations))
        assert response.status_code == 204, response.text
        etag: str = response.headers["etag"]
        return etag

    assert (
        await etag_after(
            {"op": "add", "path": "members", "value": [{"value": alice}]},
            {"op": "add", "path": "members", "value": [{"value": bob}]},
            {"op": "remove", "path": f'members[value eq "{alice}"]'},
        )
        == 'W/"2"'
    )
    unchanged = [
        {"op": "add", "path": "members", "value": [{"value": bob}]},
        {"op": "remove", "path": "members", "value": [{"value": alice}]},
    ]
    assert await etag_after(*unchanged) == 'W/"2"', "nothing changed, nothing to bump"
    replaced = {"op": "replace", "path": "members", "value": [{"value": alice}]}
    assert await etag_after(replaced) == 'W/"3"'
    group = await tenant.client.get(f"{tenant.scim}/Groups/{group_id}", headers=tenant.auth())
    assert group.headers["etag"] == 'W/"3"'
    assert [member["value"] for member in group.json()["members"]] == [alice]
    assert group.json()["meta"]["lastModified"] > created.json()["meta"]["lastModified"]
