"""Client-supplied resources, checked against the schemas and brought to one canonical shape.

POST and PUT bodies go through `normalise`; PATCH values go through `coerce`,
the per-attribute step `normalise` is built from, so a value means the same
thing however it arrives.

The shape everything downstream relies on:

* attribute names in their canonical spelling (RFC 7643 section 2.1 makes
  them case-insensitive), extension attributes in an object under their
  schema URN;
* only attributes a client may write. ``id``, ``meta`` and every other
  readOnly attribute or sub-attribute (the manager's ``displayName``) are
  ignored, as RFC 7644 section 3.3 asks. The writeOnly ``password`` never
  enters the resource: `password_of` hands it out for hashing;
* attributes no schema describes are kept as sent, unvalidated: an unknown
  top-level attribute, an unknown extension object (IdPs send custom
  extensions such as ``urn:ietf:params:scim:schemas:extension:acme:2.0:User``
  for the operator's attribute mapping to read), and unknown attributes inside
  a known extension. Unknown sub-attributes of a known attribute are dropped:
  the schema says what a complex attribute holds;
* null, ``[]`` and ``{}`` mean "no value" (RFC 7643 section 2.5) and are
  dropped, so an unassigned attribute is always an absent key;
* no Group ``members``: they live in their own table, and `members_of` hands
  out their ids.

Leniency for real clients, each deliberate: booleans may be the strings
"true"/"false" in any case (Microsoft Entra ID sends "True"), a single-valued
complex attribute with a ``value`` sub-attribute may be given as that bare
value (Entra sends the enterprise ``manager`` as an id, and "" to clear it)
or as a list of at most one value (``[{"$ref": null, "value": id}]``),
and a single value given for a multi-valued attribute counts as a list of one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from service.scim.attributes import GROUP, USER, Attribute, ResourceType, Schema
from service.scim.errors import ScimError, invalid_syntax, invalid_value


def _attribute(schema: Schema, name: str) -> Attribute:
    attribute = schema.get(name)
    assert attribute is not None, name
    return attribute


MEMBERS: Final = _attribute(GROUP, "members")
"""A Group's members: never part of the resource dict."""
PASSWORD: Final = _attribute(USER, "password")
"""A User's password: never part of the resource dict."""


def normalise(resource_type: ResourceType, payload: Any) -> dict[str, Any]:
    """A POST or PUT body as the resource to store (see the module docstring)."""
    body = _object(payload)
    extensions = {schema.id.lower(): schema for schema, _ in resource_type.extensions}
    core = {key: value for key, value in body.items() if key.lower() not in extensions}
    resource = _writable(resource_type.schema, core, prefix="", keep_unknown=True)
    for schema in extensions.values():
        values = _get(body, schema.id)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise invalid_value(f"{schema.id} must be an object")
        attributes = _writable(schema, values, prefix=f"{schema.id}:", keep_unknown=True)
        if attributes:
            resource[schema.id] = attributes
    return resource


def password_of(payload: Any) -> str | None:
    """The cleartext password a POST or PUT body sets, if any."""
    password: str | None = coerce(PASSWORD, _get(_object(payload), "password"), "password")
    return password


def members_of(payload: Any) -> list[str] | None:
    """The member ids a Group POST or PUT body gives; None when it has no ``members`` key.

    A ``members`` of null gives ``[]``: the client said the group has no members.
    """
    body = _object(payload)
    if not any(key.lower() == "members" for key in body):
        return None
    return member_ids(_get(body, "members"))


def member_ids(value: Any) -> list[str]:
    """The ids in a ``members`` value (``[{"value": id, ...}, ...]``), in order, without repeats.

    Only ``value`` is read: ``$ref`` and ``display`` are the server's to fill in,
    and Entra sends ``"$ref": null``.
    """
    items = [] if value is None else value if isinstance(value, list) else [value]
    ids: dict[str, None] = {}
    for item in items:
        member_id = _get(item, "value") if isinstance(item, dict) else None
        if not isinstance(member_id, str) or not member_id:
            raise invalid_value("each member needs a 'value' holding the member's id")
        ids[member_id] = None
    return list(ids)


def coerce(attribute: Attribute, value: Any, name: str) -> Any:
    """`value` checked and converted for `attribute`; None when it amounts to no value.

    A multi-valued attribute gives a non-empty list, with at most one value
    marked primary (RFC 7643 section 2.4). `name` is how errors refer to the
    attribute. Raises ScimError(400, invalidValue) on a value of the wrong type.
    """
    if value is None:
        return None
    if not attribute.multi_valued:
        return coerce_one(attribute, value, name)
    items = value if isinstance(value, list) else [value]
    values = [c for item in items if (c := coerce_one(attribute, item, name)) is not None]
    if sum(1 for v in values if isinstance(v, dict) and v.get("primary") is True) > 1:
        raise invalid_value(f"at most one value of {name} may be primary")
    return values or None


