"""Users of one tenant."""

from __future__ import annotations

import uuid

import asyncpg

from service.postgres import Pool
from service.scim.errors import ScimError
from service.scim.resources import UserDraft
from service.store import groups, paging
from service.store.paging import RESOURCE_COLUMNS
from tenants.schemas import quoted_schema

UserRow = asyncpg.Record


async def create(pool: Pool, schema: str, draft: UserDraft) -> UserRow:
    try:
        row = await pool.fetchrow(
            f"INSERT INTO {quoted_schema(schema)}.users "
            "(id, user_name, external_id, display_name, active, resource) "
            f"VALUES ($1, $2, $3, $4, $5, $6) RETURNING {RESOURCE_COLUMNS}",
            uuid.uuid4(),
            draft.user_name,
            draft.external_id,
            draft.display_name,
            draft.active,
            draft.attributes,
        )
    except asyncpg.UniqueViolationError as exc:
        raise ScimError(
            409, f"a user with userName {draft.user_name!r} already exists", "uniqueness"
        ) from exc
    assert row is not None
    return row


async def get(pool: Pool, schema: str, user_id: uuid.UUID) -> UserRow | None:
    return await pool.fetchrow(
        f"SELECT {RESOURCE_COLUMNS} FROM {quoted_schema(schema)}.users WHERE id = $1", user_id
    )


async def page(pool: Pool, schema: str, *, offset: int, limit: int) -> tuple[int, list[UserRow]]:
    return await paging.page(pool, f"{quoted_schema(schema)}.users", offset=offset, limit=limit)


async def delete(pool: Pool, schema: str, user_id: uuid.UUID) -> bool:
    """Delete the user and its memberships, together or not at all."""
    qualified = quoted_schema(schema)
    async with pool.acquire() as conn, conn.transaction():
        deleted = await conn.fetchval(
            f"DELETE FROM {qualified}.users WHERE id = $1 RETURNING id", user_id
        )
        if deleted is None:
            return False
        await groups.remove_member_everywhere(conn, qualified, user_id)
    return True
