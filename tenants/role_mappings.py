"""Each tenant's role mapping: default roles, and the roles each synced group grants.

One row per tenant in `scim_control.role_mappings`; a tenant without one has
no roles, and its SCIM writes spend nothing on them. Groups are matched by
`displayName` (case-insensitively, by PostgreSQL's `lower()`, as the service's
`displayName eq` filters compare it) or by `externalId` (exactly: the IdP's
object id); the database matches them, so the rules never leave it for a
write. A user's effective roles are the default
roles plus those of every group it is in, directly or through nested groups
(`service.roles` computes them).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

import msgspec

from service.postgres import Connection, Pool
from tenants.errors import InvalidInput

MATCH_KEYS: Final = ("displayName", "externalId")
MAX_RULES: Final = 1000
MAX_ROLES: Final = 100
MAX_ROLE_LENGTH: Final = 200


class GroupRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    match: str
    """``displayName`` or ``externalId``: which of the group's attributes `value` is."""
    value: str
    roles: list[str]


class RoleMappingBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What `PUT .../roles` accepts: the whole mapping."""

    default_roles: list[str] = msgspec.field(default_factory=list)
    """Roles of every provisioned (managed, not deleted) user."""
    groups: list[GroupRule] = msgspec.field(default_factory=list)


class RoleMappingView(msgspec.Struct, kw_only=True):
    """A mapping as the admin API shows it."""

    default_roles: list[str] = msgspec.field(default_factory=list)
    groups: list[GroupRule] = msgspec.field(default_factory=list)
    updated_at: datetime | None = None


class RoleMapping:
    """A checked mapping. The database matches its rules to groups (`granting`)."""

    def __init__(self, default_roles: Iterable[str], rules: Iterable[GroupRule]) -> None:
        self.default_roles = sorted(set(default_roles))
        self.rules = list(rules)

    def view(self, updated_at: datetime | None) -> RoleMappingView:
        return RoleMappingView(
            default_roles=self.default_roles, groups=self.rules, updated_at=updated_at
        )


def _rules(tenant: str) -> str:
    """`WITH` queries: `mapping`, the row of the tenant whose id is the SQL ``tenant``, and
    `rules(key, roles)`, its group rules, each keyed as `_KEYS` keys a group.
    Materialized: joins probe it without expanding the JSON again."""
    return (
        "mapping AS (SELECT default_roles, group_rules FROM scim_control.role_mappings "
        f"WHERE tenant = {tenant}), "
        "rules AS MATERIALIZED (SELECT CASE WHEN e->>'match' = 'displayName' "
        "THEN 'n' || lower(e->>'value') ELSE 'x' || (e->>'value') END AS key, "
        "e->'roles' AS roles FROM mapping, jsonb_array_elements(mapping.group_rules) e)"
    )


_KEYS: Final = (
    "CROSS JOIN LATERAL (VALUES ('n' || lower(g.display_name)), ('x' || g.external_id)) AS k(key)"
)
"""The keys of group `g` a rule (`_rules`) may match: its displayName by `lower()`, as
the service's filters compare it, and its externalId exactly. One equality join then
matches rules to groups, by hash or index, however many of either."""


def _matching(groups: str, where: str = "true") -> str:
    """SQL for the rows (`g.id`, role) of the roles the rules grant the groups `g` of the
    `FROM` item ``groups`` where ``where`` holds."""
    return (
        f"SELECT g.id, role FROM {groups} {_KEYS} JOIN rules r ON r.key = k.key "
        f"CROSS JOIN jsonb_array_elements_text(r.roles) AS role WHERE {where}"
    )


def granting(qualified: str, tenant: str, pairs: str) -> str:
    """`WITH` queries (`_rules`, then `granted(member_id, roles)`): the roles the groups
    of the query ``pairs`` (`member_id, group_id`, groups of the schema ``qualified``)
    grant each member, by the mapping of ``tenant``; a member they grant none is
    absent. Every computation of roles matches groups here, so one comparison
    decides them all."""
    return (
        f"{_rules(tenant)}, group_roles(group_id, role) AS ("
        f"{_matching(f'{qualified}.groups g', f'g.id IN (SELECT group_id FROM {pairs})')}), "
        "granted(member_id, roles) AS (SELECT x.member_id, array_agg(r.role) "
        f"FROM {pairs} x JOIN group_roles r ON r.group_id = x.group_id GROUP BY x.member_id)"
    )


def granting_keys(tenant: str, names: str, external_ids: str) -> str:
    """`WITH` queries (`_rules`, then `granted`): a row per role groups with these keys
    would grant, given as two SQL arrays, element by element one group's."""
    groups = f"unnest({names}, {external_ids}) WITH ORDINALITY AS g(display_name, external_id, id)"
    return f"{_rules(tenant)}, granted AS ({_matching(groups)})"


def roles_of(granted: str) -> str:
    """SQL for a user's effective roles, given the SQL ``granted`` for the roles its
    groups grant (NULL: none), over the queries of `granting`: those and the default
    roles, ordered by code point, once each (as `RoleMapping` orders the default ones)."""
    return (
        'ARRAY(SELECT DISTINCT r COLLATE "C" FROM unnest((SELECT default_roles FROM mapping) '
        f"|| {granted}) AS r ORDER BY 1)"
    )


