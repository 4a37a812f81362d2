"""Group membership: one row per member, changed without loading the group's members."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from service.postgres import Connection, Pool
from service.scim.errors import invalid_value
from service.scim.filter import Filter
from service.scim.resources import Member
from service.store import outbox
from service.store.filters import SqlBuilder, compile_member_filter
from service.store.nesting import groups_of, users_beneath
from service.store.outbox import NewEvent
from service.store.paging import RESOURCE_COLUMNS
from service.store.resources import Along, AlongStatements, Row
from tenants.schemas import quoted_schema


def _uuids(ids: Sequence[str]) -> list[uuid.UUID] | None:
    try:
        return list(dict.fromkeys(uuid.UUID(member_id) for member_id in ids))
    except ValueError:
        return None


Members = list[tuple[uuid.UUID, str]]
"""Members a change added or removed: (id, `User` or `Group`) each, for the group's events."""


@dataclass(frozen=True, slots=True)
class Settling:
    """`WITH` queries of a change that settles more than the group before it is made
    (`change_if`), and their arguments."""

    before: str
    """Run before the group is locked, which waits for their query `waited`: what
    needs the statement's snapshot alone is not done while the group is held."""
    waited: str
    after: str
    """Run once the group is locked, before the change; the change is made only if
    their last, `settled`, returns a row."""
    args: list[Any]


@dataclass(frozen=True, slots=True)
class Change:
    """What one membership statement did."""

    members: Members
    bumped: Row | None = None
    """The group after its version bump, when the statement was asked to bump it
    and changed a membership."""


_NOTHING: Final = Change([])

NAMED_MEMBER_EVENT_DATA: Final = (
    f"jsonb_set({outbox.MEMBER_EVENT_DATA}, '{{group,displayName}}', "
    "COALESCE((SELECT r.resource -> 'displayName' FROM current r), 'null'::jsonb))"
)
"""A membership event's data (`outbox.appending_members`) with its group's name as
`change_if` read the group (`current`)."""


async def _change(
    conn: Connection,
    qualified: str,
    statement: str,
    args: Sequence[Any],
    *,
    bump: bool,
    before: str = "",
    also: str = "",
    along: str = "",
    joined: str = "",
    unchanged: str | None = None,
    recursive: bool = False,
    one_member: bool = False,
) -> tuple[Change, Row]:
    """Run ``statement``, a DML on the memberships of group `$1` that returns
    ``member_id, member_type``, as one statement with, when ``bump``, the
    group's version bump if it changed anything.

    Member rows live outside the group's resource, so a write that changes
    only them bumps the group's version itself; in the same statement it costs
    no round trip while the group is locked. ``before`` are more CTEs the
    statement may read; ``along``, more after it (`, name AS (...)`) that may read
    `changed`; ``also``, more columns of the result row (returned too), which may
    read the relations ``joined`` (` LEFT JOIN ... ON true`) adds; ``unchanged``,
    a `WITH` query of ``before`` with the group's columns, which the result row
    shows when the statement changed nothing; ``recursive``, whether any of these
    queries is; ``one_member``, that `$2`, the members' ids everywhere the statement
    reads them (`$2::uuid[]`), is given as one id.
    """
    bumped = (
        f"UPDATE {qualified}.groups AS r SET version = r.version + 1, last_modified = now() "
        f"WHERE r.id = $1 AND EXISTS (SELECT FROM changed) RETURNING {RESOURCE_COLUMNS}"
        if bump
        else f"SELECT {RESOURCE_COLUMNS} FROM {qualified}.groups r WHERE false"
    )
    group = (
        "bumped"
        if unchanged is None
        else f"(SELECT * FROM bumped UNION ALL SELECT * FROM {unchanged} "
        "WHERE NOT EXISTS (SELECT FROM bumped))"
    )
    sql = (
        f"WITH {'RECURSIVE ' if recursive else ''}{before}changed AS ({statement}), "
        f"bumped AS ({bumped}){along} "
        "SELECT (SELECT array_agg(member_id ORDER BY member_id) FROM changed) AS member_ids, "
        "(SELECT array_agg(member_type ORDER BY member_id) FROM changed) AS member_types, "
        f"b.*{also} FROM (SELECT) AS one LEFT JOIN {group} b ON true{joined}"
    )
    if one_member:
        sql = sql.replace("$2::uuid[]", "ARRAY[$2::uuid]")
    row = await conn.fetchrow(sql, *args)
    assert row is not None
    members = list(zip(row["member_ids"] or [], row["member_types"] or [], strict=True))
    # With a bump, a group row was bumped exactly when members changed.
    bumped_row = row if bump and members else None
    return Change(members, bumped_row), row


