"""Filters evaluated two ways agree: in PostgreSQL, as a list request compiles them
(`service.store.filters`), and in Python, as PATCH paths and attribute mappings
evaluate them (`service.scim.filter.matches`); and lists sort as RFC 7644 says.

Users and groups with random attributes (seeded: a failure names the filter and
replays) are listed by random filters over every kind of attribute the schemas
have (indexed columns, jsonb strings, booleans, sub-attributes, multi-valued ones,
value paths, the enterprise extension, a user's groups, a group's members), with
every operator, `and`, `or` and `not`; each filter the service accepts must
select exactly the resources that `matches` selects among them as a list returns
them. Both sides are ours, so neither is taken as the truth: a difference is a
bug in one of them (or in the rule both should follow). Then they are listed
sorted by random attributes, both ways, against the order the RFC's rule gives
(`_sort_key`), and read with random `attributes` and `excludedAttributes`, each
answer required to be the whole resource as `projection.project` trims it (the
store skips reading a user's groups or a group's members a projection leaves out:
a projection that wants them must not lose them)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.scim.attributes import GROUP_RESOURCE, USER_RESOURCE, ResourceType, resolve
from service.scim.filter import AttrPath, matches, parse_filter
from service.scim.projection import parse_projection, project
from service.scim.schemas import ENTERPRISE_USER
from tests.support.application import Client, TenantHandle

_NAMES = [
    "Ada",
    "ada",
    "Bob",
    "Lovelace",
    "van Dyke",
    "O'Neil",
    "Chen",
    "Zed",
    "a",
    "Ölaf",
    "STRASSE",
    "Straße",
    "Zoë",
    "İpek",
]
_TITLES = ["Engineer", "engineer", "CEO", "Chief Engineer", "Sales", ""]
_TYPES = ["work", "home", "other"]
_DEPARTMENTS = ["R&D", "Sales", "sales", "Ops"]

_TEXT_OPS = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]


@dataclass(frozen=True)
class _Kind:
    """A resource type's attributes to filter on, by what their values are."""

    endpoint: str
    resource_type: ResourceType
    text_paths: list[str]
    boolean_paths: list[str]
    value_paths: dict[str, list[str]]
    """Multi-valued complex attributes to write `attr[...]` filters over: sub-attributes."""
    name: str
    """The attribute a failure names resources by."""


_USERS = _Kind(
    "Users",
    USER_RESOURCE,
    [
        "userName",
        "displayName",
        "nickName",
        "title",
        "userType",
        "externalId",
        "name.givenName",
        "name.familyName",
        "emails",
        "emails.value",
        "emails.type",
        "phoneNumbers.value",
        "phoneNumbers.type",
        "groups",
        "groups.display",
        "id",
        f"{ENTERPRISE_USER}:employeeNumber",
        f"{ENTERPRISE_USER}:department",
    ],
    ["active", "emails.primary"],
    {
        "emails": ["value", "type", "primary"],
        "phoneNumbers": ["value", "type"],
        "groups": ["value", "display"],
    },
    "userName",
)
_GROUPS = _Kind(
    "Groups",
    GROUP_RESOURCE,
    [
        "displayName",
        "externalId",
        "members",
        "members.value",
        "members.type",
        "members.display",
        "id",
    ],
    [],
    {"members": ["value", "type", "display"]},
    "displayName",
)


def _maybe(rng: random.Random, value: Any, chance: float = 0.7) -> Any:
    return value if rng.random() < chance else None


def _user(rng: random.Random, n: int) -> dict[str, Any]:
    given, family = rng.choice(_NAMES), rng.choice(_NAMES)
    user: dict[str, Any] = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER],
        "userName": f"{given.lower().replace(' ', '').replace(chr(39), '')}{n}@example.com",
        "displayName": _maybe(rng, f"{given} {family}"),
        "nickName": _maybe(rng, rng.choice(_NAMES), 0.3),
        "title": _maybe(rng, rng.choice(_TITLES), 0.6),
        "userType": _maybe(rng, rng.choice(["Employee", "Contractor"]), 0.5),
        "externalId": _maybe(rng, f"EXT-{n % 7}-{rng.choice(['a', 'A'])}", 0.6),
        "active": _maybe(rng, rng.random() < 0.7, 0.8),
        "name": _maybe(rng, {"givenName": given, "familyName": family}),
        ENTERPRISE_USER: _maybe(
            rng,
            {
                key: value
                for key, value in (
                    ("employeeNumber", _maybe(rng, str(rng.randrange(1, 40)))),
                    ("department", _maybe(rng, rng.choice(_DEPARTMENTS))),
                )
                if value is not None
            },
            0.6,
        ),
    }
    emails = []
    for k in range(rng.choice([0, 1, 1, 2, 3])):
        email: dict[str, Any] = {"value": f"{given.lower()[:3]}.{k}{n % 5}@Example.com"}
        if rng.random() < 0.8:
            email["type"] = rng.choice(_TYPES)
        if rng.random() < 0.4:
            email["primary"] = k == 0
        emails.append(email)
    phones = [
        {"value": f"+1 555 01{rng.randrange(10)}", "type": rng.choice(["work", "mobile"])}
        for _ in range(rng.choice([0, 0, 1, 2]))
    ]
    user |= {"emails": emails or None, "phoneNumbers": phones or None}
    return {key: value for key, value in user.items() if value is not None}


