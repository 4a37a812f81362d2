"""PATCH (RFC 7644 section 3.5.2): parsing the PatchOp message and applying it to a resource.

`parse_patch_request` checks the message; `apply_patch` runs its operations,
in order, on a deep copy of the stored resource and returns the result for the
caller to persist in its transaction. A failing operation raises `ScimError`
and nothing is returned, which makes a request all-or-nothing as the RFC
requires. Values pass through `validation.coerce`, as POST and PUT bodies do,
so a PATCH stores exactly what a PUT of the same data would.

A Group's ``members`` never enter the resource: a group may have 100,000 of
them, in their own table. Operations on ``members`` become `MemberStep`s,
which the caller runs in order as set operations in SQL. Likewise a new
``password`` is handed back in `PatchResult.password` for hashing.

Choices the RFC leaves open, most of them made for what clients send:

* ``op`` is case-insensitive: Microsoft Entra ID sends "Add", "Replace", "Remove".
* A path-less add or replace takes its value as (path, value) pairs: keys may
  be dotted (``name.givenName``) or URN-qualified (``urn:...:User:department``),
  as Entra sends them, or an extension URN with an object. ``id``, ``meta`` and
  ``schemas`` in it are ignored: Okta echoes the group's ``id`` when renaming.
* Targeting a readOnly attribute (``id``, ``meta``, ``groups``) is a
  mutability error, where POST and PUT silently ignore such attributes: a
  PATCH names its target, and pretending to succeed would mislead the client.
* Add and replace merge into a single-valued complex attribute (``name``),
  leaving sub-attributes not given unchanged. A complex attribute with a
  ``value`` (the enterprise ``manager``) is one reference, and is replaced whole.
* Add to a multi-valued attribute appends the values not already there; replace
  swaps the whole list. A sub-attribute path without a filter
  (``emails.display``) addresses every value.
* A null value, or one that normalises to nothing (``{}``, or "" for the
  manager), removes a single-valued attribute; replace with it removes a
  multi-valued one, add with it adds nothing.
* A value filter that matches nothing is a noTarget error for add and replace,
  except ``emails[type eq "work"].value`` and the like on emails, phoneNumbers,
  addresses, ims and photos: that creates ``{"type": "work", "value": ...}``,
  which is how Entra adds a first work email or address.
* Remove with a filter that matches nothing succeeds without a change, so
  that a retried request does not fail. A single reference takes a filter on
  remove (``manager[value eq "id"]``, as Entra removes a manager): it goes if
  it matches.
* Attributes of a custom extension this server does not define
  (``urn:ietf:params:scim:schemas:extension:acme:2.0:User:costCentre``, with a
  path or in a path-less value) are kept as sent, like POST keeps them; an
  unknown attribute without a URN is still an invalidPath error.
* Remove on a multi-valued attribute with a value removes the values it
  describes rather than all of them: Entra removes group members this way.
* ``manager`` without its URN means the enterprise manager, as Entra has sent it.
* A value marked primary clears primary on the attribute's other values
  (RFC 7643 section 2.4).
* Immutability is judged on the outcome: an immutable attribute that had a
  value must still have it once all operations have run.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from service.scim.attributes import USER, Attribute, ResourceType, Schema, resolve
from service.scim.errors import ScimError, invalid_syntax, invalid_value
from service.scim.filter import AttrPath, Compare, Filter, Or, PatchPath, matches, parse_patch_path
from service.scim.mapping import CUSTOM_EXTENSION_PREFIX
from service.scim.schemas import ENTERPRISE_USER
from service.scim.validation import (
    MEMBERS,
    PASSWORD,
    check_immutable,
    check_required,
    coerce,
    coerce_one,
    member_ids,
)

PATCH_OP_URN: Final = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MAX_OPERATIONS: Final = 1000

_OPS: Final = frozenset({"add", "remove", "replace"})
_IGNORED_IN_VALUE: Final = frozenset({"id", "meta", "schemas"})
_CREATED_BY_TYPE: Final = frozenset({"emails", "phoneNumbers", "addresses", "ims", "photos"})


@dataclass(frozen=True, slots=True)
class Operation:
    op: str
    """``add``, ``remove`` or ``replace``, in lower case."""
    path: PatchPath | None
    value: Any
    """None when the operation has none; only ``remove`` may omit it."""


@dataclass(frozen=True, slots=True)
class MemberStep:
    """One change to a Group's membership, for the caller to run in SQL."""

    kind: str
    """``add``, ``remove`` (`ids`), ``remove_all``, ``replace`` (by `ids`) or
    ``remove_where`` (the members matching `where`)."""
    ids: tuple[str, ...] = ()
    where: Filter | None = None


