"""PATCH (RFC 7644 section 3.5.2): the PatchOp message, and its operations on Users and Groups."""

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
from service.scim.errors import ScimError
from service.scim.filter import And, AttrPath, Compare, PatchPath, parse_filter
from service.scim.patch import (
    MAX_OPERATIONS,
    PATCH_OP_URN,
    MemberStep,
    Operation,
    PatchResult,
    apply_patch,
    foreseen,
    member_change_alone,
    parse_patch_request,
)
from service.scim.schemas import ENTERPRISE_USER, GROUP_SCHEMA, USER_SCHEMA

MANAGER = f"{ENTERPRISE_USER}:manager"
DEPARTMENT = f"{ENTERPRISE_USER}:department"
BABS = "2819c223-7f76-453a-919d-413861904646"
JAMES = "08e1d05d-121c-4561-8b96-473d93df9210"

USER: dict[str, Any] = {
    "userName": "bjensen",
    "name": {"givenName": "Barbara", "familyName": "Jensen"},
    "displayName": "Babs Jensen",
    "active": True,
    "emails": [
        {"value": "bjensen@example.com", "type": "work", "primary": True},
        {"value": "babs@jensen.org", "type": "home"},
    ],
    "addresses": [
        {"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood"}
    ],
    ENTERPRISE_USER: {"department": "Tour Operations", "manager": {"value": JAMES}},
}
GROUP: dict[str, Any] = {"displayName": "Tour Guides", "externalId": "g-1"}


def _body(*operations: Any) -> dict[str, Any]:
    return {"schemas": [PATCH_OP_URN], "Operations": list(operations)}


def _patch(
    resource: dict[str, Any],
    *operations: dict[str, Any],
    resource_type: ResourceType = USER_RESOURCE,
) -> PatchResult:
    return apply_patch(resource_type, resource, parse_patch_request(_body(*operations)))


def _user(**changes: Any) -> dict[str, Any]:
    """USER with top-level attributes replaced (None removes one)."""
    user = copy.deepcopy(USER)
    for key, value in changes.items():
        if value is None:
            user.pop(key)
        else:
            user[key] = value
    return user


def _enterprise(**attributes: Any) -> dict[str, Any]:
    return _user(**{ENTERPRISE_USER: attributes or None})


def _error(excinfo: pytest.ExceptionInfo[ScimError]) -> tuple[int, str | None]:
    return excinfo.value.status, excinfo.value.scim_type


def _fails(
    resource: dict[str, Any],
    *operations: dict[str, Any],
    resource_type: ResourceType = USER_RESOURCE,
) -> tuple[int, str | None]:
    before = copy.deepcopy(resource)
    with pytest.raises(ScimError) as excinfo:
        _patch(resource, *operations, resource_type=resource_type)
    assert resource == before
    return _error(excinfo)


# --- parse_patch_request ---------------------------------------------------------------------


def test_parse_operations() -> None:
    operations = parse_patch_request(
        _body(
            {"op": "add", "path": "nickName", "value": "Babs"},
            {"op": "remove", "path": 'emails[type eq "work"].value'},
            {"op": "replace", "value": {"active": False}},
        )
    )
    assert operations == [
        Operation("add", PatchPath(AttrPath(None, "nickName", None), None, None), "Babs"),
        Operation(
            "remove",
            PatchPath(
                AttrPath(None, "emails", None),
                Compare(AttrPath(None, "type", None), "eq", "work"),
                "value",
            ),
            None,
        ),
        Operation("replace", None, {"active": False}),
    ]


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ("add", "add"),
        ("Add", "add"),
        ("REPLACE", "replace"),
        ("Replace", "replace"),
        ("Remove", "remove"),
    ],
)
def test_op_is_case_insensitive(op: str, expected: str) -> None:
    (operation,) = parse_patch_request(_body({"op": op, "path": "title", "value": "x"}))
    assert operation.op == expected


def test_message_keys_are_case_insensitive() -> None:
    body = {
        "SCHEMAS": [PATCH_OP_URN.upper()],
        "operations": [{"OP": "Replace", "Path": "title", "VALUE": "Boss"}],
    }
    (operation,) = parse_patch_request(body)
    assert operation == Operation(
        "replace", PatchPath(AttrPath(None, "title", None), None, None), "Boss"
    )


def test_null_value_is_a_value() -> None:
    (operation,) = parse_patch_request(_body({"op": "replace", "path": "title", "value": None}))
    assert operation.value is None


def test_as_many_operations_as_allowed() -> None:
    operation = {"op": "replace", "path": "title", "value": "x"}
    assert len(parse_patch_request(_body(*[operation] * MAX_OPERATIONS))) == 1000


@pytest.mark.parametrize(
    ("body", "scim_type"),
    [
        ([], "invalidSyntax"),
        ("patch", "invalidSyntax"),
        ({"Operations": [{"op": "remove", "path": "title"}]}, "invalidSyntax"),
        ({"schemas": PATCH_OP_URN, "Operations": [{"op": "remove", "path": "x"}]}, "invalidSyntax"),
        (
            {"schemas": [USER_SCHEMA], "Operations": [{"op": "remove", "path": "x"}]},
            "invalidSyntax",
        ),
        ({"schemas": [PATCH_OP_URN]}, "invalidSyntax"),
        ({"schemas": [PATCH_OP_URN], "Operations": []}, "invalidSyntax"),
        ({"schemas": [PATCH_OP_URN], "Operations": {"op": "remove"}}, "invalidSyntax"),
        (
            _body({"op": "replace", "path": "title", "value": "x"}) | {"Operations": None},
            "invalidSyntax",
        ),
        (_body(*[{"op": "remove", "path": "title"}] * (MAX_OPERATIONS + 1)), "invalidSyntax"),
        (_body("remove"), "invalidSyntax"),
        (_body({"path": "title", "value": "x"}), "invalidSyntax"),
        (_body({"op": "delete", "path": "title"}), "invalidSyntax"),
        (_body({"op": "copy", "path": "title", "value": "x"}), "invalidSyntax"),
        (_body({"op": 1, "path": "title", "value": "x"}), "invalidSyntax"),
        (_body({"op": "add", "path": "title"}), "invalidSyntax"),
        (_body({"op": "replace", "path": "title"}), "invalidSyntax"),
        (_body({"op": "replace"}), "invalidSyntax"),
        (_body({"op": "remove"}), "noTarget"),
        (_body({"op": "remove", "path": None}), "noTarget"),
        (_body({"op": "remove", "path": 7}), "invalidPath"),
        (_body({"op": "remove", "path": ""}), "invalidPath"),
        (_body({"op": "remove", "path": "emails[type eq]"}), "invalidPath"),
        (_body({"op": "remove", "path": 'emails[type eq "work"'}), "invalidPath"),
        (_body({"op": "remove", "path": "name.givenName.x"}), "invalidPath"),
    ],
)
def test_malformed_requests(body: Any, scim_type: str) -> None:
    with pytest.raises(ScimError) as excinfo:
        parse_patch_request(body)
    assert _error(excinfo) == (400, scim_type)


