"""What a SCIM request does to a tenant's resources, independent of HTTP.

Each write is one transaction on one pooled connection: read and lock the
resource, check the client's `If-Match`, apply the change with the pure SCIM
code (`service.scim`), store it with its version bump, all or nothing. The
HTTP routes and `/Bulk` both call these functions.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any

from service.postgres import Connection, Pool
from service.scim import patch, resources, validation
from service.scim.errors import ScimError, not_found
from service.scim.projection import Projection, project
from service.store import groups
from service.store.paging import ListQuery
from service.store.resources import GROUPS, USERS, Row, Table, insert, page, touch, update
from service.store.resources import delete as delete_row
from service.store.resources import get as get_row


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a request acts: the tenant's schema and the base of its `Location`s."""

    schema: str
    base_url: str


def resource_id(raw: str, table: Table) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise not_found(f"{table.resource_type.name} {raw!r} not found") from exc


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
UserGroups = dict[uuid.UUID, list[tuple[uuid.UUID, str, bool]]]


def _body(
    table: Table, scope: Scope, row: Row, members: Memberships, user_groups: UserGroups
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
            body["groups"] = [
                {
                    "value": str(group_id),
                    "$ref": f"{scope.base_url}/Groups/{group_id}",
                    "display": display,
                    "type": "direct" if direct else "indirect",
                }
                for group_id, display, direct in user_groups[row["id"]]
            ]
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
    """Resources of one type, with their members or groups in one query for all rows."""
    ids = [row["id"] for row in rows]
    related = "members" if table is GROUPS else "groups"
    members: Memberships = {}
    user_groups: UserGroups = {}
    if ids and (projection is None or projection.wants(related)):
        if table is GROUPS:
            members = await groups.members_of(conn, scope.schema, ids)
        else:
            user_groups = await groups.groups_of(conn, scope.schema, ids)
    bodies = [_body(table, scope, row, members, user_groups) for row in rows]
    if projection is None:
        return bodies
    return [project(table.resource_type, body, projection) for body in bodies]


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


def _new_state(table: Table, payload: Any) -> dict[str, Any]:
    resource = validation.normalise(table.resource_type, payload)
    validation.check_required(table.resource_type, resource)
    if table is USERS:
        # A user is active unless the IdP says otherwise; clients (Okta among
        # them) read the flag back, so it is always stated.
        resource.setdefault("active", True)
    return resource


async def create(
    pool: Pool, table: Table, scope: Scope, payload: Any, projection: Projection | None = None
) -> dict[str, Any]:
    resource = _new_state(table, payload)
    member_ids = validation.members_of(payload) if table is GROUPS else None
    async with pool.acquire() as conn, conn.transaction():
        row = await insert(conn, table, scope.schema, resource)
        if member_ids:
            await groups.add(conn, scope.schema, row["id"], member_ids)
        return await render(conn, table, scope, row, projection)


async def get(
    pool: Pool, table: Table, scope: Scope, raw_id: str, projection: Projection | None = None
) -> tuple[dict[str, Any], int]:
    """The resource and its version, or 404."""
    row = await get_row(pool, table, scope.schema, resource_id(raw_id, table))
    if row is None:
        raise not_found(f"{table.resource_type.name} {raw_id!r} not found")
    return await render(pool, table, scope, row, projection), row["version"]


async def version_of(pool: Pool, table: Table, scope: Scope, raw_id: str) -> int:
    row = await get_row(pool, table, scope.schema, resource_id(raw_id, table))
    if row is None:
        raise not_found(f"{table.resource_type.name} {raw_id!r} not found")
    version: int = row["version"]
    return version


async def _locked(conn: Connection, table: Table, scope: Scope, raw_id: str) -> Row:
    row = await get_row(conn, table, scope.schema, resource_id(raw_id, table), lock=True)
    if row is None:
        raise not_found(f"{table.resource_type.name} {raw_id!r} not found")
    return row


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
    async with pool.acquire() as conn, conn.transaction():
        row = await _locked(conn, table, scope, raw_id)
        _check_if_match(row, if_match)
        validation.check_immutable(table.resource_type, row["resource"], resource)
        row = await update(conn, table, scope.schema, row["id"], resource)
        if table is GROUPS:
            await groups.remove_all(conn, scope.schema, row["id"])
            await groups.add(conn, scope.schema, row["id"], member_ids or [])
        return await render(conn, table, scope, row, projection)


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
    async with pool.acquire() as conn, conn.transaction():
        row = await _locked(conn, table, scope, raw_id)
        _check_if_match(row, if_match)
        result = patch.apply_patch(table.resource_type, row["resource"], operations)
        if result.resource != row["resource"]:
            row = await update(conn, table, scope.schema, row["id"], result.resource)
        members_changed = 0
        for step in result.member_steps:
            members_changed += await _apply_member_step(conn, scope, row["id"], step)
        if members_changed and result.resource == row["resource"]:
            row = await touch(conn, table, scope.schema, row["id"])
        return await render(conn, table, scope, row, projection)


async def _apply_member_step(
    conn: Connection, scope: Scope, group_id: uuid.UUID, step: patch.MemberStep
) -> int:
    if step.kind == "add":
        return await groups.add(conn, scope.schema, group_id, step.ids)
    if step.kind == "remove":
        return await groups.remove(conn, scope.schema, group_id, step.ids)
    if step.kind == "remove_all":
        return await groups.remove_all(conn, scope.schema, group_id)
    if step.kind == "replace":
        removed = await groups.remove_all(conn, scope.schema, group_id)
        return removed + await groups.add(conn, scope.schema, group_id, step.ids)
    assert step.kind == "remove_where"
    assert step.where is not None
    return await groups.remove_where(conn, scope.schema, group_id, step.where)


async def delete(
    pool: Pool, table: Table, scope: Scope, raw_id: str, *, if_match: str | None = None
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        row = await _locked(conn, table, scope, raw_id)
        _check_if_match(row, if_match)
        await delete_row(conn, table, scope.schema, row["id"])


async def search(
    pool: Pool, table: Table, scope: Scope, query: ListQuery, projection: Projection
) -> tuple[int, list[dict[str, Any]]]:
    total, rows = await page(pool, table, scope.schema, query)
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