async def add(
    conn: Connection, schema: str, group_id: uuid.UUID, ids: Sequence[str], *, bump: bool = False
) -> Change:
    """Add members (already present ones are left alone); its `Change` lists those that were new.

    The caller holds the members (`hold`) and the group. 400 if any is not a user
    or group of this tenant; the caller's transaction then undoes the others.
    """
    if not ids:
        return _NOTHING
    member_ids = new_member_ids(group_id, ids)
    qualified = quoted_schema(schema)
    change, row = await _change(
        conn,
        qualified,
        _inserting(qualified, "found"),
        [group_id, member_ids],
        bump=bump,
        before=_found(qualified, hold=False),
        also=_FOUND_IDS,
    )
    check_found(member_ids, row)
    return change


def new_member_ids(group_id: uuid.UUID, ids: Sequence[str]) -> list[uuid.UUID]:
    """The ids of members to add, once each; 400 for a value that cannot be one."""
    member_ids = _uuids(ids)
    if member_ids is None:
        raise invalid_value("member values must be ids of users or groups of this tenant")
    if group_id in member_ids:
        raise invalid_value("a group cannot be a member of itself")
    return member_ids


USER_HOLD: Final = "FOR KEY SHARE"
"""How a write adding a user as a member holds it: as a foreign key would, so that the
user is not deleted meanwhile while its own changes (`FOR NO KEY UPDATE`) go on."""
GROUP_HOLD: Final = "FOR SHARE"
"""How a write adding a group as a member (nesting it) holds it: not deleted meanwhile,
and not changed either. Held `FOR KEY SHARE`, the hold of a group whose own members
were changing at that moment followed the change's new row version: it waited for
the change while holding the lock of the row's older version, which the change
could need before it finished (PostgreSQL: "while locking updated version ... of
tuple in relation groups"), and PostgreSQL ended one of them as a deadlock after a
second; `test_events` nests a group while its members change, both ways, and
counts none. `FOR SHARE` makes them queue on the row: a nesting waits for a change
of the group's members in flight, or the change for the nesting."""


def _found(qualified: str, ids: str = "$2", *, hold: bool = True) -> str:
    """`found(id, type, display)`: which of the ids ``ids`` are users or groups of the
    tenant, each with the name a group shows for it (`members_query`).

    ``hold``: each is held to the end of the transaction, as a foreign key holds
    what it references (`hold`, which says how; the caller holds them already when
    not), and read as it is once its lock is taken: a delete of one locks it
    `FOR UPDATE` first, so the membership the statement adds either commits
    before the delete goes on, which then finds it and takes the member out, or
    waits for the delete and finds the member gone. Read with the statement's
    snapshot alone, a member deleted meanwhile was added all the same: a group
    kept a deleted user."""
    # A union locks no rows: each table's are locked apart, then joined.
    users_lock, groups_lock = (f" {USER_HOLD}", f" {GROUP_HOLD}") if hold else ("", "")
    return (
        "found_users AS MATERIALIZED (SELECT id, 'User' AS type, "
        f"coalesce(display_name, user_name) AS display FROM {qualified}.users "
        f"WHERE id = ANY({ids}::uuid[]) AND managed AND deleted_at IS NULL{users_lock}), "
        "found_groups AS MATERIALIZED (SELECT id, 'Group' AS type, display_name AS display "
        f"FROM {qualified}.groups WHERE id = ANY({ids}::uuid[]){groups_lock}), "
        "found AS (SELECT * FROM found_users UNION ALL SELECT * FROM found_groups), "
    )


async def hold(conn: Connection, schema: str, ids: Sequence[str]) -> None:
    """Hold the users (`USER_HOLD`) and groups (`GROUP_HOLD`) among ``ids`` until the
    transaction ends: a write that adds them as members the locked way, before it
    locks the group. In that order (members, then the group) as a delete takes its
    locks (the member, then the groups it is in): held after the group, a member
    being deleted would wait for the delete, which waits for the group, when the
    member is in it already. Values that are not ids are left for the add to
    refuse."""
    member_ids = _uuids(ids)
    if not member_ids:
        return
    qualified = quoted_schema(schema)
    await conn.execute(
        f"WITH u AS (SELECT FROM {qualified}.users WHERE id = ANY($1::uuid[]) {USER_HOLD}), "
        f"g AS (SELECT FROM {qualified}.groups WHERE id = ANY($1::uuid[]) {GROUP_HOLD}) "
        "SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM g)",
        member_ids,
    )