def test_errors_name_the_operation() -> None:
    body = _body({"op": "add", "path": "title", "value": "x"}, {"op": "remove"})
    with pytest.raises(ScimError) as excinfo:
        parse_patch_request(body)
    assert excinfo.value.detail == "operation 2: remove needs a path"
    with pytest.raises(ScimError) as excinfo:
        _patch(
            USER,
            {"op": "add", "path": "title", "value": "x"},
            {"op": "add", "path": "active", "value": 1},
        )
    assert excinfo.value.detail == "operation 2: active must be a boolean"


# --- Simple, complex and extension attributes ------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ({"op": "add", "path": "nickName", "value": "Babs"}, _user(nickName="Babs")),
        ({"op": "replace", "path": "NICKNAME", "value": "Babs"}, _user(nickName="Babs")),
        ({"op": "replace", "path": "displayName", "value": "B"}, _user(displayName="B")),
        ({"op": "add", "path": "displayName", "value": "B"}, _user(displayName="B")),
        ({"op": "remove", "path": "displayName"}, _user(displayName=None)),
        ({"op": "replace", "path": "displayName", "value": None}, _user(displayName=None)),
        ({"op": "remove", "path": "nickName"}, _user()),
        ({"op": "replace", "path": "active", "value": False}, _user(active=False)),
        ({"op": "Replace", "path": "active", "value": "False"}, _user(active=False)),
        (
            {"op": "replace", "path": f"{USER_SCHEMA}:userName", "value": "babs"},
            _user(userName="babs"),
        ),
        (
            {"op": "add", "path": "name.givenName", "value": "Babs"},
            _user(name={"givenName": "Babs", "familyName": "Jensen"}),
        ),
        (
            {"op": "replace", "path": "Name.FamilyName", "value": "Smith"},
            _user(name={"givenName": "Barbara", "familyName": "Smith"}),
        ),
        (
            {"op": "add", "path": "name.middleName", "value": "J"},
            _user(name={"givenName": "Barbara", "familyName": "Jensen", "middleName": "J"}),
        ),
        ({"op": "remove", "path": "name.givenName"}, _user(name={"familyName": "Jensen"})),
        ({"op": "remove", "path": "name.middleName"}, _user()),
        ({"op": "remove", "path": "name"}, _user(name=None)),
        # A complex value is merged into: sub-attributes not given stay (3.5.2.3).
        (
            {"op": "replace", "path": "name", "value": {"givenName": "Babs", "formatted": "B J"}},
            _user(name={"givenName": "Babs", "familyName": "Jensen", "formatted": "B J"}),
        ),
        (
            {"op": "add", "path": "name", "value": {"honorificPrefix": "Ms."}},
            _user(name={"givenName": "Barbara", "familyName": "Jensen", "honorificPrefix": "Ms."}),
        ),
        ({"op": "replace", "path": "name", "value": {}}, _user(name=None)),
        (
            {"op": "replace", "path": DEPARTMENT, "value": "R&D"},
            _enterprise(department="R&D", manager={"value": JAMES}),
        ),
        (
            {"op": "add", "path": DEPARTMENT.upper(), "value": "R&D"},
            _enterprise(department="R&D", manager={"value": JAMES}),
        ),
        (
            {"op": "add", "path": f"{ENTERPRISE_USER}:costCenter", "value": "4130"},
            _enterprise(department="Tour Operations", manager={"value": JAMES}, costCenter="4130"),
        ),
        ({"op": "remove", "path": DEPARTMENT}, _enterprise(manager={"value": JAMES})),
    ],
)
def test_single_valued_attributes(operation: dict[str, Any], expected: dict[str, Any]) -> None:
    assert _patch(USER, operation).resource == expected


def test_extension_is_created_and_dropped_when_emptied() -> None:
    user = _user(**{ENTERPRISE_USER: None})
    added = _patch(user, {"op": "add", "path": DEPARTMENT, "value": "R&D"}).resource
    assert added[ENTERPRISE_USER] == {"department": "R&D"}
    removed = _patch(added, {"op": "remove", "path": DEPARTMENT}).resource
    assert removed == user
    # Removing from an extension the resource does not have changes nothing.
    result = _patch(user, {"op": "remove", "path": MANAGER})
    assert result.resource == user
    assert not result.changed
    # Nor does adding nothing leave an empty extension behind.
    assert _patch(user, {"op": "add", "path": DEPARTMENT, "value": None}).resource == user


# --- The enterprise manager ------------------------------------------------------------------