@dataclass(frozen=True, slots=True)
class PatchResult:
    resource: dict[str, Any]
    member_steps: tuple[MemberStep, ...]
    changed: bool
    """False when nothing changed, so the caller can keep the version as it is."""
    password: str | None = None
    """The new cleartext password, when the request set one."""


def parse_patch_request(body: Any) -> list[Operation]:
    """The operations of a PatchOp message; ScimError(400) if it is malformed."""
    if not isinstance(body, dict):
        raise invalid_syntax("the request body must be a JSON object")
    message = _folded(body)
    schemas = message.get("schemas")
    if not isinstance(schemas, list) or not any(
        isinstance(urn, str) and urn.lower() == PATCH_OP_URN.lower() for urn in schemas
    ):
        raise invalid_syntax(f"schemas must contain {PATCH_OP_URN!r}")
    operations = message.get("operations")
    if not isinstance(operations, list) or not operations:
        raise invalid_syntax("Operations must be a non-empty list")
    if len(operations) > MAX_OPERATIONS:
        raise invalid_syntax(f"a request may have at most {MAX_OPERATIONS} operations")
    parsed = []
    for number, operation in enumerate(operations, 1):
        try:
            parsed.append(_operation(operation))
        except ScimError as error:
            raise _numbered(error, number) from error
    return parsed


def _operation(raw: Any) -> Operation:
    if not isinstance(raw, dict):
        raise invalid_syntax("an operation must be an object")
    fields = _folded(raw)
    op = fields.get("op")
    if not isinstance(op, str) or op.lower() not in _OPS:
        raise invalid_syntax("op must be 'add', 'remove' or 'replace'")
    op = op.lower()
    raw_path = fields.get("path")
    if raw_path is not None and not isinstance(raw_path, str):
        raise ScimError(400, "path must be a string", "invalidPath")
    path = None if raw_path is None else parse_patch_path(raw_path)
    if path is None and op == "remove":
        raise ScimError(400, "remove needs a path", "noTarget")
    # A null value is a value: it asks for the attribute to be cleared.
    if op != "remove" and "value" not in fields:
        raise invalid_syntax(f"{op} needs a value")
    return Operation(op, path, fields.get("value"))


def apply_patch(
    resource_type: ResourceType, resource: dict[str, Any], operations: list[Operation]
) -> PatchResult:
    """`resource` with `operations` applied; ScimError if any of them cannot be."""
    patcher = _Patcher(resource_type, copy.deepcopy(resource))
    for number, operation in enumerate(operations, 1):
        try:
            patcher.apply(operation)
        except ScimError as error:
            raise _numbered(error, number) from error
    check_required(resource_type, patcher.resource)
    check_immutable(resource_type, resource, patcher.resource)
    steps = tuple(patcher.member_steps)
    changed = bool(steps) or patcher.password is not None or patcher.resource != resource
    return PatchResult(patcher.resource, steps, changed, patcher.password)


_ANY_GROUP: Final = {"displayName": "any"}
"""A group standing in for every group (`foreseen`)."""


def foreseen(resource_type: ResourceType, operations: list[Operation]) -> PatchResult | None:
    """What Group ``operations`` do as far as it is known before the group is read:
    their result on a group standing in for every group. Members are not among a
    group's attributes, so what the operations do to members depends on no
    attribute. None when they fail there: an error is left to be reported against
    the group itself, once it is found."""
    try:
        return apply_patch(resource_type, _ANY_GROUP, operations)
    except ScimError:
        return None


