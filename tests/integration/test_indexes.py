"""The filters IdPs send to look resources up are answered from indexes, not scans."""

from __future__ import annotations

import pytest

from service.postgres import Pool
from service.scim.filter import parse_filter
from service.store.filters import SqlBuilder, compile_filter
from service.store.resources import GROUPS, USERS, Table
from tests.integration.conftest import TenantHandle


async def plan(db: Pool, table: Table, schema: str, filter_text: str) -> str:
    builder = SqlBuilder()
    where = compile_filter(table.target(schema), parse_filter(filter_text), builder)
    async with db.acquire() as conn, conn.transaction():
        # The tables are tiny, so the planner would rightly scan them; forbidding
        # sequential scans shows whether an index can serve the query at all.
        await conn.execute("SET LOCAL enable_seqscan = off")
        rows = await conn.fetch(
            f"EXPLAIN SELECT r.id FROM {table.qualified(schema)} r WHERE {where}",
            *builder.params,
        )
    return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize(
    ("table", "filter_text", "index"),
    [
        (USERS, 'userName eq "Alice@Example.com"', "users_user_name_key"),
        (USERS, 'externalId eq "00aa-11bb"', "users_external_id_idx"),
        (USERS, 'id eq "3f2504e0-4f89-11d3-9a0c-0305e82c3301"', "users_pkey"),
        (USERS, 'displayName eq "Alice"', "users_display_name_idx"),
        (USERS, 'emails.value eq "alice@example.com"', "users_email_values_idx"),
        (USERS, 'emails[type eq "work" and value eq "a@example.com"]', "users_email_values_idx"),
        (GROUPS, 'displayName eq "Engineering"', "groups_display_name_idx"),
        (GROUPS, 'externalId eq "g-1"', "groups_external_id_idx"),
    ],
)
async def test_idp_lookups_use_an_index(
    db: Pool, tenant: TenantHandle, table: Table, filter_text: str, index: str
) -> None:
    schema = await db.fetchval(
        "SELECT schema_name FROM scim_control.tenants WHERE slug = $1", tenant.slug
    )
    explained = await plan(db, table, schema, filter_text)
    assert index in explained, explained
