"""`/Schemas` and `/ResourceTypes` (RFC 7644 section 4), rendered from `attributes`.

The documents take the shapes of RFC 7643 section 7 (schemas) and section 6
(resource types). Every characteristic is stated on every attribute, even
where it holds the RFC default, so clients need not know the defaults;
`canonicalValues` appears when there are some, `referenceTypes` on references
and `subAttributes` on complex attributes.
"""

from __future__ import annotations

from typing import Any, Final

from service.scim.attributes import (
    ENTERPRISE_USER,
    GROUP,
    GROUP_RESOURCE,
    USER,
    USER_RESOURCE,
    Attribute,
    ResourceType,
    Schema,
)

SCHEMA_SCHEMA: Final = "urn:ietf:params:scim:schemas:core:2.0:Schema"
RESOURCE_TYPE_SCHEMA: Final = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"

_SCHEMAS: Final = (USER, ENTERPRISE_USER, GROUP)
_RESOURCE_TYPES: Final = (USER_RESOURCE, GROUP_RESOURCE)


def all_schemas() -> tuple[Schema, ...]:
    return _SCHEMAS


def all_resource_types() -> tuple[ResourceType, ...]:
    return _RESOURCE_TYPES


def find_schema(id: str) -> Schema | None:
    lowered = id.lower()
    return next((schema for schema in _SCHEMAS if schema.id.lower() == lowered), None)


def find_resource_type(id: str) -> ResourceType | None:
    lowered = id.lower()
    return next((rt for rt in _RESOURCE_TYPES if rt.id.lower() == lowered), None)


def _attribute_document(attribute: Attribute) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": attribute.name,
        "type": attribute.type,
        "multiValued": attribute.multi_valued,
        "description": attribute.description,
        "required": attribute.required,
        "caseExact": attribute.case_exact,
        "mutability": attribute.mutability,
        "returned": attribute.returned,
        "uniqueness": attribute.uniqueness,
    }
    if attribute.canonical_values:
        document["canonicalValues"] = list(attribute.canonical_values)
    if attribute.type == "reference":
        document["referenceTypes"] = list(attribute.reference_types)
    if attribute.type == "complex":
        document["subAttributes"] = [_attribute_document(sub) for sub in attribute.sub_attributes]
    return document


def schema_document(schema: Schema, base_url: str) -> dict[str, Any]:
    return {
        "schemas": [SCHEMA_SCHEMA],
        "id": schema.id,
        "name": schema.name,
        "description": schema.description,
        "attributes": [_attribute_document(attribute) for attribute in schema.attributes],
        "meta": {"resourceType": "Schema", "location": f"{base_url}/Schemas/{schema.id}"},
    }


def resource_type_document(rt: ResourceType, base_url: str) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": rt.id,
        "name": rt.name,
        "endpoint": rt.endpoint,
        "description": rt.description,
        "schema": rt.schema.id,
    }
    # Optional in section 6, and left out when empty as in the section 8.6 Group example.
    if rt.extensions:
        document["schemaExtensions"] = [
            {"schema": schema.id, "required": required} for schema, required in rt.extensions
        ]
    document["meta"] = {
        "resourceType": "ResourceType",
        "location": f"{base_url}/ResourceTypes/{rt.id}",
    }
    return document
