"""What a SCIM request does to a tenant's resources, independent of HTTP.

Each write is one transaction on one pooled connection: read and lock the
resource, check the client's `If-Match`, apply the change with the pure SCIM
code (`service.scim`), store it with its version bump, all or nothing. The
HTTP routes and `/Bulk` both call these functions. Each write appends its
events (`service.events`) as the last step of its transaction, or with the
statement that stores a user's change. The writes IdPs send most need no
transaction block: the common create (a group's with its members too) and a
group's member PATCH are one statement each, their state read in it
(`_insert_with_state`, `_patch_members_in_one`), and a user's PATCH or PUT, or
a group's PATCH of its attributes alone, reads without a lock, then writes with
one statement that takes effect only if what it read still holds, or runs
again the locked way (`_change_user_unlocked`, `_change_group_unlocked`); a
user this process has just read or written is changed in the statement that
reads it (`service.recent_users`). A
write adding members holds them before it locks their group, as a delete locks
its resource before the groups it leaves (`groups.hold`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple, ParamSpec, TypeVar

import asyncpg

from observability import instruments, request_context
from observability.attributes import (
    ACTION_CREATED,
    ACTION_DELETED,
    ACTION_UPDATED,
    FOUND_READ,
    FOUND_SEEN,
    FOUND_STALE,
)
from service import events, guard, passwords, recent_users, roles, write_state
from service.postgres import Connection, Pool
from service.scim import patch, resources, validation
from service.scim.errors import ScimError, not_found
from service.scim.projection import Projection, project
from service.store import groups, lifecycle, outbox, paging
from service.store.outbox import NewEvent
from service.store.paging import ListQuery
from service.store.resources import (
    GROUPS,
    TO_CHANGE,
    TO_DELETE,
    USERS,
    Along,
    AlongStatements,
    Row,
    Table,
    conflict,
    email_values,
    insert,
    inserting,
    page_statements,
    selecting,
    update,
    update_unless_changed,
    updating_unless_changed,
)
from service.store.resources import delete as delete_row
from service.store.resources import get as get_row
from service.write_state import WriteState
from tenants.migrations import LATEST_VERSION
from tenants.schemas import quoted_schema


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a request acts: the tenant's schema and the base of its `Location`s."""

    schema: str
    base_url: str
    events: bool = True
    """Whether writes record events (`SCIM_EVENTS_ENABLED`)."""
    tenant_id: uuid.UUID | None = None
    """For the tenant's provisioning policy; without it the defaults apply."""
    client: str = "generic"
    """The calling IdP (`service.scim.clients.detect_client`), for the link audit."""
    user_agent: str | None = None
    announcer: outbox.Announcer | None = None
    """Announces the events of committed writes (`service.store.outbox`); None: each
    write's transaction NOTIFYs itself."""
    schema_version: int = LATEST_VERSION
    """The tenant schema's version, for SQL that differs across versions."""


log = logging.getLogger(__name__)

_Params = ParamSpec("_Params")
_Result = TypeVar("_Result")

DEADLOCK_ATTEMPTS: Final = 3
"""How many times a write runs when PostgreSQL ends it as a deadlock's victim."""


def _deadlock_retried(
    write: Callable[_Params, Coroutine[Any, Any, _Result]],
) -> Callable[_Params, Coroutine[Any, Any, _Result]]:
    """``write`` run again, up to `DEADLOCK_ATTEMPTS` times in all, when PostgreSQL ends
    it as a deadlock's victim (40P01): the write's transaction, or its one statement,
    was rolled back whole, so nothing of it stays, and the other side of the deadlock
    has gone on. The writes take their locks in orders meant to leave no cycle
    (members before their group, groups in id order, `groups.GROUP_HOLD` says what
    PostgreSQL's own row-version locks once added to them), and `test_roles`'s and
    `test_events`' concurrent tests count none; this is the net under what they do
    not reach. The victim waited PostgreSQL's `deadlock_timeout` (1 s by default)
    first. Each is counted (`scim_write_deadlocks_total`)."""

    @functools.wraps(write)
    async def retried(*args: _Params.args, **kwargs: _Params.kwargs) -> _Result:
        attempt = 1
        while True:
            try:
                return await write(*args, **kwargs)
            except asyncpg.DeadlockDetectedError:
                instruments.write_deadlocked()
                if attempt == DEADLOCK_ATTEMPTS:
                    raise
                attempt += 1
                log.warning(
                    "%s ended by a deadlock, nothing written; running it again (%d of %d)",
                    write.__name__,
                    attempt,
                    DEADLOCK_ATTEMPTS,
                )

    return retried


def resource_id(raw: str, table: Table) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise _missing(table, raw) from exc


def _missing(table: Table, raw_id: str) -> ScimError:
    """The 404 of a resource that is not there."""
    return not_found(f"{table.resource_type.name} {raw_id!r} not found")


def etag_matches(header: str, version: int) -> bool:
    """RFC 9110 If-Match / If-None-Match, with weak comparison as SCIM versions are weak."""
    current = resources.etag(version).removeprefix("W/")
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == current:
            return True
    return False


def _check_if_match(row: Row, if_match: str | None) -> None:
    if if_match is not None and not etag_matches(if_match, row["version"]):
        raise ScimError(
            412,
            f"the resource has changed: its version is {resources.etag(row['version'])}, "
            f"not {if_match}",
        )


Memberships = dict[uuid.UUID, list[resources.Member]]
UserGroups = dict[uuid.UUID, list[tuple[str, str, bool]]]


def _body(
    table: Table,
    scope: Scope,
    row: Row | Mapping[str, Any],
    members: Memberships,
    user_groups: UserGroups,
) -> dict[str, Any]:
    if table is USERS:
        body = resources.render_user(
            base_url=scope.base_url,
            user_id=row["id"],
            attributes=row["resource"],
            created=row["created"],
            last_modified=row["last_modified"],
            version=row["version"],
        )
        if row["id"] in user_groups:
            body["groups"] = _group_entries(scope, user_groups[row["id"]])
        return body
    return resources.render_group(
        base_url=scope.base_url,
        group_id=row["id"],
        attributes=row["resource"],
        members=members.get(row["id"], []),
        created=row["created"],
        last_modified=row["last_modified"],
        version=row["version"],
    )


async def _render_rows(
    conn: Connection | Pool,
    table: Table,
    scope: Scope,
    rows: list[Row],
    projection: Projection | None,
) -> list[dict[str, Any]]:
    """Resources of one type; a group's members are loaded in one query for all rows.

    A user's groups are never loaded here: every read whose response shows
    them selects them with the user (`_groups_column`), and a row without
    them (one just inserted or adopted) is in no group this response reports.
    """
    members: Memberships = {}
    user_groups: UserGroups = {}
    if table is USERS:
        user_groups = {row["id"]: found for row in rows if (found := _read_groups(row)) is not None}
    elif rows and (projection is None or projection.wants("members")):
        members = await groups.members_of(conn, scope.schema, [row["id"] for row in rows])
    return [
        _shown(table, _body(table, scope, row, members, user_groups), projection) for row in rows
    ]


def _shown(table: Table, body: dict[str, Any], projection: Projection | None) -> dict[str, Any]:
    """``body`` as ``projection`` (`attributes`, `excludedAttributes`) shows it."""
    return body if projection is None else project(table.resource_type, body, projection)


def _read_groups(row: Row) -> list[tuple[str, str, bool]] | None:
    """A user's groups as read with it (`_groups_column`); None: the read left them out."""
    if "related" not in row.keys() or row["related"] is None:  # noqa: SIM118 - a Record's `in` tests values
        return None
    return groups.groups_in_column(row["related"])


async def render(
    conn: Connection | Pool,
    table: Table,
    scope: Scope,
    row: Row,
    projection: Projection | None = None,
) -> dict[str, Any]:
    """The SCIM representation of a stored row."""
    [body] = await _render_rows(conn, table, scope, [row], projection)
    return body


