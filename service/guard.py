"""The mass-deprovisioning guard: holds deprovisioning events for the operator's approval.

Every event of a tenant reaches the outbox through `record`. A misconfigured
IdP scope (a group unassigned, a filter typed wrong) can deactivate most of a
customer's users in one sync; SCIM must keep answering (the IdP would retry
and then quarantine the job), and the change happens in the tenant's data,
but the operator's product should not revoke everyone's access before a
person has looked. So:

- **Counting.** A *deprovision* is a `user.deactivated`, or a `user.deleted`
  of a user that was still active. The first one opens a window
  (`window_seconds`, default 1 hour) and notes the tenant's active users at
  that moment; each one in the window counts.
- **Tripping.** When the deprovisions of the window exceed `threshold_percent`
  (default 20) of those users, and the tenant had at least `min_users`
  (default 50; smaller tenants are never guarded), the guard trips with the
  deprovision that crossed the line. It stays tripped, past the window's end,
  until an operator releases or discards.
- **Holding.** While tripped, every `user.deactivated` and `user.deleted`
  goes to the tenant's `held_events` instead of the outbox, and so does every
  later event about a user that has held events (its `user.*` events, the
  `group.member_*` events naming it, its `user.roles_changed`): a product never
  sees a user's later changes before its held ones. Everything else flows as
  usual. Held events are invisible to the events API and the webhook worker.
- **Release** appends the held events to the outbox in the order they were
  held, after everything delivered so far, with new sequence numbers (so a
  consumer's cursor still only moves forward) and their own ids (UUIDv7: the
  time of the change); `occurred_at` is the release, as the outbox keeps time
  and sequence in the same order. The events API and webhooks then deliver
  them like any other. **Discard** deletes them: the product never learns of those changes,
  which stay in the tenant's data. Either way the guard is re-armed with a
  fresh window.

Who is held changes only under the guard row locked `FOR UPDATE`: by every
write that deprovisions (it counts, and may hold a new user), and by release
and discard. Writes read whether the guard is tripped in the one
control-plane query each write makes anyway (`service.write_state`), after
locking what they change: a write about a user whose deprovision another
write is holding waits for that user's row lock, so it sees the guard tripped
and that user held. While it is tripped, the writes that do not deprovision
lock the row `FOR SHARE` to decide: they hold events only of users held
already, so they wait for a deprovision, a release or a discard in progress
(and those for them), never for each other; they queued on each other when
they took it `FOR UPDATE` too, and a tenant's writes then went one at a time
while it was tripped, the IdP's corrections included. A user's PATCH or PUT
decides in the statement that changes the user (`along`), and a member PATCH
in the statement that changes the members (`appending_members`): each locks
what it changes, then the guard row, until its commit; a deprovision counts
on it, the others read who is held afresh once the lock is granted
(`HELD_USERS`). Held events keep each resource's order: its writes queue on
its row, and a write's events are the last thing it stores.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple

import asyncpg
import msgspec

from service import events
from service.postgres import Connection, Pool
from service.store import outbox
from service.store.outbox import NewEvent
from service.store.resources import Along, AlongStatements
from tenants.errors import InvalidInput
from tenants.registry import tenant_schema_at
from tenants.schemas import quoted_schema

log = logging.getLogger(__name__)

DEFAULT_ENABLED: Final = True
DEFAULT_THRESHOLD_PERCENT: Final = 20
DEFAULT_WINDOW_SECONDS: Final = 3600
DEFAULT_MIN_USERS: Final = 50
GUARD_SCHEMA_VERSION: Final = 6
"""The tenant schema version that has `held_events`; older tenants are not guarded."""

HELD_USERS: Final = "scim_control.held_users"
"""`(tenant_schema, ids)`: those of ``ids`` with held events, read in a snapshot of its own."""
_DEPROVISIONS: Final = frozenset({events.USER_DEACTIVATED, events.USER_DELETED})
_MEMBERSHIP: Final = frozenset({events.GROUP_MEMBER_ADDED, events.GROUP_MEMBER_REMOVED})


class GuardSettings(msgspec.Struct, kw_only=True):
    enabled: bool
    threshold_percent: int
    window_seconds: int
    min_users: int


class GuardChanges(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What `PUT .../guard` accepts; a field left out or null goes back to its default."""

    enabled: bool | None = None
    threshold_percent: int | None = None
    window_seconds: int | None = None
    min_users: int | None = None


