"""Users and Groups of one tenant: the SQL both resource types share.

A resource is one row: indexed columns for what IdPs look up and what must
be unique, and the whole resource as `jsonb`. Every write bumps `version`
(the ETag) and `last_modified` in the same statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple

import asyncpg

from service.postgres import Connection, Pool
from service.scim.attributes import GROUP_RESOURCE, USER_RESOURCE, ResourceType
from service.scim.errors import ScimError
from service.store import paging
from service.store.filters import GROUP_COLUMNS, USER_COLUMNS, Column, Target
from service.store.paging import RESOURCE_COLUMNS, ListQuery
from tenants.migrations import LATEST_VERSION
from tenants.schemas import EMAIL_VALUES, quoted_schema

EMAIL_COLUMN_VERSION: Final = 11
"""The tenant migration after which users' addresses are the stored column `email_values`
(indexed); before it the index was on `EMAIL_VALUES` over the document."""


def email_values(schema_version: int = LATEST_VERSION) -> str:
    """SQL over `r`, a user: its addresses lower-cased, an array, as the email index of a
    tenant's schema at ``schema_version`` reads them (so PostgreSQL can use it)."""
    if schema_version >= EMAIL_COLUMN_VERSION:
        return "r.email_values"
    return f"{EMAIL_VALUES}(r.resource)"


Row = asyncpg.Record


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    resource_type: ResourceType
    filter_columns: dict[tuple[str, str | None], Column]
    indexed: tuple[str, ...]
    """Columns copied out of the resource, in the order `indexed_values` returns them."""
    indexed_values: Callable[[dict[str, Any]], tuple[Any, ...]]
    email_index: bool = False
    visible: str = "TRUE"
    """The rows SCIM clients see (`r` is the table): not pre-loaded or soft-deleted users."""

    def qualified(self, schema: str) -> str:
        return f"{quoted_schema(schema)}.{self.name}"

    def target(self, schema: str, schema_version: int = LATEST_VERSION) -> Target:
        """What filters compile against, in a tenant's schema at ``schema_version``."""
        return Target(
            self.resource_type,
            quoted_schema(schema),
            self.filter_columns,
            email_values(schema_version) if self.email_index else None,
        )


USERS = Table(
    "users",
    USER_RESOURCE,
    USER_COLUMNS,
    ("user_name", "external_id", "display_name", "active"),
    lambda r: (r["userName"], r.get("externalId"), r.get("displayName"), r.get("active", True)),
    email_index=True,
    visible="r.managed AND r.deleted_at IS NULL",
)
GROUPS = Table(
    "groups",
    GROUP_RESOURCE,
    GROUP_COLUMNS,
    ("display_name", "external_id"),
    lambda r: (r["displayName"], r.get("externalId")),
)


def conflict(table: Table, resource: dict[str, Any]) -> ScimError:
    """The error of a resource whose unique keys another one already holds."""
    if table is USERS:
        return ScimError(
            409, f"a user with userName {resource['userName']!r} already exists", "uniqueness"
        )
    return ScimError(409, "the resource conflicts with an existing one", "uniqueness")


class AlongStatements(NamedTuple):
    """Data-modifying statements to run within a write's statement."""

    ctes: str
    """`WITH` queries: `name AS (...), ...`."""
    args: list[Any]
    returns: str = ""
    """More output columns (`, expression AS name`) over those queries, for the writes
    that return them (`update_unless_changed`)."""

    def then(self, more: AlongStatements) -> AlongStatements:
        """These statements and ``more`` in one statement: ``more``'s arguments must be
        numbered after these (from this one's first `$n` plus `len(args)`)."""
        return AlongStatements(
            f"{self.ctes}, {more.ctes}", [*self.args, *more.args], self.returns + more.returns
        )


Along = Callable[[int, str | None], AlongStatements]
"""Statements to run with a write, given its first free `$n` and the name of a `WITH`
query they must take effect with (they write nothing unless that query returns a row),
or None (`service.store.outbox.appending`)."""