def _groups_column(
    table: Table, scope: Scope, projection: Projection | None, row: str
) -> str | None:
    """SQL for the groups of the users read as ``row``, when the response shows them."""
    if table is USERS and (projection is None or projection.wants("groups")):
        return groups.groups_column(quoted_schema(scope.schema), f"{row}.id")
    return None


def _group_entries(scope: Scope, found: list[tuple[str, str, bool]]) -> list[dict[str, Any]]:
    return [
        {
            "value": group_id,
            "$ref": f"{scope.base_url}/Groups/{group_id}",
            "display": display,
            "type": "direct" if direct else "indirect",
        }
        for group_id, display, direct in found
    ]


def _event_body(table: Table, scope: Scope, row: Row | Mapping[str, Any]) -> dict[str, Any]:
    """A row's representation for its events: no member or group lists, so no query."""
    return _body(table, scope, row, {}, {})


async def _record(
    conn: Connection, scope: Scope, state: WriteState, *batches: Sequence[NewEvent | None]
) -> None:
    """The write's events, the last step of its transaction, with the default roles of
    the user it created (`roles.Tracker.storing`; roles it recomputed are stored
    already, `roles.Tracker.refresh`): one statement for both, unless the
    mass-deprovisioning guard has to look at the events (`guard.record`, which may hold
    some of them)."""
    found = [event for batch in batches for event in batch if event is not None]
    tracker = state.roles
    at_commit = state.numbers_at_commit
    if scope.events and (scope.tenant_id is None or guard.passes(found, state.guard_tripped)):
        ahead = None if tracker is None else tracker.storing(1)
        await outbox.append(conn, scope.schema, found, at_commit=at_commit, ahead=ahead)
        return
    if tracker is not None:
        await tracker.store(conn)
    if scope.events and scope.tenant_id is not None:
        await guard.record(
            conn,
            scope.schema,
            scope.tenant_id,
            found,
            was_tripped=state.guard_tripped,
            at_commit=at_commit,
        )


async def _state(
    conn: Connection,
    scope: Scope,
    created: dict[str, Any] | None = None,
    *,
    exclusive: bool = False,
) -> WriteState:
    """The write's roles tracker and guard state (`service.write_state`), the roles
    lock taken ``exclusive``ly or shared; for the create of user ``created``, also
    whether a hidden user may be claimed."""
    return await write_state.read(
        conn, scope.schema, scope.tenant_id, exclusive=exclusive, probe=_probe(scope, created)
    )


def _probe(scope: Scope, created: dict[str, Any] | None) -> write_state.Probe | None:
    """For the create of user ``created``, whether a hidden user may be claimed."""
    if created is None:
        return None
    emails_sql = email_values(scope.schema_version)
    return functools.partial(lifecycle.claim_probe, scope.schema, created, emails_sql=emails_sql)


_Written = TypeVar("_Written")


async def _exclusive_if_needed(write: Callable[[bool], Awaitable[_Written]]) -> _Written:
    """Run a write, given whether it holds the roles lock exclusively, under the shared
    lock, and once more under the exclusive one if it turns out to need it
    (`roles.ExclusiveNeeded`; its first run's transaction undone)."""
    try:
        return await write(False)
    except roles.ExclusiveNeeded:
        return await write(True)


async def _locked_with_state(
    conn: Connection,
    table: Table,
    scope: Scope,
    raw_id: str,
    projection: Projection | None = None,
    *,
    exclusive: bool = False,
    adding: Sequence[str] = (),
) -> tuple[Row, WriteState]:
    """The resource, locked, and the write's state.

    A group write takes the roles lock before its row lock, as it may go on to
    lock other groups, and holds the members it is ``adding`` between the two
    (`groups.hold`); a user write reads its state after locking the user, so
    it sees a guard tripped by the write it waited for.
    """
    if table is GROUPS:
        state = await _state(conn, scope, exclusive=exclusive)
        await groups.hold(conn, scope.schema, adding)
        return await _locked(conn, table, scope, raw_id), state
    # The response's groups come with the lock: a user's write cannot change them.
    row = await _locked(conn, table, scope, raw_id, _groups_column(table, scope, projection, "r"))
    return row, await _state(conn, scope, exclusive=exclusive)


async def _group_roles(
    conn: Connection,
    tracker: roles.Tracker | None,
    before: Row | None,
    after: Row,
    members: events.MembershipChanges,
) -> list[NewEvent]:
    if tracker is None:
        return []
    old = None if before is None else roles.keys(before["resource"])
    return await tracker.group_changed(
        conn, after["id"], old, roles.keys(after["resource"]), members.touched()
    )


def _new_state(table: Table, payload: Any) -> dict[str, Any]:
    resource = validation.normalise(table.resource_type, payload)
    validation.check_required(table.resource_type, resource)
    if table is USERS:
        # A user is active unless the IdP says otherwise; clients (Okta among
        # them) read the flag back, so it is always stated.
        resource.setdefault("active", True)
    return resource


async def _password_hash(table: Table, payload: Any) -> str | None:
    """The hash of the password a User body sets, if any; computed off the event loop."""
    password = validation.password_of(payload) if table is USERS else None
    return None if password is None else await asyncio.to_thread(passwords.hash_password, password)


@_deadlock_retried
async def create(
    pool: Pool, table: Table, scope: Scope, payload: Any, projection: Projection | None = None
) -> dict[str, Any]:
    resource = _new_state(table, payload)
    member_ids = validation.members_of(payload) if table is GROUPS else None
    password_hash = await _password_hash(table, payload)
    created = resource if table is USERS else None
    async with outbox.announced(pool, scope.announcer, transaction=False) as conn:
        known: WriteState | None = None
        mapped = write_state.maps_roles(scope.tenant_id)
        # A group's members move their roles: in a tenant that maps them, the locked way.
        alone = password_hash is None if table is USERS else not (member_ids and mapped)
        if alone and _may_go_unlocked(scope) and scope.tenant_id is not None:
            known, body = await _insert_with_state(
                conn, table, scope, resource, created, mapped=mapped, member_ids=member_ids
            )
            if body is not None:
                instruments.provisioned(table.resource_type.name, ACTION_CREATED)
                return _shown(table, body, projection)
            if known.roles is not None:
                known = None  # read again in the transaction, to hold its roles lock

        async def in_transaction(exclusive: bool) -> dict[str, Any]:
            async with conn.transaction():
                state = known or await _state(conn, scope, created, exclusive=exclusive)
                return await _create_locked(
                    conn,
                    table,
                    scope,
                    state,
                    resource,
                    member_ids=member_ids,
                    password_hash=password_hash,
                    projection=projection,
                )

        body = await _exclusive_if_needed(in_transaction)
        instruments.provisioned(table.resource_type.name, ACTION_CREATED)
        return body


async def _create_locked(
    conn: Connection,
    table: Table,
    scope: Scope,
    state: WriteState,
    resource: dict[str, Any],
    *,
    member_ids: list[str] | None,
    password_hash: str | None,
    projection: Projection | None,
) -> dict[str, Any]:
    """A create in a transaction: a user claimed or inserted, its password, a group's
    members, the events with the roles they moved; the new resource's representation."""
    tracker = state.roles
    claimed = await _claim(conn, scope, resource, state) if table is USERS else None
    if claimed is None and table is USERS and tracker is not None and password_hash is None:
        shown = await _insert_user_with_roles(conn, scope, state, tracker, resource)
        if shown is not None:
            return _shown(USERS, shown, projection)
    if member_ids:
        await groups.hold(conn, scope.schema, member_ids)
    row = claimed or await insert(conn, table, scope.schema, resource)
    if table is USERS:
        recent_users.note(scope.schema, row)
    if password_hash is not None:
        await lifecycle.set_password(conn, scope.schema, row["id"], password_hash)
    members = events.MembershipChanges()
    if member_ids:
        members.added((await groups.add(conn, scope.schema, row["id"], member_ids)).members)
    body = await render(conn, table, scope, row, projection)
    if claimed is not None:
        return body
    created = _event_body(table, scope, row)
    if table is USERS:
        user_roles = None if tracker is None else tracker.created(row["id"])
        await _record(conn, scope, state, [events.created(created, user_roles)])
    else:
        role_events = await _group_roles(conn, tracker, None, row, members)
        await _record(
            conn, scope, state, [events.created(created)], members.events(created), role_events
        )
    return body