@pytest.mark.parametrize("op", ["add", "replace", "Add", "Replace"])
@pytest.mark.parametrize(
    ("value", "stored"),
    [
        # Entra sends the manager's id bare.
        (BABS, {"value": BABS}),
        ({"value": BABS}, {"value": BABS}),
        ({"VALUE": BABS, "$ref": f"../Users/{BABS}"}, {"value": BABS, "$ref": f"../Users/{BABS}"}),
        # displayName is readOnly: the server fills it in.
        ({"value": BABS, "displayName": "Babs"}, {"value": BABS}),
    ],
)
def test_manager_is_set_whole(op: str, value: Any, stored: dict[str, str]) -> None:
    user = _enterprise(
        department="Tour Operations", manager={"value": JAMES, "$ref": f"../Users/{JAMES}"}
    )
    result = _patch(user, {"op": op, "path": MANAGER, "value": value})
    assert result.resource[ENTERPRISE_USER] == {"department": "Tour Operations", "manager": stored}


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "Replace", "path": MANAGER, "value": ""},
        {"op": "replace", "path": MANAGER, "value": None},
        {"op": "replace", "path": MANAGER, "value": {}},
        {"op": "add", "path": MANAGER, "value": ""},
        {"op": "Remove", "path": MANAGER},
        {"op": "Remove", "path": MANAGER, "value": [{"value": JAMES}]},
        {"op": "remove", "path": f"{MANAGER}.value"},
        {"op": "replace", "value": {MANAGER: ""}},
        {"op": "replace", "value": {ENTERPRISE_USER: {"manager": None}}},
    ],
)
def test_manager_is_removed(operation: dict[str, Any]) -> None:
    assert _patch(USER, operation).resource[ENTERPRISE_USER] == {"department": "Tour Operations"}


def test_manager_value_sub_attribute() -> None:
    user = _user(**{ENTERPRISE_USER: None})
    result = _patch(user, {"op": "add", "path": f"{MANAGER}.value", "value": BABS})
    assert result.resource[ENTERPRISE_USER] == {"manager": {"value": BABS}}


# --- Multi-valued attributes -----------------------------------------------------------------

WORK = {"value": "bjensen@example.com", "type": "work", "primary": True}
HOME = {"value": "babs@jensen.org", "type": "home"}


@pytest.mark.parametrize(
    ("operation", "emails"),
    [
        (
            {"op": "add", "path": "emails", "value": [{"value": "b@x.org", "type": "other"}]},
            [WORK, HOME, {"value": "b@x.org", "type": "other"}],
        ),
        # A single value for a multi-valued attribute counts as a list of one.
        (
            {"op": "add", "path": "emails", "value": {"value": "b@x.org"}},
            [WORK, HOME, {"value": "b@x.org"}],
        ),
        # Exact duplicates are skipped, in what is there and in what is added.
        ({"op": "add", "path": "emails", "value": [HOME, HOME]}, [WORK, HOME]),
        (
            {
                "op": "add",
                "path": "emails",
                "value": [{"Value": "babs@jensen.org", "Type": "home"}],
            },
            [WORK, HOME],
        ),
        (
            {"op": "add", "path": "emails", "value": [{"value": "babs@jensen.org"}]},
            [WORK, HOME, {"value": "babs@jensen.org"}],
        ),
        ({"op": "add", "path": "emails", "value": []}, [WORK, HOME]),
        ({"op": "add", "path": "emails", "value": None}, [WORK, HOME]),
        (
            {"op": "replace", "path": "emails", "value": [{"value": "n@x.org"}]},
            [{"value": "n@x.org"}],
        ),
        ({"op": "replace", "path": "emails", "value": []}, None),
        ({"op": "replace", "path": "emails", "value": None}, None),
        ({"op": "remove", "path": "emails"}, None),
        # With a value, remove takes out the values it describes, not all of them.
        ({"op": "remove", "path": "emails", "value": [{"value": "babs@jensen.org"}]}, [WORK]),
        ({"op": "remove", "path": "emails", "value": {"type": "work"}}, [HOME]),
        ({"op": "remove", "path": "emails", "value": [{"value": "nobody@x.org"}]}, [WORK, HOME]),
        ({"op": "remove", "path": "emails", "value": [WORK, HOME]}, None),
    ],
)
def test_whole_multi_valued_attribute(operation: dict[str, Any], emails: list[Any] | None) -> None:
    assert _patch(USER, operation).resource == _user(emails=emails)


def test_add_to_an_absent_multi_valued_attribute() -> None:
    result = _patch(USER, {"op": "add", "path": "phoneNumbers", "value": [{"value": "555-1234"}]})
    assert result.resource["phoneNumbers"] == [{"value": "555-1234"}]


@pytest.mark.parametrize(
    ("operation", "emails"),
    [
        (
            {"op": "replace", "path": 'emails[type eq "work"].value', "value": "new@example.com"},
            [{**WORK, "value": "new@example.com"}, HOME],
        ),
        (
            {"op": "add", "path": 'emails[type eq "home"].display', "value": "Babs at home"},
            [WORK, {**HOME, "display": "Babs at home"}],
        ),
        (
            {"op": "replace", "path": 'EMAILS[TYPE EQ "WORK"].VALUE', "value": "new@example.com"},
            [{**WORK, "value": "new@example.com"}, HOME],
        ),
        # Replace swaps matching values whole (3.5.2.3); add merges into them.
        (
            {"op": "replace", "path": 'emails[type eq "home"]', "value": {"value": "h@x.org"}},
            [WORK, {"value": "h@x.org"}],
        ),
        (
            {"op": "add", "path": 'emails[type eq "home"]', "value": {"display": "Home"}},
            [WORK, {**HOME, "display": "Home"}],
        ),
        ({"op": "replace", "path": 'emails[type eq "home"]', "value": None}, [WORK]),
        ({"op": "remove", "path": 'emails[type eq "home"]'}, [WORK]),
        ({"op": "remove", "path": 'emails[value co "example.com"]'}, [HOME]),
        ({"op": "remove", "path": 'emails[type eq "work" and value ew "example.com"]'}, [HOME]),
        ({"op": "remove", "path": "emails[primary eq true]"}, [HOME]),
        ({"op": "remove", "path": "emails[type pr]"}, None),
        (
            {"op": "remove", "path": 'emails[type eq "work"].primary'},
            [{"value": "bjensen@example.com", "type": "work"}, HOME],
        ),
        # Sub-attributes without a filter apply to every value.
        (
            {"op": "replace", "path": "emails.display", "value": "Babs"},
            [{**WORK, "display": "Babs"}, {**HOME, "display": "Babs"}],
        ),
        (
            {"op": "remove", "path": "emails.primary"},
            [{"value": "bjensen@example.com", "type": "work"}, HOME],
        ),
        # A value left empty is dropped.
        (
            {"op": "remove", "path": "emails.value"},
            [{"type": "work", "primary": True}, {"type": "home"}],
        ),
    ],
)
def test_filtered_multi_valued_attribute(
    operation: dict[str, Any], emails: list[Any] | None
) -> None:
    assert _patch(USER, operation).resource == _user(emails=emails)