def member_change_alone(result: PatchResult | None) -> MemberStep | None:
    """The one step of `foreseen` operations that only add, or only remove, members by
    id, what IdPs send most; None when they do anything else, or fail."""
    if result is None or result.resource != _ANY_GROUP or len(result.member_steps) != 1:
        return None
    [step] = result.member_steps
    return step if step.kind in ("add", "remove") else None


def attributes_alone(result: PatchResult | None) -> bool:
    """Whether `foreseen` operations change no members (a rename, an externalId);
    False when they fail."""
    return result is not None and not result.member_steps


def members_added(result: PatchResult | None) -> list[str]:
    """The member ids `foreseen` operations add (by `add` or `replace`); none when
    they fail."""
    if result is None:
        return []
    return [
        member_id
        for step in result.member_steps
        if step.kind in ("add", "replace")
        for member_id in step.ids
    ]


class _Patcher:
    def __init__(self, resource_type: ResourceType, resource: dict[str, Any]) -> None:
        self.resource_type = resource_type
        self.resource = resource
        self.member_steps: list[MemberStep] = []
        self.password: str | None = None

    def apply(self, operation: Operation) -> None:
        if operation.path is not None:
            self._target(operation.op, operation.path, operation.value)
        elif isinstance(operation.value, dict):
            self._pathless(operation.op, operation.value, prefix="")
        else:
            raise invalid_syntax(f"{operation.op} without a path needs an object value")

    def _pathless(self, op: str, values: Mapping[str, Any], *, prefix: str) -> None:
        for key, value in values.items():
            if not prefix and key.lower() in _IGNORED_IN_VALUE:
                continue
            schema = None if prefix else self.resource_type.schema_for(key)
            if schema is None and not prefix and self._is_custom_extension_object(key, value):
                self._pathless(op, value, prefix=f"{key}:")
            elif schema is None:
                self._target(op, parse_patch_path(prefix + key), value)
            elif isinstance(value, dict):
                self._pathless(op, value, prefix=f"{schema.id}:")
            else:
                raise invalid_value(f"{schema.id} must be an object")

    def _is_custom_extension_object(self, key: str, value: Any) -> bool:
        """``urn:ietf:params:scim:schemas:extension:<name>:2.0:User`` with an object."""
        return (
            isinstance(value, dict)
            and key.lower().startswith(CUSTOM_EXTENSION_PREFIX)
            and key.rsplit(":", 1)[-1].lower() == self.resource_type.name.lower()
        )

    def _custom_target(self, op: str, path: PatchPath, value: Any) -> bool:
        """Apply an operation on a custom extension no schema here describes, if it is one."""
        schema_urn = path.attr.schema
        whole = f"{schema_urn}:{path.attr.attr}"
        if (
            schema_urn is None
            or self.resource_type.schema_for(schema_urn) is not None
            or self.resource_type.schema_for(whole) is not None
            or not schema_urn.lower().startswith(CUSTOM_EXTENSION_PREFIX)
            or path.value_filter is not None
            or path.sub_attr is not None
        ):
            return False
        if path.attr.sub_attr is None and whole.rsplit(":", 1)[-1].lower() == (
            self.resource_type.name.lower()
        ):
            self._custom_extension(op, whole, value)
        else:
            self._custom(op, path.attr, value)
        return True

    def _target(self, op: str, path: PatchPath, value: Any) -> None:
        if self._custom_target(op, path, value):
            return
        if op == "remove" and path.value_filter is not None and self._remove_reference(path):
            return
        target = self._resolve(path)
        if target.attribute is MEMBERS:
            self._members(op, target, value)
            return
        if target.attribute is PASSWORD:
            self._password(op, value)
            return
        for attribute in (target.attribute, target.sub):
            if attribute is not None and attribute.mutability == "readOnly":
                raise ScimError(400, f"{target.name} is readOnly", "mutability")
        container = self._container(target.schema, create=op != "remove")
        if container is None:
            return
        if target.where is not None or (target.attribute.multi_valued and target.sub is not None):
            _elements(op, container, target, value)
        elif target.attribute.multi_valued:
            _whole_list(op, container, target, value)
        elif target.sub is not None:
            _sub_attribute(op, container, target, value)
        else:
            _single(op, container, target, value)
        if container is not self.resource and not container:
            del self.resource[target.schema.id]

    def _lookup(self, attr: AttrPath) -> tuple[Schema, Attribute, Attribute | None] | None:
        found = resolve(self.resource_type, attr.schema, attr.attr, attr.sub_attr)
        if found is None and attr.schema is None and attr.attr.lower() == "manager":
            # Entra has been reported to address the enterprise manager unqualified.
            found = resolve(self.resource_type, ENTERPRISE_USER, attr.attr, attr.sub_attr)
        return found

    def _resolve(self, path: PatchPath) -> _Target:
        attr = path.attr
        found = self._lookup(attr)
        if found is None:
            raise ScimError(
                400,
                f"{_text(attr)} is not an attribute of a {self.resource_type.name}",
                "invalidPath",
            )
        schema, attribute, sub = found
        name = attribute.name
        if schema is not self.resource_type.schema:
            name = f"{schema.id}:{name}"
        if path.value_filter is not None and not attribute.multi_valued:
            raise ScimError(400, f"{name} is not multi-valued: it takes no filter", "invalidPath")
        if path.sub_attr is not None:
            sub = attribute.sub(path.sub_attr)
            if sub is None:
                raise ScimError(
                    400, f"{name} has no sub-attribute {path.sub_attr!r}", "invalidPath"
                )
        if sub is not None:
            name = f"{name}.{sub.name}"
        return _Target(schema, attribute, sub, path.value_filter, name)

    def _container(self, schema: Schema, *, create: bool) -> dict[str, Any] | None:
        """The dict holding `schema`'s attributes: the resource, or its extension object."""
        if schema is self.resource_type.schema:
            return self.resource
        if create:
            extension: dict[str, Any] = self.resource.setdefault(schema.id, {})
            return extension
        existing: dict[str, Any] | None = self.resource.get(schema.id)
        return existing

    def _custom(self, op: str, attr: AttrPath, value: Any) -> None:
        """An attribute of a custom extension no schema here describes: kept as sent."""
        assert attr.schema is not None
        urn = _key_like(self.resource, attr.schema)
        extension = self.resource.get(urn)
        if not isinstance(extension, dict):
            extension = {}
        holder = extension
        name = _key_like(extension, attr.attr)
        if attr.sub_attr is not None:
            inner = extension.get(name)
            holder = inner if isinstance(inner, dict) else {}
            extension[name] = holder
            name = _key_like(holder, attr.sub_attr)
        _set(holder, name, None if op == "remove" else value)
        if holder is not extension and not holder:
            del extension[_key_like(extension, attr.attr)]
        _set(self.resource, urn, extension)

    def _custom_extension(self, op: str, urn: str, value: Any) -> None:
        """A whole custom extension as the path: removed, or its attributes set."""
        if op == "remove":
            self.resource.pop(_key_like(self.resource, urn), None)
        elif isinstance(value, dict):
            if op == "replace":
                self.resource.pop(_key_like(self.resource, urn), None)
            self._pathless(op, value, prefix=f"{urn}:")
        else:
            raise invalid_value(f"{urn} must be an object")

    def _remove_reference(self, path: PatchPath) -> bool:
        """Remove ``manager[value eq "id"]``: the reference goes if it matches the filter.

        Entra removes a manager this way; the RFC allows filters only on
        multi-valued attributes, so a single reference is treated as a list of one.
        """
        attr = path.attr
        found = self._lookup(attr)
        if found is None or path.sub_attr is not None or attr.sub_attr is not None:
            return False
        schema, attribute, _ = found
        if attribute.multi_valued or attribute.sub("value") is None:
            return False
        if attribute.mutability == "readOnly":
            raise ScimError(400, f"{attribute.name} is readOnly", "mutability")
        container = self._container(schema, create=False)
        current = None if container is None else container.get(attribute.name)
        assert path.value_filter is not None
        if container is not None and isinstance(current, dict):
            if matches(path.value_filter, current):
                del container[attribute.name]
            if container is not self.resource and not container:
                del self.resource[schema.id]
        return True

    def _members(self, op: str, target: _Target, value: Any) -> None:
        # RFC 7643 section 4.2: members are added and removed, never edited.
        if target.sub is not None:
            raise ScimError(400, "a member's sub-attributes cannot be changed", "mutability")
        if target.where is not None:
            if op != "remove":
                raise ScimError(
                    400, f"members cannot be {op}d by filter, only removed", "mutability"
                )
            ids = _member_ids_in(target.where)
            step = (
                MemberStep("remove", ids) if ids else MemberStep("remove_where", where=target.where)
            )
        elif op == "remove":
            step = (
                MemberStep("remove_all")
                if value is None
                else MemberStep("remove", tuple(member_ids(value)))
            )
        else:
            step = MemberStep(op, tuple(member_ids(value)))
        # Adding or removing no one changes nothing; replacing with no one does.
        if step.kind in ("add", "remove") and not step.ids:
            return
        self.member_steps.append(step)

    def _password(self, op: str, value: Any) -> None:
        if op == "remove":
            raise ScimError(400, "password can be replaced but not removed", "mutability")
        password: str | None = coerce(PASSWORD, value, "password")
        if password is None:
            raise invalid_value("password cannot be null")
        self.password = password