def _role_list(roles: Any, where: str) -> list[str]:
    if not isinstance(roles, list) or len(roles) > MAX_ROLES:
        raise InvalidInput(f"{where} must be a list of at most {MAX_ROLES} roles")
    for role in roles:
        if not isinstance(role, str) or not role.strip() or len(role) > MAX_ROLE_LENGTH:
            raise InvalidInput(
                f"{where}: each role must be a non-blank string of at most "
                f"{MAX_ROLE_LENGTH} characters"
            )
    return sorted(set(roles))


def checked(view: RoleMappingBody) -> RoleMapping:
    """The mapping ``view`` describes; InvalidInput names what is wrong with it."""
    if len(view.groups) > MAX_RULES:
        raise InvalidInput(f"at most {MAX_RULES} group rules")
    seen: set[tuple[str, str]] = set()
    rules = []
    for index, rule in enumerate(view.groups):
        where = f"groups[{index}]"
        if rule.match not in MATCH_KEYS:
            raise InvalidInput(f"{where}.match must be one of: {', '.join(MATCH_KEYS)}")
        if not rule.value:
            raise InvalidInput(f"{where}.value must not be empty")
        key = (rule.match, rule.value.lower() if rule.match == "displayName" else rule.value)
        if key in seen:
            raise InvalidInput(f"{where}: {rule.match} {rule.value!r} is mapped twice")
        seen.add(key)
        roles = _role_list(rule.roles, f"{where}.roles")
        if not roles:
            raise InvalidInput(f"{where}.roles must name at least one role")
        rules.append(GroupRule(match=rule.match, value=rule.value, roles=roles))
    return RoleMapping(_role_list(view.default_roles, "default_roles"), rules)


def from_row(row: Any) -> RoleMapping:
    """The mapping of a `role_mappings` row (`default_roles`, `group_rules`)."""
    rules = msgspec.convert(row["group_rules"], list[GroupRule])
    return RoleMapping(row["default_roles"], rules)


def summary(mapping: str) -> str:
    """The columns of the `role_mappings` row ``mapping`` (an alias) that computing roles
    needs outside the database: `default_roles`, and `maps_groups`, whether it has
    group rules (without, membership changes nobody's roles). The rules stay there
    (`granting`)."""
    return f"{mapping}.default_roles, {mapping}.group_rules <> '[]' AS maps_groups"


async def load(conn: Connection | Pool, tenant_id: uuid.UUID) -> tuple[list[str], bool] | None:
    """The tenant's mapping as `summary` gives it: its default roles and whether it maps
    groups; None: it has none."""
    row = await conn.fetchrow(
        f"SELECT {summary('m')} FROM scim_control.role_mappings m WHERE m.tenant = $1",
        tenant_id,
    )
    return None if row is None else (row["default_roles"], row["maps_groups"])


async def view(conn: Connection | Pool, tenant_id: uuid.UUID) -> RoleMappingView:
    row = await conn.fetchrow(
        "SELECT default_roles, group_rules, updated_at FROM scim_control.role_mappings "
        "WHERE tenant = $1",
        tenant_id,
    )
    return RoleMappingView() if row is None else from_row(row).view(row["updated_at"])


LOCK_CLASS: Final = 0x5C1_0001
"""The advisory-lock class of the tenant's roles lock (`service.roles`); the hash of the
tenant id's text is the object."""


def locking(lock_class: str, tenant: str, *, exclusive: bool) -> str:
    """SQL that takes the tenant's roles lock until the transaction ends, exclusively or
    shared: ``lock_class`` is SQL for `LOCK_CLASS`, ``tenant`` for the tenant's id (a
    uuid). Every taker names the lock this way, so all of them take the same one."""
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    return f"{function}({lock_class}, hashtext(({tenant})::text))"


def bumping(tenant: str, locked: str) -> str:
    """A `WITH` query (`generation_bumped`) bumping the `generation` of the mapping of the
    tenant whose id is the SQL ``tenant`` once the query ``locked`` has taken its roles
    lock exclusively: every write under that lock bumps it, so a statement that took the
    lock shared after its snapshot can tell whether one committed unseen
    (`service.roles.settling`). A tenant without a mapping has nothing to bump."""
    return (
        "generation_bumped AS (UPDATE scim_control.role_mappings SET generation = generation + 1 "
        f"WHERE tenant = {tenant} AND EXISTS (SELECT FROM {locked}))"
    )


async def lock(conn: Connection, tenant_id: uuid.UUID) -> None:
    """Take the tenant's roles lock exclusively, whether or not it has a mapping, and bump
    its generation (`bumping`)."""
    await conn.execute(
        f"WITH locked AS (SELECT {locking('$1', '$2::uuid', exclusive=True)}), "
        f"{bumping('$2::uuid', 'locked')} SELECT count(*) FROM locked",
        LOCK_CLASS,
        tenant_id,
    )


async def save(conn: Connection, tenant_id: uuid.UUID, mapping: RoleMapping | None) -> None:
    """Store ``mapping``; None (or one with no roles at all) removes the tenant's mapping."""
    if mapping is None or (not mapping.default_roles and not mapping.rules):
        await conn.execute("DELETE FROM scim_control.role_mappings WHERE tenant = $1", tenant_id)
        return
    await conn.execute(
        "INSERT INTO scim_control.role_mappings (tenant, default_roles, group_rules) "
        "VALUES ($1, $2, $3) ON CONFLICT (tenant) DO UPDATE SET "
        "default_roles = EXCLUDED.default_roles, group_rules = EXCLUDED.group_rules, "
        "updated_at = now()",
        tenant_id,
        mapping.default_roles,
        msgspec.to_builtins(mapping.rules),
    )
