"""Users and Groups: parsing client payloads and rendering stored rows as SCIM."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from service.scim.errors import ScimError
from service.scim.resources import (
    GroupDraft,
    Member,
    UserDraft,
    etag,
    parse_group,
    parse_user,
    render_group,
    render_user,
)
from service.scim.schemas import ENTERPRISE_USER, GROUP_SCHEMA, USER_SCHEMA

BASE_URL = "https://scim.example.com/scim/v2/acme"
CREATED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
MODIFIED = datetime(2024, 6, 7, 8, 9, 10, 123456, tzinfo=UTC)


def _scim_error(excinfo: pytest.ExceptionInfo[ScimError]) -> tuple[int, str | None]:
    return excinfo.value.status, excinfo.value.scim_type


# --- parse_user ------------------------------------------------------------------------------


def test_parse_minimal_user() -> None:
    draft = parse_user({"userName": "alice@example.com"})
    assert draft == UserDraft(
        user_name="alice@example.com",
        external_id=None,
        display_name=None,
        active=True,
        attributes={"userName": "alice@example.com", "active": True},
    )


def test_parse_full_user() -> None:
    payload = {
        "schemas": [USER_SCHEMA, ENTERPRISE_USER],
        "userName": "bjensen",
        "externalId": "ext-1",
        "displayName": "Babs Jensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "active": False,
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": True}],
        ENTERPRISE_USER: {"employeeNumber": "701984", "department": "Tour Operations"},
    }
    draft = parse_user(payload)
    assert draft.user_name == "bjensen"
    assert draft.external_id == "ext-1"
    assert draft.display_name == "Babs Jensen"
    assert draft.active is False
    assert draft.attributes == {
        "userName": "bjensen",
        "externalId": "ext-1",
        "displayName": "Babs Jensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "active": False,
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": True}],
        ENTERPRISE_USER: {"employeeNumber": "701984", "department": "Tour Operations"},
    }


@pytest.mark.parametrize(
    ("sent", "canonical"),
    [
        ("USERNAME", "userName"),
        ("username", "userName"),
        ("UserName", "userName"),
        ("DISPLAYNAME", "displayName"),
        ("externalid", "externalId"),
        ("PHONENUMBERS", "phoneNumbers"),
        ("x509certificates", "x509Certificates"),
        ("Active", "active"),
        ("preferredlanguage", "preferredLanguage"),
    ],
)
def test_attribute_names_are_case_insensitive(sent: str, canonical: str) -> None:
    values: dict[str, Any] = {
        "userName": "carol",
        "active": False,
        "phoneNumbers": [{"value": "+1 555 0100"}],
        "x509Certificates": [{"value": "MIIC..."}],
    }
    value = values.get(canonical, "some value")
    payload: dict[str, Any] = {sent: value}
    if canonical != "userName":
        payload["userName"] = "carol"
    draft = parse_user(payload)
    assert draft.attributes[canonical] == value
    assert sent not in draft.attributes or sent == canonical


def test_canonical_names_feed_the_draft_fields() -> None:
    draft = parse_user(
        {"USERNAME": "dave", "EXTERNALID": "e-9", "displayname": "Dave", "ACTIVE": False}
    )
    assert draft.user_name == "dave"
    assert draft.external_id == "e-9"
    assert draft.display_name == "Dave"
    assert draft.active is False
    assert set(draft.attributes) == {"userName", "externalId", "displayName", "active"}


@pytest.mark.parametrize("key", [ENTERPRISE_USER, ENTERPRISE_USER.upper(), ENTERPRISE_USER.lower()])
def test_enterprise_extension_is_kept_under_its_canonical_urn(key: str) -> None:
    extension = {"manager": {"value": "boss"}, "costCenter": "4130"}
    draft = parse_user({"userName": "erin", key: extension})
    assert draft.attributes[ENTERPRISE_USER] == extension
    assert [k for k in draft.attributes if k.lower() == ENTERPRISE_USER.lower()] == [
        ENTERPRISE_USER
    ]


@pytest.mark.parametrize("extension", ["a string", ["a", "list"], 7, None])
def test_enterprise_extension_must_be_an_object(extension: object) -> None:
    with pytest.raises(ScimError) as excinfo:
        parse_user({"userName": "erin", ENTERPRISE_USER: extension})
    assert _scim_error(excinfo) == (400, "invalidSyntax")


@pytest.mark.parametrize(
    "ignored",
    [
        "id",
        "ID",
        "meta",
        "groups",
        "Groups",
        "password",
        "schemas",
        "favouriteColour",
        "urn:example:extension:1.0:User",
        "urn:ietf:params:scim:schemas:core:2.0:User",
    ],
)
def test_server_owned_and_unknown_attributes_are_dropped(ignored: str) -> None:
    draft = parse_user({"userName": "frank", ignored: {"value": "x"}})
    assert draft.attributes == {"userName": "frank", "active": True}


def test_password_is_never_kept() -> None:
    draft = parse_user({"userName": "gina", "password": "hunter2", "PASSWORD": "hunter3"})
    assert "hunter2" not in repr(draft)
    assert "hunter3" not in repr(draft)


def test_active_defaults_to_true_and_is_stored() -> None:
    draft = parse_user({"userName": "hank"})
    assert draft.active is True
    assert draft.attributes["active"] is True


@pytest.mark.parametrize("active", [True, False])
def test_active_boolean_is_kept(active: bool) -> None:
    draft = parse_user({"userName": "ivy", "active": active})
    assert draft.active is active
    assert draft.attributes["active"] is active


@pytest.mark.parametrize("active", ["true", "false", 1, 0, None, [], {}])
def test_active_must_be_a_boolean(active: object) -> None:
    with pytest.raises(ScimError) as excinfo:
        parse_user({"userName": "ivy", "active": active})
    assert _scim_error(excinfo) == (400, "invalidValue")
    assert "active" in excinfo.value.detail


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"displayName": "No Username"},
        {"userName": None},
        {"userName": ""},
        {"userName": "   "},
        {"userName": "\t\n"},
        {"USERNAME": " "},
    ],
)
def test_user_name_is_required(payload: dict[str, Any]) -> None:
    with pytest.raises(ScimError) as excinfo:
        parse_user(payload)
    assert _scim_error(excinfo) == (400, "invalidValue")
    assert "userName" in excinfo.value.detail


@pytest.mark.parametrize("user_name", [42, ["alice"], {"value": "alice"}, True])
def test_user_name_must_be_a_string(user_name: object) -> None:
    with pytest.raises(ScimError) as excinfo:
        parse_user({"userName": user_name})
    assert _scim_error(excinfo) == (400, "invalidValue")


@pytest.mark.parametrize(("field", "value"), [("externalId", 5), ("displayName", ["x"])])
def test_optional_strings_must_be_strings(field: str, value: object) -> None:
    with pytest.raises(ScimError) as excinfo:
        parse_user({"userName": "jack", field: value})
    assert _scim_error(excinfo) == (400, "invalidValue")


@pytest.mark.parametrize("payload", [None, [], [{"userName": "x"}], "userName", 1, True])
def test_user_body_must_be_an_object(payload: object) -> None:
    with pytest.raises(ScimError) as excinfo:
        parse_user(payload)
    assert _scim_error(excinfo) == (400, "invalidSyntax")


def test_parse_user_does_not_modify_the_payload() -> None:
    payload: dict[str, Any] = {"USERNAME": "kim", "id": "x"}
    parse_user(payload)
    assert payload == {"USERNAME": "kim", "id": "x"}


# --- parse_group -----------------------------------------------------------------------------


def test_parse_minimal_group() -> None:
    draft = parse_group({"displayName": "Engineering"})
    assert draft == GroupDraft(
        display_name="Engineering",
        external_id=None,
        attributes={"displayName": "Engineering"},
        member_ids=[],
    )


def test_parse_group_with_members() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    draft = parse_group(
        {
            "schemas": [GROUP_SCHEMA],
            "DisplayName": "Sales",
            "EXTERNALID": "g-1",
            "id": "ignored",
            "meta": {"version": 'W/"9"'},
            "members": [{"value": str(a), "display": "A"}, {"value": str(b), "type": "User"}],
        }
    )
    assert draft.display_name == "Sales"
    assert draft.external_id == "g-1"
    assert draft.attributes == {"displayName": "Sales", "externalId": "g-1"}
    assert draft.member_ids == [a, b]


def test_members_key_is_case_insensitive() -> None:
    member = uuid.uuid4()
    draft = parse_group({"displayName": "Ops", "MEMBERS": [{"value": str(member)}]})
    assert draft.member_ids == [member]
    assert "MEMBERS" not in draft.attributes
    assert "members" not in draft.attributes


def test_duplicate_members_are_collapsed_in_order() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    draft = parse_group(
        {
            "displayName": "Dupes",
            "members": [
                {"value": str(a)},
                {"value": str(b)},
                {"value": str(a).upper()},
                {"value": a.hex},
                {"value": str(b)},
            ],
        }
    )
    assert draft.member_ids == [a, b]


@pytest.mark.parametrize("members", [None, []])
def test_no_members(members: object) -> None:
    assert parse_group({"displayName": "Empty", "members": members}).member_ids == []


@pytest.mark.parametrize(
    "members",
    [
        [{"value": "not-a-uuid"}],
        [{"value": ""}],
        [{"value": 12345}],
        [{"value": None}],
        [{"display": "no value"}],
        ["4f1c5c7e-2a4e-4a61-9a3b-0d3b9c2b1f00"],
        [None],
        {"value": "4f1c5c7e-2a4e-4a61-9a3b-0d3b9c2b1f00"},
        "4f1c5c7e-2a4e-4a61-9a3b-0d3b9c2b1f00",
    ],
)
def test_bad_members_are_invalid_values(members: object) -> None:
    with pytest.raises(ScimError) as excinfo:
        parse_group({"displayName": "Bad", "members": members})
    assert _scim_error(excinfo) == (400, "invalidValue")


def test_one_bad_member_among_good_ones_is_rejected() -> None:
    with pytest.raises(ScimError) as excinfo:
        parse_group(
            {
                "displayName": "Mixed",
                "members": [{"value": str(uuid.uuid4())}, {"value": "nope"}],
            }
        )
    assert _scim_error(excinfo) == (400, "invalidValue")
    assert "nope" in excinfo.value.detail


@pytest.mark.parametrize(
    "payload",
    [{}, {"displayName": ""}, {"displayName": "  "}, {"displayName": None}, {"externalId": "x"}],
)
def test_group_display_name_is_required(payload: dict[str, Any]) -> None:
    with pytest.raises(ScimError) as excinfo:
        parse_group(payload)
    assert _scim_error(excinfo) == (400, "invalidValue")
    assert "displayName" in excinfo.value.detail


@pytest.mark.parametrize("payload", [None, [], "Engineering", 3])
def test_group_body_must_be_an_object(payload: object) -> None:
    with pytest.raises(ScimError) as excinfo:
        parse_group(payload)
    assert _scim_error(excinfo) == (400, "invalidSyntax")


def test_group_drops_unknown_attributes_and_enterprise_extension() -> None:
    draft = parse_group(
        {"displayName": "G", "description": "x", ENTERPRISE_USER: {"department": "d"}}
    )
    assert draft.attributes == {"displayName": "G"}


# --- rendering -------------------------------------------------------------------------------


def test_etag() -> None:
    assert etag(1) == 'W/"1"'
    assert etag(42) == 'W/"42"'


def test_render_user() -> None:
    user_id = uuid.uuid4()
    attributes = {"userName": "alice", "active": True, "displayName": "Alice"}
    body = render_user(
        base_url=BASE_URL,
        user_id=user_id,
        attributes=attributes,
        created=CREATED,
        last_modified=MODIFIED,
        version=3,
    )
    assert body == {
        "schemas": [USER_SCHEMA],
        "id": str(user_id),
        "userName": "alice",
        "active": True,
        "displayName": "Alice",
        "meta": {
            "resourceType": "User",
            "created": "2024-01-02T03:04:05Z",
            "lastModified": "2024-06-07T08:09:10.123456Z",
            "location": f"{BASE_URL}/Users/{user_id}",
            "version": 'W/"3"',
        },
    }
    assert list(body)[:2] == ["schemas", "id"]


def test_render_user_lists_the_enterprise_schema_only_when_present() -> None:
    user_id = uuid.uuid4()
    common: dict[str, Any] = {
        "base_url": BASE_URL,
        "user_id": user_id,
        "created": CREATED,
        "last_modified": MODIFIED,
        "version": 1,
    }
    plain = render_user(attributes={"userName": "a"}, **common)
    assert plain["schemas"] == [USER_SCHEMA]
    extended = render_user(
        attributes={"userName": "a", ENTERPRISE_USER: {"department": "R&D"}}, **common
    )
    assert extended["schemas"] == [USER_SCHEMA, ENTERPRISE_USER]
    assert extended[ENTERPRISE_USER] == {"department": "R&D"}


def test_parsed_user_round_trips_through_render() -> None:
    draft = parse_user(
        {"username": "zoe", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user": {}}
    )
    body = render_user(
        base_url=BASE_URL,
        user_id=uuid.uuid4(),
        attributes=draft.attributes,
        created=CREATED,
        last_modified=CREATED,
        version=1,
    )
    assert body["userName"] == "zoe"
    assert body["active"] is True
    assert body["schemas"] == [USER_SCHEMA, ENTERPRISE_USER]


def test_timestamps_end_in_z_for_utc() -> None:
    body = render_user(
        base_url=BASE_URL,
        user_id=uuid.uuid4(),
        attributes={"userName": "a"},
        created=datetime(2030, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(0))),
        last_modified=datetime(2031, 1, 1, tzinfo=UTC),
        version=1,
    )
    assert body["meta"]["created"] == "2030-12-31T23:59:59Z"
    assert body["meta"]["lastModified"] == "2031-01-01T00:00:00Z"
    for stamp in (body["meta"]["created"], body["meta"]["lastModified"]):
        assert datetime.fromisoformat(stamp).tzinfo is not None


def test_render_group() -> None:
    group_id, user_id, nested_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    body = render_group(
        base_url=BASE_URL,
        group_id=group_id,
        attributes={"displayName": "Engineering", "externalId": "g-7"},
        members=[
            Member(id=user_id, type="User", display="Alice"),
            Member(id=nested_id, type="Group", display=None),
        ],
        created=CREATED,
        last_modified=MODIFIED,
        version=12,
    )
    assert body == {
        "schemas": [GROUP_SCHEMA],
        "id": str(group_id),
        "displayName": "Engineering",
        "externalId": "g-7",
        "members": [
            {
                "value": str(user_id),
                "$ref": f"{BASE_URL}/Users/{user_id}",
                "type": "User",
                "display": "Alice",
            },
            {
                "value": str(nested_id),
                "$ref": f"{BASE_URL}/Groups/{nested_id}",
                "type": "Group",
            },
        ],
        "meta": {
            "resourceType": "Group",
            "created": "2024-01-02T03:04:05Z",
            "lastModified": "2024-06-07T08:09:10.123456Z",
            "location": f"{BASE_URL}/Groups/{group_id}",
            "version": 'W/"12"',
        },
    }


def test_render_group_without_members_has_an_empty_list() -> None:
    body = render_group(
        base_url=BASE_URL,
        group_id=uuid.uuid4(),
        attributes={"displayName": "Empty"},
        members=[],
        created=CREATED,
        last_modified=CREATED,
        version=1,
    )
    assert body["members"] == []
    assert body["schemas"] == [GROUP_SCHEMA]