@dataclass(frozen=True, slots=True)
class _Target:
    """What a path designates, resolved against the schemas."""

    schema: Schema
    attribute: Attribute
    sub: Attribute | None
    where: Filter | None
    name: str
    """The path as error messages show it, canonically spelled."""


def _single(op: str, container: dict[str, Any], target: _Target, value: Any) -> None:
    attribute = target.attribute
    new = None if op == "remove" else coerce(attribute, value, target.name)
    old = container.get(attribute.name)
    # `name` is merged into (RFC 7644 section 3.5.2.3); a reference (`manager`) is not.
    if isinstance(new, dict) and isinstance(old, dict) and attribute.sub("value") is None:
        new = {**old, **new}
    _set(container, attribute.name, new)


def _sub_attribute(op: str, container: dict[str, Any], target: _Target, value: Any) -> None:
    assert target.sub is not None
    new = None if op == "remove" else coerce(target.sub, value, target.name)
    current = container.get(target.attribute.name)
    if current is None and new is not None:
        current = container[target.attribute.name] = {}
    if isinstance(current, dict):
        _set(current, target.sub.name, new)
        if not current:
            del container[target.attribute.name]


def _whole_list(op: str, container: dict[str, Any], target: _Target, value: Any) -> None:
    attribute = target.attribute
    values: list[Any] = container.get(attribute.name) or []
    given: list[Any] = coerce(attribute, value, target.name) or []
    if op == "remove":
        if value is None:
            container.pop(attribute.name, None)
        else:
            _set(container, attribute.name, [v for v in values if not _described(v, given)])
        return
    if op == "replace":
        added = given
        values = []
    else:
        added = []
        for item in given:
            if item not in values and item not in added:
                added.append(item)
    _set(container, attribute.name, values + added)
    _settle_primary(values + added, added, target.name)