class GuardView(msgspec.Struct, kw_only=True):
    settings: GuardSettings
    override: GuardChanges
    """The tenant's own values; null where the default applies."""
    holding: bool
    tripped_at: datetime | None
    window_started_at: datetime | None
    window_users: int
    """Active users when the window opened."""
    window_deprovisions: int
    held_events: int
    held_users: int
    held_by_type: dict[str, int]


class HeldEvent(msgspec.Struct, kw_only=True):
    position: int
    """The order it was held in, and will be released in."""
    id: str
    type: str
    resource: dict[str, str]
    user_id: str
    occurred_at: datetime
    data: dict[str, Any]
    previous: dict[str, Any] | None


def _settings(row: Any) -> GuardSettings:
    def pick(name: str, default: Any) -> Any:
        return default if row is None or row[name] is None else row[name]

    return GuardSettings(
        enabled=pick("enabled", DEFAULT_ENABLED),
        threshold_percent=pick("threshold_percent", DEFAULT_THRESHOLD_PERCENT),
        window_seconds=pick("window_seconds", DEFAULT_WINDOW_SECONDS),
        min_users=pick("min_users", DEFAULT_MIN_USERS),
    )


def _user_of(event: NewEvent) -> uuid.UUID | None:
    """The user an event is about, if any: what holding is keyed by."""
    if event.resource_type == "User":
        return event.resource_id
    if event.type in _MEMBERSHIP and event.data["member"]["type"] == "User":
        return uuid.UUID(event.data["member"]["value"])
    return None


def _counts(event: NewEvent) -> bool:
    if event.type == events.USER_DEACTIVATED:
        return True
    return event.type == events.USER_DELETED and event.data.get("active", True) is not False


async def _locked_row(conn: Connection, tenant_id: uuid.UUID) -> Any:
    """The tenant's guard row, locked until commit, created with the defaults if missing."""
    query = "SELECT g.* FROM scim_control.deprovision_guards g WHERE g.tenant = $1 FOR UPDATE OF g"
    row = await conn.fetchrow(query, tenant_id)
    if row is None:
        await conn.execute(
            "INSERT INTO scim_control.deprovision_guards (tenant) VALUES ($1) "
            "ON CONFLICT (tenant) DO NOTHING",
            tenant_id,
        )
        row = await conn.fetchrow(query, tenant_id)
    return row


def _counting(schema: str, *, tenant: str, counted: str, add_back: str, gate: str = "") -> str:
    """`WITH` queries that count ``counted`` deprovisions in the guard window of tenant
    ``tenant`` (SQL expressions, as ``add_back``), ending with `counted`: (`holding`,
    `tripped_now`, `users`, `deprovisions`, `window_seconds`), no row when the guard
    is disabled and not tripped (nothing counted).

    The guard row is locked first: a count is the newest row's plus this one. A
    new window's base is the tenant's active users, plus ``add_back``: the users
    this write took out already, if its transaction's earlier statements did.
    ``gate``: more conditions on counting at all (`AND ...`).
    """
    enabled = "true" if DEFAULT_ENABLED else "false"
    return (
        "guard_row AS (SELECT g.tripped_at, g.window_started_at, g.window_users, "
        f"g.window_deprovisions, coalesce(g.threshold_percent, {DEFAULT_THRESHOLD_PERCENT:d}) "
        f"AS threshold_percent, coalesce(g.min_users, {DEFAULT_MIN_USERS:d}) AS min_users, "
        f"coalesce(g.window_seconds, {DEFAULT_WINDOW_SECONDS:d}) AS window_seconds "
        f"FROM scim_control.deprovision_guards g WHERE g.tenant = {tenant} "
        f"AND (g.tripped_at IS NOT NULL OR coalesce(g.enabled, {enabled})){gate} "
        "FOR UPDATE OF g), "
        # Materialized: `counted` reads its `users` four times, and inlined, each read
        # counted the tenant's users again when a new window opens.
        "guard_window AS MATERIALIZED (SELECT g.tripped_at, g.threshold_percent, g.min_users, "
        "g.window_seconds, CASE WHEN x.expired THEN now() ELSE g.window_started_at END "
        "AS started, CASE WHEN x.expired THEN (SELECT count(*) FROM "
        f"{quoted_schema(schema)}.users WHERE managed AND deleted_at IS NULL AND active) "
        f"+ {add_back} ELSE g.window_users END AS users, "
        f"CASE WHEN x.expired THEN 0 ELSE g.window_deprovisions END + {counted} "
        "AS deprovisions FROM guard_row g, LATERAL (SELECT g.window_started_at IS NULL "
        "OR now() - g.window_started_at >= make_interval(secs => g.window_seconds) "
        "AS expired) x), "
        "counted AS (UPDATE scim_control.deprovision_guards g SET "
        "window_started_at = w.started, window_users = w.users, "
        "window_deprovisions = w.deprovisions, tripped_at = coalesce(w.tripped_at, "
        "CASE WHEN w.users >= w.min_users AND w.deprovisions * 100 > w.users * "
        "w.threshold_percent THEN now() END) "
        f"FROM guard_window w WHERE g.tenant = {tenant} "
        "RETURNING g.tripped_at IS NOT NULL AS holding, "
        "w.tripped_at IS NULL AND g.tripped_at IS NOT NULL AS tripped_now, "
        "w.users, w.deprovisions, w.window_seconds)"
    )