def _along(along: Along | None, first_free: int) -> AlongStatements:
    """``along`` ahead of a statement's own `$1..$(first_free - 1)`, its queries as the
    `WITH` that starts the statement."""
    if along is None:
        return AlongStatements("", [])
    statements = along(first_free, None)
    return statements._replace(ctes=f"WITH {statements.ctes} ")


async def insert(
    conn: Connection,
    table: Table,
    schema: str,
    resource: dict[str, Any],
    *,
    resource_id: uuid.UUID | None = None,
    at: datetime | None = None,
    along: Along | None = None,
) -> Row:
    """Store a new resource (with ``resource_id``, else a new id), created ``at`` (else
    the transaction's `now()`), with ``along`` in the same statement: it takes effect
    exactly when the insert does. The row has ``along``'s `returns` columns too."""
    names, values = _new_row(table, resource, resource_id or uuid.uuid4())
    if at is not None:
        names += ["created", "last_modified"]
        values += [at, at]
    prefix, extra_args, returns = _along(along, len(values) + 1)
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    try:
        row = await conn.fetchrow(
            f"{prefix}INSERT INTO {table.qualified(schema)} AS r ({', '.join(names)}) "
            f"VALUES ({placeholders}) RETURNING {RESOURCE_COLUMNS}{returns}",
            *values,
            *extra_args,
        )
    except asyncpg.UniqueViolationError as exc:
        raise conflict(table, resource) from exc
    assert row is not None
    return row


def inserting(
    table: Table, schema: str, resource: dict[str, Any], resource_id: uuid.UUID, along: Along
) -> Along:
    """`insert` as `WITH` queries of another statement, with ``along``: the resource,
    with ``resource_id``, created at the statement's `now()`, stored only if that
    statement's query named by ``only_with`` returns a row. A conflict raises
    `asyncpg.UniqueViolationError` from that statement (`conflict` says it)."""

    def statements(first_param: int, only_with: str | None) -> AlongStatements:
        names, values = _new_row(table, resource, resource_id)
        placeholders = ", ".join(f"${first_param + n}" for n in range(len(values)))
        condition = "" if only_with is None else f" WHERE EXISTS (SELECT FROM {only_with})"
        following = along(first_param + len(values), "inserted")
        return AlongStatements(
            f"inserted AS (INSERT INTO {table.qualified(schema)} "
            f"({', '.join(names)}, created, last_modified) "
            f"SELECT {placeholders}, now(), now(){condition} RETURNING id), {following.ctes}",
            [*values, *following.args],
        )

    return statements


def _new_row(
    table: Table, resource: dict[str, Any], resource_id: uuid.UUID
) -> tuple[list[str], list[Any]]:
    """A new resource's columns, and their values, but for its times."""
    return ["id", "resource", *table.indexed], [
        resource_id,
        resource,
        *table.indexed_values(resource),
    ]


async def get(
    conn: Connection | Pool,
    table: Table,
    schema: str,
    resource_id: uuid.UUID,
    *,
    lock: str | None = None,
    related: str | None = None,
) -> Row | None:
    """One resource; with ``lock`` (`TO_CHANGE`, `TO_DELETE`), held until the caller's
    transaction ends.

    ``related``, SQL over the resource `r`, becomes the row's `related` column.
    """
    return await conn.fetchrow(selecting(table, schema, 1, related, lock=lock), resource_id)


TO_CHANGE: Final = "FOR NO KEY UPDATE"
"""The lock of a resource a write changes: its id stays, so the writes that add a user to
a group, which hold it `FOR KEY SHARE` as a foreign key would (`groups.USER_HOLD`), go
on; a write nesting a group waits (`groups.GROUP_HOLD`)."""
TO_DELETE: Final = "FOR UPDATE"
"""The lock of a resource a write deletes (a user's soft delete too): the writes adding
it to a group wait, then find it gone."""