async def _insert_user_with_roles(
    conn: Connection,
    scope: Scope,
    state: WriteState,
    tracker: roles.Tracker,
    resource: dict[str, Any],
) -> dict[str, Any] | None:
    """A new user of a tenant that maps roles, in one statement of the create's
    transaction: the user, its default roles stored (`roles.Tracker.storing`)
    and its `created` event with them, numbered at commit; the user's
    representation, which the event shows. It took three statements. The user's
    times are the transaction's, which the state read in it (the statements of a
    transaction share their `now()`). None, having written nothing, when the event
    cannot go with the insert (`_events_along`, or the guard may hold it)."""
    if not _events_along(scope, state) or state.guard_tripped:
        return None  # a tripped guard may hold a created event (`guard.record`)
    assert state.now is not None
    resource_id = uuid.uuid4()
    body = _event_body(USERS, scope, _inserted(resource_id, resource, state.now))
    event = events.created(body, tracker.created(resource_id))

    def along(first_param: int, _: str | None) -> AlongStatements:
        stored_roles = tracker.storing(first_param)
        assert stored_roles is not None
        first_free = first_param + len(stored_roles.args)
        return stored_roles.then(outbox.appending(scope.schema, [event], first_free))

    row = await insert(
        conn, USERS, scope.schema, resource, resource_id=resource_id, at=state.now, along=along
    )
    recent_users.note(scope.schema, row)
    return body


def _may_go_unlocked(scope: Scope) -> bool:
    """Whether a write may try a way without the resource's lock: it needs events on
    with an announcer (`_events_along`). In a tenant that maps roles, a user's
    update, a create without members or password (whose statement takes the roles
    lock) and a member PATCH (`_patch_members_in_one`, in a transaction block) may;
    other group writes go the locked way (`write_state.maps_roles`)."""
    return scope.events and scope.announcer is not None


def _events_along(scope: Scope, state: WriteState) -> bool:
    """Whether a write's events may leave with its last change, in one statement: events
    are on, the tenant's events table takes events numbered by the statement or by
    the commit (schema version 8), and an announcer sends the NOTIFY after it
    (`service.store.outbox.appending`). The guard is for the caller to ask."""
    return (
        scope.events and state.now is not None and state.numbers_at_commit and outbox.announcing()
    )


_NOT_YET: Final = datetime.min.replace(tzinfo=UTC)
"""The times of a representation before the statement storing it gives them."""
_STAMPED_NOW: Final = resources.stamped_sql("e.data", "now()")
"""An event's data `e` with the times its statement gives them."""
_MODIFIED_NOW: Final = resources.modified_sql("e.data", "now()")
"""An update's event data `e` with the `lastModified` its statement gives it."""
_MODIFIED_NOW_WITH_HELD_ROLES: Final = resources.modified_sql(roles.HELD_ROLES_DATA, "now()")
"""That, with the user's roles its statement read (`roles.HELD_ROLES_DATA`)."""
_STAMPED_NOW_WITH_DEFAULT_ROLES: Final = (
    f"jsonb_set({_STAMPED_NOW}, '{{roles}}', to_jsonb({roles.DEFAULT_ROLES}))"
)
"""A new user's event data `e` with those times and the roles its statement stores."""


def _inserted(resource_id: uuid.UUID, resource: dict[str, Any], at: datetime) -> dict[str, Any]:
    """A new resource's row as its insert stores it, created ``at``."""
    return {
        "id": resource_id,
        "resource": resource,
        "created": at,
        "last_modified": at,
        "version": 1,
    }


def _updated(
    row: Row | Mapping[str, Any], resource: dict[str, Any], at: datetime | None
) -> dict[str, Any]:
    """``row`` as an update to ``resource`` stores it, modified ``at``: version one up."""
    return {
        "id": row["id"],
        "resource": resource,
        "created": row["created"],
        "last_modified": at,
        "version": row["version"] + 1,
    }


async def _insert_with_state(
    conn: Connection,
    table: Table,
    scope: Scope,
    resource: dict[str, Any],
    created: dict[str, Any] | None,
    *,
    mapped: bool = False,
    member_ids: list[str] | None = None,
) -> tuple[WriteState, dict[str, Any] | None]:
    """The common create as one statement: the write's state, the row and its
    `created` event (`write_state.read_and_write`); the state, and the new
    resource's representation, which is also what the event shows, or None,
    having written nothing, when the create needs more: a user to claim, the
    guard may hold its event, the tenant's events are numbered in the insert,
    or the tenant maps roles and the create is not ``mapped`` (or the other way
    round). A ``mapped`` create takes the roles lock shared in its state; a
    user's stores the user's roles, the mapping's default ones, and shows them in
    its event (`roles.storing_defaults`, `roles.DEFAULT_ROLES`): a user in no
    group has no other. A group without members changes nobody's roles; one
    with ``member_ids`` (never ``mapped``) is stored with its memberships and
    their events (`groups.inserting_with_members`), or not at all: 400 when a
    member is not found.

    No transaction block, which would cost two round trips (BEGIN, COMMIT) and
    protect nothing here: the statement is atomic by itself, and what the state
    says may change right after it within a transaction as well (READ
    COMMITTED). The event shows the row as the insert stores it: a new id,
    version 1, `created` and `lastModified` the statement's `now()` (set in
    the event by the statement, `resources.stamped_sql`, and in the answer as
    it comes back) and no members or groups: nothing can name the resource
    before its id is answered, so the answer needs no query (a group's members
    took one) and is not rendered twice.
    """
    assert scope.tenant_id is not None
    resource_id = uuid.uuid4()
    # Its times are the statement's, set in the statement and once it answers.
    body = _event_body(table, scope, _inserted(resource_id, resource, _NOT_YET))
    storing: Along = functools.partial(
        outbox.appending, scope.schema, [events.created(body)], numbered=True, data=_STAMPED_NOW
    )
    if mapped and table is USERS:
        storing = _storing_new_user(scope.schema, events.created(body, []), resource_id)
    write = inserting(table, scope.schema, resource, resource_id, storing)
    ids = groups.new_member_ids(resource_id, member_ids) if member_ids else []
    if ids:
        write = groups.inserting_with_members(
            scope.schema,
            ids,
            functools.partial(inserting, table, scope.schema, resource, resource_id),
            [events.created(body), *_member_events(ids, add=True, group=body)],
            created_data=_STAMPED_NOW,
        )
    try:
        state, written = await write_state.read_and_write(
            conn,
            scope.schema,
            scope.tenant_id,
            probe=_probe(scope, created),
            write=write,
            mapped=mapped,
        )
    except asyncpg.UniqueViolationError as exc:
        raise conflict(table, resource) from exc
    if written is None:
        return state, None
    assert state.now is not None
    if table is USERS:
        recent_users.note(scope.schema, _inserted(resource_id, resource, state.now))
    if ids:
        groups.check_found(ids, written)
        members = {resource_id: groups.found_members(written)}
        body = _body(table, scope, _inserted(resource_id, resource, _NOT_YET), members, {})
    return state, resources.stamped(body, state.now)


def _storing_new_user(schema: str, event: NewEvent, user_id: uuid.UUID) -> Along:
    """A new user's default roles and its `created` event (``event``, its roles set by
    the statement) stored by the statement that inserts it, in a tenant that maps roles."""

    def statements(first_param: int, only_with: str | None) -> AlongStatements:
        assert only_with is not None, "stored only with the user"
        stored = roles.storing_defaults(schema, user_id, first_param, only_with)
        appended = outbox.appending(
            schema,
            [event],
            first_param + len(stored.args),
            only_with,
            numbered=True,
            data=_STAMPED_NOW_WITH_DEFAULT_ROLES,
        )
        return stored.then(appended)

    return statements