def _noted(tenant_id: uuid.UUID, counted: Mapping[str, Any] | asyncpg.Record | None) -> bool:
    """Whether the guard holds after a count (`counted`'s row, None: nothing counted);
    a trip is logged."""
    if counted is None:
        return False
    if counted["tripped_now"]:
        log.warning(
            "deprovisioning guard tripped for tenant %s: %d of %d users deprovisioned within "
            "%d s; their events are held until an operator releases or discards them",
            tenant_id,
            counted["deprovisions"],
            counted["users"],
            counted["window_seconds"],
        )
    return bool(counted["holding"])


async def _count(
    conn: Connection,
    schema: str,
    tenant_id: uuid.UUID,
    counted: int,
    passing: Sequence[NewEvent] = (),
    *,
    at_commit: bool = False,
) -> tuple[bool, bool]:
    """Count this write's deprovisions, which its transaction made already: whether the
    guard is (now) tripped, and whether ``passing``, the write's events, were stored
    with the count because it is not (``at_commit`` as for `outbox.append`; only
    inside `outbox.announced` with an announcer): one round trip for both.

    The count locks the guard row itself; only a tenant's first deprovision finds
    none, creates it (`_locked_row`) and counts again."""
    if counted == 0:
        row = await _locked_row(conn, tenant_id)
        return row["tripped_at"] is not None, False
    counting = _counting(schema, tenant="$1", counted="$2::integer", add_back="$2::integer")
    found = "EXISTS (SELECT FROM scim_control.deprovision_guards WHERE tenant = $1)"
    statements, args = f"WITH {counting}", []
    if passing:
        # Stored only past a guard row that does not hold: without one, nothing counted.
        stored = outbox.appending(schema, passing, 3, "passed", numbered=not at_commit)
        statements += (
            ", passed AS (SELECT WHERE NOT EXISTS (SELECT FROM counted WHERE holding) "
            f"AND {found}), {stored.ctes}"
        )
        args = stored.args
    statement = (
        f"{statements} SELECT (SELECT to_jsonb(c) FROM counted c) AS counted, {found} AS has_row"
    )
    row = await conn.fetchrow(statement, tenant_id, counted, *args)
    assert row is not None  # one row, whatever it counted
    if not row["has_row"]:
        await _locked_row(conn, tenant_id)
        row = await conn.fetchrow(statement, tenant_id, counted, *args)
        assert row is not None
    holding = _noted(tenant_id, row["counted"])
    return holding, bool(passing) and not holding


async def tripped(conn: Connection | Pool, tenant_id: uuid.UUID) -> bool | None:
    """Whether the tenant's guard is tripped; None when the tenant is not guarded at all
    (its schema is older than `held_events`)."""
    row = await conn.fetchrow(
        "SELECT t.schema_version >= $2 AS guarded, g.tripped_at IS NOT NULL AS tripped "
        "FROM scim_control.tenants t LEFT JOIN scim_control.deprovision_guards g "
        "ON g.tenant = t.id WHERE t.id = $1",
        tenant_id,
        GUARD_SCHEMA_VERSION,
    )
    return None if row is None or not row["guarded"] else bool(row["tripped"])


