"""`attributes` / `excludedAttributes` (RFC 7644 section 3.4.2.5)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from service.scim.attributes import (
    GROUP_RESOURCE,
    USER_RESOURCE,
    Attribute,
    ResourceType,
    Schema,
)
from service.scim.projection import Projection, parse_projection, project

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USER_ID = "2819c223-7f76-453a-919d-413861904646"
META = {
    "resourceType": "User",
    "created": "2024-01-02T03:04:05Z",
    "lastModified": "2024-06-07T08:09:10Z",
    "location": f"https://scim.example.com/Users/{USER_ID}",
    "version": 'W/"3"',
}


def _user() -> dict[str, Any]:
    return {
        "schemas": [CORE_USER, ENTERPRISE],
        "id": USER_ID,
        "userName": "bjensen@example.com",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "displayName": "Babs Jensen",
        "active": True,
        # Never stored in practice; here to prove it can never leak.
        "password": "t1meMa$heen",
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": True},
            {"value": "babs@jensen.org", "type": "home"},
        ],
        "externalId": "701984",
        ENTERPRISE: {
            "employeeNumber": "701984",
            "department": "Tour Operations",
            "manager": {"value": "26118915", "displayName": "John Smith"},
        },
        "meta": META,
    }


def _group() -> dict[str, Any]:
    return {
        "schemas": [CORE_GROUP],
        "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
        "displayName": "Tour Guides",
        "members": [
            {
                "value": USER_ID,
                "$ref": f"https://scim.example.com/Users/{USER_ID}",
                "type": "User",
                "display": "Babs Jensen",
            }
        ],
        "meta": {**META, "resourceType": "Group"},
    }


def _user_projection(attributes: str | None, excluded: str | None = None) -> dict[str, Any]:
    projection = parse_projection(USER_RESOURCE, attributes, excluded)
    return project(USER_RESOURCE, _user(), projection)


# --- No parameters -----------------------------------------------------------------------------


def test_default_returns_everything_but_never_returned_attributes() -> None:
    expected = _user()
    del expected["password"]
    assert _user_projection(None, None) == expected


def test_default_keeps_an_empty_member_list() -> None:
    group = {**_group(), "members": []}
    assert project(GROUP_RESOURCE, group, parse_projection(GROUP_RESOURCE, None, None)) == group


def test_project_returns_a_new_dict_and_leaves_the_resource_alone() -> None:
    user = _user()
    before = copy.deepcopy(user)
    result = project(USER_RESOURCE, user, parse_projection(USER_RESOURCE, "name.givenName", None))
    assert user == before
    assert result is not user


def test_default_copies_every_complex_value_and_drops_empty_ones() -> None:
    """Every sub-attribute of `emails` and `groups` is in a default response, so each
    value is copied whole, keys this server does not describe included."""
    user = {
        **_user(),
        "emails": [{"value": "a@example.com", "x-note": "kept"}, {}],
        "groups": [{"value": "g1", "$ref": "../Groups/g1", "display": "G", "type": "direct"}],
    }
    result = project(USER_RESOURCE, user, parse_projection(USER_RESOURCE, None, None))
    assert result["emails"] == [{"value": "a@example.com", "x-note": "kept"}]
    assert result["groups"] == user["groups"]
    assert result["groups"][0] is not user["groups"][0]
    result["emails"][0]["value"] = "changed@example.com"
    assert user["emails"][0]["value"] == "a@example.com"


def test_key_order_is_kept() -> None:
    keys = list(_user_projection("meta,userName,id,schemas"))
    assert keys == ["schemas", "id", "userName", "meta"]


# --- attributes ------------------------------------------------------------------------------


def test_attributes_user_name_returns_only_it_and_the_always_kept() -> None:
    assert _user_projection("userName") == {
        # The extension was not asked for, so its URN goes with it.
        "schemas": [CORE_USER],
        "id": USER_ID,
        "userName": "bjensen@example.com",
        "meta": META,
    }


def test_attributes_are_case_insensitive_and_whitespace_tolerant() -> None:
    assert set(_user_projection(" USERNAME ,displayname,, ")) == {
        "schemas",
        "id",
        "userName",
        "displayName",
        "meta",
    }


def test_attributes_may_be_urn_qualified() -> None:
    result = _user_projection(f"{CORE_USER}:userName, {CORE_USER.lower()}:name.givenName")
    assert result["userName"] == "bjensen@example.com"
    assert result["name"] == {"givenName": "Barbara"}


def test_sub_attribute_of_a_complex_attribute() -> None:
    result = _user_projection("name.givenName")
    assert result["name"] == {"givenName": "Barbara"}
    assert "userName" not in result


def test_whole_attribute_wins_over_one_of_its_sub_attributes() -> None:
    result = _user_projection("name.givenName,name")
    assert result["name"] == {"givenName": "Barbara", "familyName": "Jensen"}


def test_sub_attribute_of_a_multi_valued_attribute() -> None:
    result = _user_projection("emails.value")
    assert result["emails"] == [{"value": "bjensen@example.com"}, {"value": "babs@jensen.org"}]


def test_values_emptied_by_the_selection_are_dropped() -> None:
    # Only the first email has `primary`; the second is left with nothing.
    assert _user_projection("emails.primary")["emails"] == [{"primary": True}]
    # No email has `display`, and the name has no middle name.
    result = _user_projection("emails.display,name.middleName")
    assert "emails" not in result
    assert "name" not in result


def test_one_enterprise_attribute() -> None:
    result = _user_projection(f"{ENTERPRISE}:department")
    assert result[ENTERPRISE] == {"department": "Tour Operations"}
    assert result["schemas"] == [CORE_USER, ENTERPRISE]
    assert "userName" not in result


def test_enterprise_sub_attribute() -> None:
    result = _user_projection(f"{ENTERPRISE}:manager.displayName")
    assert result[ENTERPRISE] == {"manager": {"displayName": "John Smith"}}


def test_whole_enterprise_extension_by_urn() -> None:
    result = _user_projection(f"userName,{ENTERPRISE.upper()}")
    assert result[ENTERPRISE] == _user()[ENTERPRISE]
    assert result["schemas"] == [CORE_USER, ENTERPRISE]


def test_extension_attributes_need_their_urn() -> None:
    assert ENTERPRISE not in _user_projection("department")


def test_password_is_never_returned_even_when_asked_for() -> None:
    assert "password" not in _user_projection("password,userName")
    assert "password" not in _user_projection(CORE_USER)


def test_unknown_names_are_ignored() -> None:
    assert set(_user_projection("bogus,userName,name.bogus,urn:x:y:z")) == {
        "schemas",
        "id",
        "userName",
        "meta",
    }
    assert set(_user_projection("bogus")) == {"schemas", "id", "meta"}


def test_attributes_win_over_excluded_attributes() -> None:
    assert set(_user_projection("userName", "userName")) == {"schemas", "id", "userName", "meta"}


def test_blank_attributes_count_as_absent() -> None:
    result = _user_projection(" ", "displayName")
    assert "displayName" not in result
    assert "userName" in result


def test_group_members_value() -> None:
    projection = parse_projection(GROUP_RESOURCE, "members.value", None)
    assert project(GROUP_RESOURCE, _group(), projection)["members"] == [{"value": USER_ID}]


# --- excludedAttributes ------------------------------------------------------------------------


def test_excluded_members_on_a_group() -> None:
    projection = parse_projection(GROUP_RESOURCE, None, "members")
    expected = _group()
    del expected["members"]
    assert project(GROUP_RESOURCE, _group(), projection) == expected


def test_excluded_sub_attribute() -> None:
    result = _user_projection(None, "name.givenName,emails.type")
    assert result["name"] == {"familyName": "Jensen"}
    assert result["emails"] == [
        {"value": "bjensen@example.com", "primary": True},
        {"value": "babs@jensen.org"},
    ]


def test_excluded_enterprise_attribute() -> None:
    result = _user_projection(None, f"{ENTERPRISE}:manager.displayName,{ENTERPRISE}:department")
    assert result[ENTERPRISE] == {"employeeNumber": "701984", "manager": {"value": "26118915"}}


def test_excluded_enterprise_extension_leaves_schemas_too() -> None:
    result = _user_projection(None, ENTERPRISE)
    assert ENTERPRISE not in result
    assert result["schemas"] == [CORE_USER]
    assert result["userName"] == "bjensen@example.com"


def test_always_kept_attributes_cannot_be_excluded() -> None:
    result = _user_projection(None, "id,schemas,meta,meta.version,userName")
    assert result["id"] == USER_ID
    assert result["schemas"] == [CORE_USER, ENTERPRISE]
    assert result["meta"] == META
    assert "userName" not in result


def test_excluded_unknown_names_are_ignored() -> None:
    expected = _user()
    del expected["password"]
    assert _user_projection(None, "bogus, name.bogus") == expected


# --- wants -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "excluded", "wanted"),
    [
        (None, None, True),
        (None, "members", False),
        (None, "MEMBERS", False),
        (None, "members.display", True),
        (None, "displayName", True),
        ("displayName", None, False),
        ("members", None, True),
        ("members.value", None, True),
        (CORE_GROUP, None, True),
        (None, CORE_GROUP, False),
    ],
)
def test_wants_members(attributes: str | None, excluded: str | None, wanted: bool) -> None:
    assert parse_projection(GROUP_RESOURCE, attributes, excluded).wants("members") is wanted


def test_wants_always_kept_and_never_returned() -> None:
    projection = parse_projection(USER_RESOURCE, "displayName", None)
    assert projection.wants("id")
    assert projection.wants("meta")
    assert projection.wants("displayname")
    assert not projection.wants("groups")
    assert not parse_projection(USER_RESOURCE, None, None).wants("password")
    assert not parse_projection(USER_RESOURCE, "password", None).wants("password")


def test_wants_is_about_core_attributes() -> None:
    projection = parse_projection(USER_RESOURCE, f"{ENTERPRISE}:department", None)
    assert not projection.wants("department")
    assert not projection.wants("userName")


def test_parse_projection_selections() -> None:
    assert parse_projection(USER_RESOURCE, None, None) == Projection(USER_RESOURCE)
    projection = parse_projection(USER_RESOURCE, f"NAME.givenName,{ENTERPRISE.lower()}", None)
    assert projection.attributes == frozenset(
        {(CORE_USER, "name", "givenName"), (ENTERPRISE, None, None)}
    )
    assert projection.excluded == frozenset()


# --- returned: request, on a schema made up for it (RFC 7643 has none) ---------------------------

_THING = Schema(
    id="urn:example:params:scim:schemas:core:2.0:Thing",
    name="Thing",
    description="Thing",
    attributes=(
        Attribute(name="id", type="string", returned="always", description="id"),
        Attribute(name="plain", type="string", description="plain"),
        Attribute(name="costly", type="string", returned="request", description="costly"),
        Attribute(
            name="parts",
            type="complex",
            multi_valued=True,
            description="parts",
            sub_attributes=(
                Attribute(name="key", type="string", returned="always", description="key"),
                Attribute(name="label", type="string", description="label"),
                Attribute(name="detail", type="string", returned="request", description="d"),
                Attribute(name="secret", type="string", returned="never", description="s"),
            ),
        ),
    ),
)
_THINGS = ResourceType(
    id="Thing",
    name="Thing",
    endpoint="/Things",
    description="Thing",
    schema=_THING,
    extensions=(),
)
_A_THING = {
    "id": "1",
    "plain": "p",
    "costly": "c",
    "parts": [{"key": "k", "label": "l", "detail": "d", "secret": "s"}],
}


def _thing(attributes: str | None, excluded: str | None = None) -> dict[str, Any]:
    return project(_THINGS, _A_THING, parse_projection(_THINGS, attributes, excluded))


def test_request_attributes_only_when_named() -> None:
    assert _thing(None) == {"id": "1", "plain": "p", "parts": [{"key": "k", "label": "l"}]}
    assert _thing(None, "plain") == {"id": "1", "parts": [{"key": "k", "label": "l"}]}
    assert _thing("costly") == {"id": "1", "costly": "c"}
    # Naming the whole schema is not naming the attribute.
    assert "costly" not in _thing(_THING.id)


def test_sub_attribute_returned_characteristics() -> None:
    assert _thing("parts") == {"id": "1", "parts": [{"key": "k", "label": "l"}]}
    assert _thing("parts.detail") == {"id": "1", "parts": [{"key": "k", "detail": "d"}]}
    assert _thing("parts.secret") == {"id": "1", "parts": [{"key": "k"}]}
    without = _thing(None, "parts.key,parts.label")
    assert without == {"id": "1", "plain": "p", "parts": [{"key": "k"}]}


def test_wants_request_attribute() -> None:
    assert not parse_projection(_THINGS, None, None).wants("costly")
    assert parse_projection(_THINGS, "costly", None).wants("costly")