_FOUND_IDS: Final = ", (SELECT array_agg(id) FROM found) AS found_ids"
_FOUND_MEMBERS: Final = "".join(
    f", (SELECT array_agg({column} ORDER BY id) FROM found) AS found_{column}s"
    for column in ("id", "type", "display")
)
"""`_FOUND_IDS`, and the members found as a group shows them (`found_members`)."""


def _inserting(qualified: str, source: str) -> str:
    return (
        f"INSERT INTO {qualified}.group_members (group_id, member_id, member_type) "
        f"SELECT $1, found.id, found.type FROM {source} "
        "ON CONFLICT DO NOTHING RETURNING member_id, member_type"
    )


def member_ids(ids: Sequence[str]) -> list[uuid.UUID]:
    """The ids of members to remove, once each; a value that cannot be one is none."""
    return _uuids(ids) or []


def check_found(member_ids: list[uuid.UUID], row: Row) -> None:
    """400 unless every member to add was found (`_FOUND_IDS` of ``row``)."""
    found = set(row["found_ids"] or [])
    missing = [str(member_id) for member_id in member_ids if member_id not in found]
    if missing:
        raise invalid_value(f"members not found: {', '.join(missing[:10])}")


async def change_if(
    conn: Connection,
    schema: str,
    group_id: uuid.UUID,
    ids: list[uuid.UUID],
    *,
    add: bool,
    ahead: Callable[[int], AlongStatements],
    only_with: str,
    along: Callable[[int, str], AlongStatements],
    settling: Callable[[int], Settling] | None = None,
) -> tuple[Change, Row]:
    """Add (``add``: `new_member_ids`) or remove (`member_ids`) these members of a group,
    with its version bump and ``along``, in one statement (its own transaction unless
    the caller opened one) that locks and reads the group itself, and writes only if
    ``ahead``'s `WITH` queries (given their first `$n`) let it: their query
    ``only_with`` returns a row. ``along`` is given its first free `$n` and
    `changed` (`member_id, member_type`: what the statement changed) and may read
    `current`, the group as it was; its `returns` are columns of the statement's
    result. ``settling``: more `WITH` queries (given their first `$n`), before and
    after the group's lock, that the change may have to wait for (`Settling`); any
    of the statement's queries may then be recursive.

    The change and the statement's result row: the group after the change (its
    `current` false: there is no such group), `went` (false: ``ahead`` held the
    change back, nothing written), `settled` (false: ``settling`` did, once the
    group was locked) and the columns of ``ahead``'s query `state`.
    400, nothing written, when a member to add does not exist."""
    qualified = quoted_schema(schema)
    condition = ahead(3)
    settle = Settling("", "", "", []) if settling is None else settling(3 + len(condition.args))
    statements = along(3 + len(condition.args) + len(settle.args), "changed")
    exists = "EXISTS (SELECT FROM current)"
    settled = "true"
    first = ["found"] if add else []
    if settling is not None:
        exists += " AND EXISTS (SELECT FROM settled)"
        settled = "EXISTS (SELECT FROM settled)"
        first.append(settle.waited)
    # Members to add are held before the group (`hold` says why): the group's row
    # passes its condition, so is locked, only once `found` (and what else it waits
    # for) has run.
    waits = "".join(f" AND (SELECT count(*) FROM {query}) >= 0" for query in first)
    before = (
        f"{condition.ctes}, {_found(qualified) if add else ''}"
        f"{settle.before}{'' if settling is None else ', '}current AS (SELECT "
        f"{RESOURCE_COLUMNS} FROM {qualified}.groups r WHERE r.id = $1 "
        f"AND EXISTS (SELECT FROM {only_with}){waits} FOR NO KEY UPDATE), "
        f"{settle.after}{'' if settling is None else ', '}"
    )
    also = (
        f", EXISTS (SELECT FROM {only_with}) AS went, EXISTS (SELECT FROM current) AS current, "
        f"{settled} AS settled, s.*{statements.returns}"
    )
    if add:
        statement = _inserting(
            qualified,
            f"found WHERE {exists} AND (SELECT count(*) FROM found) = cardinality($2::uuid[])",
        )
        also = _FOUND_IDS + also
    else:
        statement = _deleting(qualified, f"m.member_id = ANY($2::uuid[]) AND {exists}")
    # A member changed alone goes as a one-element array (`ARRAY[$2::uuid]`), not an
    # array parameter, where its roles are settled: PostgreSQL estimates an array
    # parameter at 10 elements, which put the settling statement's generic plan
    # (its recursive climb, its roles) at 644 against 394 for its custom plans, so
    # it planned every execution afresh, 3-5 ms of its CPU each, more than running it
    # took (a mapped tenant's member changes at 0.43x an unmapped one's under load).
    one = settling is not None and len(ids) == 1
    change, row = await _change(
        conn,
        qualified,
        statement,
        [group_id, ids[0] if one else ids, *condition.args, *settle.args, *statements.args],
        bump=True,
        recursive=settling is not None,
        one_member=one,
        before=before,
        also=also,
        along=f", {statements.ctes}",
        joined=" LEFT JOIN state s ON true",
        unchanged="current",
    )
    if add and row["went"] and row["current"]:
        check_found(ids, row)
    return change, row