def test_value_left_empty_is_dropped() -> None:
    user = _user(emails=[{"value": "a@x.org"}, HOME])
    result = _patch(user, {"op": "remove", "path": "emails.value"})
    assert result.resource["emails"] == [{"type": "home"}]


@pytest.mark.parametrize(
    "path",
    [
        'emails[type eq "other"]',
        'emails[type eq "other"].value',
        'emails[value eq "nobody@example.com"].display',
        "phoneNumbers.value",
    ],
)
def test_remove_matching_nothing_changes_nothing(path: str) -> None:
    result = _patch(USER, {"op": "remove", "path": path})
    assert result.resource == USER
    assert not result.changed


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "replace", "path": 'emails[type eq "other"]', "value": {"value": "o@x.org"}},
        {"op": "add", "path": 'emails[type eq "other"]', "value": {"value": "o@x.org"}},
        {"op": "replace", "path": 'emails[value eq "nobody@x.org"].value', "value": "o@x.org"},
        # Only a plain `type eq` filter says what to create.
        {
            "op": "add",
            "path": 'emails[type ne "work"  and type ne "home"].value',
            "value": "o@x.org",
        },
        {
            "op": "add",
            "path": 'emails[type eq "other" and primary eq true].value',
            "value": "o@x.org",
        },
        {"op": "add", "path": 'emails[type co "oth"].value', "value": "o@x.org"},
        # Only on the attributes Entra addresses this way.
        {"op": "add", "path": 'roles[type eq "admin"].value', "value": "Admin"},
        {"op": "add", "path": 'entitlements[type eq "x"].value', "value": "x"},
        {"op": "add", "path": "phoneNumbers.value", "value": "555"},
    ],
)
def test_add_or_replace_matching_nothing_is_no_target(operation: dict[str, Any]) -> None:
    assert _fails(USER, operation) == (400, "noTarget")


@pytest.mark.parametrize(
    ("path", "value", "attribute", "created"),
    [
        (
            'emails[type eq "other"].value',
            "o@x.org",
            "emails",
            {"type": "other", "value": "o@x.org"},
        ),
        (
            'phoneNumbers[type eq "mobile"].value',
            "+1 555 0100",
            "phoneNumbers",
            {"type": "mobile", "value": "+1 555 0100"},
        ),
        (
            'addresses[type eq "home"].streetAddress',
            "1 Main St",
            "addresses",
            {"type": "home", "streetAddress": "1 Main St"},
        ),
        (
            'ims[type eq "xmpp"].value',
            "b@jabber.org",
            "ims",
            {"type": "xmpp", "value": "b@jabber.org"},
        ),
        (
            'photos[type eq "photo"].value',
            "https://photos.example.com/b.jpg",
            "photos",
            {"type": "photo", "value": "https://photos.example.com/b.jpg"},
        ),
    ],
)
@pytest.mark.parametrize("op", ["Add", "Replace"])
def test_entra_creates_a_value_by_type(
    op: str, path: str, value: str, attribute: str, created: dict[str, str]
) -> None:
    result = _patch(USER, {"op": op, "path": path, "value": value})
    assert result.resource[attribute] == [*USER.get(attribute, []), created]


def test_creating_by_type_with_no_value_creates_nothing() -> None:
    result = _patch(USER, {"op": "add", "path": 'emails[type eq "other"].value', "value": None})
    assert not result.changed


def test_entra_address_attributes_one_by_one() -> None:
    # Entra sends one operation per sub-attribute: the first creates the value.
    result = _patch(
        _user(addresses=None),
        {"op": "Add", "path": 'addresses[type eq "work"].formatted', "value": "1 Main St"},
        {"op": "Add", "path": 'addresses[type eq "work"].streetAddress', "value": "1 Main St"},
        {"op": "Add", "path": 'addresses[type eq "work"].locality', "value": "Springfield"},
        {"op": "Add", "path": 'addresses[type eq "work"].postalCode', "value": "12345"},
        {"op": "Add", "path": 'addresses[type eq "work"].country', "value": "US"},
    )
    assert result.resource["addresses"] == [
        {
            "type": "work",
            "formatted": "1 Main St",
            "streetAddress": "1 Main St",
            "locality": "Springfield",
            "postalCode": "12345",
            "country": "US",
        }
    ]


# --- primary ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "emails"),
    [
        (
            {"op": "add", "path": "emails", "value": [{"value": "n@x.org", "primary": True}]},
            [{**WORK, "primary": False}, HOME, {"value": "n@x.org", "primary": True}],
        ),
        (
            {"op": "Replace", "path": 'emails[type eq "home"].primary', "value": "True"},
            [{**WORK, "primary": False}, {**HOME, "primary": True}],
        ),
        (
            {"op": "replace", "path": 'emails[type eq "home"]', "value": {**HOME, "primary": True}},
            [{**WORK, "primary": False}, {**HOME, "primary": True}],
        ),
        (
            {"op": "add", "path": 'emails[type eq "other"].primary', "value": True},
            [{**WORK, "primary": False}, HOME, {"type": "other", "primary": True}],
        ),
        # Making the primary value primary again changes nothing.
        ({"op": "add", "path": 'emails[type eq "work"].primary', "value": True}, [WORK, HOME]),
        (
            {"op": "add", "path": 'emails[type eq "home"].primary', "value": False},
            [WORK, {**HOME, "primary": False}],
        ),
    ],
)
def test_a_new_primary_value_clears_the_others(
    operation: dict[str, Any], emails: list[Any]
) -> None:
    assert _patch(USER, operation).resource["emails"] == emails