async def _holding(
    conn: Connection, schema: str, tenant_id: uuid.UUID, new: list[NewEvent]
) -> bool:
    """Whether the guard holds ``new``, for writes `passes` does not let through: they
    deprovision (and count towards tripping it), or the write read it tripped."""
    deprovisions = [event for event in new if event.type in _DEPROVISIONS]
    if deprovisions:
        return (await _count(conn, schema, tenant_id, sum(map(_counts, deprovisions))))[0]
    return await share(conn, tenant_id)


def passes(new: Sequence[NewEvent], was_tripped: bool | None) -> bool:
    """Whether `record` would append ``new`` as they are without a look at the guard: the
    tenant is not guarded, or its guard was not tripped and none of them deprovisions."""
    if was_tripped is None:
        return True
    return not was_tripped and not any(event.type in _DEPROVISIONS for event in new)


async def record(
    conn: Connection,
    schema: str,
    tenant_id: uuid.UUID,
    new: list[NewEvent],
    *,
    was_tripped: bool | None,
    at_commit: bool = False,
) -> None:
    """Append a write's events to the outbox, or hold them; last step of its transaction.

    ``was_tripped`` is `tripped` as the write read it, after locking the
    resources it changes (`service.write_state`); None: the tenant is not guarded.
    ``at_commit``: as for `outbox.append`.
    """
    if not new:
        return
    if passes(new, was_tripped):
        await outbox.append(conn, schema, new, at_commit=at_commit)
        return
    counts = sum(map(_counts, new))
    # A count stores the events along (no NOTIFY of its own) where an announcer sends it.
    if counts and outbox.announcing():
        holding, stored = await _count(conn, schema, tenant_id, counts, new, at_commit=at_commit)
        if stored:
            return
    else:
        holding = await _holding(conn, schema, tenant_id, new)
    if not holding:
        await outbox.append(conn, schema, new, at_commit=at_commit)
        return
    candidates = {user for event in new if (user := _user_of(event)) is not None}
    held_users = {_user_of(event) for event in new if event.type in _DEPROVISIONS}
    rows = await conn.fetch(
        f"SELECT DISTINCT user_id FROM {quoted_schema(schema)}.held_events "
        "WHERE user_id = ANY($1::uuid[])",
        list(candidates - held_users),
    )
    held_users |= {row["user_id"] for row in rows}
    held = [event for event in new if _user_of(event) in held_users]
    await _hold(conn, schema, held)
    passed = [event for event in new if _user_of(event) not in held_users]
    await outbox.append(conn, schema, passed, at_commit=at_commit)


def _inserting_held(
    qualified: str, source: str, *, user_id: str, where: str = "", data: str = "e.data"
) -> str:
    """Hold the events `e` of ``source``, in their order `e.n`; ``user_id``: what each is
    held for, ``data`` its data (SQL over `e`)."""
    return (
        f"INSERT INTO {qualified}.held_events "
        "(id, user_id, type, resource_type, resource_id, data, previous) "
        f"SELECT e.id, {user_id}, e.type, e.resource_type, e.resource_id, {data}, e.previous "
        f"FROM {source}{where} ORDER BY e.n"
    )


async def share(conn: Connection, tenant_id: uuid.UUID) -> bool:
    """Lock the tenant's guard row `FOR SHARE` until the transaction ends, for a write in
    a transaction block that deprovisions no one; whether the guard is tripped.

    Such writes hold events only of users held already, so they need not queue on
    each other, only on what changes who is held (module docstring): until the
    transaction ends, the write's next statements see every user held. Not this
    statement: its snapshot predates a wait for the lock, and would miss what the
    deprovision it waited for held."""
    row = await conn.fetchrow(
        "SELECT g.tripped_at FROM scim_control.deprovision_guards g "
        "WHERE g.tenant = $1 FOR SHARE OF g",
        tenant_id,
    )
    return row is not None and row["tripped_at"] is not None