def coerce_one(attribute: Attribute, value: Any, name: str) -> Any:
    """Like `coerce`, for a single value (one element, for a multi-valued attribute)."""
    if value is None:
        return None
    if attribute.type == "complex":
        return _complex(attribute, value, name)
    if attribute.type == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise invalid_value(f"{name} must be a boolean")
    # bool is an int in Python, but not a number in JSON.
    if attribute.type == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise invalid_value(f"{name} must be an integer")
    if attribute.type == "decimal":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        raise invalid_value(f"{name} must be a number")
    # string, reference, dateTime and binary all travel as JSON strings.
    if isinstance(value, str):
        return value
    raise invalid_value(f"{name} must be a string")


def _complex(attribute: Attribute, value: Any, name: str) -> dict[str, Any] | None:
    reference = not attribute.multi_valued and attribute.sub("value") is not None
    if reference and isinstance(value, list):
        # Entra has sent the manager as a list of one ``{"$ref": null, "value": id}``.
        if len(value) > 1:
            raise invalid_value(f"{name} takes a single value")
        value = value[0] if value else {}
    if isinstance(value, str) and reference:
        value = {"value": value} if value else {}
    if not isinstance(value, dict):
        raise invalid_value(
            f"each value of {name} must be an object"
            if attribute.multi_valued
            else f"{name} must be an object"
        )
    result: dict[str, Any] = {}
    for key, sub_value in value.items():
        sub = attribute.sub(key)
        if sub is None or sub.mutability == "readOnly":
            continue
        coerced = coerce(sub, sub_value, f"{name}.{sub.name}")
        if coerced is not None:
            result[sub.name] = coerced
    return result or None


def check_required(resource_type: ResourceType, resource: Mapping[str, Any]) -> None:
    """Raise ScimError(400, invalidValue) if a required attribute is missing or blank.

    Required attributes of an optional extension count only when the resource
    carries that extension.
    """
    for schema, required, values in _parts(resource_type, resource):
        if values is None:
            if required:
                raise invalid_value(f"the {schema.id} extension is required")
            continue
        for attribute in schema.attributes:
            value = values.get(attribute.name)
            if attribute.required and (
                value is None or (isinstance(value, str) and not value.strip())
            ):
                raise invalid_value(f"{_qualified(resource_type, schema, attribute)} is required")


def check_immutable(
    resource_type: ResourceType, old: Mapping[str, Any], new: Mapping[str, Any]
) -> None:
    """Raise ScimError(400, mutability) if `new` changes an immutable attribute `old` had set.

    Leaving the attribute out counts as a change (RFC 7644 section 3.5.1: once
    set, "the input value(s) MUST match"), so a PUT must repeat it.
    """
    for (schema, _, before), (_, _, after) in zip(
        _parts(resource_type, old), _parts(resource_type, new), strict=True
    ):
        for attribute in schema.attributes:
            if attribute.mutability != "immutable":
                continue
            was = (before or {}).get(attribute.name)
            now = (after or {}).get(attribute.name)
            if was is not None and not _same(attribute, was, now):
                name = _qualified(resource_type, schema, attribute)
                raise ScimError(400, f"{name} is immutable and cannot be changed", "mutability")


def _same(attribute: Attribute, was: Any, now: Any) -> bool:
    if attribute.type == "string" and not attribute.case_exact:
        return isinstance(now, str) and was.casefold() == now.casefold()
    return bool(was == now)


def _parts(
    resource_type: ResourceType, resource: Mapping[str, Any]
) -> Iterator[tuple[Schema, bool, Mapping[str, Any] | None]]:
    """Each schema with whether it is required and the part of `resource` it describes."""
    yield resource_type.schema, True, resource
    for schema, required in resource_type.extensions:
        yield schema, required, resource.get(schema.id)


def _qualified(resource_type: ResourceType, schema: Schema, attribute: Attribute) -> str:
    return attribute.name if schema is resource_type.schema else f"{schema.id}:{attribute.name}"


_SERVER_OWNED: Final = frozenset({"schemas", "id", "meta"})


def _writable(
    schema: Schema, values: Mapping[str, Any], *, prefix: str, keep_unknown: bool = False
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in values.items():
        attribute = schema.get(key)
        if attribute is None:
            if keep_unknown and key.lower() not in _SERVER_OWNED and value not in (None, [], {}):
                result[key] = value
            continue
        if attribute.mutability not in ("readWrite", "immutable") or attribute is MEMBERS:
            continue
        coerced = coerce(attribute, value, prefix + attribute.name)
        if coerced is not None:
            result[attribute.name] = coerced
    return result


def _object(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise invalid_syntax("the request body must be a JSON object")
    return payload


def _get(mapping: Mapping[str, Any], name: str) -> Any:
    """The value under `name`, matched case-insensitively; None if there is none."""
    folded = name.lower()
    return next((value for key, value in mapping.items() if key.lower() == folded), None)