def test_path_less_replace_of_emails_keeps_its_primary() -> None:
    result = _patch(USER, {"op": "replace", "value": {"emails": [HOME, {**WORK, "primary": True}]}})
    assert result.resource["emails"] == [HOME, WORK]


@pytest.mark.parametrize(
    "operation",
    [
        {
            "op": "add",
            "path": "emails",
            "value": [{"value": "a@x.org", "primary": True}, {"value": "b@x.org", "primary": True}],
        },
        {"op": "replace", "path": "emails.primary", "value": True},
        {
            "op": "replace",
            "path": "emails[type pr]",
            "value": {"value": "x@x.org", "primary": True},
        },
    ],
)
def test_two_primary_values_are_invalid(operation: dict[str, Any]) -> None:
    assert _fails(USER, operation) == (400, "invalidValue")


# --- Path-less add and replace ---------------------------------------------------------------


def test_okta_deactivates_a_user() -> None:
    result = _patch(USER, {"op": "replace", "value": {"active": False}})
    assert result.resource == _user(active=False)
    assert result.changed


def test_entra_path_less_value_with_dotted_and_qualified_keys() -> None:
    result = _patch(
        USER,
        {
            "op": "Replace",
            "value": {
                "displayName": "Barbara J",
                "name.givenName": "Babs",
                "name.familyName": "Jensen-Smith",
                "active": "False",
                f"{ENTERPRISE_USER}:department": "Sales",
                f"{ENTERPRISE_USER}:manager": BABS,
                'emails[type eq "work"].value': "babs@example.com",
            },
        },
    )
    assert result.resource == _user(
        displayName="Barbara J",
        name={"givenName": "Babs", "familyName": "Jensen-Smith"},
        active=False,
        emails=[{**WORK, "value": "babs@example.com"}, HOME],
        **{ENTERPRISE_USER: {"department": "Sales", "manager": {"value": BABS}}},
    )


def test_path_less_value_with_extension_object() -> None:
    result = _patch(
        USER,
        {
            "op": "add",
            "value": {
                ENTERPRISE_USER.upper(): {"Department": "Sales", "employeeNumber": "701984"},
                "schemas": [USER_SCHEMA, ENTERPRISE_USER],
                "id": "ignored",
                "meta": {"version": 'W/"1"'},
            },
        },
    )
    assert result.resource[ENTERPRISE_USER] == {
        "department": "Sales",
        "manager": {"value": JAMES},
        "employeeNumber": "701984",
    }


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ({"op": "replace", "value": {}}, (None, None)),
        ({"op": "replace", "value": []}, (400, "invalidSyntax")),
        ({"op": "add", "value": "Babs"}, (400, "invalidSyntax")),
        ({"op": "add", "value": None}, (400, "invalidSyntax")),
        ({"op": "add", "value": {ENTERPRISE_USER: "Sales"}}, (400, "invalidValue")),
        ({"op": "add", "value": {"nosuch": 1}}, (400, "invalidPath")),
        ({"op": "add", "value": {"name givenName": 1}}, (400, "invalidPath")),
        ({"op": "add", "value": {"groups": []}}, (400, "mutability")),
        ({"op": "add", "value": {"department": "Sales"}}, (400, "invalidPath")),
    ],
)
def test_path_less_values(operation: dict[str, Any], expected: tuple[Any, Any]) -> None:
    if expected == (None, None):
        assert not _patch(USER, operation).changed
    else:
        assert _fails(USER, operation) == expected


# --- RFC 7644 examples -----------------------------------------------------------------------


def test_rfc_3_5_2_1_add_to_the_resource() -> None:
    result = _patch(
        USER,
        {
            "op": "add",
            "value": {"emails": [{"value": "babs@jensen.org", "type": "home"}], "nickname": "Babs"},
        },
    )
    assert result.resource == _user(nickName="Babs")


def test_rfc_3_5_2_2_remove_an_email_by_filter() -> None:
    user = _user(emails=[*USER["emails"], {"value": "b@example.com", "type": "work"}])
    result = _patch(
        user, {"op": "remove", "path": 'emails[type eq "work" and value ew "example.com"]'}
    )
    assert result.resource == _user(emails=[HOME])


def test_rfc_3_5_2_2_remove_x509_certificate() -> None:
    user = _user(x509Certificates=[{"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJ"}, {"value": "MIIB"}])
    result = _patch(
        user, {"op": "remove", "path": 'x509certificates[value eq "MIIDQzCCAqygAwIBAgICEAAwDQYJ"]'}
    )
    assert result.resource == _user(x509Certificates=[{"value": "MIIB"}])


def test_rfc_3_5_2_3_replace_an_address() -> None:
    address = {
        "type": "work",
        "streetAddress": "911 Universal City Plaza",
        "locality": "Hollywood",
        "region": "CA",
        "postalCode": "91608",
        "country": "US",
        "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US",
        "primary": True,
    }
    result = _patch(USER, {"op": "replace", "path": 'addresses[type eq "work"]', "value": address})
    assert result.resource == _user(addresses=[address])
    result = _patch(
        result.resource,
        {
            "op": "replace",
            "path": 'addresses[type eq "work"].streetAddress',
            "value": "1010 Broadway Ave",
        },
    )
    assert result.resource == _user(addresses=[{**address, "streetAddress": "1010 Broadway Ave"}])


def test_rfc_3_5_2_3_replace_path_less() -> None:
    result = _patch(
        USER,
        {
            "op": "replace",
            "value": {
                "emails": [
                    {"value": "bjensen@example.com", "type": "work", "primary": True},
                    {"value": "babs@jensen.org", "type": "home"},
                ],
                "nickname": "Babs",
            },
        },
    )
    assert result.resource == _user(nickName="Babs")