def appending_members(
    schema: str,
    tenant_id: uuid.UUID,
    new: Sequence[NewEvent],
    first_param: int,
    changed: str,
    *,
    data: str = outbox.MEMBER_EVENT_DATA,
) -> AlongStatements:
    """As `outbox.appending_members` (numbered: the statement is its own transaction;
    ``data`` as there), while the tenant's guard is tripped: once the statement has
    changed the members, the guard row is shared and the events naming a member with
    held events are held (`_sharing_guard`), the others stored, each only if the
    statement changed its member. (With the guard released or discarded since, no
    user has held events.)"""
    qualified = quoted_schema(schema)
    held = "c.member_id IN (SELECT user_id FROM held_now)"
    stored = outbox.appending_members(
        schema, new, first_param, changed, numbered=True, unless=held, data=data
    )
    tenant = first_param + len(stored.args)
    shared = _sharing_guard(
        tenant, f" AND EXISTS (SELECT FROM {changed})", f"ARRAY(SELECT member_id FROM {changed})"
    )
    holding = _inserting_held(
        qualified,
        outbox.event_rows(first_param) + outbox.member_join(changed),
        user_id="c.member_id",
        where=f" WHERE {held}",
        data=data,
    )
    return AlongStatements(
        f"{shared}, {stored.ctes}, held_along AS ({holding})", [*stored.args, tenant_id, schema]
    )


async def _hold(conn: Connection, schema: str, held: list[NewEvent]) -> None:
    if not held:
        return
    source = (
        "unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::jsonb[], "
        "$7::jsonb[]) WITH ORDINALITY "
        "AS e(id, user_id, type, resource_type, resource_id, data, previous, n)"
    )
    await conn.execute(
        _inserting_held(quoted_schema(schema), source, user_id="e.user_id"),
        [event.id for event in held],
        [_user_of(event) for event in held],
        [event.type for event in held],
        [event.resource_type for event in held],
        [event.resource_id for event in held],
        [event.data for event in held],
        [event.previous for event in held],
    )


def along(
    schema: str,
    tenant_id: uuid.UUID,
    new: Sequence[NewEvent],
    was_tripped: bool | None,
    has_row: bool,
    *,
    data: str = "e.data",
) -> Along | None:
    """Statements that decide, within a user's write, whether the guard holds ``new``,
    which `passes` did not let through, and store or hold them (`_deciding`, for
    `service.store.resources.update_unless_changed`), their data ``data`` (SQL over
    the event `e`, as for `outbox.appending`); None when the write must take
    the locked way: it is not about one user, or the guard's row does not exist (a
    count would count nothing without it; with no row, the guard was never
    tripped). The write's row has `guard_counted`, for `noted`.

    The locked way took seven or eight round trips, the guard row locked across
    three or four of them: while the guard was tripped, each deprovision waited
    there for the one ahead of it and for every write sharing the row."""
    about = {_user_of(event) for event in new} | {event.resource_id for event in new}
    if was_tripped is None or not has_row or len(about) != 1:
        return None
    return functools.partial(_deciding, schema, tenant_id, new, data=data)


class _Decision(NamedTuple):
    """`WITH` queries that lock the guard row and decide whether to hold a write's events."""

    ctes: str
    args: list[Any]
    """Their arguments after the tenant's id."""
    holding: str
    """SQL over them: hold the events."""
    returns: str


def _deciding(
    schema: str,
    tenant_id: uuid.UUID,
    new: Sequence[NewEvent],
    first_param: int,
    only_with: str | None,
    *,
    data: str,
) -> AlongStatements:
    """`along`'s statements, taking effect only with ``only_with``
    (`service.store.resources.Along`): the guard row locked after the write's own
    change, as every write locks them, then ``new`` stored in the outbox (numbered:
    the statement is its own transaction, `outbox.appending`) or held, as
    `_counting_decision` or `_sharing_decision` decides."""
    if only_with is None:
        raise ValueError("the guard decides with a write that may write nothing")
    tenant = first_param + outbox.EVENT_PARAMS
    gate = f" AND EXISTS (SELECT FROM {only_with})"
    deprovisions = any(event.type in _DEPROVISIONS for event in new)
    decide = _counting_decision if deprovisions else _sharing_decision
    decision = decide(schema, new, tenant, gate)
    stored = outbox.appending(
        schema, new, first_param, only_with="passed", numbered=True, data=data
    )
    held = _inserting_held(
        quoted_schema(schema),
        outbox.event_rows(first_param),
        user_id="e.resource_id",
        where=f" WHERE {decision.holding}",
        data=data,
    )
    return AlongStatements(
        f"{decision.ctes}, passed AS (SELECT FROM {only_with} WHERE NOT "
        f"{decision.holding}), {stored.ctes}, held AS ({held})",
        [*stored.args, tenant_id, *decision.args],
        returns=decision.returns,
    )


