"""POST/PUT bodies brought to the canonical resource shape, and the schema checks on it."""

from __future__ import annotations

from typing import Any

import pytest

from service.scim.attributes import (
    GROUP_RESOURCE,
    USER_RESOURCE,
    Attribute,
    ResourceType,
    Schema,
)
from service.scim.errors import ScimError
from service.scim.schemas import ENTERPRISE_USER, GROUP_SCHEMA, USER_SCHEMA
from service.scim.validation import (
    check_immutable,
    check_required,
    coerce,
    coerce_one,
    member_ids,
    members_of,
    normalise,
    password_of,
)


def _error(excinfo: pytest.ExceptionInfo[ScimError]) -> tuple[int, str | None]:
    return excinfo.value.status, excinfo.value.scim_type


# --- normalise: shape ------------------------------------------------------------------------


def test_entra_create_user_body() -> None:
    # As Microsoft Entra ID sends it (its SCIM guide, "Create User").
    payload = {
        "schemas": [USER_SCHEMA, ENTERPRISE_USER],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": "Test_User@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {
            "formatted": "givenName familyName",
            "familyName": "familyName",
            "givenName": "givenName",
        },
        "roles": [],
    }
    assert normalise(USER_RESOURCE, payload) == {
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": "Test_User@testuser.com"}],
        "name": {
            "formatted": "givenName familyName",
            "familyName": "familyName",
            "givenName": "givenName",
        },
    }


def test_okta_create_user_body() -> None:
    payload = {
        "schemas": [USER_SCHEMA],
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": True, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": True,
    }
    assert normalise(USER_RESOURCE, payload) == {
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": True, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "active": True,
    }
    assert password_of(payload) == "1mz050nq"


@pytest.mark.parametrize(
    ("key", "canonical"),
    [
        ("username", "userName"),
        ("USERNAME", "userName"),
        ("displayname", "displayName"),
        ("EXTERNALID", "externalId"),
        ("nickname", "nickName"),
        ("profileURL", "profileUrl"),
        ("X509Certificates", "x509Certificates"),
    ],
)
def test_top_level_names_are_canonicalised(key: str, canonical: str) -> None:
    value: Any = [{"value": "MIIC"}] if canonical == "x509Certificates" else "v"
    resource = normalise(USER_RESOURCE, {"userName": "u", key: value})
    assert resource[canonical] == value
    assert key == canonical or key not in resource


def test_sub_attribute_names_are_canonicalised() -> None:
    payload = {
        "NAME": {"GIVENNAME": "Barbara", "familyname": "Jensen"},
        "Emails": [{"VALUE": "b@example.com", "Type": "work", "PRIMARY": True}],
        "addresses": [{"streetaddress": "1 Main St", "POSTALCODE": "12345"}],
    }
    assert normalise(USER_RESOURCE, payload) == {
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"value": "b@example.com", "type": "work", "primary": True}],
        "addresses": [{"streetAddress": "1 Main St", "postalCode": "12345"}],
    }


@pytest.mark.parametrize("urn", [ENTERPRISE_USER, ENTERPRISE_USER.upper(), ENTERPRISE_USER.lower()])
def test_extension_urn_is_matched_case_insensitively(urn: str) -> None:
    payload = {"userName": "u", urn: {"Department": "R&D", "employeenumber": "42"}}
    assert normalise(USER_RESOURCE, payload) == {
        "userName": "u",
        ENTERPRISE_USER: {"department": "R&D", "employeeNumber": "42"},
    }


@pytest.mark.parametrize(
    "ignored",
    [
        {"schemas": [USER_SCHEMA]},
        {"id": "2819c223-7f76-453a-919d-413861904646"},
        {"meta": {"resourceType": "User", "version": 'W/"3"'}},
        {"groups": [{"value": "e9e30dba"}]},
        {"password": "t1meMa$heen"},
        {"unknownAttribute": None},
        {"name": {"nickname": "sub-attribute the schema does not have"}},
        {"emails": [{"label": "unknown sub-attribute"}]},
    ],
)
def test_server_owned_write_only_and_unknown_sub_attributes_are_dropped(
    ignored: dict[str, Any],
) -> None:
    assert normalise(USER_RESOURCE, {"userName": "u", **ignored}) == {"userName": "u"}


def test_unknown_attributes_and_extensions_are_kept_as_sent() -> None:
    custom = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"
    payload = {
        "userName": "u",
        "unknownAttribute": "x",
        custom: {"costCentre": "42", "Nested": {"a": 1}},
        ENTERPRISE_USER: {"department": "R&D", "building": "B7"},
    }
    assert normalise(USER_RESOURCE, payload) == payload