# --- Errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ({"op": "remove", "path": "userName"}, (400, "invalidValue")),
        ({"op": "replace", "path": "userName", "value": ""}, (400, "invalidValue")),
        ({"op": "replace", "path": "userName", "value": None}, (400, "invalidValue")),
        ({"op": "replace", "value": {"userName": " "}}, (400, "invalidValue")),
        ({"op": "replace", "path": "userName", "value": 42}, (400, "invalidValue")),
        ({"op": "replace", "path": "active", "value": "yes"}, (400, "invalidValue")),
        ({"op": "replace", "path": "name", "value": "Babs"}, (400, "invalidValue")),
        ({"op": "add", "path": "emails", "value": ["a@x.org"]}, (400, "invalidValue")),
        ({"op": "add", "path": 'emails[type eq "work"]', "value": "a"}, (400, "invalidValue")),
        (
            {"op": "add", "path": 'emails[type eq "work"].primary', "value": "y"},
            (400, "invalidValue"),
        ),
        ({"op": "replace", "path": "id", "value": "x"}, (400, "mutability")),
        ({"op": "remove", "path": "id"}, (400, "mutability")),
        ({"op": "replace", "path": "meta", "value": {}}, (400, "mutability")),
        (
            {"op": "replace", "path": "meta.lastModified", "value": "2024-01-01T00:00:00Z"},
            (400, "mutability"),
        ),
        ({"op": "add", "path": "groups", "value": [{"value": "g"}]}, (400, "mutability")),
        ({"op": "remove", "path": 'groups[value eq "g"]'}, (400, "mutability")),
        ({"op": "add", "path": f"{MANAGER}.displayName", "value": "Boss"}, (400, "mutability")),
        ({"op": "remove", "path": "password"}, (400, "mutability")),
        ({"op": "replace", "path": "password", "value": None}, (400, "invalidValue")),
        ({"op": "replace", "path": "password", "value": 1234}, (400, "invalidValue")),
        ({"op": "add", "path": "nosuch", "value": "x"}, (400, "invalidPath")),
        ({"op": "remove", "path": "nosuch"}, (400, "invalidPath")),
        ({"op": "add", "path": "name.nosuch", "value": "x"}, (400, "invalidPath")),
        ({"op": "add", "path": "userName.value", "value": "x"}, (400, "invalidPath")),
        (
            {"op": "add", "path": 'emails[type eq "work"].nosuch', "value": "x"},
            (400, "invalidPath"),
        ),
        ({"op": "add", "path": 'name[givenName eq "B"]', "value": "x"}, (400, "invalidPath")),
        ({"op": "add", "path": 'userName[value eq "B"]', "value": "x"}, (400, "invalidPath")),
        ({"op": "add", "path": "department", "value": "Sales"}, (400, "invalidPath")),
        (
            {"op": "add", "path": "urn:example:nosuch:1.0:User:department", "value": "x"},
            (400, "invalidPath"),
        ),
        (
            {"op": "add", "path": ENTERPRISE_USER, "value": {"department": "x"}},
            (400, "invalidPath"),
        ),
        ({"op": "add", "path": "members", "value": [{"value": BABS}]}, (400, "invalidPath")),
    ],
)
def test_errors(operation: dict[str, Any], expected: tuple[int, str]) -> None:
    assert _fails(USER, operation) == expected


def test_all_or_nothing() -> None:
    user = copy.deepcopy(USER)
    with pytest.raises(ScimError):
        _patch(
            user,
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "remove", "path": "emails"},
            {"op": "replace", "path": "id", "value": "x"},
        )
    assert user == USER


def test_the_input_is_never_modified() -> None:
    user = copy.deepcopy(USER)
    result = _patch(
        user,
        {"op": "replace", "path": 'emails[type eq "home"].primary', "value": True},
        {"op": "remove", "path": "name.givenName"},
        {"op": "add", "path": DEPARTMENT, "value": "Sales"},
    )
    assert user == USER
    assert result.resource != USER


def test_operations_apply_in_order() -> None:
    result = _patch(
        USER,
        {"op": "remove", "path": "userName"},
        {"op": "add", "path": "userName", "value": "babs"},
        {"op": "replace", "path": "title", "value": "Tour Guide"},
        {"op": "remove", "path": "title"},
    )
    assert result.resource == _user(userName="babs")


@pytest.mark.parametrize(
    "operations",
    [
        [{"op": "replace", "path": "displayName", "value": "Babs Jensen"}],
        [{"op": "replace", "value": {"active": True, "name.givenName": "Barbara"}}],
        [{"op": "add", "path": "emails", "value": [HOME]}],
        [{"op": "remove", "path": "nickName"}],
        [
            {"op": "replace", "path": "displayName", "value": "Other"},
            {"op": "replace", "path": "displayName", "value": "Babs Jensen"},
        ],
    ],
)
def test_nothing_changed(operations: list[dict[str, Any]]) -> None:
    result = _patch(USER, *operations)
    assert result == PatchResult(resource=USER, member_steps=(), changed=False)


def test_password_is_handed_out_not_stored() -> None:
    result = _patch(USER, {"op": "replace", "path": "password", "value": "t1meMa$heen"})
    assert result == PatchResult(
        resource=USER, member_steps=(), changed=True, password="t1meMa$heen"
    )
    result = _patch(USER, {"op": "replace", "value": {"Password": "other"}})
    assert result.password == "other"
    assert result.resource == USER


_THING = Schema(
    id="urn:example:params:scim:schemas:core:1.0:Thing",
    name="Thing",
    description="",
    attributes=(
        Attribute(name="name", type="string", required=True),
        Attribute(name="serial", type="string", mutability="immutable", case_exact=True),
    ),
)
_THING_RESOURCE = ResourceType(
    id="Thing", name="Thing", endpoint="/Things", description="", schema=_THING, extensions=()
)