def _counting_decision(schema: str, new: Sequence[NewEvent], tenant: int, gate: str) -> _Decision:
    """For a write that deprovisions its user: count the deprovisions in the guard
    window, on the guard row locked until the commit; hold if the guard holds after.

    The count decides for all of ``new`` at once. If the guard holds after it, the
    deprovision is held, and with it everything the write says about its user,
    held before or not. If not, no user has held events: they exist only while the
    guard is tripped, and the release or discard that ended that emptied them
    under the row's lock, which the count waits for and then reads as it stands.
    """
    counting = _counting(
        schema,
        tenant=f"${tenant}",
        counted=f"${tenant + 1}::integer",
        add_back="0",
        gate=gate,
    )
    return _Decision(
        counting,
        [sum(map(_counts, new))],
        holding="EXISTS (SELECT FROM counted WHERE holding)",
        returns=", (SELECT to_jsonb(c) FROM counted c) AS guard_counted",
    )


def _sharing_decision(schema: str, new: Sequence[NewEvent], tenant: int, gate: str) -> _Decision:
    """For a write about one user that deprovisions no one: hold if the user has held
    events, with the guard row shared (`_sharing_guard`)."""
    [user] = {event.resource_id for event in new}
    return _Decision(
        _sharing_guard(tenant, gate, f"ARRAY[${tenant + 2}::uuid]"),
        [schema, user],
        holding="EXISTS (SELECT FROM held_now)",
        returns=", NULL::jsonb AS guard_counted",
    )


def _sharing_guard(tenant: int, gate: str, ids: str) -> str:
    """`WITH` queries that share the guard row of tenant `$tenant` once ``gate`` holds
    (`AND ...`), as `share`: who is held cannot change until the commit. Then
    `held_now(user_id)`: which of ``ids`` (SQL, `uuid[]`) have held events, none once
    the guard is no longer tripped; the tenant's schema is `$(tenant + 1)`.

    Read by `HELD_USERS`, in a snapshot taken once the lock is granted: the
    statement's own predates its wait for the lock, and would miss what a
    deprovision it waited for held (or see what a release it waited for took)."""
    return (
        "guard_shared AS (SELECT g.tripped_at FROM scim_control.deprovision_guards g "
        f"WHERE g.tenant = ${tenant}{gate} FOR SHARE OF g), "
        f"held_now AS (SELECT h.user_id FROM guard_shared s CROSS JOIN LATERAL {HELD_USERS}("
        f"${tenant + 1}::text, {ids}) AS h(user_id) WHERE s.tripped_at IS NOT NULL)"
    )


def noted(tenant_id: uuid.UUID, row: asyncpg.Record) -> bool:
    """Whether the guard held the events of a write `along` went with (its ``row``);
    a trip is logged."""
    return _noted(tenant_id, row["guard_counted"])


# -- the operator's side ----------------------------------------------------------------


async def _tenant(conn: Connection | Pool, slug: str) -> tuple[uuid.UUID, str]:
    return await tenant_schema_at(conn, slug, GUARD_SCHEMA_VERSION)


