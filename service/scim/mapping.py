"""A tenant's attribute mapping: SCIM attributes -> the operator's own profile fields.

A mapping is ``{"field": "source path"}``, for example::

    {"email": "userName", "first_name": "name.givenName",
     "department": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
     "work_email": "emails[type eq \\"work\\"].value",
     "cost_centre": "urn:ietf:params:scim:schemas:extension:acme:2.0:User:costCentre"}

A source is an RFC 7644 attribute path, optionally URN-qualified and with a
value filter. It must name an attribute of the User schemas, except under a
custom extension URN (``urn:ietf:params:scim:schemas:extension:<name>:...``)
that this server does not define: IdPs send those, the resource keeps them
as sent, and any attribute name is accepted there. A multi-valued source
without a filter gives its primary value, else its first.

`check_mapping` runs when the operator saves a mapping; `mapped_profile` is
pure, so event payloads and the admin API share it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from service.scim.attributes import USER_RESOURCE, Attribute
from service.scim.errors import ScimError
from service.scim.filter import PatchPath, matches, parse_patch_path

FIELD_PATTERN: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
CUSTOM_EXTENSION_PREFIX: Final = "urn:ietf:params:scim:schemas:extension:"
MAX_FIELDS: Final = 200


class MappingError(ValueError):
    """A mapping that cannot be saved; the message says which entry and why."""


def check_mapping(mapping: Any) -> dict[str, str]:
    """`mapping` as a clean ``{field: source}``; MappingError names the first problem."""
    if not isinstance(mapping, dict):
        raise MappingError("the mapping must be an object of field -> SCIM attribute path")
    if len(mapping) > MAX_FIELDS:
        raise MappingError(f"a mapping has at most {MAX_FIELDS} fields")
    clean: dict[str, str] = {}
    for field, source in mapping.items():
        if not isinstance(field, str) or not FIELD_PATTERN.fullmatch(field):
            raise MappingError(
                f"field {field!r}: use lower-case letters, digits and '_', starting with a letter"
            )
        if not isinstance(source, str) or not source.strip():
            raise MappingError(f"field {field!r}: the source must be a SCIM attribute path")
        try:
            path = parse_patch_path(source.strip())
        except ScimError as exc:
            raise MappingError(f"field {field!r}: {exc.detail}") from exc
        _check_source(field, path)
        clean[field] = source.strip()
    return clean


def _check_source(field: str, path: PatchPath) -> None:
    attr = path.attr
    schema = USER_RESOURCE.schema if attr.schema is None else USER_RESOURCE.schema_for(attr.schema)
    if schema is None:
        if attr.schema is not None and attr.schema.lower().startswith(CUSTOM_EXTENSION_PREFIX):
            return
        raise MappingError(f"field {field!r}: {attr.schema!r} is not a User schema")
    attribute = schema.get(attr.attr)
    if attribute is None or attribute.mutability == "writeOnly":
        raise MappingError(f"field {field!r}: {attr.attr!r} is not a readable User attribute")
    for sub_name in (attr.sub_attr, path.sub_attr):
        if sub_name is not None and attribute.sub(sub_name) is None:
            raise MappingError(f"field {field!r}: {attribute.name} has no {sub_name!r}")
    if path.value_filter is not None and not attribute.multi_valued:
        raise MappingError(f"field {field!r}: {attribute.name} is single-valued: no filter")


def mapped_profile(mapping: Mapping[str, str], resource: Mapping[str, Any]) -> dict[str, Any]:
    """The operator's profile of a stored (or rendered) User: each mapped field with a value.

    Fields whose source has no value are left out, so a consumer can tell
    "not provided" from an empty string.
    """
    profile: dict[str, Any] = {}
    for field, source in mapping.items():
        value = _value_at(parse_patch_path(source), resource)
        if value is not None:
            profile[field] = value
    return profile


def _value_at(path: PatchPath, resource: Mapping[str, Any]) -> Any:
    attr = path.attr
    container: Any = resource
    if (
        attr.schema is not None
        and USER_RESOURCE.schema_for(attr.schema) is not USER_RESOURCE.schema
    ):
        container = _get(resource, attr.schema)
    if not isinstance(container, Mapping):
        return None
    value = _get(container, attr.attr)
    sub_name = attr.sub_attr or path.sub_attr
    if isinstance(value, list):
        candidates = [v for v in value if isinstance(v, Mapping)] or value
        if path.value_filter is not None:
            where = path.value_filter
            candidates = [v for v in candidates if isinstance(v, Mapping) and matches(where, v)]
        value = _preferred(candidates)
    if sub_name is not None:
        return _get(value, sub_name) if isinstance(value, Mapping) else None
    if isinstance(value, Mapping) and _has_value_sub(attr.schema, attr.attr):
        # A reference such as the manager maps to its id, not to an object.
        return value.get("value")
    return value


def _preferred(values: list[Any]) -> Any:
    for value in values:
        if isinstance(value, Mapping) and value.get("primary") is True:
            return value
    return values[0] if values else None


def _has_value_sub(schema_urn: str | None, name: str) -> bool:
    schema = USER_RESOURCE.schema if schema_urn is None else USER_RESOURCE.schema_for(schema_urn)
    attribute: Attribute | None = None if schema is None else schema.get(name)
    return (
        attribute is not None and not attribute.multi_valued and attribute.sub("value") is not None
    )


def _get(mapping: Mapping[str, Any], name: str) -> Any:
    if name in mapping:
        return mapping[name]
    folded = name.lower()
    return next((v for k, v in mapping.items() if isinstance(k, str) and k.lower() == folded), None)
