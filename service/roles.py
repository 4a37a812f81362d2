"""Users' effective roles, kept in step with group membership inside each SCIM write.

Only tenants with a role mapping (`tenants.role_mappings`) pay anything: a
write reads what it needs of the mapping with its other control-plane state
(`service.write_state`) and gets no tracker when there is none; the rules stay
in the database, whose statements match them (`role_mappings.granting`).
With a mapping, each provisioned user's roles as last reported are stored in
the tenant's `user_roles`; a change recomputes the roles of the users it can
affect and emits `user.roles_changed` for those whose roles differ:

- members added to or removed from a group: the users among them (the IdPs'
  member PATCH recomputes them in the statement of its change, `settling` and
  `following`, or in the statement after it, `Tracker.members_changed`, whether
  the group grants roles or not; the locked way only when it does, itself or
  through a group it is nested in), and the users inside the groups among them;
- a group renamed (or its externalId changed) where the old or the new value
  is mapped, and a deleted group that granted roles: the users inside it;
- a new mapping (`set_mapping`): every provisioned user, and again once every
  transaction older than it, which may have read the old one, has ended.

Why a lock: two concurrent writes could each compute roles from a state
without the other's change (one adds a user to group A, the other nests A in
group B), and both would miss that the user gained B's roles. So writes in a
tenant with a mapping take its roles lock, before any row lock: exclusively
the writes that change what every other write computes roles from (a group
added to or removed from another, a granting group renamed, a group
deleted, a new mapping); shared the rest, user writes (after locking the
user, except a delete, which takes it first as it locks groups, and an update
without a lock, whose one statement takes it before it updates the user) and
the IdPs' common group writes, users added to or removed from a group and a
group created empty or with users (nothing can name a new group before its
create answers: its only members are those it is created with).

Two shared writes may reach the same user at once (added to A while removed
from C): a shared group write locks the stored roles of the users it
recomputes, in id order, after the group, and stores them, moved or not. It
computes them in its next statement, whose snapshot shows the memberships of
the write it waited for, or, the IdPs' member PATCH, in the same statement,
which changes nothing when it finds them stored since its snapshot
(`settling`) and then takes the first way. A user's own
write reads its stored roles `FOR SHARE` once it holds the user, so its event
shows what a concurrent member change stores; a user's delete locks the groups it is in
before it drops them (`resources.leaving_groups`), so it never holds roles a
member change of one of those groups waits for while it waits for that
change. A group write cannot know what it changes before it has run: run
under the shared lock, one that turns out to need the exclusive lock raises
`ExclusiveNeeded`, and its caller runs it again under that lock
(`service.provisioning`). Tenants without a mapping take no lock.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Final

import asyncpg

from service import events, guard
from service.postgres import Connection, Pool
from service.store import groups, nesting, outbox
from service.store.groups import GroupKeys
from service.store.outbox import NewEvent
from service.store.resources import AlongStatements
from tenants import role_mappings
from tenants.errors import NotFound
from tenants.registry import tenant_schema_at
from tenants.role_mappings import RoleMappingBody, RoleMappingView
from tenants.schemas import quoted_schema

log = logging.getLogger(__name__)

ROLES_SCHEMA_VERSION = 6
"""The tenant schema version that has `user_roles`."""


HELD_ROLES_DATA: Final = (
    "CASE WHEN EXISTS (SELECT FROM held_roles) "
    "THEN jsonb_set(e.data, '{roles}', to_jsonb((SELECT roles FROM held_roles))) "
    "ELSE e.data - 'roles' END"
)
"""A user's event data `e` with the roles `holding_stored` read; none when it read
none: the mapping removed since the write read it (`set_mapping` drops every user's)."""


DEFAULT_ROLES: Final = "(SELECT s.default_roles FROM state s)"
"""A new user's roles, the default ones of the mapping its statement's `state` read
(`service.write_state.unhindered`), as the mapping stores them: by code point, once
each (`role_mappings.checked`), the order `role_mappings.roles_of` gives all roles."""


def storing_defaults(
    schema: str, user_id: uuid.UUID, first_param: int, only_with: str
) -> AlongStatements:
    """A new user's default roles (`DEFAULT_ROLES`) stored by the statement that inserts
    it, as a `WITH` query taking effect with ``only_with``, its argument `$first_param`:
    no round trip to learn them first."""
    return AlongStatements(
        f"stored_roles AS (INSERT INTO {quoted_schema(schema)}.user_roles (user_id, roles) "
        f"SELECT ${first_param}::uuid, {DEFAULT_ROLES} WHERE EXISTS (SELECT FROM {only_with}))",
        [user_id],
    )


def keys(resource: dict[str, Any]) -> GroupKeys:
    """A group's keys from its stored attributes."""
    return resource.get("displayName") or "", resource.get("externalId")


class ExclusiveNeeded(Exception):
    """A group write under the shared roles lock changes which groups are inside which,
    or renames a granting group: its transaction is undone and it runs again with
    the lock held exclusively."""


def locking_stored(schema: str, changed: str) -> AlongStatements:
    """The stored roles of the users a member change changes, locked by its statement: a
    `WITH` query, with its output column that runs it, for the users its query
    ``changed`` (`member_id`) returns. That statement locks the group first, so locks
    are taken in the order of separate statements (group, then roles in id order);
    the roles are computed in the next statement (`Tracker.members_changed`), whose
    snapshot shows what a write it waited for did. Every user a member change
    recomputes is among those it changed (a group nested is `ExclusiveNeeded`), so
    that statement locks no more."""
    return AlongStatements(
        f"roles_locked AS (SELECT user_id FROM {quoted_schema(schema)}.user_roles "
        f"WHERE user_id IN (SELECT member_id FROM {changed}) ORDER BY user_id FOR UPDATE)",
        [],
        ", (SELECT count(*) FROM roles_locked) AS roles_locked",
    )


def settling(schema: str, tenant_id: uuid.UUID, *, add: bool) -> Callable[[int], groups.Settling]:
    """For a member change that settles its users' roles in its own statement, under the
    shared lock (`following` stores them): the `WITH` queries `groups.change_if` runs
    around the group's lock, given their first `$n`, over the statement's `$1` (the
    group) and `$2` (the members' ids).

    Before the lock, the roles of the members that are users, computed from their
    memberships in the statement's snapshot with the change applied (`computed`,
    `reported`, as `Tracker` computes them): the snapshot is the statement's
    whenever they run, and computed first they are not computed while the group is
    held. After it, the members' stored roles locked in id order, as every member
    change locks them after its group (`locking_stored`), and `settled`, which
    returns a row only if what the snapshot shows of their roles is still so:

    - no write under the exclusive lock committed since the snapshot: the mapping's
      generation (`role_mappings.bumping`) is what `scim_control.roles_generation()`
      reads now, with a snapshot taken once the statement holds the lock shared
      (PostgreSQL takes a statement's snapshot before it waits for a lock);
    - no write changed a member's memberships since: each member's stored roles are
      locked at the version the snapshot shows. Every write that changes a user's
      memberships under the shared lock where they may grant roles stores the user's
      roles, moved or not (``touching``), so a new version tells it; a user's delete
      deletes them;
    - every member is a user with roles stored: a group as a member changes which
      groups are inside which (the exclusive lock's), a user without stored roles
      was never reported (its own event carries them).

    Otherwise the statement changes nothing, and the change takes the transaction
    block (`Tracker.members_changed`), whose second statement has a fresh snapshot.
    """
    qualified = quoted_schema(schema)
    members = "ANY($2::uuid[])"
    direct = (
        f"SELECT member_id, group_id FROM {qualified}.group_members "
        f"WHERE member_id = {members} AND group_id <> $1"
    )
    if add:
        direct += " UNION ALL SELECT unnest($2::uuid[]), $1"

    def statements(first_param: int) -> groups.Settling:
        tenant = f"${first_param}::uuid"
        return groups.Settling(
            _computing_from(qualified, tenant, direct, f"u.id = {members}"),
            "computed",
            f"roles_seen AS (SELECT user_id, xmin::text AS version FROM {qualified}.user_roles "
            f"WHERE user_id = {members}), "
            "roles_locked AS (SELECT user_id, xmin::text AS version "
            f"FROM {qualified}.user_roles WHERE user_id = {members} "
            "AND EXISTS (SELECT FROM current) ORDER BY user_id FOR UPDATE), "
            "settled AS (SELECT FROM state s "
            f"WHERE s.roles_generation = scim_control.roles_generation({tenant}) "
            "AND (SELECT count(*) FROM roles_locked) = (SELECT count(*) FROM roles_seen) "
            "AND NOT EXISTS (SELECT FROM roles_seen v LEFT JOIN roles_locked l "
            "ON l.user_id = v.user_id WHERE l.version IS DISTINCT FROM v.version) "
            f"AND NOT EXISTS (SELECT FROM {qualified}.users u WHERE u.id = {members} "
            "AND u.managed AND u.deleted_at IS NULL "
            "AND NOT EXISTS (SELECT FROM roles_seen v WHERE v.user_id = u.id)) "
            f"AND NOT EXISTS (SELECT FROM {qualified}.groups g WHERE g.id = {members}))",
            [tenant_id],
        )

    return statements


def following(
    schema: str, new: list[NewEvent], candidates: list[uuid.UUID], *, data: str
) -> Callable[[int, str], AlongStatements]:
    """What a member change settled by `settling` stores along, in its statement: the
    roles `settling` computed of the users it changed (its `WITH` query given as
    `changed`), stored, moved or not (`settling` says why), and a
    `user.roles_changed` for each whose roles moved, among ``candidates`` (the
    members' ids), numbered after the change's own events ``new``
    (`outbox.appending_members`, their data ``data``) by the same insert."""
    qualified = quoted_schema(schema)

    def statements(first_param: int, changed: str) -> AlongStatements:
        ids, event_ids, kind = (f"${first_param + n}" for n in range(3))
        reports = (
            f"SELECT n.event_id, {kind}::text, 'User', r.id, r.data, r.previous, "
            f"{len(new)} + row_number() OVER (ORDER BY r.id) FROM reported r "
            f"JOIN unnest({ids}::uuid[], {event_ids}::uuid[]) AS n(user_id, event_id) "
            f"ON n.user_id = r.id WHERE r.id IN (SELECT member_id FROM {changed})"
        )
        stored = outbox.appending_members(
            schema, new, first_param + 3, changed, numbered=True, data=data, also=reports
        )
        return AlongStatements(
            f"stored_roles AS (UPDATE {qualified}.user_roles s SET roles = c.roles "
            f"FROM computed c WHERE s.user_id = c.id "
            f"AND c.id IN (SELECT member_id FROM {changed})), {stored.ctes}",
            [
                candidates,
                events.new_event_ids(len(candidates)),
                events.USER_ROLES_CHANGED,
                *stored.args,
            ],
            stored.returns,
        )

    return statements


def _computing_from(
    qualified: str, tenant: str, direct: str, users: str, *, unreported_had_none: bool = False
) -> str:
    """`WITH` queries (the first recursive) over the provisioned users `u` for whom
    ``users`` holds, whose memberships the query ``direct`` gives (`member_id,
    group_id`), by the mapping of the tenant whose id is the SQL ``tenant``:
    `computed(id, user_name, stored, roles)`, their roles now and as last stored
    (NULL: never); `reported(id, data, previous)`, the data of a `user.roles_changed`
    for each whose reported roles moved. A user whose roles were never reported
    (just created or linked) has none reported, as its own event carries them; with
    ``unreported_had_none`` (a new mapping) it had none until now."""
    before = "coalesce(c.stored, '{}')" if unreported_had_none else "c.stored"
    return (
        nesting.climbing(qualified, direct)
        + f", {role_mappings.granting(qualified, tenant, 'reach')}, "
        "computed AS (SELECT u.id, u.user_name, r.roles AS stored, "
        f"{role_mappings.roles_of('g.roles')} AS roles FROM {qualified}.users u "
        f"LEFT JOIN {qualified}.user_roles r ON r.user_id = u.id "
        "LEFT JOIN granted g ON g.member_id = u.id "
        f"WHERE {users} AND u.managed AND u.deleted_at IS NULL), "
        f"reported AS (SELECT m.id, {_CHANGED_ROLES_DATA} AS data, "
        "jsonb_build_object('roles', m.before) AS previous "
        f"FROM (SELECT c.*, {before} AS before FROM computed c) m "
        "WHERE m.before IS DISTINCT FROM m.roles AND m.before IS NOT NULL)"
    )


def holding_stored(
    schema: str, user_id: uuid.UUID, first_param: int, after: str | None = None
) -> AlongStatements:
    """`Tracker.user`'s read of the user's stored roles `FOR SHARE`, as a `WITH` query
    (`held_roles`) of the statement that updates the user, its argument
    `$first_param`, and its output column `stored_roles` (NULL: none stored). The
    statement's event shows them (`HELD_ROLES_DATA`): the user's update, its roles
    and its event cost one round trip, not three. ``after``: the `WITH` query of
    the update, when the user is not locked yet: the roles are read once the
    user is, the order of every other write of the user (`module docstring`)."""
    updated = "" if after is None else f" AND EXISTS (SELECT FROM {after})"
    return AlongStatements(
        f"held_roles AS (SELECT roles FROM {quoted_schema(schema)}.user_roles "
        f"WHERE user_id = ${first_param}{updated} FOR SHARE)",
        [user_id],
        ", (SELECT roles FROM held_roles) AS stored_roles",
    )


def stored_and_shared(schema: str, tenant_id: uuid.UUID, first_param: int) -> tuple[str, list[Any]]:
    """For the update of a user `r` read without a lock (`holding_stored` after it): a
    condition that it has stored roles (else the locked way computes them),
    taking the tenant's roles lock shared for the statement, as the locked way
    holds it for its transaction; its arguments from `$first_param`."""
    return (
        f"EXISTS (SELECT FROM {quoted_schema(schema)}.user_roles s WHERE s.user_id = r.id) AND "
        + role_mappings.locking(f"${first_param}", f"${first_param + 1}::uuid", exclusive=False)
        + " IS NOT NULL",
        [role_mappings.LOCK_CLASS, tenant_id],
    )


class Tracker:
    """One write's view of a tenant's roles; exists only when the tenant has a mapping.

    ``default_roles``: the mapping's, ordered (`RoleMapping.default_roles`);
    ``maps_groups``: whether it has group rules (without, membership changes
    nothing); ``exclusive``: whether the write holds the tenant's roles lock
    exclusively. The rules themselves stay in the database, which matches them
    (`role_mappings.granting`).
    """

    def __init__(
        self,
        schema: str,
        tenant_id: uuid.UUID,
        default_roles: list[str],
        *,
        maps_groups: bool,
        exclusive: bool = False,
    ) -> None:
        self.schema = schema
        self.tenant_id = tenant_id
        self.default_roles = default_roles
        self.maps_groups = maps_groups
        self.exclusive = exclusive
        self._qualified = quoted_schema(schema)
        self._created: tuple[uuid.UUID, list[str]] | None = None

    async def computed(
        self, conn: Connection | Pool, user_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, list[str]]:
        """Per provisioned user, its roles now; nothing stored."""
        sql, args = self._computing(user_ids)
        rows = await conn.fetch(f"{sql} SELECT id, roles FROM computed", *args)
        return {row["id"]: row["roles"] for row in rows}

    def _computing(
        self, user_ids: list[uuid.UUID], *, unreported_had_none: bool = False
    ) -> tuple[str, list[Any]]:
        """`WITH` queries over the provisioned users among ``user_ids``, and their arguments
        (`$1`, `$2`): `computed(id, user_name, stored, roles)`, their roles now and as
        last stored (NULL: never); `reported(id, data, previous)`, the data of a
        `user.roles_changed` for each whose reported roles moved. A user whose roles
        were never reported (just created or linked) has none reported, as its own
        event carries them; with ``unreported_had_none`` (a new mapping) it had none
        until now.

        One statement reads the users, their groups and their stored roles in one
        snapshot, taken after whatever lock the write took before.
        """
        qualified = self._qualified
        members, arg = groups.one_of("member_id", user_ids)
        users, _ = groups.one_of("u.id", user_ids)
        direct = f"SELECT member_id, group_id FROM {qualified}.group_members WHERE {members}"
        return "WITH RECURSIVE " + _computing_from(
            qualified, "$2::uuid", direct, users, unreported_had_none=unreported_had_none
        ), [arg, self.tenant_id]

    def _recomputing(
        self, user_ids: list[uuid.UUID], *, unreported_had_none: bool = False, touching: bool
    ) -> tuple[str, list[Any]]:
        """`_computing`, and a `WITH` query storing the roles that moved; ``touching``:
        every user's, moved or not (`settling` says why a write under the shared lock
        that changes memberships must)."""
        sql, args = self._computing(user_ids, unreported_had_none=unreported_had_none)
        which = "" if touching else " WHERE stored IS DISTINCT FROM roles"
        return (
            f"{sql}, stored_roles AS (INSERT INTO {self._qualified}.user_roles (user_id, roles) "
            f"SELECT id, roles FROM computed{which} "
            "ON CONFLICT (user_id) DO UPDATE SET roles = EXCLUDED.roles)",
            args,
        )

    def storing(self, first_param: int) -> AlongStatements | None:
        """The default roles of the user this write created (`created`), not stored yet,
        as a `WITH` query (`stored_roles`) of a statement, its arguments from
        `$first_param`; None: there are none. Taken: they are stored once, by that
        statement, the one that stores the user's event (`service.provisioning._record`)
        or the user itself (`_insert_user_with_roles`): no round trip of their own."""
        if self._created is None:
            return None
        (user_id, roles), self._created = self._created, None
        return AlongStatements(
            f"stored_roles AS (INSERT INTO {self._qualified}.user_roles (user_id, roles) "
            f"VALUES (${first_param}::uuid, ${first_param + 1}::text[]))",
            [user_id, roles],
        )

    async def store(self, conn: Connection) -> None:
        """Store the created user's default roles (`storing`) on their own."""
        stored = self.storing(1)
        if stored is not None:
            await conn.execute(f"WITH {stored.ctes} SELECT 1", *stored.args)

    async def refresh(
        self,
        conn: Connection,
        user_ids: Iterable[uuid.UUID],
        *,
        unreported_had_none: bool = False,
        touching: bool = False,
    ) -> tuple[dict[uuid.UUID, list[str]], list[NewEvent]]:
        """Recompute these users' roles and store those that moved (``touching``: all), in
        one statement: each user's roles, and the `user.roles_changed` events for the
        write to record (`_computing` says which users have one)."""
        ids = sorted(set(user_ids))
        if not ids:
            return {}, []
        sql, args = self._recomputing(
            ids, unreported_had_none=unreported_had_none, touching=touching
        )
        rows = await conn.fetch(
            f"{sql} SELECT c.id, c.roles, r.data, r.previous FROM computed c "
            "LEFT JOIN reported r ON r.id = c.id ORDER BY c.id",
            *args,
        )
        reported = _reports([row for row in rows if row["data"] is not None])
        return {row["id"]: row["roles"] for row in rows}, reported

    async def user(self, conn: Connection, user_id: uuid.UUID) -> tuple[list[str], list[NewEvent]]:
        """One user's roles for its own event, and a `user.roles_changed` if they moved.

        A user's own writes never change its roles, so its stored roles are
        current once read `FOR SHARE` (a member change storing new ones is waited
        for); only a user never reported (new, linked, restored) is computed.
        """
        stored = await conn.fetchval(
            f"SELECT roles FROM {self._qualified}.user_roles WHERE user_id = $1 FOR SHARE",
            user_id,
        )
        if stored is not None:
            return list(stored), []
        roles, reports = await self.refresh(conn, [user_id])
        return roles.get(user_id, []), reports

    def created(self, user_id: uuid.UUID) -> list[str]:
        """A user just inserted, in no group yet: the default roles, without a query, for
        its own event; left for the write to store with it (`storing`)."""
        roles = list(self.default_roles)
        self._created = (user_id, roles)
        return roles

    async def forget(self, conn: Connection, user_id: uuid.UUID) -> list[str]:
        """A deleted user's roles until now; it has none from now on."""
        roles = await conn.fetchval(
            f"DELETE FROM {self._qualified}.user_roles WHERE user_id = $1 RETURNING roles",
            user_id,
        )
        return list(roles or [])

    async def _grants_above(self, conn: Connection, group_id: uuid.UUID) -> bool:
        """Whether the group, or any group it is nested in, grants roles."""
        qualified = self._qualified
        granted: bool = await conn.fetchval(
            nesting.reach(qualified, "member_id = $1::uuid")
            + ", above(member_id, group_id) AS (SELECT member_id, group_id FROM reach "
            "UNION ALL SELECT $1::uuid, $1::uuid), "
            f"{role_mappings.granting(qualified, '$2::uuid', 'above')} "
            "SELECT EXISTS (SELECT FROM granted)",
            group_id,
            self.tenant_id,
        )
        return granted

    async def _grants_either(self, conn: Connection, keys: list[GroupKeys]) -> bool:
        """Whether a group with any of these keys would grant roles."""
        granted: bool = await conn.fetchval(
            f"WITH {role_mappings.granting_keys('$1::uuid', '$2::text[]', '$3::text[]')} "
            "SELECT EXISTS (SELECT FROM granted)",
            self.tenant_id,
            [name for name, _ in keys],
            [external_id for _, external_id in keys],
        )
        return granted

    async def users_affected_by_delete(
        self, conn: Connection, group_id: uuid.UUID
    ) -> set[uuid.UUID]:
        """Before a group is deleted: the users whose roles its deletion may change."""
        if not self.maps_groups or not await self._grants_above(conn, group_id):
            return set()
        return await groups.users_under(conn, self.schema, [group_id])

    async def group_changed(
        self,
        conn: Connection,
        group_id: uuid.UUID,
        before: GroupKeys | None,
        after: GroupKeys,
        touched: list[events.Member],
    ) -> list[NewEvent]:
        """After a group write: `user.roles_changed` for each user whose roles it changed.

        ``before`` is None for a new group; ``touched`` the members added or removed.
        """
        if not self.maps_groups:
            return []  # default roles only: membership changes nothing
        # The users inside a group renamed to or from a mapped name. Not a new group's:
        # nothing can name it before its create answers, so its members are all touched.
        whole_group = False
        if before is not None and before != after:
            whole_group = await self._grants_either(conn, [before, after])
        nests = any(kind == "Group" for _, kind in touched)
        if not self.exclusive and (whole_group or nests):
            raise ExclusiveNeeded
        user_ids: set[uuid.UUID] = set()
        inner_groups = [group_id] if whole_group else []
        if touched and (whole_group or await self._grants_above(conn, group_id)):
            user_ids |= {member for member, kind in touched if kind == "User"}
            inner_groups += [member for member, kind in touched if kind == "Group"]
        user_ids |= await groups.users_under(conn, self.schema, inner_groups)
        if not self.exclusive:
            await self._lock_stored(conn, user_ids)
        return (await self.refresh(conn, user_ids, touching=not self.exclusive))[1]

    async def members_changed(
        self, conn: Connection, changed: list[events.Member], *, reported: bool
    ) -> None:
        """After the IdPs' member change in a transaction block (`service.provisioning`,
        when its one statement did not settle, `settling`): in one statement, the
        roles of the users it changed computed and stored, moved or not (`settling`
        says why) and, if ``reported``, a `user.roles_changed` event for each whose
        stored roles moved (`_computing`, as for the other writes, `refresh`). The
        change's statement locked their stored roles (`locking_stored`), under the
        shared lock, with the guard at rest (it holds no event); this one's snapshot
        shows what a write it waited for did. A group among ``changed`` is
        `ExclusiveNeeded`."""
        if not self.maps_groups:
            return  # default roles only: membership changes nothing
        if not self.exclusive and any(kind == "Group" for _, kind in changed):
            raise ExclusiveNeeded
        user_ids = sorted(member for member, kind in changed if kind == "User")
        if not user_ids:
            return
        sql, args = self._recomputing(user_ids, touching=True)
        if reported:
            sql += ", " + outbox.built(
                self.schema,
                "(SELECT n.event_id AS id, $5::text AS type, 'User' AS resource_type, "
                "r.id AS resource_id, r.data, r.previous, row_number() OVER (ORDER BY r.id) AS n "
                "FROM reported r JOIN unnest($3::uuid[], $4::uuid[]) AS n(user_id, event_id) "
                "ON n.user_id = r.id) AS e",
            )
            args += [user_ids, events.new_event_ids(len(user_ids)), events.USER_ROLES_CHANGED]
        await conn.execute(f"{sql} SELECT 1", *args)

    async def _lock_stored(self, conn: Connection, user_ids: set[uuid.UUID]) -> None:
        """Lock these users' stored roles until the transaction ends, in id order, so
        that concurrent member changes never wait for each other in a cycle."""
        if user_ids:
            await conn.execute(
                f"SELECT 1 FROM {self._qualified}.user_roles WHERE user_id = ANY($1::uuid[]) "
                "ORDER BY user_id FOR UPDATE",
                sorted(user_ids),
            )

    async def after_delete(self, conn: Connection, user_ids: set[uuid.UUID]) -> list[NewEvent]:
        """After a group was deleted: `user.roles_changed` for the users it changed."""
        return (await self.refresh(conn, user_ids))[1]


_CHANGED_ROLES_DATA: Final = (
    "jsonb_build_object('id', m.id::text, 'userName', m.user_name, 'roles', to_jsonb(m.roles), "
    """'added', to_jsonb(ARRAY(SELECT r FROM unnest(m.roles) r WHERE r <> ALL (m.before) """
    """ORDER BY r COLLATE "C")), 'removed', to_jsonb(ARRAY(SELECT r FROM unnest(m.before) r """
    """WHERE r <> ALL (m.roles) ORDER BY r COLLATE "C")))"""
)
"""A `user.roles_changed` event's data for the user `m` (`id`, `user_name`) whose roles
moved from `before` to `roles`: all of them, and those added and removed, ordered."""


def _reports(rows: list[asyncpg.Record]) -> list[NewEvent]:
    """The `user.roles_changed` events of rows (`id`, `data`, `previous`) whose data
    `_CHANGED_ROLES_DATA` built."""
    ids = events.new_event_ids(len(rows))
    return [
        NewEvent(
            id=event_id,
            type=events.USER_ROLES_CHANGED,
            resource_type="User",
            resource_id=row["id"],
            data=row["data"],
            previous=row["previous"],
        )
        for event_id, row in zip(ids, rows, strict=True)
    ]


async def tenant(conn: Connection | Pool, slug: str) -> tuple[uuid.UUID, str]:
    return await tenant_schema_at(conn, slug, ROLES_SCHEMA_VERSION)


async def show(pool: Pool, slug: str) -> RoleMappingView:
    tenant_id, _ = await tenant(pool, slug)
    return await role_mappings.view(pool, tenant_id)


SETTLE_LIMIT_SECONDS: Final = 10.0
"""How long `set_mapping` waits for the transactions older than its change to end
before it recomputes every user's roles again regardless."""

_RUNNING: Final = (
    "SELECT l.virtualxid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'virtualxid' AND l.mode = 'ExclusiveLock' AND l.granted "
    "AND l.pid <> pg_backend_pid() AND a.datname = current_database() "
    "AND a.usename = current_user"
)
"""The transactions running now in the service's database under its role (each holds
its own virtual transaction id's lock from start to end); only the service's
connections write its tenants."""


async def set_mapping(
    pool: Pool, slug: str, view: RoleMappingBody | None, *, record_events: bool
) -> tuple[RoleMappingView, int]:
    """Replace (None: remove) a tenant's mapping; returns it and how many users' roles changed.

    Every provisioned user's roles are recomputed in the same transaction, and
    each change is a `user.roles_changed` event. Then once more, under the lock,
    after every transaction running when the change committed has ended
    (`_settled`): a write that read the mapping before the change committed may
    have stored roles by the old one after the recompute. A write's statement
    reads the mapping and takes the roles lock together, so one that waited for
    the change's lock read the mapping as it was before (PostgreSQL takes a
    statement's snapshot before it waits for a lock); one in a tenant that had
    no mapping took no lock at all. Each such write is a transaction that was
    running at the commit, so the second pass sees what every one of them
    stored, and reports what it corrects the same way.
    """
    mapping = None if view is None else role_mappings.checked(view)
    tenant_id, schema = await tenant(pool, slug)
    changed = await _recomputed(
        pool, tenant_id, schema, record_events=record_events, replacing=True, mapping=mapping
    )
    still_running = await _settled(pool)
    if still_running:
        log.warning(
            "role mapping of tenant %s: %d transactions older than the change still running "
            "after %.0f s; users they write keep roles by the old mapping until next recomputed",
            slug,
            still_running,
            SETTLE_LIMIT_SECONDS,
        )
    changed += await _recomputed(pool, tenant_id, schema, record_events=record_events)
    return await role_mappings.view(pool, tenant_id), changed


async def _settled(pool: Pool) -> int:
    """Wait until the transactions running now (`_RUNNING`) have ended, at most
    `SETTLE_LIMIT_SECONDS`; how many had not by then. Polled: PostgreSQL lets a
    client wait for no other session's transaction but through a lock it holds."""
    running = [row["virtualxid"] for row in await pool.fetch(_RUNNING)]
    deadline = asyncio.get_running_loop().time() + SETTLE_LIMIT_SECONDS
    pause = 0.005
    while running and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.1)
        rows = await pool.fetch(f"{_RUNNING} AND l.virtualxid = ANY($1::text[])", running)
        running = [row["virtualxid"] for row in rows]
    return len(running)