async def show(pool: Pool, slug: str) -> GuardView:
    tenant_id, schema = await _tenant(pool, slug)
    row = await pool.fetchrow(
        "SELECT * FROM scim_control.deprovision_guards WHERE tenant = $1", tenant_id
    )
    held = await pool.fetch(
        f"SELECT type, count(*) AS n, count(DISTINCT user_id) AS users "
        f"FROM {quoted_schema(schema)}.held_events GROUP BY ROLLUP (type)"
    )
    by_type = {r["type"]: r["n"] for r in held if r["type"] is not None}
    total = next((r for r in held if r["type"] is None), None)
    return GuardView(
        settings=_settings(row),
        override=GuardChanges(
            **{
                name: None if row is None else row[name]
                for name in ("enabled", "threshold_percent", "window_seconds", "min_users")
            }
        ),
        holding=row is not None and row["tripped_at"] is not None,
        tripped_at=None if row is None else row["tripped_at"],
        window_started_at=None if row is None else row["window_started_at"],
        window_users=0 if row is None else row["window_users"],
        window_deprovisions=0 if row is None else row["window_deprovisions"],
        held_events=0 if total is None else total["n"],
        held_users=0 if total is None else total["users"],
        held_by_type=by_type,
    )


def _check(changes: GuardChanges) -> None:
    if changes.threshold_percent is not None and not 1 <= changes.threshold_percent <= 100:
        raise InvalidInput("threshold_percent must be 1 to 100")
    if changes.window_seconds is not None and not 1 <= changes.window_seconds <= 30 * 86400:
        raise InvalidInput("window_seconds must be 1 to 2592000 (30 days)")
    if changes.min_users is not None and changes.min_users < 0:
        raise InvalidInput("min_users must be 0 or more")


async def configure(pool: Pool, slug: str, changes: GuardChanges) -> GuardView:
    """Set the tenant's guard settings; null fields go back to the defaults."""
    _check(changes)
    tenant_id, _ = await _tenant(pool, slug)
    await pool.execute(
        "INSERT INTO scim_control.deprovision_guards "
        "(tenant, enabled, threshold_percent, window_seconds, min_users) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant) DO UPDATE SET "
        "enabled = $2, threshold_percent = $3, window_seconds = $4, min_users = $5, "
        "updated_at = now()",
        tenant_id,
        changes.enabled,
        changes.threshold_percent,
        changes.window_seconds,
        changes.min_users,
    )
    return await show(pool, slug)


async def held_events(pool: Pool, slug: str, *, limit: int) -> list[HeldEvent]:
    """The held events, in the order they would be released."""
    _, schema = await _tenant(pool, slug)
    rows = await pool.fetch(
        f"SELECT * FROM {quoted_schema(schema)}.held_events ORDER BY position LIMIT $1", limit
    )
    return [
        HeldEvent(
            position=row["position"],
            id=str(row["id"]),
            type=row["type"],
            resource={"type": row["resource_type"], "id": str(row["resource_id"])},
            user_id=str(row["user_id"]),
            occurred_at=row["occurred_at"],
            data=row["data"],
            previous=row["previous"],
        )
        for row in rows
    ]


async def _settle(pool: Pool, slug: str, *, deliver: bool) -> int:
    tenant_id, schema = await _tenant(pool, slug)
    async with pool.acquire() as conn, conn.transaction():
        await _locked_row(conn, tenant_id)
        rows = await conn.fetch(
            f"DELETE FROM {quoted_schema(schema)}.held_events RETURNING position, id, type, "
            "resource_type, resource_id, data, previous"
        )
        ordered = sorted(rows, key=lambda row: row["position"])
        if deliver:
            await outbox.append(
                conn,
                schema,
                [
                    NewEvent(
                        id=row["id"],
                        type=row["type"],
                        resource_type=row["resource_type"],
                        resource_id=row["resource_id"],
                        data=row["data"],
                        previous=row["previous"],
                    )
                    for row in ordered
                ],
            )
        await conn.execute(
            "UPDATE scim_control.deprovision_guards SET tripped_at = NULL, "
            "window_started_at = NULL, window_users = 0, window_deprovisions = 0, "
            "updated_at = now() WHERE tenant = $1",
            tenant_id,
        )
    kinds = Counter(row["type"] for row in ordered)
    log.info(
        "deprovisioning guard of tenant %s %s %d held events (%s)",
        slug,
        "released" if deliver else "discarded",
        len(ordered),
        ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none",
    )
    return len(ordered)


async def release(pool: Pool, slug: str) -> int:
    """Deliver the held events, in the order they were held; returns how many."""
    return await _settle(pool, slug, deliver=True)


async def discard(pool: Pool, slug: str) -> int:
    """Drop the held events: the product never learns of them; returns how many."""
    return await _settle(pool, slug, deliver=False)