def _values_at(path: str, users: list[dict[str, Any]]) -> list[Any]:
    """Every value the users hold at a text path (a sub-attribute of a list: each element's)."""
    if ":" in path:
        _, _, attr = path.rpartition(":")
        holders = [user.get(ENTERPRISE_USER) or {} for user in users]
        return [holder[attr] for holder in holders if attr in holder]
    attr, _, sub = path.partition(".")
    found: list[Any] = []
    for user in users:
        held = user.get(attr)
        elements = held if isinstance(held, list) else [held]
        for element in elements:
            if isinstance(element, dict):
                leaf = element.get(sub or "value")
                if leaf is not None:
                    found.append(leaf)
            elif element is not None and not sub:
                found.append(element)
    return found


def _text_value(rng: random.Random, known: list[Any]) -> str:
    pick = rng.random()
    if not known or pick < 0.15:
        return rng.choice([*_NAMES, *_TITLES, "example", "@example.com", "zzz"])
    value = str(rng.choice(known))
    if pick < 0.35 and value:
        start = rng.randrange(len(value))
        value = value[start : rng.randrange(start, len(value)) + 1]
    return rng.choice([value, value, value.upper(), value.lower()])


def _leaf(rng: random.Random, kind: _Kind, known: list[dict[str, Any]]) -> str:
    pick = rng.random()
    if pick < 0.12:
        return f"{rng.choice([*kind.text_paths, *kind.boolean_paths])} pr"
    if pick < 0.27 and kind.boolean_paths:
        path = rng.choice(kind.boolean_paths)
        return f"{path} {rng.choice(['eq', 'ne'])} {rng.choice(['true', 'false'])}"
    path = rng.choice(kind.text_paths)
    op = rng.choice(_TEXT_OPS)
    if op in ("eq", "ne") and rng.random() < 0.08:
        return f"{path} {op} null"
    value = _text_value(rng, _values_at(path, known))
    return f"{path} {op} {json.dumps(value)}"


def _inner(
    rng: random.Random, kind: _Kind, known: list[dict[str, Any]], attr: str, depth: int
) -> str:
    sub = rng.choice(kind.value_paths[attr])
    if depth > 0 and rng.random() < 0.35:
        left, right = (_inner(rng, kind, known, attr, d) for d in (depth - 1, 0))
        return f"{left}{rng.choice([' and ', ' or '])}{right}"
    if sub == "primary":
        return f"primary {rng.choice(['eq', 'ne'])} {rng.choice(['true', 'false'])}"
    if rng.random() < 0.1:
        return f"{sub} pr"
    op = rng.choice(_TEXT_OPS)
    return f"{sub} {op} {json.dumps(_text_value(rng, _values_at(f'{attr}.{sub}', known)))}"


def _filter(rng: random.Random, kind: _Kind, known: list[dict[str, Any]], depth: int = 2) -> str:
    pick = rng.random()
    if depth > 0 and pick < 0.3:
        left, right = (_filter(rng, kind, known, depth - 1) for _ in range(2))
        return f"({left}){rng.choice([' and ', ' or '])}({right})"
    if depth > 0 and pick < 0.4:
        return f"not ({_filter(rng, kind, known, depth - 1)})"
    if pick < 0.55:
        attr = rng.choice(list(kind.value_paths))
        return f"{attr}[{_inner(rng, kind, known, attr, 1)}]"
    return _leaf(rng, kind, known)


def _case_exact(kind: _Kind) -> Callable[[AttrPath], bool]:
    def exact(path: AttrPath) -> bool:
        resolved = resolve(kind.resource_type, path.schema, path.attr, path.sub_attr)
        if resolved is None:
            return False
        _, attribute, sub = resolved
        if sub is None and attribute.multi_valued and attribute.type == "complex":
            sub = attribute.sub("value")
        return (sub or attribute).case_exact

    return exact


async def _listed(client: Client, tenant: TenantHandle, kind: _Kind, text: str) -> set[str] | None:
    response = await client.get(
        f"{tenant.scim}/{kind.endpoint}",
        params={"filter": text, "count": "200", "attributes": "id"},
        headers=tenant.auth(),
    )
    if response.status_code == 400:
        assert response.json()["scimType"] == "invalidFilter", (text, response.text)
        return None
    assert response.status_code == 200, (text, response.text)
    return {resource["id"] for resource in response.json()["Resources"]}


