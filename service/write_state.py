"""What a SCIM write needs from its tenant's control plane, read in one query.

Every write of a tenant (`service.provisioning`) reads, in one round trip:
its role mapping, taking the tenant's roles lock when there is one
(`service.roles`), whether its mass-deprovisioning guard is tripped
(`service.guard`), and its provisioning policy (`tenants.policies`); for a
user's create also whether a hidden user may be claimed
(`service.store.lifecycle.claim_probe`), so an ordinary create costs no
round trip more for the rare adoption; for a PATCH that takes no lock, the
resource it changes, and for a delete the resource it locks (`read_with`); for
the common create, the create itself (`read_and_write`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg

from service.guard import GUARD_SCHEMA_VERSION
from service.postgres import Connection
from service.roles import Tracker
from service.store import outbox
from service.store.resources import Along, AlongStatements
from tenants import policies, role_mappings

DEFAULT_POLICY: Final = policies.Policy()


@dataclass(frozen=True, slots=True)
class WriteState:
    roles: Tracker | None
    """None: the tenant has no role mapping."""
    guard_tripped: bool | None
    """None: the tenant is not guarded (no tenant id, or a schema older than the guard)."""
    policy: policies.Policy = DEFAULT_POLICY
    may_claim: bool | None = None
    """Whether the probe read with the state found a hidden user; None: not probed."""
    numbers_at_commit: bool = False
    """Whether the tenant's schema numbers events as they commit (`service.store.outbox`)."""
    now: datetime | None = None
    """The transaction's timestamp: the `now()` of each of its statements, so the
    `created` and `lastModified` its inserts and updates will store."""
    guard_row: bool = False
    """Whether the tenant's guard row exists (`service.guard.along`)."""


UNTRACKED: Final = WriteState(None, None)
_MAPPED: set[uuid.UUID] = set()
"""The tenants whose state, last read in this process, had a role mapping."""
_TRIPPED: set[uuid.UUID] = set()
"""The tenants whose state, last read in this process, had their guard tripped."""


def maps_roles(tenant_id: uuid.UUID | None) -> bool:
    """Whether the tenant's state, last read in this process, had a role mapping: its
    writes then take the roles lock in their first statement (`unhindered` with
    ``mapped``) or go the locked way at once, not through a statement without it
    that finds they cannot do without one. A hint only: wrong, it costs a
    statement that writes nothing, or a transaction block, once, until a write
    reads the state and corrects it; every way handles either kind of tenant."""
    return tenant_id in _MAPPED


def guard_tripped(tenant_id: uuid.UUID | None) -> bool:
    """Whether the tenant's state, last read in this process, had its guard tripped, or a
    count of this process tripped it since (`tripped`): a hint, as `maps_roles`, for
    the writes that would only learn it from a statement that then does nothing
    (`unhindered`)."""
    return tenant_id in _TRIPPED


def tripped(tenant_id: uuid.UUID) -> None:
    """A write's count tripped the tenant's guard, or found it tripped
    (`service.guard.noted`): the next writes need not read that first."""
    _TRIPPED.add(tenant_id)


_POLICY_COLUMNS: Final = ", ".join(f"p.{field}" for field in policies.FIELDS)

Probe = Callable[[int], tuple[str, list[Any]] | None]
"""Given the first `$n` its arguments may take, a boolean SQL expression read as
`WriteState.may_claim` and its arguments (`service.store.lifecycle.claim_probe`);
None: nothing to probe."""


async def read(
    conn: Connection,
    schema: str,
    tenant_id: uuid.UUID | None,
    *,
    exclusive: bool,
    probe: Probe | None = None,
) -> WriteState:
    """The write's state, taking the tenant's roles lock ``exclusive``ly (bumping the
    mapping's generation, `role_mappings.bumping`) or shared (`service.roles` says
    which write takes which).

    The lock is taken only when the tenant has a role mapping.
    """
    if tenant_id is None:
        return UNTRACKED
    probed, probe_args = _probed(probe, 4)
    statement = _statement(probed, exclusive=exclusive)
    if exclusive:
        statement = f"WITH state AS ({statement}), {role_mappings.bumping('$1', 'state')} "
        statement += "SELECT * FROM state"
    row = await conn.fetchrow(
        statement,
        tenant_id,
        GUARD_SCHEMA_VERSION,
        role_mappings.LOCK_CLASS,
        *probe_args,
    )
    return UNTRACKED if row is None else _state_of(schema, tenant_id, row, exclusive=exclusive)