def selecting(
    table: Table, schema: str, id_param: int, related: str | None = None, *, lock: str | None = None
) -> str:
    """The `SELECT` of `get`, the resource's id being `$id_param`, taking ``lock``."""
    columns = RESOURCE_COLUMNS if related is None else f"{RESOURCE_COLUMNS}, {related} AS related"
    locking = "" if lock is None else f" {lock} OF r"
    return (
        f"SELECT {columns} FROM {table.qualified(schema)} r "
        f"WHERE r.id = ${id_param} AND {table.visible}{locking}"
    )


async def update(
    conn: Connection,
    table: Table,
    schema: str,
    resource_id: uuid.UUID,
    resource: dict[str, Any],
    *,
    along: Along | None = None,
) -> Row:
    """Store a new state of an existing (locked) resource and bump its version, with
    ``along`` in the same statement; the row has ``along``'s `returns` columns too."""
    assignments, values = _assignments(table, resource)
    prefix, extra_args, returns = _along(along, len(values) + 2)
    row = await _updating(
        conn,
        table,
        resource,
        f"{prefix}UPDATE {table.qualified(schema)} AS r SET {assignments} "
        f"WHERE r.id = $1 RETURNING {RESOURCE_COLUMNS}{returns}",
        [resource_id, *values, *extra_args],
    )
    assert row is not None
    return row


async def update_unless_changed(
    conn: Connection,
    table: Table,
    schema: str,
    resource_id: uuid.UUID,
    resource: dict[str, Any],
    *,
    version: int,
    at: datetime,
    along: Along | None = None,
    only_if: Callable[[int], tuple[str, list[Any]]] | None = None,
) -> Row | None:
    """`update` of a resource read without a lock, modified ``at``: it takes effect only
    if the resource is still at ``version`` (and visible), ``along`` only with it. None
    when it was changed or deleted meanwhile, and nothing was written. The row has
    ``along``'s `returns` columns too. ``only_if``: one more condition over the row
    `r`, given its first `$n`, and its arguments."""
    assignments, values = _assignments(table, resource, modified=f"${len(table.indexed) + 3}")
    values += [at, version]
    statements = AlongStatements("", []) if along is None else along(len(values) + 2, "written")
    args = [resource_id, *values, *statements.args]
    condition = ""
    if only_if is not None:
        sql, more = only_if(len(args) + 1)
        condition, args = f" AND {sql}", [*args, *more]
    return await _updating(
        conn,
        table,
        resource,
        f"WITH written AS (UPDATE {table.qualified(schema)} AS r SET {assignments} "
        f"WHERE r.id = $1 AND r.version = ${len(values) + 1} AND {table.visible}{condition} "
        f"RETURNING {RESOURCE_COLUMNS})"
        + (f", {statements.ctes}" if statements.ctes else "")
        + f" SELECT *{statements.returns} FROM written",
        args,
    )


def updating_unless_changed(
    table: Table,
    schema: str,
    resource_id: uuid.UUID,
    resource: dict[str, Any],
    *,
    version: int,
    along: Along,
    only_if: Callable[[int], tuple[str, list[Any]]] | None = None,
) -> Along:
    """`update_unless_changed` as `WITH` queries of another statement (`updated`), modified
    at its `now()`, with ``along``, stored only if that statement's query named by
    ``only_with`` returns a row (and ``only_if`` holds, as there); its output column
    `updated_at`, the time stored, is NULL when nothing was (the resource not at
    ``version``, or not visible). A conflict raises `asyncpg.UniqueViolationError`
    from that statement."""

    def statements(first_param: int, only_with: str | None) -> AlongStatements:
        assignments, values = _assignments(table, resource, first_param=first_param + 1)
        id_param, version_param = first_param, first_param + len(values) + 1
        following = along(version_param + 1, "updated")
        args = [resource_id, *values, version, *following.args]
        condition = "" if only_with is None else f" AND EXISTS (SELECT FROM {only_with})"
        if only_if is not None:
            sql, more = only_if(first_param + len(args))
            condition, args = f"{condition} AND {sql}", [*args, *more]
        return AlongStatements(
            f"updated AS (UPDATE {table.qualified(schema)} AS r SET {assignments} "
            f"WHERE r.id = ${id_param} AND r.version = ${version_param} AND {table.visible}"
            f"{condition} RETURNING r.last_modified), {following.ctes}",
            args,
            f", (SELECT last_modified FROM updated) AS updated_at{following.returns}",
        )

    return statements