async def _every(client: Client, tenant: TenantHandle, kind: _Kind) -> dict[str, dict[str, Any]]:
    """Every resource of ``kind``, whole, as a list returns it, by id."""
    listed = await client.get(
        f"{tenant.scim}/{kind.endpoint}", params={"count": "200"}, headers=tenant.auth()
    )
    return {resource["id"]: resource for resource in listed.json()["Resources"]}


async def _disagreements(
    client: Client,
    tenant: TenantHandle,
    rng: random.Random,
    kind: _Kind,
    known: list[dict[str, Any]],
    *,
    rounds: int,
) -> None:
    """Lists ``kind`` by ``rounds`` random filters and asserts each selects in SQL what
    `matches` selects among the resources as a list returns them (``known``: what
    they were written from, for values to ask for)."""
    stored = await _every(client, tenant, kind)
    assert len(stored) == len(known)
    exact = _case_exact(kind)
    refused: list[str] = []
    differences: list[str] = []
    hits = 0
    for _ in range(rounds):
        text = _filter(rng, kind, known)
        in_sql = await _listed(client, tenant, kind, text)
        if in_sql is None:
            refused.append(text)
            continue
        expr = parse_filter(text)
        in_python = {i for i, one in stored.items() if matches(expr, one, case_exact=exact)}
        hits += bool(in_sql)
        if in_sql != in_python:
            names = {i: stored[i][kind.name] for i in in_sql ^ in_python}
            differences.append(
                f"{text}\n  only in SQL: {sorted(names[i] for i in in_sql - in_python)}"
                f"\n  only in Python: {sorted(names[i] for i in in_python - in_sql)}"
            )
    assert not differences, f"{len(differences)} filters differ:\n" + "\n".join(differences[:25])
    # The generator must exercise the service, not only its refusals, and find resources.
    assert len(refused) < rounds // 10, refused[:20]
    assert hits > rounds // 2


_SORTED_BY = {
    "Users": [
        *(path for path in _USERS.text_paths if path != "groups.display"),
        "active",
        "emails.primary",
        "phoneNumbers",
    ],
    "Groups": ["displayName", "externalId", "id", "members", "members.type", "members.display"],
}


def _sort_key(kind: _Kind, resource: dict[str, Any], path: str) -> Any:
    """What RFC 7644 section 3.4.2.3 sorts ``resource`` by: the attribute's value (a
    multi-valued one's primary value, or else its first), without case unless
    caseExact (as PostgreSQL lowers text); None: no value."""
    schema, _, name = path.rpartition(":")
    attr, _, sub = name.partition(".")
    holder = resource.get(schema, {}) if schema else resource
    value = holder.get(attr)
    resolved = resolve(kind.resource_type, schema or None, attr, sub or None)
    assert resolved is not None, path
    _, attribute, sub_attribute = resolved
    if attribute.multi_valued:
        elements = value or []
        chosen = next((e for e in elements if e.get("primary") is True), None)
        chosen = chosen or (elements[0] if elements else None)
        sub_attribute = sub_attribute or attribute.sub("value")
        assert sub_attribute is not None
        value = None if chosen is None else chosen.get(sub_attribute.name)
    elif sub_attribute is not None:
        value = None if value is None else value.get(sub_attribute.name)
    leaf = sub_attribute or attribute
    if isinstance(value, str) and not leaf.case_exact and path != "id":
        return value.translate({0x130: "i"}).lower()
    return value


async def _misorders(
    client: Client, tenant: TenantHandle, rng: random.Random, kind: _Kind, *, rounds: int
) -> None:
    """Lists ``kind`` sorted by random attributes, both ways, and asserts the order is
    the one `_sort_key` gives, resources without a value last and ties by id."""
    stored = list((await _every(client, tenant, kind)).values())
    wrong: list[str] = []
    for _ in range(rounds):
        path = rng.choice(_SORTED_BY[kind.endpoint])
        order = rng.choice(["ascending", "descending"])
        response = await client.get(
            f"{tenant.scim}/{kind.endpoint}",
            params={"sortBy": path, "sortOrder": order, "count": "200", "attributes": "id"},
            headers=tenant.auth(),
        )
        assert response.status_code == 200, (path, response.text)
        got = [resource["id"] for resource in response.json()["Resources"]]
        keyed = [(_sort_key(kind, resource, path), resource["id"]) for resource in stored]
        valued = sorted((k for k in keyed if k[0] is not None), reverse=order == "descending")
        unvalued = sorted((k for k in keyed if k[0] is None), reverse=order == "descending")
        expected = [resource_id for _, resource_id in valued + unvalued]
        if got != expected:
            at = next(n for n, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b)
            wrong.append(f"sortBy={path} {order}: from position {at} on, {got[at : at + 3]}")
    assert not wrong, "\n".join(wrong)


