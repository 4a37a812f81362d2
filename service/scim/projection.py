"""`attributes` and `excludedAttributes` (RFC 7644 section 3.4.2.5).

A request's two parameters are parsed once into a `Projection`, which then
serves twice: `Projection.wants` tells the store which costly attributes it
may skip loading (a Group's members, a User's groups), and `project` trims
each rendered resource.

Choices the RFC leaves open:

* Names that designate no attribute of the resource type are ignored, so a
  client asking for an attribute this server does not have still gets an
  answer rather than an error.
* When both parameters are given, `attributes` wins and `excludedAttributes`
  is ignored: the RFC defines no meaning for the pair, and an explicit list
  of what to return is the more precise request. A blank parameter counts as
  absent.
* `schemas` and `meta` are always kept, besides the `returned: always`
  attributes (`id`): clients rely on `meta.location` and `meta.version`
  whatever they asked for.
* A bare schema URN names every attribute of that schema, which is how a
  client selects or drops the whole Enterprise User extension.
* A complex value left empty by sub-attribute selection is dropped, as is
  an extension left empty, whose URN then also leaves `schemas`.

Resources are expected with canonical attribute names, as `resources`
renders them; keys the schemas do not describe are treated as
`returned: default`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from service.scim.attributes import Attribute, ResourceType, Returned, Schema, resolve_path

_Selection = tuple[str, str | None, str | None]
"""(schema URN, attribute, sub-attribute), canonically spelled; no attribute means all of them."""

_SubFilter = Callable[[str, Attribute | None], bool]
"""Whether a sub-attribute (its key and definition, if known) of a kept attribute stays."""

_ALWAYS_KEPT: Final = frozenset({"schemas", "meta"})
_OMITTED: Final = object()


@dataclass(frozen=True, slots=True)
class Projection:
    resource_type: ResourceType
    attributes: frozenset[_Selection] | None = None
    """What the `attributes` parameter named, or None when it was not given."""
    excluded: frozenset[_Selection] = frozenset()
    """What the `excludedAttributes` parameter named."""

    def wants(self, attr: str) -> bool:
        """Whether the core attribute `attr` can appear in a projected resource at all."""
        schema = self.resource_type.schema
        attribute = schema.get(attr)
        if attribute is not None and attribute.name in _ALWAYS_KEPT:
            return True
        return _plan(self, schema, attr, attribute) is not None


def parse_projection(
    resource_type: ResourceType, attributes: str | None, excluded: str | None
) -> Projection:
    if attributes is not None and attributes.strip():
        return Projection(resource_type, attributes=_selections(resource_type, attributes))
    if excluded is not None and excluded.strip():
        return Projection(resource_type, excluded=_selections(resource_type, excluded))
    return Projection(resource_type)


def _selections(resource_type: ResourceType, names: str) -> frozenset[_Selection]:
    selections: set[_Selection] = set()
    for raw in names.split(","):
        name = raw.strip()
        schema = resource_type.schema_for(name)
        if schema is not None:
            selections.add((schema.id, None, None))
            continue
        resolved = resolve_path(resource_type, name)
        if resolved is not None:
            schema, attribute, sub = resolved
            selections.add((schema.id, attribute.name, sub.name if sub else None))
    return frozenset(selections)


def _returned_by_default(_key: str, sub: Attribute | None) -> bool:
    return sub is None or sub.returned in ("default", "always")


def _plan(
    projection: Projection, schema: Schema, key: str, attribute: Attribute | None
) -> _SubFilter | None:
    """How much of one attribute to return: None for nothing, else which sub-attributes."""
    name = attribute.name if attribute is not None else key
    returned: Returned = attribute.returned if attribute is not None else "default"
    if returned == "never":
        return None
    if returned == "always":
        return _returned_by_default
    if projection.attributes is not None:
        return _plan_requested(projection.attributes, schema.id, name, returned)
    if returned == "request":
        return None
    return _plan_excluded(projection.excluded, schema.id, name)


def _named_subs(selections: frozenset[_Selection], urn: str, name: str) -> set[str]:
    return {s for u, a, s in selections if u == urn and a == name and s is not None}


def _plan_requested(
    selected: frozenset[_Selection], urn: str, name: str, returned: Returned
) -> _SubFilter | None:
    # A whole schema names its attributes only as far as a default response
    # would show them; `returned: request` needs the attribute's own name.
    whole_schema = returned == "default" and (urn, None, None) in selected
    if whole_schema or (urn, name, None) in selected:
        return _returned_by_default
    subs = _named_subs(selected, urn, name)
    if not subs:
        return None
    return lambda key, sub: (
        (sub is not None and sub.returned == "always")
        or (key in subs and (sub is None or sub.returned != "never"))
    )


def _plan_excluded(excluded: frozenset[_Selection], urn: str, name: str) -> _SubFilter | None:
    if (urn, None, None) in excluded or (urn, name, None) in excluded:
        return None
    subs = _named_subs(excluded, urn, name)
    if not subs:
        return _returned_by_default
    return lambda key, sub: (
        _returned_by_default(key, sub)
        and (key not in subs or (sub is not None and sub.returned == "always"))
    )


def _narrow(attribute: Attribute | None, value: Any, keep: _SubFilter) -> Any:
    """`value` with only the sub-attributes `keep` accepts, in each element if multi-valued."""
    if attribute is None or attribute.type != "complex":
        return value
    # Every sub-attribute stays (unknown keys count as `returned: default`) in a
    # default response, e.g. each of the groups of every user looked up.
    keeps_all = keep is _returned_by_default and attribute.subs_returned_by_default

    def narrow_one(item: Any) -> Any:
        if not isinstance(item, dict):
            return item
        if keeps_all:
            return dict(item)
        return {k: v for k, v in item.items() if keep(k, attribute.sub(k))}

    if isinstance(value, list):
        return [item for item in map(narrow_one, value) if item != {}]
    return narrow_one(value)


def _project_attribute(schema: Schema, key: str, value: Any, projection: Projection) -> Any:
    attribute = schema.get(key)
    keep = _plan(projection, schema, key, attribute)
    if keep is None:
        return _OMITTED
    narrowed = _narrow(attribute, value, keep)
    # Emptied by the selection, not empty to begin with (a Group with no members).
    if narrowed in ({}, []) and value not in ({}, []):
        return _OMITTED
    return narrowed


def project(
    resource_type: ResourceType, resource: dict[str, Any], projection: Projection
) -> dict[str, Any]:
    """A new resource holding what `projection` lets through; `resource` is not changed."""
    extensions = {schema.id: schema for schema, _ in resource_type.extensions}
    result: dict[str, Any] = {}
    for key, value in resource.items():
        if key in _ALWAYS_KEPT:
            result[key] = value
        elif key in extensions:
            schema = extensions[key]
            projected = {k: _project_attribute(schema, k, v, projection) for k, v in value.items()}
            kept = {k: v for k, v in projected.items() if v is not _OMITTED}
            if kept:
                result[key] = kept
        else:
            projected_value = _project_attribute(resource_type.schema, key, value, projection)
            if projected_value is not _OMITTED:
                result[key] = projected_value
    # Custom extensions kept as the IdP sent them are declared in `schemas` too.
    declared = set(extensions) | {key for key in resource if key.lower().startswith("urn:")}
    dropped = {urn for urn in declared if urn in resource and urn not in result}
    if dropped and "schemas" in result:
        result["schemas"] = [urn for urn in result["schemas"] if urn not in dropped]
    return result