async def _update_user_with_event(
    conn: Connection,
    scope: Scope,
    state: WriteState,
    row: Row,
    *,
    resource: dict[str, Any],
    before: dict[str, Any],
    locked: bool = True,
) -> tuple[Row, dict[str, Any]] | None:
    """A user's update in one statement with its event, as `_insert_with_state`:
    the row as stored and its event body.

    The event shows the row as the update will store it: version one up and
    `lastModified` the transaction's timestamp. In a tenant that maps roles, the
    statement also reads the user's stored roles, and its event shows them
    (`_holding_roles`): a ``locked`` write's user whose roles were never stored
    has them computed and its event recorded after the update; a write without
    a lock takes the roles lock in its statement and updates only a user with
    stored roles. None, having done nothing, when the event cannot go with the
    update: see `_events_along`; the change is not an event (`events.changed`),
    or the guard may hold it and the statement cannot decide (`guard.along`; a
    ``locked`` write's never does: it is not its own transaction). A ``row`` read
    without a lock (not ``locked``) is updated only if it is still at the version
    read (and, in a tenant that maps roles, has roles stored), else None too; its
    own statement's transaction is not the state's, so `lastModified` is passed.
    """
    tracker = state.roles
    if not _events_along(scope, state):
        return None
    after = _event_body(USERS, scope, _updated(row, resource, state.now))
    # The roles, in a tenant that maps them, are the statement's to set (`_holding_roles`).
    event = events.changed(before, after, None if tracker is None else [])
    if event is None:
        return None
    passes = guard.passes([event], state.guard_tripped)
    guarded_in = None if passes or locked else scope.tenant_id
    if not passes and guarded_in is None:
        return None
    deciding = None
    if guarded_in is not None:
        # The statement decides whether the guard holds the event, and stores or holds it.
        data = "e.data" if tracker is None else roles.HELD_ROLES_DATA
        deciding = guard.along(
            scope.schema, guarded_in, [event], state.guard_tripped, state.guard_row, data=data
        )
        if deciding is None:
            return None
    along: Along
    only_if = None
    if tracker is None:
        along = deciding or functools.partial(
            outbox.appending, scope.schema, [event], numbered=not locked
        )
    else:
        assert scope.tenant_id is not None, "only a tenant's state maps roles"
        along = _holding_roles(scope.schema, event, row["id"], locked=locked, deciding=deciding)
        if not locked:
            only_if = functools.partial(roles.stored_and_shared, scope.schema, scope.tenant_id)
    updated = await _updated_user(
        conn, scope.schema, state, row, resource, along=along, only_if=only_if, locked=locked
    )
    if updated is None:
        return None
    if guarded_in is not None:
        _counted(guarded_in, updated)
    if tracker is not None and locked and updated["stored_roles"] is None:
        user_roles, role_events = await tracker.user(conn, row["id"])
        await _record(conn, scope, state, [events.changed(before, after, user_roles)], role_events)
    return updated, after


def _counted(tenant_id: uuid.UUID, row: Row) -> None:
    """What the guard decided in a user's statement that it counted in (`guard.noted`);
    a trip there is this process's hint from then on (`write_state.tripped`)."""
    if guard.noted(tenant_id, row):
        write_state.tripped(tenant_id)


async def _updated_user(
    conn: Connection,
    schema: str,
    state: WriteState,
    row: Row,
    resource: dict[str, Any],
    *,
    along: Along,
    only_if: Callable[[int], tuple[str, list[Any]]] | None,
    locked: bool,
) -> Row | None:
    """The statement of `_update_user_with_event`: a locked user's update, or one that
    takes effect only if the user is still at the version read (None if not)."""
    if locked:
        return await update(conn, USERS, schema, row["id"], resource, along=along)
    assert state.now is not None
    return await update_unless_changed(
        conn,
        USERS,
        schema,
        row["id"],
        resource,
        version=row["version"],
        at=state.now,
        along=along,
        only_if=only_if,
    )


def _holding_roles(
    schema: str,
    event: NewEvent,
    user_id: uuid.UUID,
    *,
    locked: bool,
    deciding: Along | None = None,
    data: str = roles.HELD_ROLES_DATA,
) -> Along:
    """A user's update event, with the user's stored roles the update's statement reads
    `FOR SHARE` (`roles.holding_stored`), which the locked way read in a
    statement of its own after the update, and stored in a third. ``locked``: the
    user is locked and the statement is not its own transaction; the event is
    stored only if the user has roles stored (else they are computed after).
    Otherwise the statement updates the user only if it has (`_update_user_with_event`
    asks `roles.stored_and_shared`), and reads them once it has; with
    ``deciding`` (`guard.along`), the guard decides whether the event is stored
    or held once they are read, as the locked way locks the guard row last.
    ``data``: SQL over the event `e` for the data stored, the roles read in it."""

    def statements(first_param: int, written: str | None) -> AlongStatements:
        held = roles.holding_stored(schema, user_id, first_param, None if locked else written)
        first_free = first_param + len(held.args)
        if deciding is not None:
            # Not a row less: a gate that the guard's statements wait on the roles' read.
            read = (
                f"roles_read AS (SELECT FROM {written} "
                "WHERE (SELECT count(*) FROM held_roles) >= 0)"
            )
            decided = deciding(first_free, "roles_read")
            return held.then(AlongStatements(read, [])).then(decided)
        appended = outbox.appending(
            schema,
            [event],
            first_free,
            "held_roles" if locked else written,
            numbered=not locked,
            data=data,
        )
        return held.then(appended)

    return statements


async def _claim(
    conn: Connection, scope: Scope, resource: dict[str, Any], state: WriteState
) -> Row | None:
    """The pre-loaded or soft-deleted user a POSTed one is, adopted; None if there is none.

    Matching follows the tenant's policy. A soft-deleted user is restored (its
    data was kept for exactly this, and its userName is still taken); a
    pre-loaded one is linked, or refused with 409 when the policy says so.
    """
    if state.may_claim is False:
        return None
    policy = state.policy
    found = await lifecycle.find_claimable(
        conn,
        scope.schema,
        resource,
        policy.match_order,
        emails_sql=email_values(scope.schema_version),
    )
    if found is None:
        return None
    existing, matched_by, matched_value = found
    preloaded = not existing["managed"]
    if preloaded and policy.link_mode == "refuse":
        raise ScimError(
            409,
            f"a user with this {matched_by} already exists and this tenant's policy is not to "
            "link existing users; ask the operator to link or remove it",
            "uniqueness",
        )
    # What the operator (or the user's earlier life) knew and the IdP does not send is kept.
    row = await lifecycle.adopt(
        conn, scope.schema, existing["id"], {**existing["resource"], **resource}
    )
    link = await lifecycle.record_link(
        conn,
        scope.schema,
        user_id=existing["id"],
        kind="linked" if preloaded else "restored",
        matched_by=matched_by,
        matched_value=matched_value,
        client=scope.client,
        user_agent=scope.user_agent,
    )
    after = _event_body(USERS, scope, row)
    how = {
        "kind": link["kind"],
        "matched_by": matched_by,
        "matched_value": matched_value,
        "client": scope.client,
    }
    tracker = state.roles
    user_roles = None if tracker is None else (await tracker.user(conn, row["id"]))[0]
    # A restored user was reported deleted; to the product it comes back as created.
    event = (
        events.linked(after, how, user_roles) if preloaded else events.created(after, user_roles)
    )
    await _record(conn, scope, state, [event])
    return row


async def get(
    pool: Pool, table: Table, scope: Scope, raw_id: str, projection: Projection | None = None
) -> tuple[dict[str, Any], int]:
    """The resource and its version, or 404."""
    related = _groups_column(table, scope, projection, "r")
    row = await get_row(pool, table, scope.schema, resource_id(raw_id, table), related=related)
    if row is None:
        raise _missing(table, raw_id)
    if table is USERS:
        recent_users.note(scope.schema, row)
    return await render(pool, table, scope, row, projection), row["version"]


async def version_of(pool: Pool, table: Table, scope: Scope, raw_id: str) -> int:
    row = await get_row(pool, table, scope.schema, resource_id(raw_id, table))
    if row is None:
        raise _missing(table, raw_id)
    version: int = row["version"]
    return version