def test_read_only_sub_attribute_is_dropped() -> None:
    # manager.displayName is filled in by the service provider (RFC 7643 section 4.3).
    payload = {ENTERPRISE_USER: {"manager": {"value": "m1", "displayName": "The Boss"}}}
    assert normalise(USER_RESOURCE, payload) == {ENTERPRISE_USER: {"manager": {"value": "m1"}}}


@pytest.mark.parametrize(
    "payload",
    [
        {"displayName": None},
        {"name": None},
        {"name": {}},
        {"name": {"givenName": None}},
        {"emails": None},
        {"emails": []},
        {"emails": [None]},
        {"emails": [{}]},
        {"emails": [{"value": None}]},
        {ENTERPRISE_USER: None},
        {ENTERPRISE_USER: {}},
        {ENTERPRISE_USER: {"department": None}},
        {ENTERPRISE_USER: {"manager": None}},
        {ENTERPRISE_USER: {"manager": ""}},
        {ENTERPRISE_USER: {"manager": {}}},
    ],
)
def test_null_and_empty_values_mean_no_value(payload: dict[str, Any]) -> None:
    assert normalise(USER_RESOURCE, {"userName": "u", **payload}) == {"userName": "u"}


def test_nulls_inside_values_are_dropped_but_the_rest_kept() -> None:
    payload = {
        "name": {"givenName": "B", "middleName": None},
        "emails": [None, {"value": "a@example.com", "type": None}],
    }
    assert normalise(USER_RESOURCE, payload) == {
        "name": {"givenName": "B"},
        "emails": [{"value": "a@example.com"}],
    }


@pytest.mark.parametrize("payload", [[], "user", 42, None, True])
def test_body_must_be_an_object(payload: Any) -> None:
    for function in (
        lambda: normalise(USER_RESOURCE, payload),
        lambda: password_of(payload),
        lambda: members_of(payload),
    ):
        with pytest.raises(ScimError) as excinfo:
            function()
        assert _error(excinfo) == (400, "invalidSyntax")


# --- normalise: types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (True, True),
        (False, False),
        ("True", True),
        ("False", False),
        ("true", True),
        ("FALSE", False),
    ],
)
def test_booleans_accept_entra_strings(given: Any, stored: bool) -> None:
    resource = normalise(USER_RESOURCE, {"active": given, "emails": [{"primary": given}]})
    assert resource["active"] is stored
    assert resource["emails"][0]["primary"] is stored


def test_single_value_for_a_multi_valued_attribute_is_a_list_of_one() -> None:
    payload = {"emails": {"value": "a@example.com", "type": "work"}}
    assert normalise(USER_RESOURCE, payload) == {
        "emails": [{"value": "a@example.com", "type": "work"}]
    }


@pytest.mark.parametrize(
    ("manager", "stored"),
    [
        ("26118915-6090-4610-87e4-49d8ca9f808d", {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}),
        ({"value": "m1"}, {"value": "m1"}),
        ({"Value": "m1", "$REF": "../Users/m1"}, {"value": "m1", "$ref": "../Users/m1"}),
    ],
)
def test_manager_shapes(manager: Any, stored: dict[str, str]) -> None:
    payload = {ENTERPRISE_USER: {"manager": manager}}
    assert normalise(USER_RESOURCE, payload) == {ENTERPRISE_USER: {"manager": stored}}


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        ({"userName": 42}, "userName must be a string"),
        ({"userName": ["u"]}, "userName must be a string"),
        ({"active": 1}, "active must be a boolean"),
        ({"active": "yes"}, "active must be a boolean"),
        ({"active": None, "displayName": True}, "displayName must be a string"),
        ({"profileUrl": 7}, "profileUrl must be a string"),
        ({"name": "Barbara Jensen"}, "name must be an object"),
        ({"name": {"givenName": 1}}, "name.givenName must be a string"),
        ({"emails": "a@example.com"}, "each value of emails must be an object"),
        ({"emails": [["a@example.com"]]}, "each value of emails must be an object"),
        ({"emails": [{"value": 5}]}, "emails.value must be a string"),
        ({"emails": [{"primary": "maybe"}]}, "emails.primary must be a boolean"),
        (
            {"emails": [{"value": "a", "primary": True}, {"value": "b", "primary": "True"}]},
            "at most one value of emails may be primary",
        ),
        ({ENTERPRISE_USER: "R&D"}, f"{ENTERPRISE_USER} must be an object"),
        ({ENTERPRISE_USER: {"department": 5}}, f"{ENTERPRISE_USER}:department must be a string"),
        ({ENTERPRISE_USER: {"manager": 5}}, f"{ENTERPRISE_USER}:manager must be an object"),
    ],
)
def test_type_errors_name_the_attribute(payload: dict[str, Any], detail: str) -> None:
    with pytest.raises(ScimError) as excinfo:
        normalise(USER_RESOURCE, payload)
    assert _error(excinfo) == (400, "invalidValue")
    assert excinfo.value.detail == detail


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("integer", 3, 3),
        ("integer", -1, -1),
        ("decimal", 3, 3),
        ("decimal", 2.5, 2.5),
        ("string", "s", "s"),
        ("reference", "https://example.com/", "https://example.com/"),
        ("dateTime", "2011-08-01T21:32:44.882Z", "2011-08-01T21:32:44.882Z"),
        ("binary", "TUlJQw==", "TUlJQw=="),
    ],
)
def test_coerce_accepts_each_type(kind: Any, value: Any, expected: Any) -> None:
    assert coerce_one(Attribute(name="x", type=kind), value, "x") == expected