@pytest.mark.parametrize(
    ("thing", "operation", "expected"),
    [
        ({"name": "t"}, {"op": "add", "path": "serial", "value": "S1"}, None),
        ({"name": "t", "serial": "S1"}, {"op": "replace", "path": "serial", "value": "S1"}, None),
        ({"name": "t", "serial": "S1"}, {"op": "replace", "path": "serial", "value": "S2"}, 400),
        ({"name": "t", "serial": "S1"}, {"op": "replace", "path": "serial", "value": "s1"}, 400),
        ({"name": "t", "serial": "S1"}, {"op": "remove", "path": "serial"}, 400),
    ],
)
def test_immutable_attributes(
    thing: dict[str, Any], operation: dict[str, Any], expected: int | None
) -> None:
    if expected is None:
        _patch(thing, operation, resource_type=_THING_RESOURCE)
    else:
        assert _fails(thing, operation, resource_type=_THING_RESOURCE) == (expected, "mutability")


# --- Groups ----------------------------------------------------------------------------------


def _group_patch(*operations: dict[str, Any]) -> PatchResult:
    return _patch(GROUP, *operations, resource_type=GROUP_RESOURCE)


@pytest.mark.parametrize(
    ("operation", "steps"),
    [
        # RFC 7644 section 3.5.2.1.
        (
            {
                "op": "add",
                "path": "members",
                "value": [
                    {
                        "display": "Babs Jensen",
                        "$ref": f"https://example.com/v2/Users/{BABS}",
                        "value": BABS,
                    }
                ],
            },
            [MemberStep("add", (BABS,))],
        ),
        # Entra.
        (
            {"op": "Add", "path": "members", "value": [{"$ref": None, "value": BABS}]},
            [MemberStep("add", (BABS,))],
        ),
        (
            {
                "op": "add",
                "path": "members",
                "value": [{"value": BABS}, {"value": JAMES}, {"value": BABS}],
            },
            [MemberStep("add", (BABS, JAMES))],
        ),
        ({"op": "add", "path": "members", "value": {"value": BABS}}, [MemberStep("add", (BABS,))]),
        ({"op": "add", "path": "members", "value": []}, []),
        (
            {"op": "add", "path": "MEMBERS", "value": [{"value": BABS}]},
            [MemberStep("add", (BABS,))],
        ),
        (
            {"op": "add", "path": f"{GROUP_SCHEMA}:members", "value": [{"value": BABS}]},
            [MemberStep("add", (BABS,))],
        ),
        # RFC 7644 section 3.5.2.2.
        ({"op": "remove", "path": f'members[value eq "{BABS}"]'}, [MemberStep("remove", (BABS,))]),
        ({"op": "remove", "path": "members"}, [MemberStep("remove_all")]),
        # Entra's way of removing members: a value list.
        (
            {"op": "Remove", "path": "members", "value": [{"$ref": None, "value": BABS}]},
            [MemberStep("remove", (BABS,))],
        ),
        ({"op": "remove", "path": "members", "value": []}, []),
        (
            {"op": "remove", "path": f'members[value eq "{BABS}" or value eq "{JAMES}"]'},
            [MemberStep("remove", (BABS, JAMES))],
        ),
        (
            {
                "op": "remove",
                "path": f'members[(value eq "{BABS}" or value eq "{JAMES}") or value eq "{BABS}"]',
            },
            [MemberStep("remove", (BABS, JAMES))],
        ),
        (
            {"op": "remove", "path": 'members[type eq "Group"]'},
            [
                MemberStep(
                    "remove_where", where=Compare(AttrPath(None, "type", None), "eq", "Group")
                )
            ],
        ),
        (
            {"op": "remove", "path": f'members[value eq "{BABS}" and type eq "User"]'},
            [
                MemberStep(
                    "remove_where", where=parse_filter(f'value eq "{BABS}" and type eq "User"')
                )
            ],
        ),
        (
            {"op": "remove", "path": f'members[value eq "{BABS}" or type eq "User"]'},
            [
                MemberStep(
                    "remove_where", where=parse_filter(f'value eq "{BABS}" or type eq "User"')
                )
            ],
        ),
        (
            {"op": "remove", "path": f'members[value ne "{BABS}"]'},
            [MemberStep("remove_where", where=parse_filter(f'value ne "{BABS}"'))],
        ),
        # RFC 7644 section 3.5.2.3; Okta.
        (
            {
                "op": "replace",
                "path": "members",
                "value": [{"value": BABS}, {"value": JAMES, "display": "James"}],
            },
            [MemberStep("replace", (BABS, JAMES))],
        ),
        ({"op": "replace", "path": "members", "value": []}, [MemberStep("replace", ())]),
        ({"op": "replace", "path": "members", "value": None}, [MemberStep("replace", ())]),
        ({"op": "add", "value": {"members": [{"value": BABS}]}}, [MemberStep("add", (BABS,))]),
    ],
)
def test_member_steps(operation: dict[str, Any], steps: list[MemberStep]) -> None:
    result = _group_patch(operation)
    assert result.resource == GROUP
    assert result.member_steps == tuple(steps)
    assert result.changed is bool(steps)


def test_rfc_3_5_2_2_replace_all_members_by_remove_then_add() -> None:
    result = _group_patch(
        {"op": "remove", "path": f'members[value eq "{BABS}"]'},
        {"op": "add", "path": "members", "value": [{"display": "James Smith", "value": JAMES}]},
        {"op": "remove", "path": "members"},
        {"op": "add", "path": "members", "value": [{"value": BABS}]},
    )
    assert result.member_steps == (
        MemberStep("remove", (BABS,)),
        MemberStep("add", (JAMES,)),
        MemberStep("remove_all"),
        MemberStep("add", (BABS,)),
    )


def test_okta_renames_a_group_with_its_id_in_the_value() -> None:
    result = _group_patch(
        {
            "op": "replace",
            "value": {"id": "abf4dd94-a4c0-4f67-89c9-76b03340cb9b", "displayName": "Test SCIMv2"},
        }
    )
    assert result == PatchResult(
        resource={"displayName": "Test SCIMv2", "externalId": "g-1"}, member_steps=(), changed=True
    )