async def _locked(
    conn: Connection,
    table: Table,
    scope: Scope,
    raw_id: str,
    related: str | None = None,
    *,
    lock: str = TO_CHANGE,
) -> Row:
    """The resource, locked until the transaction ends (``lock``), or 404."""
    row = await get_row(
        conn, table, scope.schema, resource_id(raw_id, table), lock=lock, related=related
    )
    if row is None:
        raise _missing(table, raw_id)
    return row


async def _read_with_state(
    conn: Connection,
    table: Table,
    scope: Scope,
    raw_id: str,
    related: str | None = None,
    *,
    lock: str | None = None,
    write: Along | None = None,
    mapped: bool = False,
    counting: bool = False,
) -> tuple[Row, WriteState] | None:
    """The resource, read without a lock (or taking ``lock``, a delete's), and the
    write's state, in one statement (`write_state.read_with`, trying ``write`` in
    it where the tenant maps roles if ``mapped``, else where it does not; where the
    guard can count it if ``counting``), or 404. None without a tenant id: no state
    to read."""
    if scope.tenant_id is None:
        return None
    key = resource_id(raw_id, table)
    state, row = await write_state.read_with(
        conn,
        scope.schema,
        scope.tenant_id,
        resource=lambda first: selecting(table, scope.schema, first, related, lock=lock),
        resource_args=[key],
        write=write,
        mapped=mapped,
        counting=counting,
    )
    if row is None:
        raise _missing(table, raw_id)
    return row, state


@_deadlock_retried
async def replace(
    pool: Pool,
    table: Table,
    scope: Scope,
    raw_id: str,
    payload: Any,
    *,
    if_match: str | None = None,
    projection: Projection | None = None,
) -> dict[str, Any]:
    """PUT: the payload becomes the whole resource, within its mutability rules."""
    resource = _new_state(table, payload)
    member_ids = validation.members_of(payload) if table is GROUPS else None
    password_hash = await _password_hash(table, payload)
    if table is USERS and password_hash is None and _may_go_unlocked(scope):
        replaced = await _change_user_unlocked(
            pool, scope, raw_id, _replaced(resource), if_match=if_match, projection=projection
        )
        if replaced is not None:
            return replaced

    async def put(
        conn: Connection, row: Row, state: WriteState, before: dict[str, Any]
    ) -> _Changed:
        validation.check_immutable(table.resource_type, row["resource"], resource)
        stored = None
        if table is USERS and resource != row["resource"]:
            stored = await _update_user_with_event(
                conn, scope, state, row, resource=resource, before=before
            )
        # A PUT repeating a user's stored state (Okta's full-object updates) changes
        # nothing; a group's members are compared as its PUT rewrites them.
        after = row
        if stored is not None:
            after = stored[0]
        elif table is GROUPS or resource != row["resource"]:
            after = await update(conn, table, scope.schema, row["id"], resource)
        if password_hash is not None:
            await lifecycle.set_password(conn, scope.schema, row["id"], password_hash)
        members = events.MembershipChanges()
        if table is GROUPS:
            kept = groups.new_member_ids(row["id"], member_ids or [])
            removed = await groups.remove_others(conn, scope.schema, row["id"], kept)
            added = await groups.add(conn, scope.schema, row["id"], member_ids or [])
            members.removed(removed.members)
            members.added(added.members)
        return after, None if stored is None else stored[1], members

    return await _change_locked(
        pool,
        table,
        scope,
        raw_id,
        put,
        if_match=if_match,
        projection=projection,
        adding=member_ids or (),
    )


_Changed = tuple[Row, dict[str, Any] | None, events.MembershipChanges]
"""What a PUT or PATCH did the locked way: the row after it, the event body its
statement stored with the change (`_update_user_with_event`) if it did, and the
members it changed."""


async def _change_locked(
    pool: Pool,
    table: Table,
    scope: Scope,
    raw_id: str,
    change: Callable[[Connection, Row, WriteState, dict[str, Any]], Awaitable[_Changed]],
    *,
    if_match: str | None,
    projection: Projection | None,
    adding: Sequence[str] = (),
) -> dict[str, Any]:
    """A PUT or PATCH the locked way: the resource locked with the write's state (and
    the members a group's write is ``adding`` held) and its `If-Match` checked, then
    ``change`` (given the connection, the row, the state and the row's event body),
    then its response and events (`_finish_change`); under the shared roles lock,
    and again under the exclusive one if it needs it."""

    async def locked(exclusive: bool) -> dict[str, Any]:
        async with outbox.announced(pool, scope.announcer) as conn:
            row, state = await _locked_with_state(
                conn, table, scope, raw_id, projection, exclusive=exclusive, adding=adding
            )
            _check_if_match(row, if_match)
            before = _event_body(table, scope, row)
            after, stored_after, members = await change(conn, row, state, before)
            return await _finish_change(
                conn,
                scope,
                state,
                table=table,
                rows=(row, after),
                before=before,
                members=members,
                projection=projection,
                stored_after=stored_after,
            )

    return await _exclusive_if_needed(locked)


