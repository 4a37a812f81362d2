"""The RFC 7643 attribute definitions, and resolving names against them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.scim import schemas as urns
from service.scim.attributes import (
    ENTERPRISE_USER,
    GROUP,
    GROUP_RESOURCE,
    USER,
    USER_RESOURCE,
    Attribute,
    Schema,
    resolve,
    resolve_path,
)

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def _attr(schema: Schema, name: str) -> Attribute:
    attribute = schema.get(name)
    assert attribute is not None, name
    return attribute


def _sub(schema: Schema, name: str, sub: str) -> Attribute:
    attribute = _attr(schema, name).sub(sub)
    assert attribute is not None, f"{name}.{sub}"
    return attribute


def _walk(attributes: tuple[Attribute, ...]) -> Iterator[Attribute]:
    for attribute in attributes:
        yield attribute
        yield from _walk(attribute.sub_attributes)


# --- The schemas -------------------------------------------------------------------------------


def test_schema_ids_are_the_rfc_urns() -> None:
    assert USER.id == CORE_USER == urns.USER_SCHEMA
    assert GROUP.id == CORE_GROUP == urns.GROUP_SCHEMA
    assert ENTERPRISE_USER.id == ENTERPRISE == urns.ENTERPRISE_USER
    assert (USER.name, GROUP.name, ENTERPRISE_USER.name) == ("User", "Group", "EnterpriseUser")


def test_user_has_every_rfc_attribute() -> None:
    assert [a.name for a in USER.attributes] == [
        "id",
        "externalId",
        "userName",
        "name",
        "displayName",
        "nickName",
        "profileUrl",
        "title",
        "userType",
        "preferredLanguage",
        "locale",
        "timezone",
        "active",
        "password",
        "emails",
        "phoneNumbers",
        "ims",
        "photos",
        "addresses",
        "groups",
        "entitlements",
        "roles",
        "x509Certificates",
        "meta",
    ]


def test_group_and_enterprise_attributes() -> None:
    assert [a.name for a in GROUP.attributes] == [
        "id",
        "externalId",
        "displayName",
        "members",
        "meta",
    ]
    assert [a.name for a in ENTERPRISE_USER.attributes] == [
        "employeeNumber",
        "costCenter",
        "organization",
        "division",
        "department",
        "manager",
    ]


def test_user_name_is_required_and_unique_per_server() -> None:
    user_name = _attr(USER, "userName")
    assert user_name.type == "string"
    assert user_name.required
    assert user_name.uniqueness == "server"
    assert not user_name.case_exact
    assert user_name.mutability == "readWrite"
    assert user_name.returned == "default"


def test_password_is_write_only_and_never_returned() -> None:
    password = _attr(USER, "password")
    assert password.mutability == "writeOnly"
    assert password.returned == "never"


@pytest.mark.parametrize("schema", [USER, GROUP])
def test_id_is_read_only_always_returned_case_exact_and_unique(schema: Schema) -> None:
    id_ = _attr(schema, "id")
    assert id_.mutability == "readOnly"
    assert id_.returned == "always"
    assert id_.case_exact
    assert id_.uniqueness == "server"
    # A client never sends it, so it cannot be required of one.
    assert not id_.required


@pytest.mark.parametrize("schema", [USER, GROUP])
def test_external_id_is_case_exact_and_writable(schema: Schema) -> None:
    external_id = _attr(schema, "externalId")
    assert external_id.case_exact
    assert external_id.mutability == "readWrite"
    assert not external_id.required


@pytest.mark.parametrize("schema", [USER, GROUP])
def test_meta_is_read_only(schema: Schema) -> None:
    meta = _attr(schema, "meta")
    assert meta.type == "complex"
    assert meta.mutability == "readOnly"
    assert [s.name for s in meta.sub_attributes] == [
        "resourceType",
        "created",
        "lastModified",
        "location",
        "version",
    ]
    assert all(s.mutability == "readOnly" for s in meta.sub_attributes)
    assert _sub(schema, "meta", "created").type == "dateTime"
    assert _sub(schema, "meta", "lastModified").type == "dateTime"
    assert _sub(schema, "meta", "location").type == "reference"


def test_name_sub_attributes() -> None:
    name = _attr(USER, "name")
    assert name.type == "complex"
    assert not name.multi_valued
    assert [s.name for s in name.sub_attributes] == [
        "formatted",
        "familyName",
        "givenName",
        "middleName",
        "honorificPrefix",
        "honorificSuffix",
    ]


def test_groups_of_a_user_are_read_only_throughout() -> None:
    groups = _attr(USER, "groups")
    assert groups.multi_valued
    assert groups.mutability == "readOnly"
    assert [s.name for s in groups.sub_attributes] == ["value", "$ref", "display", "type"]
    assert all(s.mutability == "readOnly" for s in groups.sub_attributes)
    assert _sub(USER, "groups", "type").canonical_values == ("direct", "indirect")
    assert _sub(USER, "groups", "$ref").reference_types == ("User", "Group")


@pytest.mark.parametrize(
    ("name", "type_values"),
    [
        ("emails", ("work", "home", "other")),
        ("phoneNumbers", ("work", "home", "mobile", "fax", "pager", "other")),
        ("ims", ("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo")),
        ("photos", ("photo", "thumbnail")),
        ("entitlements", ()),
        ("roles", ()),
        ("x509Certificates", ()),
    ],
)
def test_plural_attributes(name: str, type_values: tuple[str, ...]) -> None:
    attribute = _attr(USER, name)
    assert attribute.type == "complex"
    assert attribute.multi_valued
    assert attribute.mutability == "readWrite"
    assert [s.name for s in attribute.sub_attributes] == ["value", "display", "type", "primary"]
    assert _sub(USER, name, "type").canonical_values == type_values
    assert _sub(USER, name, "primary").type == "boolean"


def test_addresses() -> None:
    addresses = _attr(USER, "addresses")
    assert addresses.multi_valued
    assert [s.name for s in addresses.sub_attributes] == [
        "formatted",
        "streetAddress",
        "locality",
        "region",
        "postalCode",
        "country",
        "type",
        "primary",
    ]
    assert _sub(USER, "addresses", "type").canonical_values == ("work", "home", "other")


def test_value_types_that_are_not_strings() -> None:
    assert _attr(USER, "active").type == "boolean"
    assert _attr(USER, "profileUrl").type == "reference"
    assert _attr(USER, "profileUrl").reference_types == ("external",)
    assert _sub(USER, "photos", "value").type == "reference"
    assert _sub(USER, "photos", "value").reference_types == ("external",)
    assert _sub(USER, "x509Certificates", "value").type == "binary"


def test_group_display_name_is_required() -> None:
    display_name = _attr(GROUP, "displayName")
    assert display_name.required
    assert display_name.mutability == "readWrite"


def test_group_members() -> None:
    members = _attr(GROUP, "members")
    assert members.type == "complex"
    assert members.multi_valued
    assert members.mutability == "readWrite"
    assert _sub(GROUP, "members", "value").mutability == "immutable"
    assert _sub(GROUP, "members", "$ref").mutability == "immutable"
    assert _sub(GROUP, "members", "$ref").reference_types == ("User", "Group")
    assert _sub(GROUP, "members", "display").mutability == "readOnly"
    member_type = _sub(GROUP, "members", "type")
    assert member_type.mutability == "immutable"
    assert member_type.canonical_values == ("User", "Group")


def test_enterprise_manager() -> None:
    manager = _attr(ENTERPRISE_USER, "manager")
    assert manager.type == "complex"
    assert not manager.multi_valued
    assert [s.name for s in manager.sub_attributes] == ["value", "$ref", "displayName"]
    assert _sub(ENTERPRISE_USER, "manager", "value").mutability == "readWrite"
    assert _sub(ENTERPRISE_USER, "manager", "$ref").reference_types == ("User",)
    assert _sub(ENTERPRISE_USER, "manager", "displayName").mutability == "readOnly"


def test_enterprise_strings_are_plain_read_write() -> None:
    for attribute in ENTERPRISE_USER.attributes[:-1]:
        assert (attribute.type, attribute.mutability, attribute.returned) == (
            "string",
            "readWrite",
            "default",
        )


@pytest.mark.parametrize("schema", [USER, GROUP, ENTERPRISE_USER])
def test_definitions_are_consistent(schema: Schema) -> None:
    def check_level(attributes: tuple[Attribute, ...]) -> None:
        lowered = [a.name.lower() for a in attributes]
        assert len(lowered) == len(set(lowered))

    check_level(schema.attributes)
    for attribute in _walk(schema.attributes):
        assert attribute.description
        assert bool(attribute.sub_attributes) == (attribute.type == "complex"), attribute.name
        assert bool(attribute.reference_types) == (attribute.type == "reference"), attribute.name
        if attribute.canonical_values:
            assert attribute.type == "string"
        check_level(attribute.sub_attributes)
        # RFC 7643 section 2.4: sub-attributes are never themselves complex.
        assert all(s.type != "complex" for s in attribute.sub_attributes)


# --- Case-insensitive lookups ------------------------------------------------------------------


def test_schema_get_is_case_insensitive_and_canonical() -> None:
    assert _attr(USER, "USERNAME").name == "userName"
    assert _attr(USER, "x509certificates").name == "x509Certificates"
    assert USER.get("nope") is None


def test_attribute_sub_is_case_insensitive() -> None:
    name = _attr(USER, "name")
    given = name.sub("GIVENNAME")
    assert given is not None
    assert given.name == "givenName"
    assert name.sub("nope") is None
    assert _attr(USER, "userName").sub("value") is None


def test_definitions_compare_by_value() -> None:
    assert _attr(USER, "id") == _attr(GROUP, "id")
    assert hash(USER) == hash(USER)


# --- Resource types ----------------------------------------------------------------------------


def test_resource_types() -> None:
    assert (USER_RESOURCE.id, USER_RESOURCE.name, USER_RESOURCE.endpoint) == (
        "User",
        "User",
        "/Users",
    )
    assert USER_RESOURCE.schema is USER
    assert USER_RESOURCE.extensions == ((ENTERPRISE_USER, False),)
    assert (GROUP_RESOURCE.id, GROUP_RESOURCE.name, GROUP_RESOURCE.endpoint) == (
        "Group",
        "Group",
        "/Groups",
    )
    assert GROUP_RESOURCE.schema is GROUP
    assert GROUP_RESOURCE.extensions == ()


def test_resource_type_schemas() -> None:
    assert USER_RESOURCE.schemas() == (USER, ENTERPRISE_USER)
    assert GROUP_RESOURCE.schemas() == (GROUP,)
    assert USER_RESOURCE.schema_for(ENTERPRISE.upper()) is ENTERPRISE_USER
    assert USER_RESOURCE.schema_for(CORE_USER) is USER
    assert GROUP_RESOURCE.schema_for(ENTERPRISE) is None


# --- resolve -----------------------------------------------------------------------------------


def test_resolve_core_attribute_case_insensitively() -> None:
    resolved = resolve(USER_RESOURCE, None, "username")
    assert resolved is not None
    schema, attribute, sub = resolved
    assert (schema, attribute.name, sub) == (USER, "userName", None)


def test_resolve_sub_attribute() -> None:
    resolved = resolve(USER_RESOURCE, None, "Name", "GivenName")
    assert resolved is not None
    schema, attribute, sub = resolved
    assert schema is USER
    assert attribute.name == "name"
    assert sub is not None
    assert sub.name == "givenName"


def test_resolve_extension_by_urn_case_insensitively() -> None:
    resolved = resolve(USER_RESOURCE, ENTERPRISE.lower(), "DEPARTMENT")
    assert resolved is not None
    assert resolved[0] is ENTERPRISE_USER
    assert resolved[1].name == "department"

    manager = resolve(USER_RESOURCE, ENTERPRISE, "manager", "displayname")
    assert manager is not None
    assert manager[2] is not None
    assert manager[2].mutability == "readOnly"


def test_resolve_core_by_its_urn() -> None:
    resolved = resolve(USER_RESOURCE, CORE_USER, "emails", "value")
    assert resolved is not None
    assert resolved[0] is USER


@pytest.mark.parametrize(
    ("schema_urn", "attr", "sub_attr"),
    [
        (None, "nope", None),
        (None, "name", "nope"),
        (None, "userName", "value"),
        # Extension attributes need their URN.
        (None, "department", None),
        ("urn:example:unknown", "userName", None),
        (ENTERPRISE, "userName", None),
    ],
)
def test_resolve_unknown(schema_urn: str | None, attr: str, sub_attr: str | None) -> None:
    assert resolve(USER_RESOURCE, schema_urn, attr, sub_attr) is None


def test_resolve_extension_on_a_resource_type_without_it() -> None:
    assert resolve(GROUP_RESOURCE, ENTERPRISE, "department") is None


def test_resolve_group_member_value() -> None:
    resolved = resolve(GROUP_RESOURCE, None, "MEMBERS", "value")
    assert resolved is not None
    assert resolved[2] is not None
    assert resolved[2].mutability == "immutable"


# --- resolve_path ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("userName", (CORE_USER, "userName", None)),
        ("NAME.givenname", (CORE_USER, "name", "givenName")),
        ("emails.value", (CORE_USER, "emails", "value")),
        (f"{CORE_USER}:userName", (CORE_USER, "userName", None)),
        (f"{CORE_USER.upper()}:EMAILS.Value", (CORE_USER, "emails", "value")),
        (f"{ENTERPRISE}:department", (ENTERPRISE, "department", None)),
        (f"{ENTERPRISE.lower()}:manager.displayName", (ENTERPRISE, "manager", "displayName")),
    ],
)
def test_resolve_path(path: str, expected: tuple[str, str, str | None]) -> None:
    resolved = resolve_path(USER_RESOURCE, path)
    assert resolved is not None
    schema, attribute, sub = resolved
    assert (schema.id, attribute.name, sub.name if sub else None) == expected


@pytest.mark.parametrize(
    "path",
    [
        "",
        "nope",
        "name.",
        "name.givenName.extra",
        "department",
        ENTERPRISE,
        f"{ENTERPRISE}:",
        f"{ENTERPRISE}:userName",
        "urn:example:unknown:2.0:User:userName",
    ],
)
def test_resolve_path_unknown(path: str) -> None:
    assert resolve_path(USER_RESOURCE, path) is None
