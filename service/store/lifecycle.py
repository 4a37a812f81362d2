"""A user's life outside plain SCIM CRUD: pre-loaded, linked, soft-deleted, purged.

Pre-loaded users (``managed = false``) and soft-deleted ones (``deleted_at``
set) are rows SCIM clients do not see (`resources.USERS.visible`); they wait
to be claimed by an IdP's POST (`find_claimable`, `adopt`) or to be purged.
"""

from __future__ import annotations

import uuid
from typing import Any, NamedTuple

import asyncpg

from service.postgres import Connection, Pool
from service.scim.errors import ScimError
from service.store.paging import RESOURCE_COLUMNS
from service.store.resources import AFTER_CONTAINING, USERS, Row, leaving_groups
from tenants import policies
from tenants.schemas import quoted_schema

_HIDDEN = "NOT (r.managed AND r.deleted_at IS NULL)"


def _emails(resource: dict[str, Any]) -> list[str]:
    """The addresses a user can be recognised by: its emails, and a userName shaped like one."""
    found = [
        e["value"].lower()
        for e in resource.get("emails") or []
        if isinstance(e, dict) and isinstance(e.get("value"), str)
    ]
    user_name = resource.get("userName")
    if isinstance(user_name, str) and "@" in user_name:
        found.append(user_name.lower())
    return list(dict.fromkeys(found))


class _Branch(NamedTuple):
    """One way a POSTed user can match a hidden one."""

    key: str
    conditions: tuple[str, ...]
    """SQL over `r`, any of which matches: each one an index can answer."""
    argument: Any
    shown: str

    @property
    def condition(self) -> str:
        return " OR ".join(f"({condition})" for condition in self.conditions)


def _branches(
    resource: dict[str, Any], order: tuple[str, ...], first_param: int, emails_sql: str
) -> list[_Branch]:
    """The match conditions for `order`'s keys that `resource` has a value for, in order.

    Pre-loaded users match on any key; soft-deleted ones on externalId (the same
    IdP object) or userName (which they still hold), never on email alone.
    ``emails_sql``: a user's indexed addresses (`resources.email_values`).
    """
    branches: list[_Branch] = []
    for key in order:
        param = f"${first_param + len(branches)}"
        conditions: tuple[str, ...]
        if key == "externalId":
            value = resource.get("externalId")
            conditions, argument = (f"r.external_id = {param}",), value
        elif key == "userName":
            value = resource.get("userName")
            conditions, argument = (f"lower(r.user_name) = lower({param})",), value
        else:
            emails = _emails(resource)
            value = ", ".join(emails)
            # A deleted person's address may be reissued to a new hire: an email
            # match adopts pre-loaded users only, never restores a deleted one.
            conditions = (
                f"NOT r.managed AND {emails_sql} && {param}::text[]",
                f"NOT r.managed AND lower(r.user_name) = ANY({param}::text[])",
            )
            argument = emails
        if value:
            branches.append(_Branch(key, conditions, argument, str(value)))
    return branches


def claim_probe(
    schema: str, resource: dict[str, Any], first_param: int, *, emails_sql: str
) -> tuple[str, list[Any]] | None:
    """SQL telling whether a hidden user may match `resource` on any key, and its arguments.

    A column another statement of the create reads (`service.write_state`), so
    the common create, with nothing to claim, spends no round trip on claiming;
    only when it is true does `find_claimable` rank and lock. It reads without
    locking, as `find_claimable` does before it locks: a user hidden by a
    transaction not yet committed is not seen by either. None: `resource`
    has no key to match on. ``emails_sql``: as `_branches`.
    """
    qualified = quoted_schema(schema)
    branches = _branches(resource, policies.MATCH_KEYS, first_param, emails_sql)
    if not branches:
        return None
    # First whether the tenant has any hidden user at all (usually not), asked as
    # the first one by id, which the index of hidden users answers without reading
    # the others: asked as `EXISTS`, in a tenant whose users autovacuum has not
    # analyzed yet (without statistics PostgreSQL takes half of them for hidden
    # ones), it scanned every user. Then each key's matches, counted by the key's
    # own index. Asked as the first hidden user matching any key, or as `EXISTS`,
    # PostgreSQL expects one among the first rows it reads (it guesses an address
    # matches 1% of users) and read through every hidden user when none did: 250 ms
    # a create with 50,000 pre-loaded.
    first_hidden = f"SELECT r.id FROM {qualified}.users r WHERE {_HIDDEN}"
    matching = " OR ".join(
        f"(SELECT count(*) FROM {qualified}.users r WHERE {_HIDDEN} AND {condition}) > 0"
        for branch in branches
        for condition in branch.conditions
    )
    return (
        f"CASE WHEN ({first_hidden} ORDER BY r.id LIMIT 1) IS NULL THEN false ELSE {matching} END",
        [branch.argument for branch in branches],
    )