async def _finish_change(
    conn: Connection,
    scope: Scope,
    state: WriteState,
    *,
    table: Table,
    rows: tuple[Row, Row],
    before: dict[str, Any],
    members: events.MembershipChanges,
    projection: Projection | None,
    stored_after: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The end of a PUT or PATCH: its response, its metrics and its events, unless the
    change's statement stored them (``stored_after``: the event body it stored)."""
    after = _event_body(table, scope, rows[1]) if stored_after is None else stored_after
    # The events first: a run that turns out to need the exclusive roles lock stops
    # there (`_exclusive_if_needed`), before its metrics count it.
    if stored_after is None:
        await _record_change(
            conn, scope, state, table=table, rows=rows, bodies=(before, after), members=members
        )
    return await _respond(conn, scope, table, rows, (before, after), projection=projection)


async def _respond(
    conn: Connection,
    scope: Scope,
    table: Table,
    rows: tuple[Row, Row],
    bodies: tuple[dict[str, Any], dict[str, Any]],
    *,
    projection: Projection | None,
) -> dict[str, Any]:
    """The response to a change from ``rows[0]`` to ``rows[1]``, and its metrics
    (``bodies``: the two as their events show them).

    A user's response is its event body with the groups read with ``rows[0]``
    (a user's write cannot change them), not a third rendering of the user; a
    group's members are read."""
    if table is not USERS:
        instruments.changed(table.resource_type.name, *bodies)
        return await render(conn, table, scope, rows[1], projection)
    return _user_response(scope, rows[0], bodies, projection)


def _user_response(
    scope: Scope,
    read: Row,
    bodies: tuple[dict[str, Any], dict[str, Any]],
    projection: Projection | None,
) -> dict[str, Any]:
    """`_respond` to a user's change: its event body with the groups ``read`` with it."""
    instruments.changed(USERS.resource_type.name, *bodies)
    found = _read_groups(read)
    body = bodies[1] if found is None else {**bodies[1], "groups": _group_entries(scope, found)}
    return _shown(USERS, body, projection)


async def _record_change(
    conn: Connection,
    scope: Scope,
    state: WriteState,
    *,
    table: Table,
    rows: tuple[Row, Row],
    bodies: tuple[dict[str, Any], dict[str, Any]],
    members: events.MembershipChanges,
) -> None:
    """The events of a PUT or PATCH: the change, its members, the roles it moved."""
    before, after = bodies
    tracker = state.roles
    if table is GROUPS:
        role_events = await _group_roles(conn, tracker, rows[0], rows[1], members)
        await _record(
            conn, scope, state, [events.changed(before, after)], members.events(after), role_events
        )
        return
    user_roles: list[str] | None = None
    role_events = []
    if tracker is not None:
        user_roles, role_events = await tracker.user(conn, rows[1]["id"])
    await _record(conn, scope, state, [events.changed(before, after, user_roles)], role_events)


@_deadlock_retried
async def apply_patch(
    pool: Pool,
    table: Table,
    scope: Scope,
    raw_id: str,
    body: Any,
    *,
    if_match: str | None = None,
    projection: Projection | None = None,
) -> dict[str, Any]:
    """PATCH: every operation applies, or none does."""
    operations = patch.parse_patch_request(body)
    request_context.note_patch_operations(len(operations))
    patched = None
    # What a group's operations do to its members is known before the group is read.
    foreseen = patch.foreseen(table.resource_type, operations) if table is GROUPS else None
    if table is USERS and _may_go_unlocked(scope):
        patched = await _change_user_unlocked(
            pool, scope, raw_id, _patched(operations), if_match=if_match, projection=projection
        )
    elif table is GROUPS and _may_go_unlocked(scope):
        tenant_id = scope.tenant_id
        if not patch.attributes_alone(foreseen):
            if if_match is None:
                step = patch.member_change_alone(foreseen)
                patched = await _patch_members_in_one(pool, scope, raw_id, step, projection)
        # A rename where the process saw roles mapped or the guard tripped: the locked way.
        elif not (write_state.maps_roles(tenant_id) or write_state.guard_tripped(tenant_id)):
            patched = await _change_group_unlocked(
                pool, scope, raw_id, operations, if_match=if_match, projection=projection
            )
    if patched is not None:
        return patched

    async def patched_locked(
        conn: Connection, row: Row, state: WriteState, before: dict[str, Any]
    ) -> _Changed:
        result = patch.apply_patch(table.resource_type, row["resource"], operations)
        if result.password is not None:
            password_hash = await asyncio.to_thread(passwords.hash_password, result.password)
            await lifecycle.set_password(conn, scope.schema, row["id"], password_hash)
        stored = None
        after = row
        if result.resource != row["resource"]:
            if table is USERS:
                stored = await _update_user_with_event(
                    conn, scope, state, row, resource=result.resource, before=before
                )
            after = (
                stored[0]
                if stored is not None
                else await update(conn, table, scope.schema, row["id"], result.resource)
            )
        members = events.MembershipChanges()
        # Member rows live outside the resource: when the resource itself did not
        # change (its update bumps the version), the first step that changes
        # members bumps it, in the step's own statement.
        bump = result.resource == row["resource"]
        for step in result.member_steps:
            bumped = await _apply_member_step(conn, scope, row["id"], step, members, bump=bump)
            if bumped is not None:
                after, bump = bumped, False
        return after, None if stored is None else stored[1], members

    adding = patch.members_added(foreseen)
    return await _change_locked(
        pool,
        table,
        scope,
        raw_id,
        patched_locked,
        if_match=if_match,
        projection=projection,
        adding=adding,
    )


async def _change_user_unlocked(
    pool: Pool,
    scope: Scope,
    raw_id: str,
    changed: Callable[[dict[str, Any]], dict[str, Any] | None],
    *,
    if_match: str | None,
    projection: Projection | None,
) -> dict[str, Any] | None:
    """The common user PATCH or PUT without a lock or a transaction block: the user and
    the write's state read in one statement, then the change with its event in one
    statement that takes effect only if the user is still as read
    (`update_unless_changed`). ``changed`` makes the new resource of the one read,
    or None when the write needs the locked way.

    It took five round trips, BEGIN and COMMIT among them, with the user locked
    across them; the version check stands in for the lock here. The
    deprovisioning guard decides in the same statement (`guard.along`): it counts a
    deactivation, and holds the events of a held user while it is tripped; that
    took eight round trips the locked way, the tenant's guard row locked across
    three or four. In a tenant that maps roles the change's statement also takes the
    roles lock and reads the user's stored roles for its event (`_holding_roles`),
    where the locked way took seven round trips. A write that changes nothing
    (IdPs resend what they sent before: Okta
    PUTs the whole user on every profile push) is answered from the read: it
    writes nothing and has no event. None, having written nothing, when the write
    needs the locked way: ``changed`` says so, it changes nothing in a tenant that
    maps roles (the locked way recomputes the user's roles), it cannot store its
    event with the change (`_update_user_with_event`), or the user changed since
    it was read.
    """
    async with outbox.announced(pool, scope.announcer, transaction=False) as conn:
        groups_column = _groups_column(USERS, scope, projection, "r")
        guess = _guessed(scope, resource_id(raw_id, USERS), changed, if_match)
        try:
            read = await _read_with_state(
                conn,
                USERS,
                scope,
                raw_id,
                groups_column,
                write=None if guess is None else guess.write,
                mapped=guess is not None and guess.mapped,
                counting=guess is not None and guess.guarded_in is not None,
            )
        except asyncpg.UniqueViolationError as exc:
            # The guessed change, tried in the read, took a userName another user has.
            assert guess is not None
            raise conflict(USERS, guess.resource) from exc
        if read is None:
            return None
        row, state = read
        if guess is None or row["updated_at"] is None:
            instruments.user_change_found(FOUND_READ if guess is None else FOUND_STALE)
        else:
            instruments.user_change_found(FOUND_SEEN)
            if guess.guarded_in is not None:
                _counted(guess.guarded_in, row)
            after = _updated(guess.row, guess.resource, row["updated_at"])
            recent_users.note(scope.schema, after)
            bodies = (guess.before, _event_body(USERS, scope, after))
            return _user_response(scope, row, bodies, projection)
        _check_if_match(row, if_match)
        resource = changed(row["resource"])
        if resource is None:
            return None
        before = _event_body(USERS, scope, row)
        if resource == row["resource"]:
            if state.roles is not None:
                return None
            recent_users.note(scope.schema, row)
            return await _respond(
                conn, scope, USERS, (row, row), (before, before), projection=projection
            )
        stored = await _update_user_with_event(
            conn, scope, state, row, resource=resource, before=before, locked=False
        )
        if stored is None:
            return None
        recent_users.note(scope.schema, stored[0])
        rows = (row, stored[0])
        return await _respond(conn, scope, USERS, rows, (before, stored[1]), projection=projection)


class _Guess(NamedTuple):
    """A user change tried at the version this process last saw (`_guessed`)."""

    row: dict[str, Any]
    """The user as last seen (`recent_users.take`)."""
    resource: dict[str, Any]
    """Its new resource."""
    before: dict[str, Any]
    """The event body of the user as seen."""
    write: Along
    """The change and its event, stored only if the user is still as seen."""
    mapped: bool
    """Whether it is tried where the tenant maps roles (its event shows the user's)."""
    guarded_in: uuid.UUID | None
    """The tenant whose guard counts it in the statement: it deprovisions the user."""


def _guessed(
    scope: Scope,
    user_id: uuid.UUID,
    changed: Callable[[dict[str, Any]], dict[str, Any] | None],
    if_match: str | None,
) -> _Guess | None:
    """The change of the user as this process last read or wrote it, for the statement
    that reads the user to try (`recent_users`), when it may go as that statement's
    one write: a change with an event, in a tenant this process last saw without
    a tripped guard, as a change read first goes (`_update_user_with_event`):
    where it last saw a role mapping, taking the roles lock and reading the
    user's stored roles for its event; a deactivation counted by the guard,
    which stores or holds its event (`guard.along`). The statement checks the
    state it expects (`write_state.read_with`). None when there is no such change
    to try; an error ``changed`` raises of the user as seen is the read user's
    to raise."""
    tenant_id = scope.tenant_id
    if tenant_id is None or write_state.guard_tripped(tenant_id) or not outbox.announcing():
        return None
    mapped = write_state.maps_roles(tenant_id)
    seen = recent_users.take(scope.schema, user_id)
    if seen is None or (if_match is not None and not etag_matches(if_match, seen["version"])):
        return None
    try:
        resource = changed(seen["resource"])
    except ScimError:
        return None
    if resource is None or resource == seen["resource"]:
        return None
    before = _event_body(USERS, scope, seen)
    after = _event_body(USERS, scope, _updated(seen, resource, _NOT_YET))
    event = events.changed(before, after, [] if mapped else None)
    if event is None:
        return None
    data = _MODIFIED_NOW_WITH_HELD_ROLES if mapped else _MODIFIED_NOW
    guarded_in = None if guard.passes([event], was_tripped=False) else tenant_id
    deciding = None
    if guarded_in is not None:
        # The statement checks the guard row is there to count on (`write_state`).
        deciding = guard.along(
            scope.schema, tenant_id, [event], was_tripped=False, has_row=True, data=data
        )
        if deciding is None:
            return None
    storing: Along
    only_if = None
    if mapped:
        storing = _holding_roles(
            scope.schema, event, user_id, locked=False, deciding=deciding, data=data
        )
        only_if = functools.partial(roles.stored_and_shared, scope.schema, tenant_id)
    else:
        storing = deciding or functools.partial(
            outbox.appending, scope.schema, [event], numbered=True, data=data
        )
    write = updating_unless_changed(
        USERS,
        scope.schema,
        user_id,
        resource,
        version=seen["version"],
        along=storing,
        only_if=only_if,
    )
    return _Guess(seen, resource, before, write, mapped, guarded_in)


async def _change_group_unlocked(
    pool: Pool,
    scope: Scope,
    raw_id: str,
    operations: list[patch.Operation],
    *,
    if_match: str | None,
    projection: Projection | None,
) -> dict[str, Any] | None:
    """A group PATCH of its attributes alone (a rename, as Entra and JumpCloud send it)
    as a user's PATCH goes (`_change_user_unlocked`): the group and the write's state
    read in one statement without a lock, then the change and its event in one
    statement that takes effect only if the group is still at the version read. The
    locked way took seven round trips (BEGIN, state, lock, update, members, event,
    COMMIT) with the group locked across them, where member changes wait.

    None, having written nothing, when it needs the locked way: the tenant maps roles
    (a rename may move them) or its guard is tripped, the event cannot go with the
    change (`_events_along`), the operations turn out to change members, or the group
    changed since it was read."""
    async with outbox.announced(pool, scope.announcer, transaction=False) as conn:
        read = await _read_with_state(conn, GROUPS, scope, raw_id)
        if read is None:
            return None
        row, state = read
        now = state.now
        if state.roles is not None or state.guard_tripped or not _events_along(scope, state):
            return None
        assert now is not None
        _check_if_match(row, if_match)
        result = patch.apply_patch(GROUPS.resource_type, row["resource"], operations)
        if result.member_steps:
            return None
        before = _event_body(GROUPS, scope, row)
        after = _event_body(GROUPS, scope, _updated(row, result.resource, now))
        event = events.changed(before, after)
        if event is None:  # nothing to change: answered from the read
            return await _respond(
                conn, scope, GROUPS, (row, row), (before, before), projection=projection
            )
        updated = await update_unless_changed(
            conn,
            GROUPS,
            scope.schema,
            row["id"],
            result.resource,
            version=row["version"],
            at=now,
            along=functools.partial(outbox.appending, scope.schema, [event], numbered=True),
        )
        if updated is None:
            return None
        return await _respond(
            conn, scope, GROUPS, (row, updated), (before, after), projection=projection
        )


def _patched(
    operations: list[patch.Operation],
) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """A user PATCH's new resource; None for one that sets a password (hashed in the
    locked way)."""

    def changed(stored: dict[str, Any]) -> dict[str, Any] | None:
        result = patch.apply_patch(USERS.resource_type, stored, operations)
        return None if result.password is not None else result.resource

    return changed


def _replaced(resource: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A user PUT's new resource: the payload's, once its immutable values are checked."""

    def changed(stored: dict[str, Any]) -> dict[str, Any]:
        validation.check_immutable(USERS.resource_type, stored, resource)
        return resource

    return changed


async def _patch_members_in_one(
    pool: Pool,
    scope: Scope,
    raw_id: str,
    step: patch.MemberStep | None,
    projection: Projection | None,
    *,
    again: bool = True,
    settle: bool = True,
) -> dict[str, Any] | None:
    """The IdPs' common group PATCH, members added or removed by id, as one statement:
    the write's state, the group locked, the change, the version bump and the
    membership events (`groups.change_if`), which takes effect only if the state
    lets it (`write_state.unhindered`).

    In a tenant the process last saw mapping roles (`write_state.maps_roles`)
    the state takes the roles lock shared and requires a mapping, and the
    statement computes, stores and reports the roles of the users it changes
    too (`roles.following`), if what its snapshot shows of them is still so once
    it holds the locks (`roles.settling`). If it is not (a write it waited for,
    or one that committed since its snapshot, changed them: rare), it changes
    nothing, and the PATCH opens a transaction block instead (``settle`` false):
    the statement locks the stored roles of the users it changes
    (`roles.locking_stored`) and the roles follow in the next statement
    (`roles.Tracker.members_changed`), whose snapshot shows what a write it
    waited for did; the events are numbered as the block commits and the group
    is held from the statement to the commit. In a tenant whose guard the
    process last saw tripped (`write_state.guard_tripped`), the statement
    shares the guard row and holds the events of the members with held events
    (`guard.appending_members`); a tenant both mapped and tripped goes the
    locked way.

    When the state holds the statement back because the process's hints were
    stale (a mapping made or removed, the guard tripped elsewhere), it has
    corrected them (`write_state.of_row`) and the PATCH runs again this way, once.

    None, having written nothing, when the PATCH needs more: its operations do
    more than that one change (no ``step``: `patch.member_change_alone`), a member to add
    cannot be one (the error is reported once the group is found), the state
    held it back (events numbered in the insert, a tenant both mapped and
    tripped) or the change nests groups (`roles.ExclusiveNeeded`); the locked
    way then runs it.
    """
    mapped = write_state.maps_roles(scope.tenant_id)
    tripped = write_state.guard_tripped(scope.tenant_id)
    if step is None or scope.tenant_id is None or (mapped and tripped):
        return None
    group_id = resource_id(raw_id, GROUPS)
    add = step.kind == "add"
    try:
        ids = groups.new_member_ids(group_id, step.ids) if add else groups.member_ids(step.ids)
    except ScimError:
        return None
    new = _member_events(ids, add=add, group={"id": str(group_id)})
    alone = mapped and settle
    settling = roles.settling(scope.schema, scope.tenant_id, add=add) if alone else None
    along = (
        roles.following(scope.schema, new, ids, data=groups.NAMED_MEMBER_EVENT_DATA)
        if alone
        else _along_members(scope.schema, scope.tenant_id, new, mapped=mapped, tripped=tripped)
    )
    try:
        async with outbox.announced(
            pool, scope.announcer, transaction=mapped and not alone
        ) as conn:
            change, after = await groups.change_if(
                conn,
                scope.schema,
                group_id,
                ids,
                add=add,
                ahead=write_state.unhindered(scope.tenant_id, mapped=mapped, holding=tripped),
                only_with=write_state.UNHINDERED,
                along=along,
                settling=settling,
            )
            if after["now"] is None:
                return None  # no state: the tenant is gone
            state = None
            if mapped or tripped or not after["went"]:
                # For the roles, and to correct the hints where they may be wrong.
                state = write_state.of_row(scope.schema, scope.tenant_id, after)
            if after["went"] and not after["current"]:
                raise _missing(GROUPS, raw_id)
            if after["went"] and after["settled"]:
                if state is not None and state.roles is not None and not alone:
                    await state.roles.members_changed(conn, change.members, reported=scope.events)
                if change.bumped is not None:
                    instruments.provisioned(GROUPS.resource_type.name, ACTION_UPDATED)
                return await render(conn, GROUPS, scope, after, projection)
    except roles.ExclusiveNeeded:
        return None  # undone; the locked way runs it again under the exclusive lock
    if after["went"]:  # not settled: nothing written
        return await _patch_members_in_one(
            pool, scope, raw_id, step, projection, again=again, settle=False
        )
    hints = (write_state.maps_roles(scope.tenant_id), write_state.guard_tripped(scope.tenant_id))
    if not again or hints == (mapped, tripped):
        return None
    return await _patch_members_in_one(pool, scope, raw_id, step, projection, again=False)


def _along_members(
    schema: str, tenant_id: uuid.UUID, new: list[NewEvent], *, mapped: bool, tripped: bool
) -> Callable[[int, str], AlongStatements]:
    """What a member change's statement stores along (`_patch_members_in_one`, unless it
    settles its users' roles itself): the events ``new`` of the members it changes,
    with each member's type and the group's name as it finds them, held where the
    guard holds them (``tripped``); ``mapped``, in a transaction block, numbered at
    its commit (numbered by the statement they would hold the tenant's event counter
    to the commit), and the stored roles of the users it changes locked
    (`roles.locking_stored`)."""
    data = groups.NAMED_MEMBER_EVENT_DATA
    along: Callable[[int, str], AlongStatements]
    if tripped:
        along = functools.partial(guard.appending_members, schema, tenant_id, new, data=data)
    else:
        along = functools.partial(
            outbox.appending_members, schema, new, numbered=not mapped, data=data
        )
    if not mapped:
        return along

    def locking(first_param: int, changed: str) -> AlongStatements:
        # The lock takes no arguments: none to number after along's.
        return along(first_param, changed).then(roles.locking_stored(schema, changed))

    return locking


def _member_events(ids: list[uuid.UUID], *, add: bool, group: dict[str, Any]) -> list[NewEvent]:
    """The events of members a statement may add (``add``) or remove, each stored only
    if it does, with the member's type it finds (`outbox.appending_members`)."""
    candidates = events.MembershipChanges()
    (candidates.added if add else candidates.removed)([(id_, "") for id_ in ids])
    return candidates.events(group)


async def _apply_member_step(
    conn: Connection,
    scope: Scope,
    group_id: uuid.UUID,
    step: patch.MemberStep,
    changes: events.MembershipChanges,
    *,
    bump: bool,
) -> Row | None:
    """Run one member step; the group's row if it bumped the version (only when ``bump``)."""
    bumped: Row | None = None
    if step.kind != "add":
        removed = await _remove_members(conn, scope.schema, group_id, step, bump=bump)
        changes.removed(removed.members)
        bumped = removed.bumped
    if step.kind in ("add", "replace"):
        added = await groups.add(
            conn, scope.schema, group_id, step.ids, bump=bump and bumped is None
        )
        changes.added(added.members)
        if bumped is None:
            bumped = added.bumped
    return bumped


async def _remove_members(
    conn: Connection, schema: str, group_id: uuid.UUID, step: patch.MemberStep, *, bump: bool
) -> groups.Change:
    """The removing part of a member step: for `replace`, the members it does not set."""
    if step.kind == "replace":
        kept = groups.new_member_ids(group_id, step.ids)
        return await groups.remove_others(conn, schema, group_id, kept, bump=bump)
    if step.kind == "remove_all":
        return await groups.remove_all(conn, schema, group_id, bump=bump)
    if step.kind == "remove":
        return await groups.remove(conn, schema, group_id, step.ids, bump=bump)
    assert step.kind == "remove_where"
    assert step.where is not None
    return await groups.remove_where(conn, schema, group_id, step.where, bump=bump)


class _RolesLockFirst(Exception):
    """A delete that read its state with its row's lock found the tenant maps roles: it
    must take the roles lock before the row's, so it runs again that way."""


@_deadlock_retried
async def delete(
    pool: Pool, table: Table, scope: Scope, raw_id: str, *, if_match: str | None = None
) -> None:
    """DELETE: the resource, its memberships and its events, in one transaction.

    In a tenant without a role mapping, the resource is locked with the write's
    state read, then dropped from its groups and deleted (or soft-deleted) in
    one statement, then its events stored (or held by the guard): five round
    trips, BEGIN and COMMIT among them, where it took seven (eight for a hard
    delete). In a tenant that maps roles the roles lock comes first, in a
    statement of its own: the process's hint (`write_state.maps_roles`) sends
    the delete that way at once, and a delete that finds the mapping with its
    row's lock undoes itself and runs again that way.
    """
    roles_lock_first = scope.tenant_id is None or write_state.maps_roles(scope.tenant_id)
    try:
        await _delete(pool, table, scope, raw_id, if_match, roles_lock_first=roles_lock_first)
    except _RolesLockFirst:
        await _delete(pool, table, scope, raw_id, if_match, roles_lock_first=True)


async def _delete(
    pool: Pool,
    table: Table,
    scope: Scope,
    raw_id: str,
    if_match: str | None,
    *,
    roles_lock_first: bool,
) -> None:
    async with outbox.announced(pool, scope.announcer) as conn:
        if roles_lock_first:
            # A user's delete locks the groups it leaves, so it takes the roles lock first
            # too; a group's delete changes which groups are inside which.
            state = await _state(conn, scope, exclusive=table is GROUPS)
            row = await _locked(conn, table, scope, raw_id, lock=TO_DELETE)
        else:
            read = await _read_with_state(conn, table, scope, raw_id, lock=TO_DELETE)
            assert read is not None, "a delete without a tenant id takes the roles lock first"
            row, state = read
            if state.roles is not None:
                raise _RolesLockFirst
        tracker = state.roles
        _check_if_match(row, if_match)
        inside: set[uuid.UUID] = set()
        if tracker is not None and table is GROUPS:
            # Read before the memberships go; the exclusive roles lock keeps them as read.
            inside = await tracker.users_affected_by_delete(conn, row["id"])
        if table is USERS and state.policy.deprovision_mode != "hard_delete":
            # Kept until the policy's purge; SCIM clients get 404 from now on (RFC 7644 3.6).
            left = await lifecycle.soft_delete(conn, scope.schema, row["id"])
        else:
            left = await delete_row(conn, table, scope.schema, row["id"])
        user_roles: list[str] | None = None
        if tracker is not None and table is USERS:
            # After the groups it left are locked: a member change locks them in that order.
            user_roles = await tracker.forget(conn, row["id"])
        instruments.provisioned(table.resource_type.name, ACTION_DELETED)
        member = (row["id"], table.resource_type.name)
        role_events = [] if tracker is None else await tracker.after_delete(conn, inside)
        await _record(
            conn,
            scope,
            state,
            [events.deleted(_event_body(table, scope, row), user_roles)],
            events.removed_from_groups(member, left),
            role_events,
        )


def search_statements(
    table: Table, scope: Scope, query: ListQuery, projection: Projection
) -> paging.PageStatements:
    """The SQL a page of ``query`` is read with: its rows, and each user's groups
    when the response shows them."""
    related = _groups_column(table, scope, projection, "r")
    return page_statements(
        table, scope.schema, query, related=related, schema_version=scope.schema_version
    )


async def search(
    pool: Pool, table: Table, scope: Scope, query: ListQuery, projection: Projection
) -> tuple[int, list[dict[str, Any]]]:
    statements = search_statements(table, scope, query, projection)
    total, rows = await paging.page(pool, statements, query)
    request_context.note_results(len(rows), total)
    if table is USERS and len(rows) == 1:  # an IdP's lookup, before it writes the user
        recent_users.note(scope.schema, rows[0])
    return total, await _render_rows(pool, table, scope, rows, projection)


SearchSpec = tuple[Table, ListQuery, Projection]


async def search_everywhere(
    pool: Pool, scope: Scope, searches: list[SearchSpec]
) -> tuple[int, list[dict[str, Any]]]:
    """A search at the tenant root (RFC 7644 section 3.4.3) over several resource types.

    The types are paged as one sequence, each in its own order: `startIndex`
    and `count` apply to the concatenation, `totalResults` is the sum.
    """
    total, bodies = 0, list[dict[str, Any]]()
    skipped: list[ScimError] = []
    for table, query, projection in searches:
        offset = max(query.offset - total, 0)
        limit = max(query.limit - len(bodies), 0)
        try:
            matched, found = await search(
                pool,
                table,
                scope,
                dataclasses.replace(query, offset=offset, limit=limit),
                projection,
            )
        except ScimError as error:
            # A filter naming an attribute this type lacks (userName on a Group)
            # is rejected before any SQL runs: that type simply has no matches.
            if error.scim_type != "invalidFilter":
                raise
            skipped.append(error)
            continue
        total += matched
        bodies.extend(found)
    if len(skipped) == len(searches):
        raise skipped[0]
    return total, bodies