def _elements(op: str, container: dict[str, Any], target: _Target, value: Any) -> None:
    """An operation on the values of a multi-valued attribute matching a filter, or on all."""
    attribute = target.attribute
    values: list[Any] = container.get(attribute.name) or []

    def case_exact(path: AttrPath) -> bool:
        found = attribute.sub(path.attr)
        return found is not None and found.case_exact

    matched = [
        v
        for v in values
        if isinstance(v, dict)
        and (target.where is None or matches(target.where, v, case_exact=case_exact))
    ]
    sub = target.sub
    if op == "remove":
        if sub is None:
            gone = {id(v) for v in matched}
            values = [v for v in values if id(v) not in gone]
        else:
            for element in matched:
                element.pop(sub.name, None)
    elif sub is None:
        values, matched = _set_elements(op, values, matched, target, value)
    else:
        new = coerce(sub, value, target.name)
        if not matched:
            created_type = _created_type(target)
            if created_type is None:
                raise _no_target(target)
            if new is None:
                return
            matched = [{"type": created_type}]
            values = [*values, *matched]
        for element in matched:
            _set(element, sub.name, new)
    values = [v for v in values if v]
    _set(container, attribute.name, values)
    if op != "remove":
        _settle_primary(values, matched, target.name)


def _set_elements(
    op: str, values: list[Any], matched: list[Any], target: _Target, value: Any
) -> tuple[list[Any], list[Any]]:
    """Add to or replace the matched values whole; the new values and those changed."""
    new = coerce_one(target.attribute, value, target.name)
    if not matched:
        raise _no_target(target)
    if op == "add":
        for element in matched:
            element.update(copy.deepcopy(new or {}))
        return values, matched
    # RFC 7644 section 3.5.2.3: matching values are replaced whole.
    gone = {id(v) for v in matched}
    result: list[Any] = []
    replaced: list[Any] = []
    for element in values:
        if id(element) not in gone:
            result.append(element)
        elif new is not None:
            replaced.append(copy.deepcopy(new))
            result.append(replaced[-1])
    return result, replaced