@pytest.mark.parametrize(
    ("kind", "value", "detail"),
    [
        ("integer", True, "x must be an integer"),
        ("integer", 2.5, "x must be an integer"),
        ("integer", "3", "x must be an integer"),
        ("decimal", False, "x must be a number"),
        ("decimal", "2.5", "x must be a number"),
        ("boolean", 1, "x must be a boolean"),
        ("dateTime", 1700000000, "x must be a string"),
        ("reference", {"value": "x"}, "x must be a string"),
    ],
)
def test_coerce_rejects_wrong_types(kind: Any, value: Any, detail: str) -> None:
    with pytest.raises(ScimError) as excinfo:
        coerce_one(Attribute(name="x", type=kind), value, "x")
    assert _error(excinfo) == (400, "invalidValue")
    assert excinfo.value.detail == detail


def test_coerce_multi_valued_simple_attribute() -> None:
    tags = Attribute(name="tags", type="string", multi_valued=True)
    assert coerce(tags, ["a", None, "b"], "tags") == ["a", "b"]
    assert coerce(tags, "a", "tags") == ["a"]
    assert coerce(tags, [None], "tags") is None


# --- Groups ----------------------------------------------------------------------------------


def test_group_members_are_kept_out_of_the_resource() -> None:
    payload = {
        "schemas": [GROUP_SCHEMA],
        "displayName": "Tour Guides",
        "externalId": "g-1",
        "members": [{"value": "2819c223-7f76-453a-919d-413861904646", "display": "Babs"}],
    }
    assert normalise(GROUP_RESOURCE, payload) == {"displayName": "Tour Guides", "externalId": "g-1"}
    assert members_of(payload) == ["2819c223-7f76-453a-919d-413861904646"]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"displayName": "G"}, None),
        ({"members": None}, []),
        ({"members": []}, []),
        ({"Members": [{"value": "a"}]}, ["a"]),
        ({"members": {"value": "a"}}, ["a"]),
        # Entra sends "$ref": null; only the value counts.
        ({"members": [{"$ref": None, "value": "a"}, {"VALUE": "b"}]}, ["a", "b"]),
        ({"members": [{"value": "b"}, {"value": "a"}, {"value": "b"}]}, ["b", "a"]),
    ],
)
def test_members_of(payload: dict[str, Any], expected: list[str] | None) -> None:
    assert members_of(payload) == expected


@pytest.mark.parametrize(
    "members",
    [
        [{"display": "Babs"}],
        [{"value": None}],
        [{"value": ""}],
        [{"value": 42}],
        ["2819c223-7f76-453a-919d-413861904646"],
        [None],
        "a",
    ],
)
def test_member_without_a_value_is_invalid(members: Any) -> None:
    with pytest.raises(ScimError) as excinfo:
        members_of({"members": members})
    assert _error(excinfo) == (400, "invalidValue")
    with pytest.raises(ScimError):
        member_ids(members)


# --- password --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"password": "t1meMa$heen"}, "t1meMa$heen"),
        ({"PASSWORD": "t1meMa$heen"}, "t1meMa$heen"),
        ({"password": None}, None),
        ({"userName": "u"}, None),
    ],
)
def test_password_of(payload: dict[str, Any], expected: str | None) -> None:
    assert password_of(payload) == expected


def test_password_must_be_a_string() -> None:
    with pytest.raises(ScimError) as excinfo:
        password_of({"password": 1234})
    assert _error(excinfo) == (400, "invalidValue")