async def find_claimable(
    conn: Connection,
    schema: str,
    resource: dict[str, Any],
    order: tuple[str, ...],
    *,
    emails_sql: str,
) -> tuple[Row, str, str] | None:
    """The first hidden user `resource` matches, trying `order`'s keys in turn, locked.

    Returns the row, the key that matched and the value it matched on.
    ``emails_sql``: as `_branches`.
    """
    qualified = quoted_schema(schema)
    # One query for every key, ranked in the policy's order: one round trip
    # rather than one per key.
    branches = _branches(resource, order, 1, emails_sql)
    if not branches:
        return None
    rank = " ".join(f"WHEN {branch.condition} THEN {i}" for i, branch in enumerate(branches))
    row = await conn.fetchrow(
        f"SELECT {RESOURCE_COLUMNS}, r.managed, CASE {rank} END AS matched "
        f"FROM {qualified}.users r "
        f"WHERE {_HIDDEN} AND ({' OR '.join(branch.condition for branch in branches)}) "
        "ORDER BY matched, r.managed, r.created, r.id LIMIT 1 FOR UPDATE",
        *(branch.argument for branch in branches),
    )
    if row is None:
        return None
    branch = branches[row["matched"]]
    return row, branch.key, branch.shown


async def adopt(conn: Connection, schema: str, user_id: uuid.UUID, resource: dict[str, Any]) -> Row:
    """Make a hidden user the IdP's: its new state, visible again, version bumped."""
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(USERS.indexed, start=3))
    try:
        row = await conn.fetchrow(
            f"UPDATE {quoted_schema(schema)}.users AS r SET resource = $2, {assignments}, "
            "managed = true, deleted_at = NULL, deleted_groups = NULL, "
            "version = r.version + 1, last_modified = now() "
            f"WHERE r.id = $1 RETURNING {RESOURCE_COLUMNS}",
            user_id,
            resource,
            *USERS.indexed_values(resource),
        )
    except asyncpg.UniqueViolationError as exc:
        # The user matched (by externalId, say) but its new userName is someone else's.
        raise ScimError(
            409, f"a user with userName {resource['userName']!r} already exists", "uniqueness"
        ) from exc
    assert row is not None
    return row


async def record_link(
    conn: Connection,
    schema: str,
    *,
    user_id: uuid.UUID,
    kind: str,
    matched_by: str,
    matched_value: str,
    client: str,
    user_agent: str | None,
) -> dict[str, Any]:
    """The audit row of one adoption (``linked``) or restoration (``restored``)."""
    row = await conn.fetchrow(
        f"INSERT INTO {quoted_schema(schema)}.user_links "
        "(user_id, kind, matched_by, matched_value, client, user_agent) "
        "VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        user_id,
        kind,
        matched_by,
        matched_value,
        client,
        user_agent,
    )
    assert row is not None
    return dict(row)