def test_entra_renames_a_group_and_changes_members_in_one_request() -> None:
    result = _group_patch(
        {"op": "Replace", "path": "displayName", "value": "Tour Leaders"},
        {"op": "Add", "path": "members", "value": [{"value": BABS}]},
        {"op": "Remove", "path": "members", "value": [{"value": JAMES}]},
    )
    assert result.resource == {"displayName": "Tour Leaders", "externalId": "g-1"}
    assert result.member_steps == (MemberStep("add", (BABS,)), MemberStep("remove", (JAMES,)))


def test_group_with_path_less_members_and_display_name() -> None:
    result = _group_patch(
        {"op": "replace", "value": {"displayName": "New", "members": [{"value": BABS}]}}
    )
    assert result.resource == {"displayName": "New", "externalId": "g-1"}
    assert result.member_steps == (MemberStep("replace", (BABS,)),)


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ({"op": "remove", "path": "displayName"}, (400, "invalidValue")),
        ({"op": "replace", "path": "displayName", "value": ""}, (400, "invalidValue")),
        ({"op": "add", "path": "members", "value": [{"display": "Babs"}]}, (400, "invalidValue")),
        ({"op": "add", "path": "members", "value": [BABS]}, (400, "invalidValue")),
        ({"op": "remove", "path": "members", "value": [{"value": 1}]}, (400, "invalidValue")),
        ({"op": "replace", "path": "members.value", "value": BABS}, (400, "mutability")),
        ({"op": "remove", "path": f'members[value eq "{BABS}"].display'}, (400, "mutability")),
        (
            {"op": "replace", "path": f'members[value eq "{BABS}"]', "value": {"value": JAMES}},
            (400, "mutability"),
        ),
        (
            {"op": "add", "path": f'members[value eq "{BABS}"]', "value": {"value": BABS}},
            (400, "mutability"),
        ),
        ({"op": "add", "path": "members.nosuch", "value": "x"}, (400, "invalidPath")),
        ({"op": "add", "path": "userName", "value": "x"}, (400, "invalidPath")),
        ({"op": "add", "path": "password", "value": "x"}, (400, "invalidPath")),
    ],
)
def test_group_errors(operation: dict[str, Any], expected: tuple[int, str]) -> None:
    assert _fails(GROUP, operation, resource_type=GROUP_RESOURCE) == expected


def test_member_steps_and_where_filters_are_what_the_parser_gives() -> None:
    result = _group_patch({"op": "remove", "path": 'members[type eq "User" and display sw "B"]'})
    (step,) = result.member_steps
    assert isinstance(step.where, And)


# --- The deactivations IdPs send ------------------------------------------------------------

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "replace", "path": "active", "value": False},
        {"op": "Replace", "path": "Active", "value": "False"},  # Entra
        {"op": "replace", "path": f"{CORE_USER}:active", "value": False},
        {"op": "replace", "value": {"active": False}},  # Okta
        {"op": "replace", "value": {"ACTIVE": False, "displayName": "B"}},
        {"op": "replace", "value": {f"{CORE_USER}:active": False}},
    ],
)
def test_the_shapes_idps_deactivate_with_deactivate(operation: dict[str, Any]) -> None:
    [parsed] = parse_patch_request(_body(operation))
    assert apply_patch(USER_RESOURCE, USER, [parsed]).resource.get("active", True) is not True


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "replace", "path": "displayName", "value": "Babs"},
        {"op": "replace", "value": {"displayName": "Babs", "name.givenName": "B"}},
        {"op": "add", "path": 'emails[type eq "work"].value', "value": "b@example.com"},
        {"op": "replace", "value": {ENTERPRISE_USER: {"department": "Sales"}}},
    ],
)
def test_attribute_changes_leave_active_alone(operation: dict[str, Any]) -> None:
    [parsed] = parse_patch_request(_body(operation))
    assert apply_patch(USER_RESOURCE, USER, [parsed]).resource["active"] is True


@pytest.mark.parametrize(
    ("operations", "expected"),
    [
        (
            [{"op": "add", "path": "members", "value": [{"value": BABS}, {"value": JAMES}]}],
            MemberStep("add", (BABS, JAMES)),
        ),
        ([{"op": "remove", "path": f'members[value eq "{BABS}"]'}], MemberStep("remove", (BABS,))),
        (
            [{"op": "Remove", "path": "members", "value": [{"value": JAMES}]}],
            MemberStep("remove", (JAMES,)),
        ),
        ([{"op": "add", "value": {"members": [{"value": BABS}]}}], MemberStep("add", (BABS,))),
        # Anything else needs the group: an attribute, more steps, a replace, a filter.
        ([{"op": "replace", "path": "displayName", "value": "Guides"}], None),
        (
            [
                {"op": "add", "path": "members", "value": [{"value": BABS}]},
                {"op": "add", "path": "members", "value": [{"value": JAMES}]},
            ],
            None,
        ),
        ([{"op": "replace", "path": "members", "value": [{"value": BABS}]}], None),
        ([{"op": "remove", "path": 'members[type eq "Group"]'}], None),
        ([{"op": "remove", "path": "members"}], None),
        # Errors are reported against the group once it is found.
        ([{"op": "replace", "path": 'members[value eq "x"]', "value": []}], None),
        ([{"op": "add", "path": "members", "value": []}], None),  # adds no one
    ],
)
def test_a_member_change_is_known_without_the_group(
    operations: list[dict[str, Any]], expected: MemberStep | None
) -> None:
    parsed = parse_patch_request(_body(*operations))
    assert member_change_alone(foreseen(GROUP_RESOURCE, parsed)) == expected
    if expected is not None:  # what the group would do with them, whatever its attributes
        result = apply_patch(GROUP_RESOURCE, GROUP, parsed)
        assert result.resource == GROUP
        assert result.member_steps == (expected,)