# --- check_required --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource_type", "resource"),
    [
        (USER_RESOURCE, {"userName": "u"}),
        (USER_RESOURCE, {"userName": "u", ENTERPRISE_USER: {"department": "R&D"}}),
        (GROUP_RESOURCE, {"displayName": "G"}),
    ],
)
def test_required_attributes_present(resource_type: ResourceType, resource: dict[str, Any]) -> None:
    check_required(resource_type, resource)


@pytest.mark.parametrize(
    ("resource_type", "resource", "detail"),
    [
        (USER_RESOURCE, {}, "userName is required"),
        (USER_RESOURCE, {"userName": ""}, "userName is required"),
        (USER_RESOURCE, {"userName": "   "}, "userName is required"),
        (USER_RESOURCE, {"userName": None, "displayName": "x"}, "userName is required"),
        (GROUP_RESOURCE, {"externalId": "g"}, "displayName is required"),
        (GROUP_RESOURCE, {"displayName": "\t"}, "displayName is required"),
    ],
)
def test_required_attribute_missing_or_blank(
    resource_type: ResourceType, resource: dict[str, Any], detail: str
) -> None:
    with pytest.raises(ScimError) as excinfo:
        check_required(resource_type, resource)
    assert _error(excinfo) == (400, "invalidValue")
    assert excinfo.value.detail == detail


_CORE = Schema(
    id="urn:example:params:scim:schemas:core:1.0:Device",
    name="Device",
    description="",
    attributes=(
        Attribute(name="serial", type="string", mutability="immutable", case_exact=True),
        Attribute(name="model", type="string", mutability="immutable"),
        Attribute(name="label", type="string"),
    ),
)
_EXTENSION = Schema(
    id="urn:example:params:scim:schemas:extension:1.0:Device",
    name="DeviceExtension",
    description="",
    attributes=(
        Attribute(name="owner", type="string", required=True),
        Attribute(name="slot", type="integer", mutability="immutable"),
    ),
)


def _device(*, extension_required: bool) -> ResourceType:
    return ResourceType(
        id="Device",
        name="Device",
        endpoint="/Devices",
        description="",
        schema=_CORE,
        extensions=((_EXTENSION, extension_required),),
    )


def test_required_extension_attribute_counts_only_when_the_extension_is_there() -> None:
    optional = _device(extension_required=False)
    check_required(optional, {"label": "x"})
    with pytest.raises(ScimError) as excinfo:
        check_required(optional, {_EXTENSION.id: {"slot": 1}})
    assert _error(excinfo) == (400, "invalidValue")
    assert excinfo.value.detail == f"{_EXTENSION.id}:owner is required"


def test_required_extension_must_be_present() -> None:
    with pytest.raises(ScimError) as excinfo:
        check_required(_device(extension_required=True), {"label": "x"})
    assert _error(excinfo) == (400, "invalidValue")
    check_required(_device(extension_required=True), {_EXTENSION.id: {"owner": "o"}})


# --- check_immutable -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({}, {"serial": "S1"}),
        ({"serial": "S1"}, {"serial": "S1", "label": "changed"}),
        ({"model": "Pixel"}, {"model": "PIXEL"}),  # not caseExact: the same value
        ({"label": "a"}, {}),
        ({_EXTENSION.id: {"slot": 2}}, {_EXTENSION.id: {"slot": 2, "owner": "o"}}),
        ({}, {_EXTENSION.id: {"slot": 2}}),
    ],
)
def test_immutable_attributes_kept(old: dict[str, Any], new: dict[str, Any]) -> None:
    check_immutable(_device(extension_required=False), old, new)


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ({"serial": "S1"}, {"serial": "S2"}, "serial"),
        ({"serial": "S1"}, {"serial": "s1"}, "serial"),  # caseExact
        ({"serial": "S1"}, {}, "serial"),
        ({"model": "Pixel"}, {"model": 7}, "model"),
        ({_EXTENSION.id: {"slot": 2}}, {_EXTENSION.id: {"slot": 3}}, f"{_EXTENSION.id}:slot"),
        ({_EXTENSION.id: {"slot": 2}}, {}, f"{_EXTENSION.id}:slot"),
    ],
)
def test_immutable_attribute_changed(old: dict[str, Any], new: dict[str, Any], name: str) -> None:
    with pytest.raises(ScimError) as excinfo:
        check_immutable(_device(extension_required=False), old, new)
    assert _error(excinfo) == (400, "mutability")
    assert excinfo.value.detail == f"{name} is immutable and cannot be changed"


def test_users_and_groups_have_no_immutable_top_level_attributes() -> None:
    check_immutable(USER_RESOURCE, {"userName": "a", "externalId": "x"}, {"userName": "b"})
    check_immutable(GROUP_RESOURCE, {"displayName": "a"}, {"displayName": "b"})