def inserting_with_members(
    schema: str,
    member_ids: list[uuid.UUID],
    insert: Callable[[Along], Along],
    new_events: Sequence[NewEvent],
    *,
    created_data: str,
) -> Along:
    """A new group's insert with its members (`new_member_ids`), as `WITH` queries of
    another statement (`service.write_state.read_and_write`): ``insert`` is the
    group's (`service.store.resources.inserting`), given what to store with it.
    The group is stored only if that statement's query it is given returns a row
    and every member is found (`check_found` of the statement's result, which
    has the columns of `_FOUND_MEMBERS`); its memberships and ``new_events`` with
    it: the group's `created` event first, its data ``created_data`` (SQL over the
    event `e`), then one event per member with the member's type
    (`service.store.outbox.appending_created`).

    A group with members is what Google Workspace pushes. The locked way took
    seven round trips (BEGIN, the state, the group, its memberships, their names,
    the events, COMMIT); it needs no lock: nothing can name a new group, nor
    change its members, before its id is answered."""
    qualified = quoted_schema(schema)

    def along(first_param: int, inserted: str | None) -> AlongStatements:
        assert inserted is not None, "memberships are stored only with their group"
        stored = outbox.appending_created(
            schema, new_events, first_param, inserted, "changed", created_data=created_data
        )
        return AlongStatements(
            f"changed AS (INSERT INTO {qualified}.group_members (group_id, member_id, "
            f"member_type) SELECT i.id, f.id, f.type FROM {inserted} i, found f "
            f"RETURNING member_id, member_type), {stored.ctes}",
            stored.args,
        )

    def statements(first_param: int, only_with: str | None) -> AlongStatements:
        ids = f"${first_param}"
        source = "" if only_with is None else f" FROM {only_with}"
        complete = (
            f"complete AS (SELECT{source} WHERE "
            f"(SELECT count(*) FROM found) = cardinality({ids}::uuid[]))"
        )
        group = insert(along)(first_param + 1, "complete")
        return AlongStatements(
            f"{_found(qualified, ids)}{complete}, {group.ctes}",
            [member_ids, *group.args],
            _FOUND_MEMBERS + group.returns,
        )

    return statements


def found_members(row: Row) -> list[Member]:
    """The members `inserting_with_members` found, in id order, as a group shows them."""
    return [
        Member(id=member_id, type=member_type, display=display)
        for member_id, member_type, display in zip(
            row["found_ids"] or [],
            row["found_types"] or [],
            row["found_displays"] or [],
            strict=True,
        )
    ]


async def _delete(
    conn: Connection, schema: str, where: str, args: Sequence[Any], *, bump: bool
) -> Change:
    """Remove the members of group `$1` that the SQL condition ``where`` (over `m`) selects."""
    qualified = quoted_schema(schema)
    change, _ = await _change(conn, qualified, _deleting(qualified, where), args, bump=bump)
    return change


def _deleting(qualified: str, where: str) -> str:
    """Delete the memberships of group `$1` that ``where`` (over `m`) selects."""
    return (
        f"DELETE FROM {qualified}.group_members AS m WHERE m.group_id = $1 AND {where} "
        "RETURNING m.member_id, m.member_type"
    )


async def remove(
    conn: Connection, schema: str, group_id: uuid.UUID, ids: Sequence[str], *, bump: bool = False
) -> Change:
    """Remove exactly these members; ids that are not members are ignored."""
    where = "m.member_id = ANY($2::uuid[])"
    return await _delete(conn, schema, where, [group_id, member_ids(ids)], bump=bump)


async def remove_where(
    conn: Connection, schema: str, group_id: uuid.UUID, condition: Filter, *, bump: bool = False
) -> Change:
    """Remove the members a value filter selects (`members[type eq "Group"]`)."""
    builder = SqlBuilder(first_param=2)
    where = compile_member_filter(condition, builder, quoted_schema(schema))
    return await _delete(conn, schema, where, [group_id, *builder.params], bump=bump)