_PROJECTED = {
    "Users": [
        "userName",
        "USERNAME",
        "displayName",
        "name.givenName",
        "emails",
        "emails.value",
        "EMAILS.TYPE",
        "groups",
        "groups.display",
        "Groups.Value",
        "urn:ietf:params:scim:schemas:core:2.0:User:groups",
        "urn:ietf:params:scim:schemas:core:2.0:User:groups.value",
        ENTERPRISE_USER,
        f"{ENTERPRISE_USER}:department",
        "meta.version",
        "id",
        "externalId",
        "noSuchAttribute",
    ],
    "Groups": [
        "displayName",
        "members",
        "members.value",
        "Members.Display",
        "members.type",
        "urn:ietf:params:scim:schemas:core:2.0:Group:members",
        "urn:ietf:params:scim:schemas:core:2.0:Group:members.value",
        "externalId",
        "id",
        "meta",
    ],
}


async def _misprojections(
    client: Client, tenant: TenantHandle, rng: random.Random, kind: _Kind, *, rounds: int
) -> None:
    """Reads ``kind`` with random `attributes` and `excludedAttributes`, one by one, in
    lists and in `.search`, and asserts each answer is the whole resource trimmed by
    `projection.project`: what the store skipped reading for it (a user's groups, a
    group's members) was not wanted."""
    whole = await _every(client, tenant, kind)
    wrong: list[str] = []
    for _ in range(rounds):
        names = ",".join(rng.sample(_PROJECTED[kind.endpoint], rng.randrange(1, 4)))
        parameter = rng.choice(["attributes", "excludedAttributes"])
        projection = parse_projection(
            kind.resource_type,
            names if parameter == "attributes" else None,
            names if parameter == "excludedAttributes" else None,
        )
        one = rng.choice(list(whole))
        answers = [
            (
                await client.get(
                    f"{tenant.scim}/{kind.endpoint}/{one}",
                    params={parameter: names},
                    headers=tenant.auth(),
                )
            ).json(),
            *(
                await client.get(
                    f"{tenant.scim}/{kind.endpoint}",
                    params={parameter: names, "filter": f'id eq "{one}"'},
                    headers=tenant.auth(),
                )
            ).json()["Resources"],
            *(
                await client.post(
                    f"{tenant.scim}/{kind.endpoint}/.search",
                    json={
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                        "filter": f'id eq "{one}"',
                        parameter: names.split(","),
                    },
                    headers=tenant.auth(),
                )
            ).json()["Resources"],
        ]
        expected = project(kind.resource_type, whole[one], projection)
        for answer in answers:
            if answer != expected:
                wrong.append(f"{parameter}={names}: {answer} != {expected}")
    assert not wrong, "\n".join(wrong[:10])


async def test_lists_filter_and_sort_as_the_rules_in_python_do(
    client: Client, tenant: TenantHandle
) -> None:
    await tenant.unlimited()
    rng = random.Random(20261125)  # noqa: S311 - test data, not a secret
    users = [_user(rng, n) for n in range(40)]
    for user in users:
        created = await client.post(f"{tenant.scim}/Users", json=user, headers=tenant.auth())
        assert created.status_code == 201, created.text
        user["id"] = created.json()["id"]
    groups: list[dict[str, Any]] = []
    for n in range(16):
        # Some groups hold groups made before them: users are in groups through nesting.
        members = [
            {
                "value": one["id"],
                "type": "Group" if one in groups else "User",
                "display": one.get("displayName") or one["userName"],
            }
            for one in rng.sample(users, rng.randrange(9)) + rng.sample(groups, min(n, 2) // 2)
        ]
        group = {
            "displayName": f"{rng.choice([*_NAMES, *_DEPARTMENTS])} {n}",
            "externalId": _maybe(rng, f"G-{n % 5}", 0.5),
            "members": members,
        }
        made = await client.post(
            f"{tenant.scim}/Groups",
            json={key: value for key, value in group.items() if value is not None},
            headers=tenant.auth(),
        )
        assert made.status_code == 201, made.text
        groups.append(group | {"id": made.json()["id"]})
        held = {"value": made.json()["id"], "display": group["displayName"]}
        for user in users:
            if any(member["value"] == user["id"] for member in members):
                user.setdefault("groups", []).append(held)
    await _disagreements(client, tenant, rng, _USERS, users, rounds=600)
    await _disagreements(client, tenant, rng, _GROUPS, groups, rounds=300)
    await _misorders(client, tenant, rng, _USERS, rounds=60)
    await _misorders(client, tenant, rng, _GROUPS, rounds=10)
    await _misprojections(client, tenant, rng, _USERS, rounds=60)
    await _misprojections(client, tenant, rng, _GROUPS, rounds=30)
