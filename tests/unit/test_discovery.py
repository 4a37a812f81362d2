"""`/Schemas` and `/ResourceTypes` documents (RFC 7643 sections 6 and 7)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from service.scim.attributes import (
    ENTERPRISE_USER,
    GROUP,
    GROUP_RESOURCE,
    USER,
    USER_RESOURCE,
    Schema,
)
from service.scim.discovery import (
    RESOURCE_TYPE_SCHEMA,
    SCHEMA_SCHEMA,
    all_resource_types,
    all_schemas,
    find_resource_type,
    find_schema,
    resource_type_document,
    schema_document,
)

BASE_URL = "https://scim.example.com/scim/v2/acme"
CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CHARACTERISTICS = {
    "name",
    "type",
    "multiValued",
    "description",
    "required",
    "caseExact",
    "mutability",
    "returned",
    "uniqueness",
}


def _by_name(attributes: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(a for a in attributes if a["name"] == name)


def _walk(attributes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for attribute in attributes:
        yield attribute
        yield from _walk(attribute.get("subAttributes", []))


def test_message_urns() -> None:
    assert SCHEMA_SCHEMA == "urn:ietf:params:scim:schemas:core:2.0:Schema"
    assert RESOURCE_TYPE_SCHEMA == "urn:ietf:params:scim:schemas:core:2.0:ResourceType"


# --- Schemas -----------------------------------------------------------------------------------


def test_schema_document_envelope() -> None:
    document = schema_document(USER, BASE_URL)
    assert list(document) == ["schemas", "id", "name", "description", "attributes", "meta"]
    assert document["schemas"] == [SCHEMA_SCHEMA]
    assert document["id"] == CORE_USER
    assert document["name"] == "User"
    assert document["description"] == "User Account"
    assert document["meta"] == {
        "resourceType": "Schema",
        "location": f"{BASE_URL}/Schemas/{CORE_USER}",
    }


def test_user_name_document() -> None:
    user_name = _by_name(schema_document(USER, BASE_URL)["attributes"], "userName")
    description = user_name.pop("description")
    assert description
    assert user_name == {
        "name": "userName",
        "type": "string",
        "multiValued": False,
        "required": True,
        "caseExact": False,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "server",
    }


def test_password_and_id_documents() -> None:
    attributes = schema_document(USER, BASE_URL)["attributes"]
    password = _by_name(attributes, "password")
    assert (password["mutability"], password["returned"]) == ("writeOnly", "never")
    id_ = _by_name(attributes, "id")
    assert (id_["mutability"], id_["returned"], id_["caseExact"], id_["uniqueness"]) == (
        "readOnly",
        "always",
        True,
        "server",
    )


def test_complex_multi_valued_document() -> None:
    emails = _by_name(schema_document(USER, BASE_URL)["attributes"], "emails")
    assert emails["type"] == "complex"
    assert emails["multiValued"] is True
    assert "canonicalValues" not in emails
    assert "referenceTypes" not in emails
    subs = emails["subAttributes"]
    assert [s["name"] for s in subs] == ["value", "display", "type", "primary"]
    assert _by_name(subs, "type")["canonicalValues"] == ["work", "home", "other"]
    primary = _by_name(subs, "primary")
    assert primary["type"] == "boolean"
    assert "canonicalValues" not in primary
    assert "subAttributes" not in primary


def test_reference_document() -> None:
    groups = _by_name(schema_document(USER, BASE_URL)["attributes"], "groups")
    assert groups["mutability"] == "readOnly"
    ref = _by_name(groups["subAttributes"], "$ref")
    assert ref["type"] == "reference"
    assert ref["referenceTypes"] == ["User", "Group"]
    assert ref["mutability"] == "readOnly"


def test_group_schema_document() -> None:
    document = schema_document(GROUP, BASE_URL)
    assert document["id"] == CORE_GROUP
    assert document["meta"]["location"] == f"{BASE_URL}/Schemas/{CORE_GROUP}"
    assert _by_name(document["attributes"], "displayName")["required"] is True
    members = _by_name(document["attributes"], "members")["subAttributes"]
    assert _by_name(members, "value")["mutability"] == "immutable"
    assert _by_name(members, "$ref")["mutability"] == "immutable"
    assert _by_name(members, "display")["mutability"] == "readOnly"
    assert _by_name(members, "type")["canonicalValues"] == ["User", "Group"]


def test_enterprise_schema_document() -> None:
    document = schema_document(ENTERPRISE_USER, BASE_URL)
    assert document["id"] == ENTERPRISE
    assert document["name"] == "EnterpriseUser"
    assert document["meta"]["location"] == f"{BASE_URL}/Schemas/{ENTERPRISE}"
    manager = _by_name(document["attributes"], "manager")
    assert [s["name"] for s in manager["subAttributes"]] == ["value", "$ref", "displayName"]
    assert _by_name(manager["subAttributes"], "$ref")["referenceTypes"] == ["User"]
    assert _by_name(manager["subAttributes"], "displayName")["mutability"] == "readOnly"


@pytest.mark.parametrize("schema", [USER, GROUP, ENTERPRISE_USER])
def test_every_attribute_states_every_characteristic(schema: Schema) -> None:
    for attribute in _walk(schema_document(schema, BASE_URL)["attributes"]):
        assert attribute.keys() >= CHARACTERISTICS, attribute["name"]
        extra = attribute.keys() - CHARACTERISTICS
        assert extra <= {"subAttributes", "canonicalValues", "referenceTypes"}
        assert ("subAttributes" in attribute) == (attribute["type"] == "complex")
        assert ("referenceTypes" in attribute) == (attribute["type"] == "reference")


@pytest.mark.parametrize("schema", [USER, GROUP, ENTERPRISE_USER])
def test_schema_document_is_json(schema: Schema) -> None:
    document = schema_document(schema, BASE_URL)
    assert json.loads(json.dumps(document)) == document


def test_documents_are_fresh_each_time() -> None:
    first = schema_document(USER, BASE_URL)
    first["attributes"][0]["subAttributes"] = ["mutated"]
    _by_name(first["attributes"], "emails")["subAttributes"].clear()
    second = schema_document(USER, BASE_URL)
    assert "subAttributes" not in second["attributes"][0]
    assert _by_name(second["attributes"], "emails")["subAttributes"]


def test_all_schemas() -> None:
    assert [s.id for s in all_schemas()] == [CORE_USER, ENTERPRISE, CORE_GROUP]


def test_every_schema_a_resource_type_uses_is_discoverable() -> None:
    for rt in all_resource_types():
        for schema in rt.schemas():
            assert find_schema(schema.id) is schema


@pytest.mark.parametrize(
    ("id_", "expected"),
    [
        (CORE_USER, USER),
        (CORE_USER.upper(), USER),
        (ENTERPRISE.lower(), ENTERPRISE_USER),
        (CORE_GROUP, GROUP),
        ("urn:ietf:params:scim:schemas:core:2.0:Nope", None),
        ("User", None),
        ("", None),
    ],
)
def test_find_schema(id_: str, expected: Schema | None) -> None:
    assert find_schema(id_) is expected


# --- Resource types ----------------------------------------------------------------------------


def test_user_resource_type_document() -> None:
    assert resource_type_document(USER_RESOURCE, BASE_URL) == {
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "User Account",
        "schema": CORE_USER,
        "schemaExtensions": [{"schema": ENTERPRISE, "required": False}],
        "meta": {"resourceType": "ResourceType", "location": f"{BASE_URL}/ResourceTypes/User"},
    }


def test_group_resource_type_document_has_no_extensions() -> None:
    assert resource_type_document(GROUP_RESOURCE, BASE_URL) == {
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": "Group",
        "name": "Group",
        "endpoint": "/Groups",
        "description": "Group",
        "schema": CORE_GROUP,
        "meta": {"resourceType": "ResourceType", "location": f"{BASE_URL}/ResourceTypes/Group"},
    }


def test_all_resource_types() -> None:
    assert all_resource_types() == (USER_RESOURCE, GROUP_RESOURCE)


@pytest.mark.parametrize(
    ("id_", "expected"),
    [
        ("User", USER_RESOURCE),
        ("user", USER_RESOURCE),
        ("GROUP", GROUP_RESOURCE),
        ("Users", None),
        (CORE_USER, None),
        ("", None),
    ],
)
def test_find_resource_type(id_: str, expected: object) -> None:
    assert find_resource_type(id_) is expected