async def _recomputed(
    pool: Pool,
    tenant_id: uuid.UUID,
    schema: str,
    *,
    record_events: bool,
    replacing: bool = False,
    mapping: role_mappings.RoleMapping | None = None,
) -> int:
    """Every provisioned user's roles recomputed, in a transaction under the exclusive
    roles lock, by the tenant's mapping, ``replacing`` it with ``mapping`` first; how
    many moved."""
    qualified = quoted_schema(schema)
    async with pool.acquire() as conn, conn.transaction():
        await role_mappings.lock(conn, tenant_id)
        if replacing:
            await role_mappings.save(conn, tenant_id, mapping)
        summary = await role_mappings.load(conn, tenant_id)
        if summary is None:
            rows = await conn.fetch(
                f"WITH gone AS (DELETE FROM {qualified}.user_roles RETURNING user_id, roles) "
                f"SELECT m.id, {_CHANGED_ROLES_DATA} AS data, "
                "jsonb_build_object('roles', m.before) AS previous FROM (SELECT g.user_id AS id, "
                "u.user_name, g.roles AS before, '{}'::text[] AS roles FROM gone g "
                f"JOIN {qualified}.users u ON u.id = g.user_id WHERE cardinality(g.roles) > 0) m "
                "ORDER BY m.id",
            )
            changes = _reports(rows)
        else:
            # Users no longer provisioned keep no roles; everyone else is recomputed.
            await conn.execute(
                f"DELETE FROM {qualified}.user_roles r WHERE NOT EXISTS (SELECT 1 FROM "
                f"{qualified}.users u WHERE u.id = r.user_id AND u.managed "
                "AND u.deleted_at IS NULL)"
            )
            user_ids = await conn.fetch(
                f"SELECT id FROM {qualified}.users WHERE managed AND deleted_at IS NULL"
            )
            default_roles, maps_groups = summary
            tracker = Tracker(
                schema, tenant_id, default_roles, maps_groups=maps_groups, exclusive=True
            )
            _, changes = await tracker.refresh(
                conn, [row["id"] for row in user_ids], unreported_had_none=True
            )
        if record_events:
            tripped = await guard.tripped(conn, tenant_id)
            await guard.record(conn, schema, tenant_id, changes, was_tripped=tripped)
    return len(changes)


async def effective(
    pool: Pool, schema: str, tenant_id: uuid.UUID, user_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[str]] | None:
    """Users' effective roles, from the groups they are in now; None: no role mapping.

    Users not provisioned (pre-loaded, soft-deleted) are absent: they have none.
    """
    mapping = await role_mappings.load(pool, tenant_id)
    if mapping is None:
        return None
    default_roles, maps_groups = mapping
    tracker = Tracker(schema, tenant_id, default_roles, maps_groups=maps_groups)
    return await tracker.computed(pool, user_ids)


async def of_user(pool: Pool, slug: str, raw_id: str) -> tuple[uuid.UUID, list[str] | None]:
    """One user's effective roles now (None: no role mapping); NotFound if no such user."""
    tenant_id, schema = await tenant(pool, slug)
    try:
        user_id = uuid.UUID(raw_id)
    except ValueError as exc:
        raise NotFound(f"no user {raw_id!r}") from exc
    exists = await pool.fetchval(
        f"SELECT true FROM {quoted_schema(schema)}.users WHERE id = $1", user_id
    )
    if not exists:
        raise NotFound(f"no user {raw_id!r}")
    found = await effective(pool, schema, tenant_id, [user_id])
    return user_id, None if found is None else found.get(user_id, [])
