"""Groups of one tenant, and their members: one row per membership."""

from __future__ import annotations

import uuid
from collections import defaultdict

import asyncpg

from service.postgres import Connection, Pool
from service.scim.errors import invalid_value
from service.scim.resources import GroupDraft, Member
from service.store import paging
from service.store.paging import RESOURCE_COLUMNS
from tenants.schemas import quoted_schema

GroupRow = asyncpg.Record


async def _resolve_members(
    conn: Connection, qualified: str, member_ids: list[uuid.UUID]
) -> list[tuple[uuid.UUID, str]]:
    """The type of each member, or 400 if any of them is not in this tenant."""
    rows = await conn.fetch(
        f"SELECT id, 'User' AS type FROM {qualified}.users WHERE id = ANY($1::uuid[]) "
        f"UNION ALL SELECT id, 'Group' FROM {qualified}.groups WHERE id = ANY($1::uuid[])",
        member_ids,
    )
    found = {row["id"]: row["type"] for row in rows}
    missing = [str(member_id) for member_id in member_ids if member_id not in found]
    if missing:
        raise invalid_value(f"members not found: {', '.join(missing[:10])}")
    return [(member_id, found[member_id]) for member_id in member_ids]


async def create(pool: Pool, schema: str, draft: GroupDraft) -> GroupRow:
    qualified = quoted_schema(schema)
    group_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"INSERT INTO {qualified}.groups (id, display_name, external_id, resource) "
            f"VALUES ($1, $2, $3, $4) RETURNING {RESOURCE_COLUMNS}",
            group_id,
            draft.display_name,
            draft.external_id,
            draft.attributes,
        )
        if draft.member_ids:
            members = await _resolve_members(conn, qualified, draft.member_ids)
            await conn.execute(
                f"INSERT INTO {qualified}.group_members (group_id, member_id, member_type) "
                "SELECT $1, m.id, m.type FROM unnest($2::uuid[], $3::text[]) AS m(id, type)",
                group_id,
                [member_id for member_id, _ in members],
                [member_type for _, member_type in members],
            )
    assert row is not None
    return row


async def get(pool: Pool, schema: str, group_id: uuid.UUID) -> GroupRow | None:
    return await pool.fetchrow(
        f"SELECT {RESOURCE_COLUMNS} FROM {quoted_schema(schema)}.groups WHERE id = $1", group_id
    )


async def members_of(
    pool: Pool, schema: str, group_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[Member]]:
    """Members of several groups in one query, each with its display name."""
    qualified = quoted_schema(schema)
    rows = await pool.fetch(
        "SELECT m.group_id, m.member_id, m.member_type, "
        "coalesce(u.display_name, u.user_name, g.display_name) AS display "
        f"FROM {qualified}.group_members m "
        f"LEFT JOIN {qualified}.users u ON m.member_type = 'User' AND u.id = m.member_id "
        f"LEFT JOIN {qualified}.groups g ON m.member_type = 'Group' AND g.id = m.member_id "
        "WHERE m.group_id = ANY($1::uuid[]) ORDER BY m.group_id, m.member_id",
        group_ids,
    )
    members: dict[uuid.UUID, list[Member]] = defaultdict(list)
    for row in rows:
        members[row["group_id"]].append(
            Member(id=row["member_id"], type=row["member_type"], display=row["display"])
        )
    return members


async def page(pool: Pool, schema: str, *, offset: int, limit: int) -> tuple[int, list[GroupRow]]:
    return await paging.page(pool, f"{quoted_schema(schema)}.groups", offset=offset, limit=limit)


async def delete(pool: Pool, schema: str, group_id: uuid.UUID) -> bool:
    """Delete the group, its memberships, and its own membership in other groups."""
    qualified = quoted_schema(schema)
    async with pool.acquire() as conn, conn.transaction():
        deleted = await conn.fetchval(
            f"DELETE FROM {qualified}.groups WHERE id = $1 RETURNING id", group_id
        )
        if deleted is None:
            return False
        await remove_member_everywhere(conn, qualified, group_id)
    return True


async def remove_member_everywhere(conn: Connection, qualified: str, member_id: uuid.UUID) -> None:
    """Take a deleted user or group out of every group, bumping those groups' versions."""
    await conn.execute(
        f"WITH removed AS (DELETE FROM {qualified}.group_members WHERE member_id = $1 "
        "RETURNING group_id) "
        f"UPDATE {qualified}.groups SET version = version + 1, last_modified = now() "
        "WHERE id IN (SELECT group_id FROM removed)",
        member_id,
    )