async def remove_all(
    conn: Connection, schema: str, group_id: uuid.UUID, *, bump: bool = False
) -> Change:
    return await _delete(conn, schema, "true", [group_id], bump=bump)


async def remove_others(
    conn: Connection,
    schema: str,
    group_id: uuid.UUID,
    kept: list[uuid.UUID],
    *,
    bump: bool = False,
) -> Change:
    """Remove every member but ``kept``: the members a PUT or a `replace` sets, before
    it adds those missing. Removing them all and adding them back rewrote every
    membership (a PUT repeating 10,000 members: 0.3 s)."""
    where = "NOT (m.member_id = ANY($2::uuid[]))"
    return await _delete(conn, schema, where, [group_id, kept], bump=bump)


def members_query(qualified: str, groups: str) -> str:
    """SQL for the members of the groups the condition ``groups`` (over `m.group_id`)
    chooses, each with its display name.

    A member group's name is read by its key, not joined: a join made PostgreSQL hash
    every group of a tenant of some thousands for each group rendered (3,000 groups,
    a group of five members: 0.41-0.46 against 0.02-0.03 ms)."""
    return (
        "SELECT m.group_id, m.member_id, m.member_type, "
        "coalesce(u.display_name, u.user_name, CASE WHEN m.member_type = 'Group' THEN "
        f"(SELECT g.display_name FROM {qualified}.groups g WHERE g.id = m.member_id) END) "
        f"AS display FROM {qualified}.group_members m "
        f"LEFT JOIN {qualified}.users u ON m.member_type = 'User' AND u.id = m.member_id "
        f"WHERE {groups} ORDER BY m.group_id, m.member_id"
    )


async def members_of(
    conn: Connection | Pool, schema: str, group_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[Member]]:
    """Members of several groups in one query, each with its display name."""
    # One group, the usual render, on a scalar: the cached plan serves (`one_of`).
    chosen, arg = one_of("m.group_id", group_ids)
    rows = await conn.fetch(members_query(quoted_schema(schema), chosen), arg)
    members: dict[uuid.UUID, list[Member]] = defaultdict(list)
    for row in rows:
        members[row["group_id"]].append(
            Member(id=row["member_id"], type=row["member_type"], display=row["display"])
        )
    return members


def one_of(column: str, ids: Sequence[uuid.UUID]) -> tuple[str, Any]:
    """SQL that ``column`` is one of ``ids``, over `$1`, and that argument: a scalar for
    one id.

    A generic plan counts ten values in an array parameter, and a climb through
    nested memberships (`reach`, `users_under`) or a name read per member
    (`members_query`) multiplies that estimate until the generic plan looks twice
    as costly as one planned for a single id: PostgreSQL then plans every execution
    afresh (0.5 ms each for a member change's roles). An IdP's member change names
    one member, a group is rendered alone: a scalar, and the cached plan serves.
    """
    if len(ids) == 1:
        return f"{column} = $1::uuid", ids[0]
    return f"{column} = ANY($1::uuid[])", list(ids)


def groups_column(qualified: str, user_id: str) -> str:
    """SQL for the groups of the user whose id is the SQL expression ``user_id``, as one value.

    A column of the statement that reads the user, so a rendered user costs no
    second round trip. The value is what `groups_in_column` reads: NULL (no groups) or a
    JSON array of [group id, displayName, direct?] ordered by displayName, id.
    """
    return (
        "(SELECT jsonb_agg(jsonb_build_array(s.id, s.display_name, s.depth = 1)"
        f" ORDER BY s.display_name, s.id) FROM ({groups_of(qualified, user_id)}) s)"
    )


def groups_in_column(value: list[list[Any]]) -> list[tuple[str, str, bool]]:
    """The groups a `groups_column` value names: (group id, displayName, direct?) each.

    The id stays the text PostgreSQL wrote, as a response shows it: a user in many
    groups is rendered on every lookup, and a round trip through `uuid.UUID` cost
    a parse and two conversions back per group."""
    return [(group_id, display, direct) for group_id, display, direct in value]


GroupKeys = tuple[str, str | None]
"""A group's displayName and externalId: what a role mapping matches groups by."""


async def users_under(
    conn: Connection | Pool, schema: str, group_ids: list[uuid.UUID]
) -> set[uuid.UUID]:
    """The users in these groups, directly or through nested groups."""
    if not group_ids:
        return set()
    qualified = quoted_schema(schema)
    chosen, arg = one_of("group_id", group_ids)
    rows = await conn.fetch(users_beneath(qualified, chosen), arg)
    return {row["id"] for row in rows}