_FREE_IF: Final = "s.may_claim IS NOT TRUE AND s.numbers_at_commit"
_AT_REST_IF: Final = "NOT (s.guarded AND s.tripped)"
"""The guard is not tripped: nothing the write stores may have to be held."""


UNHINDERED: Final = "unhindered"
"""The `WITH` query of `unhindered` that returns a row only if the write may go."""


def unhindered(
    tenant_id: uuid.UUID,
    probe: Probe | None = None,
    *,
    mapped: bool = False,
    holding: bool = False,
) -> Callable[[int], AlongStatements]:
    """The state of a write that deprovisions nothing (`read`, no roles lock taken unless
    ``mapped``), as `WITH` queries of the write's own statement given their first `$n`,
    the last, `UNHINDERED`, returning a row only if the state lets the write go without
    a transaction block: no role mapping (whose lock it would take), no hidden user
    the probe finds (to claim instead), the guard not tripped (it may hold the
    write's events) and events numbered at commit (the statement numbers those it
    stores). The write takes effect only with that query.

    Saves the IdPs' commonest writes a round trip (`read_and_write`,
    `service.provisioning`): the state does not have to come back to the service
    for it to decide what the write depends on; the statement decides it.
    ``mapped``: the write needs the tenant to map roles instead, and the state
    takes the roles lock shared, held to the end of the statement's transaction.
    ``holding``: the write holds what the guard would hold itself
    (`service.guard.appending_members`), so it needs a guarded tenant instead of
    a guard at rest.
    """
    lock_args = [role_mappings.LOCK_CLASS] if mapped else []
    # A mapped write takes the roles lock shared; the others none.
    exclusive = False if mapped else None

    def statements(first_param: int) -> AlongStatements:
        probed, probe_args = _probed(probe, first_param + 2 + len(lock_args))
        return AlongStatements(
            f"state AS ({_statement(probed, exclusive=exclusive, first_param=first_param)}), "
            f"{_unhindered_if(mapped=mapped, holding=holding)}",
            [tenant_id, GUARD_SCHEMA_VERSION, *lock_args, *probe_args],
        )

    return statements


_COUNTING_IF: Final = "s.guarded AND s.guard_row"
"""The guard can count a deprovision in the write's statement (`service.guard.along`),
which then decides itself whether to hold its events, tripped or not."""


def _unhindered_if(*, mapped: bool = False, holding: bool = False, counting: bool = False) -> str:
    """The `WITH` query `UNHINDERED` over the query `state` (`unhindered`; ``counting``:
    for a write that deprovisions its user, `_COUNTING_IF` instead of the guard at rest)."""
    guard = _COUNTING_IF if counting else "s.guarded" if holding else _AT_REST_IF
    condition = " AND ".join(
        (f"s.default_roles IS {'NOT ' if mapped else ''}NULL", _FREE_IF, guard)
    )
    return f"{UNHINDERED} AS (SELECT FROM state s WHERE {condition})"


def of_row(schema: str, tenant_id: uuid.UUID, row: asyncpg.Record) -> WriteState:
    """The state `unhindered` read (not exclusive), from the result row of the write's
    statement, which has the columns of its query `state`
    (`service.store.groups.change_if`)."""
    return _state_of(schema, tenant_id, row, exclusive=False)


async def read_and_write(
    conn: Connection,
    schema: str,
    tenant_id: uuid.UUID,
    *,
    probe: Probe | None,
    write: Along,
    mapped: bool = False,
) -> tuple[WriteState, asyncpg.Record | None]:
    """The state of a write and the write, in one statement (`unhindered`, ``mapped``
    or not): ``write`` is given the first `$n` its arguments take and the `WITH`
    query it takes effect with. Returns the state and, when the state let the write
    go, the statement's result row, with the columns the write `returns`; None
    when the write did not go (or there is no such tenant)."""
    state = unhindered(tenant_id, probe, mapped=mapped)(1)
    statements = write(1 + len(state.args), UNHINDERED)
    row = await conn.fetchrow(
        f"WITH {state.ctes}, {statements.ctes} "
        f"SELECT s.*, EXISTS (SELECT FROM {UNHINDERED}) AS written{statements.returns} "
        "FROM state s",
        *state.args,
        *statements.args,
    )
    if row is None:
        return UNTRACKED, None
    return _state_of(schema, tenant_id, row, exclusive=False), row if row["written"] else None