async def soft_delete(
    conn: Connection, schema: str, user_id: uuid.UUID
) -> list[tuple[uuid.UUID, str]]:
    """Hide a held user from SCIM, deactivated, keeping its data and the groups it was in,
    in one statement that takes it out of them (`resources.leaving_groups`).

    Returns the groups it left: (id, displayName) each, as `resources.delete` does.
    """
    qualified = quoted_schema(schema)
    rows = await conn.fetch(
        f"WITH {leaving_groups(qualified)}, "
        f"hidden AS (UPDATE {qualified}.users SET deleted_at = now(), active = false, "
        """resource = resource || '{"active": false}'::jsonb, """
        "deleted_groups = (SELECT coalesce(array_agg(group_id), '{}') FROM removed), "
        f"version = version + 1, last_modified = now() WHERE id = $1 AND {AFTER_CONTAINING}) "
        "SELECT id, display_name FROM bumped",
        user_id,
    )
    return [(row["id"], row["display_name"]) for row in rows]


async def purge(conn: Connection | Pool, schema: str, retention_days: int) -> int:
    """Delete users soft-deleted more than `retention_days` ago; returns how many."""
    rows = await conn.fetch(
        f"DELETE FROM {quoted_schema(schema)}.users "
        "WHERE deleted_at IS NOT NULL AND deleted_at <= now() - make_interval(days => $1) "
        "RETURNING id",
        retention_days,
    )
    return len(rows)


async def set_password(
    conn: Connection, schema: str, user_id: uuid.UUID, password_hash: str
) -> None:
    await conn.execute(
        f"UPDATE {quoted_schema(schema)}.users SET password_hash = $2 WHERE id = $1",
        user_id,
        password_hash,
    )


async def preload(conn: Connection | Pool, schema: str, resource: dict[str, Any]) -> Row | None:
    """Insert a user the operator already has, hidden until an IdP claims it.

    None if its userName is taken (case-insensitively) by another user.
    """
    columns = ", ".join(USERS.indexed)
    placeholders = ", ".join(f"${i}" for i in range(3, len(USERS.indexed) + 3))
    try:
        return await conn.fetchrow(
            f"INSERT INTO {quoted_schema(schema)}.users AS r (id, resource, managed, {columns}) "
            f"VALUES ($1, $2, false, {placeholders}) RETURNING {RESOURCE_COLUMNS}, r.managed",
            uuid.uuid4(),
            resource,
            *USERS.indexed_values(resource),
        )
    except asyncpg.UniqueViolationError:
        return None


_ADMIN_COLUMNS = (
    f"{RESOURCE_COLUMNS}, r.managed, r.deleted_at, r.deleted_groups, "
    "r.password_hash IS NOT NULL AS has_password"
)


async def users(
    pool: Pool, schema: str, *, offset: int, limit: int, search: str | None = None
) -> tuple[int, list[Row]]:
    """Every user, visible over SCIM or not, in creation order, with the total; with
    ``search``, those whose userName or displayName contains it (any case) or whose
    externalId it is."""
    qualified = quoted_schema(schema)
    where, args = "", []
    if search:
        where = (
            "WHERE strpos(lower(r.user_name), lower($1)) > 0 "
            "OR strpos(lower(r.display_name), lower($1)) > 0 OR r.external_id = $1"
        )
        args = [search]
    total: int = await pool.fetchval(f"SELECT count(*) FROM {qualified}.users r {where}", *args)
    rows = await pool.fetch(
        f"SELECT {_ADMIN_COLUMNS} FROM {qualified}.users r {where} ORDER BY r.created, r.id "
        f"OFFSET ${len(args) + 1} LIMIT ${len(args) + 2}",
        *args,
        offset,
        limit,
    )
    return total, rows


async def user(pool: Pool, schema: str, user_id: uuid.UUID) -> Row | None:
    return await pool.fetchrow(
        f"SELECT {_ADMIN_COLUMNS} FROM {quoted_schema(schema)}.users r WHERE r.id = $1", user_id
    )


async def links(
    pool: Pool, schema: str, *, user_id: uuid.UUID | None = None, limit: int = 1000
) -> list[Row]:
    """Link audit rows, newest first; of one user when `user_id` is given."""
    return await pool.fetch(
        f"SELECT * FROM {quoted_schema(schema)}.user_links "
        "WHERE $1::uuid IS NULL OR user_id = $1 ORDER BY id DESC LIMIT $2",
        user_id,
        limit,
    )