def _created_type(target: _Target) -> str | None:
    """X, if a value may be created to satisfy the target's filter, ``type eq "X"``."""
    where = target.where
    if (
        target.schema is USER
        and target.attribute.name in _CREATED_BY_TYPE
        and isinstance(where, Compare)
        and where.op == "eq"
        and isinstance(where.value, str)
        and _is_plain(where.path, "type")
    ):
        return where.value
    return None


def _member_ids_in(where: Filter) -> tuple[str, ...]:
    """The ids of ``value eq "a" or value eq "b" ...``; () for any other filter."""
    if isinstance(where, Or):
        left, right = _member_ids_in(where.left), _member_ids_in(where.right)
        return tuple(dict.fromkeys(left + right)) if left and right else ()
    if (
        isinstance(where, Compare)
        and where.op == "eq"
        and isinstance(where.value, str)
        and _is_plain(where.path, "value")
    ):
        return (where.value,)
    return ()


def _is_plain(path: AttrPath, name: str) -> bool:
    return path.schema is None and path.sub_attr is None and path.attr.lower() == name


def _settle_primary(values: list[Any], touched: list[Any], name: str) -> None:
    """Let a value this operation made primary be the only primary one (RFC 7643 section 2.4)."""
    primaries = [v for v in touched if isinstance(v, dict) and v.get("primary") is True]
    if len(primaries) > 1:
        raise invalid_value(f"at most one value of {name} may be primary")
    for other in values:
        if (
            primaries
            and other is not primaries[0]
            and isinstance(other, dict)
            and other.get("primary") is True
        ):
            other["primary"] = False


def _described(stored: Any, given: list[Any]) -> bool:
    """Whether `stored` is one of the `given` values, or has all the sub-attributes of one."""
    return any(
        item == stored
        or (isinstance(item, dict) and isinstance(stored, dict) and item.items() <= stored.items())
        for item in given
    )


def _set(mapping: dict[str, Any], key: str, value: Any) -> None:
    """Give `key` the value, or remove it when the value amounts to none."""
    if value is None or value in ([], {}):
        mapping.pop(key, None)
    else:
        mapping[key] = value


def _no_target(target: _Target) -> ScimError:
    return ScimError(400, f"no value of {target.attribute.name} matches the path", "noTarget")


def _numbered(error: ScimError, number: int) -> ScimError:
    return ScimError(error.status, f"operation {number}: {error.detail}", error.scim_type)


def _text(path: AttrPath) -> str:
    urn = f"{path.schema}:" if path.schema else ""
    sub = f".{path.sub_attr}" if path.sub_attr else ""
    return repr(f"{urn}{path.attr}{sub}")


def _key_like(mapping: Mapping[str, Any], name: str) -> str:
    """The key of `mapping` equal to `name` ignoring case, else `name` itself."""
    folded = name.lower()
    return next((key for key in mapping if key.lower() == folded), name)


def _folded(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {key.lower(): value for key, value in mapping.items()}