def _probed(probe: Probe | None, first_param: int) -> tuple[str, list[Any]]:
    return (None if probe is None else probe(first_param)) or ("NULL::boolean", [])


async def read_with(
    conn: Connection,
    schema: str,
    tenant_id: uuid.UUID,
    *,
    resource: Callable[[int], str],
    resource_args: list[Any],
    write: Along | None = None,
    mapped: bool = False,
    counting: bool = False,
) -> tuple[WriteState, asyncpg.Record | None]:
    """The state of a write (`read`, without the roles lock: the caller takes another
    way when the tenant maps roles) and, in the same statement, the resource it
    writes: ``resource`` is a `SELECT` of at most one row given the first `$n` its
    arguments (``resource_args``) take, read without a lock or locked (a delete's).
    The resource is None when there is none, or when the tenant is not found (the
    state `UNTRACKED`). ``write``: a write tried in the same statement, given its
    first `$n` and the `WITH` query it takes effect with, `UNHINDERED` (as
    `read_and_write`'s, ``mapped`` or not, but taking no lock: the write takes it
    if it needs it; ``counting``: it deprovisions its user, and the guard counts
    it in the statement); the row has its `returns` columns, and the resource as
    it was before it."""
    read = _statement("NULL::boolean", resource(3))
    args = [tenant_id, GUARD_SCHEMA_VERSION, *resource_args]
    if write is not None:
        tried = write(len(args) + 1, UNHINDERED)
        read = (
            f"WITH state AS ({read}), {_unhindered_if(mapped=mapped, counting=counting)}, "
            f"{tried.ctes} "
            f"SELECT s.*{tried.returns} FROM state s"
        )
        args += tried.args
    row = await conn.fetchrow(read, *args)
    if row is None:
        return UNTRACKED, None
    state = _state_of(schema, tenant_id, row, exclusive=False)
    return state, row if row["id"] is not None else None


def _statement(
    probed: str,
    resource: str | None = None,
    *,
    exclusive: bool | None = None,
    first_param: int = 1,
) -> str:
    """The state query, its arguments numbered from ``first_param``: the tenant's id, the
    guard's schema version, and unless ``exclusive`` is None, the roles lock's class,
    the lock taken (``exclusive``ly or shared) if the tenant maps roles;
    ``resource``, a row read along (`read_with`)."""
    tenant, guard_version, lock_class = (f"${first_param + n}" for n in range(3))
    locking = (
        ""
        if exclusive is None
        else ", CASE WHEN m.tenant IS NOT NULL THEN "
        f"{role_mappings.locking(lock_class, 't.id', exclusive=exclusive)} IS NULL END"
    )
    joined = "" if resource is None else f" LEFT JOIN LATERAL ({resource}) AS w ON true"
    return (
        f"SELECT t.schema_version >= {guard_version} AS guarded, "
        "g.tripped_at IS NOT NULL AS tripped, "
        "g.tenant IS NOT NULL AS guard_row, "
        f"{role_mappings.summary('m')}, m.generation AS roles_generation, "
        f"{_POLICY_COLUMNS}, {probed} AS may_claim, "
        f"t.schema_version >= {outbox.NUMBERED_AT_COMMIT_VERSION:d} AS numbers_at_commit, "
        f"now(){locking}{'' if resource is None else ', w.*'} "
        "FROM scim_control.tenants t "
        "LEFT JOIN scim_control.role_mappings m ON m.tenant = t.id "
        "LEFT JOIN scim_control.deprovision_guards g ON g.tenant = t.id "
        f"LEFT JOIN scim_control.provisioning_policies p ON p.tenant = t.id{joined} "
        f"WHERE t.id = {tenant}"
    )


def _state_of(
    schema: str, tenant_id: uuid.UUID, row: asyncpg.Record, *, exclusive: bool
) -> WriteState:
    tracker = None
    if row["default_roles"] is not None:  # NOT NULL in the mapping: NULL, none
        tracker = Tracker(
            schema,
            tenant_id,
            row["default_roles"],
            maps_groups=row["maps_groups"],
            exclusive=exclusive,
        )
        _MAPPED.add(tenant_id)
    else:
        _MAPPED.discard(tenant_id)
    tripped = bool(row["tripped"]) if row["guarded"] else None
    (_TRIPPED.add if tripped else _TRIPPED.discard)(tenant_id)
    return WriteState(
        tracker,
        tripped,
        policies.from_columns(row),
        row["may_claim"],
        row["numbers_at_commit"],
        row["now"],
        row["guard_row"],
    )