def _assignments(
    table: Table, resource: dict[str, Any], *, modified: str = "now()", first_param: int = 2
) -> tuple[str, list[Any]]:
    """An update's `SET` list, which bumps the version, and its values from
    `$first_param` on."""
    indexed = ", ".join(
        f"{name} = ${i}" for i, name in enumerate(table.indexed, start=first_param + 1)
    )
    return (
        f"resource = ${first_param}, {indexed}, version = r.version + 1, "
        f"last_modified = {modified}",
        [resource, *table.indexed_values(resource)],
    )


async def _updating(
    conn: Connection, table: Table, resource: dict[str, Any], statement: str, args: list[Any]
) -> Row | None:
    try:
        return await conn.fetchrow(statement, *args)
    except asyncpg.UniqueViolationError as exc:
        raise conflict(table, resource) from exc


def leaving_groups(qualified: str) -> str:
    """`WITH` queries taking the member `$1` out of every group it is directly in, for its
    delete, in the delete's own statement: `containing` locks those groups in id
    order, `removed` then drops the memberships, `bumped` (id, display_name) bumps
    the groups' versions. A write of the delete's that must follow the locks is
    gated on them as `removed` is, with `AFTER_CONTAINING`.

    The groups are locked before any membership is dropped: a change of one of
    them holds its row from its first statement, and a delete that dropped the
    membership first would wait for the row to bump it while the change, adding
    the same member again, waited to see whether that drop commits; PostgreSQL
    ends one as a deadlock. The caller holds the member `TO_DELETE` from an
    earlier statement of its transaction, so this one's snapshot shows every
    membership: a write adding the member holds it (`groups.hold`) and has
    committed, or waits for the delete and then finds the member gone.
    """
    return (
        f"containing AS MATERIALIZED (SELECT id FROM {qualified}.groups WHERE id IN "
        f"(SELECT group_id FROM {qualified}.group_members WHERE member_id = $1) "
        "ORDER BY id FOR NO KEY UPDATE), "
        f"removed AS (DELETE FROM {qualified}.group_members WHERE member_id = $1 "
        f"AND {AFTER_CONTAINING} RETURNING group_id), "
        f"bumped AS (UPDATE {qualified}.groups SET version = version + 1, "
        "last_modified = now() WHERE id IN (SELECT group_id FROM removed) "
        "RETURNING id, display_name)"
    )


AFTER_CONTAINING: Final = "(SELECT count(*) FROM containing) >= 0"
"""A condition true once `leaving_groups`' locks are taken: PostgreSQL evaluates it
before the statement it gates scans anything."""


async def delete(
    conn: Connection, table: Table, schema: str, resource_id: uuid.UUID
) -> list[tuple[uuid.UUID, str]]:
    """Delete the held resource and take it out of every group (`leaving_groups`), in one
    statement of the caller's transaction.

    Returns the groups it was taken out of: (id, displayName) each.
    """
    rows = await conn.fetch(
        f"WITH {leaving_groups(quoted_schema(schema))}, "
        f"gone AS (DELETE FROM {table.qualified(schema)} WHERE id = $1 AND {AFTER_CONTAINING}) "
        "SELECT id, display_name FROM bumped",
        resource_id,
    )
    return [(row["id"], row["display_name"]) for row in rows]


def page_statements(
    table: Table,
    schema: str,
    query: ListQuery,
    *,
    related: str | None = None,
    schema_version: int = LATEST_VERSION,
) -> paging.PageStatements:
    """The SQL of a page of visible resources (`paging.page_statements`); ``related`` over `r`."""
    return paging.page_statements(
        table.target(schema, schema_version),
        table.qualified(schema),
        query,
        visible=table.visible,
        related=related,
    )
