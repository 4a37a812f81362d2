"""The filters IdPs send to look resources up are answered from indexes, not scans."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from service import provisioning
from service.postgres import Connection, Pool, create_pool
from service.scim.filter import parse_filter
from service.scim.projection import parse_projection
from service.store.filters import SqlBuilder, compile_filter
from service.store.groups import groups_column, members_of, members_query
from service.store.lifecycle import claim_probe
from service.store.paging import ListQuery
from service.store.resources import GROUPS, USERS, Table, email_values, page_statements
from tenants.schemas import quoted_schema
from tests.integration.test_events import announced_scope, patch_body
from tests.support.application import TenantHandle, schema_of
from tests.support.scans import read_whole


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


async def add_groups(conn: Connection, qualified: str, count: int) -> None:
    """``count`` groups named `group 1` to `group <count>`, with no members."""
    await conn.execute(
        f"INSERT INTO {qualified}.groups (id, resource, display_name) "
        "SELECT gen_random_uuid(), '{}', 'group ' || g FROM generate_series(1, $1::int) g",
        count,
    )


async def add_strangers(conn: Connection, qualified: str, each: int, which: str = "") -> None:
    """``each`` members with made-up ids in every group `g` that ``which`` (SQL after the
    `FROM`: a condition) selects: memberships that only give the planner a tenant's size."""
    await conn.execute(
        f"INSERT INTO {qualified}.group_members (group_id, member_id, member_type) "
        f"SELECT g.id, gen_random_uuid(), 'User' FROM {qualified}.groups g, "
        f"generate_series(1, $1::int) {which}",
        each,
    )


async def join_groups(conn: Connection, qualified: str, user: uuid.UUID, which: str) -> None:
    """Make ``user`` a direct member of the groups `g` that ``which`` (SQL after the
    `FROM`: a condition, a limit) selects."""
    await conn.execute(
        f"INSERT INTO {qualified}.group_members (group_id, member_id, member_type) "
        f"SELECT g.id, $1, 'User' FROM {qualified}.groups g {which}",
        user,
    )


async def users_groups_plan(
    conn: Connection, qualified: str, user: uuid.UUID
) -> tuple[str, list[Any]]:
    """The plan of a rendered user's groups, once the tables are analyzed, and the groups."""
    await conn.execute(f"ANALYZE {qualified}.groups, {qualified}.group_members")
    explained = "\n".join(
        row[0]
        for row in await conn.fetch(f"EXPLAIN SELECT {groups_column(qualified, '$1::uuid')}", user)
    )
    found = await conn.fetchval(f"SELECT {groups_column(qualified, '$1::uuid')}", user)
    return explained, found


@pytest.mark.parametrize(
    ("table", "filter_text", "index"),
    [
        (USERS, 'userName eq "Alice@Example.com"', "users_user_name_key"),
        (USERS, 'externalId eq "00aa-11bb"', "users_external_id_idx"),
        (USERS, 'id eq "3f2504e0-4f89-11d3-9a0c-0305e82c3301"', "users_pkey"),
        (USERS, 'displayName eq "Alice"', "users_display_name_idx"),
        (USERS, 'emails.value eq "alice@example.com"', "users_email_values_idx"),
        (USERS, 'emails[type eq "work" and value eq "a@example.com"]', "users_email_values_idx"),
        # The users beneath the group, from its memberships down: not each user's climbed.
        (USERS, 'groups.value eq "3f2504e0-4f89-11d3-9a0c-0305e82c3301"', "group_members_pkey"),
        (USERS, 'groups.display eq "Engineering"', "groups_display_name_idx"),
        (USERS, 'groups[display eq "Engineering" and type eq "direct"]', "group_members_pkey"),
        (GROUPS, 'displayName eq "Engineering"', "groups_display_name_idx"),
        (GROUPS, 'externalId eq "g-1"', "groups_external_id_idx"),
    ],
)
async def test_idp_lookups_use_an_index(
    db: Pool, tenant: TenantHandle, table: Table, filter_text: str, index: str
) -> None:
    schema = await schema_of(db, tenant.slug)
    explained = await plan(db, table, schema, filter_text)
    assert index in explained, explained


async def test_a_users_groups_climb_nested_groups_through_an_index(
    db: Pool, tenant: TenantHandle
) -> None:
    """Rendering a user's groups probes memberships by index, however many a tenant has.

    The climb from a group to its parent groups once made the planner scan every
    membership of the tenant for each rendered user.
    """
    schema = await schema_of(db, tenant.slug)
    qualified = quoted_schema(schema)
    user = uuid.uuid4()
    async with db.acquire() as conn, conn.transaction():
        await add_groups(conn, qualified, 30)
        await add_strangers(conn, qualified, 100)
        await join_groups(conn, qualified, user, "LIMIT 3")
        explained, found = await users_groups_plan(conn, qualified, user)
    assert "Seq Scan on group_members" not in explained, explained
    assert "group_members_nested_idx" in explained, explained
    assert len(found) == 3


async def test_a_users_groups_are_read_by_key_however_many_the_tenant_has(
    db: Pool, tenant: TenantHandle
) -> None:
    """Every rendered user reads the groups it is in: with a few thousand groups in the
    tenant the planner hashed them all for each user, unless each is read by its key."""
    schema = await schema_of(db, tenant.slug)
    qualified = quoted_schema(schema)
    user = uuid.uuid4()
    async with db.acquire() as conn, conn.transaction():
        await add_groups(conn, qualified, 3000)
        names = "'group 7', 'group 2999', 'group 12', 'group 400', 'group 5'"
        await join_groups(conn, qualified, user, f"WHERE g.display_name IN ({names})")
        explained, found = await users_groups_plan(conn, qualified, user)
    assert "Seq Scan on groups" not in explained, explained
    assert "groups_pkey" in explained, explained
    assert [(display, direct) for _, display, direct in found] == [
        ("group 12", True),
        ("group 2999", True),
        ("group 400", True),
        ("group 5", True),
        ("group 7", True),
    ]


async def test_a_groups_members_are_named_without_reading_every_group(
    db: Pool, tenant: TenantHandle
) -> None:
    """A rendered group names its members: a member group's name read by a join made the
    planner hash every group of a tenant of some thousands for each group rendered."""
    schema = await schema_of(db, tenant.slug)
    qualified = quoted_schema(schema)
    team, nested = uuid.uuid4(), uuid.uuid4()
    user = uuid.UUID((await tenant.create_user("member@example.com"))["id"])
    async with db.acquire() as conn, conn.transaction():
        await add_groups(conn, qualified, 3000)
        await conn.execute(
            f"INSERT INTO {qualified}.groups (id, resource, display_name) "
            "VALUES ($1, '{}', 'Team'), ($2, '{}', 'Nested')",
            team,
            nested,
        )
        await conn.execute(
            f"INSERT INTO {qualified}.group_members (group_id, member_id, member_type) "
            "VALUES ($1, $2, 'User'), ($1, $3, 'Group')",
            team,
            user,
            nested,
        )
        # Groups of twenty members on average: the planner expects as many for any group.
        await add_strangers(conn, qualified, 20, "WHERE g.display_name LIKE 'group %'")
        await conn.execute(f"ANALYZE {qualified}.groups, {qualified}.group_members")
        explained = "\n".join(
            row[0]
            for row in await conn.fetch(
                f"EXPLAIN {members_query(qualified, 'm.group_id = $1::uuid')}", team
            )
        )
        found = await members_of(conn, schema, [team])
    assert "Seq Scan on groups" not in explained, explained
    assert sorted((m.type, m.display) for m in found[team]) == [
        ("Group", "Nested"),
        ("User", "member@example.com"),
    ]


@pytest.mark.parametrize("analyzed", [True, False], ids=["analyzed", "young"])
async def test_the_claim_probe_of_every_create_reads_the_hidden_users_index(
    db: Pool, tenant: TenantHandle, analyzed: bool
) -> None:
    """Whether a hidden user matches a POSTed one is asked on every IdP create: it reads
    the index of hidden users, however many visible users the tenant has, in the plan
    for these values and in the generic plan a prepared statement settles on (and each
    key by its own index, only when there are hidden users at all).

    Also in a young tenant, whose users autovacuum has not analyzed yet: without
    statistics PostgreSQL takes half the users for hidden ones, and in the
    generic plan it once scanned them all rather than read the (empty) index."""
    schema = await schema_of(db, tenant.slug)
    qualified = quoted_schema(schema)
    posted = {
        "userName": "Ada@Example.com",
        "externalId": "00aa-11bb",
        "emails": [{"value": "ada@example.com"}],
    }
    probe = claim_probe(schema, posted, first_param=1, emails_sql=email_values())
    assert probe is not None
    condition, arguments = probe
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(
            f"INSERT INTO {qualified}.users (id, resource, user_name, managed, deleted_at) "
            "SELECT gen_random_uuid(), jsonb_build_object('emails', jsonb_build_array("
            "jsonb_build_object('value', 'u' || n || '@example.com'))), 'u' || n, "
            "n > 3, CASE WHEN n = 1 THEN now() END FROM generate_series(1, 3000) n"
        )
        if analyzed:
            await conn.execute(f"ANALYZE {qualified}.users")
        explained = "\n".join(
            row[0] for row in await conn.fetch(f"EXPLAIN SELECT {condition}", *arguments)
        )
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE probe AS SELECT {condition}")
        generic = "\n".join(
            row[0]
            for row in await conn.fetch(
                "EXPLAIN EXECUTE probe('00aa-11bb', 'Ada@Example.com', '{ada@example.com}')"
            )
        )
        await conn.execute("DEALLOCATE probe")
        claims = []
        for user_name in ("U2", "u1", "u4"):  # pre-loaded, soft-deleted, visible
            probed = claim_probe(
                schema, {"userName": user_name}, first_param=1, emails_sql=email_values()
            )
            assert probed is not None
            claims.append(await conn.fetchval(f"SELECT {probed[0]}", *probed[1]))
    for plan_text in (explained, generic):
        assert "users_hidden_idx" in plan_text, plan_text
        assert "Seq Scan" not in plan_text, plan_text
    assert claims == [True, True, False], "hidden users are found by the index, visible are not"


async def test_the_claim_probe_reads_each_keys_index_however_many_users_are_preloaded(
    db: Pool, tenant: TenantHandle
) -> None:
    """Before the customer turns SCIM on, an operator may pre-load every user, and the
    IdP's initial cycle then creates them all: each create's probe asks for its keys'
    matches among the hidden users by index. Asked as the first hidden user by id
    matching any key, PostgreSQL read through all of them (250 ms at 50,000)."""
    schema = await schema_of(db, tenant.slug)
    qualified = quoted_schema(schema)
    await db.execute(
        f"INSERT INTO {qualified}.users (id, resource, user_name, managed) "
        "SELECT gen_random_uuid(), jsonb_build_object('emails', jsonb_build_array("
        "jsonb_build_object('value', 'u' || n || '@example.com'))), 'u' || n, false "
        "FROM generate_series(1, 20000) n"
    )
    await db.execute(f"ANALYZE {qualified}.users")

    async def probe(posted: dict[str, Any]) -> tuple[bool, int]:
        """Whether the probe finds a match, and the buffers it read to answer."""
        probed = claim_probe(schema, posted, first_param=1, emails_sql=email_values())
        assert probed is not None
        condition, arguments = probed
        plan = await db.fetchval(
            f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT {condition}", *arguments
        )
        found = await db.fetchval(f"SELECT {condition}", *arguments)
        top = json.loads(plan)[0]["Plan"]
        return found, top["Shared Hit Blocks"] + top["Shared Read Blocks"]

    newcomer = {
        "userName": "new@example.com",
        "externalId": "x-1",
        "emails": [{"value": "new.hire@example.com"}],
    }
    found, buffers = await probe(newcomer)
    assert not found
    assert buffers < 100, f"{buffers} buffers read for a user matching no one"
    by_email = {"userName": "someone@example.com", "emails": [{"value": "U777@example.com"}]}
    assert (await probe(by_email))[0]
    assert (await probe({"userName": "U19999"}))[0]


async def test_an_unfiltered_page_is_found_in_the_index_of_creation_order_alone(
    db: Pool, tenant: TenantHandle
) -> None:
    """An IdP importing every user asks for them page after page, unfiltered: the
    page's ids and the total come from the index, which knows which users are
    visible, and only the page's own rows are read (with their documents)."""
    schema = await schema_of(db, tenant.slug)
    qualified = quoted_schema(schema)
    await db.execute(
        f"INSERT INTO {qualified}.users (id, resource, user_name, managed) "
        "SELECT gen_random_uuid(), '{}', 'u' || n, n % 10 > 0 FROM generate_series(1, 2000) n"
    )
    await db.execute(f"VACUUM ANALYZE {qualified}.users")
    query = ListQuery(offset=1000, limit=100)
    statements = page_statements(USERS, schema, query)
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        explained = "\n".join(
            row[0] for row in await conn.fetch(f"EXPLAIN {statements.rows}", *statements.params)
        )
        rows = await conn.fetch(statements.rows, *statements.params)
    assert "Index Only Scan using users_created_idx" in explained, explained
    assert len(rows) == 100
    assert rows[0]["total"] == 1800  # every tenth user pre-loaded, so not counted
    assert [row["created"] for row in rows] == sorted(row["created"] for row in rows)


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of an `EXPLAIN (FORMAT JSON)` plan, depth first."""
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


async def _explained(
    db: Pool, schema: str, query: ListQuery
) -> tuple[list[Any], list[dict[str, Any]]]:
    """A page's rows, and the nodes of its plan that count its matches (window counts)."""
    statements = page_statements(USERS, schema, query)
    explained = await db.fetchval(f"EXPLAIN (FORMAT JSON) {statements.rows}", *statements.params)
    nodes = _nodes(json.loads(explained)[0]["Plan"])
    counting = [node for node in nodes if node["Node Type"] == "WindowAgg"]
    return await db.fetch(statements.rows, *statements.params), counting


async def test_a_broad_filters_page_counts_its_matches_by_id_and_reads_the_page_alone(
    db: Pool, tenant: TenantHandle
) -> None:
    """A filter that may match most of a tenant (`active eq true`) counts its matches
    as it finds them, carrying each match's id, not its document, to the page, whose
    rows alone are read whole: carried whole, 100,000 matches took 160-170 ms a page,
    by id 45-47 ms. A lookup (`userName eq`) carries its one match whole: a join
    back to the table would cost it an index probe more."""
    schema = await schema_of(db, tenant.slug)
    qualified = quoted_schema(schema)
    await db.execute(
        f"INSERT INTO {qualified}.users (id, resource, user_name, active) "
        "SELECT gen_random_uuid(), jsonb_build_object('userName', 'u' || n, 'active', n % 4 > 0, "
        "'title', repeat('x', 400)), 'u' || n, n % 4 > 0 FROM generate_series(1, 2000) n"
    )
    await db.execute(f"VACUUM ANALYZE {qualified}.users")
    broad = ListQuery(filter=parse_filter("active eq true"), offset=1000, limit=100)
    rows, counting = await _explained(db, schema, broad)
    [width] = [node["Plan Width"] for node in counting]
    assert width < 64, f"the count carries whole rows ({width} bytes each)"
    assert len(rows) == 100
    assert rows[0]["total"] == 1500
    assert [row["created"] for row in rows] == sorted(row["created"] for row in rows)
    assert all(row["resource"]["active"] for row in rows)
    assert len(rows[0]["resource"]["title"]) == 400
    lookup = ListQuery(filter=parse_filter('userName eq "u7"'))
    rows, counting = await _explained(db, schema, lookup)
    assert [row["resource"]["userName"] for row in rows] == ["u7"]
    assert [node["Plan Width"] > 64 for node in counting] == [True]


async def _fill_large_tenant(conn: Connection, qualified: str) -> None:
    """20,000 users, 3,000 groups, each user in two, every twentieth group holding the next."""
    await conn.execute(
        f"INSERT INTO {qualified}.users (id, resource, user_name, external_id, display_name) "
        "SELECT gen_random_uuid(), jsonb_build_object('userName', 'bulk' || n || '@x.example', "
        "'emails', jsonb_build_array(jsonb_build_object('value', 'bulk' || n || '@x.example')"
        ")), 'bulk' || n || '@x.example', 'ext' || n, 'Bulk ' || n "
        "FROM generate_series(1, 20000) n"
    )
    await add_groups(conn, qualified, 3000)
    await conn.execute(
        f"INSERT INTO {qualified}.group_members (group_id, member_id, member_type) "
        f"SELECT g.id, u.id, 'User' FROM (SELECT id, row_number() OVER () AS n "
        f"FROM {qualified}.users) u JOIN (SELECT id, row_number() OVER () AS n "
        f"FROM {qualified}.groups) g ON g.n IN (u.n % 3000 + 1, (u.n * 7) % 3000 + 1)"
    )
    await conn.execute(
        f"INSERT INTO {qualified}.group_members (group_id, member_id, member_type) "
        f"SELECT a.id, b.id, 'Group' FROM (SELECT id, row_number() OVER () AS n "
        f"FROM {qualified}.groups) a JOIN (SELECT id, row_number() OVER () AS n "
        f"FROM {qualified}.groups) b ON b.n = a.n + 1 WHERE a.n % 20 = 0"
    )


async def test_the_idps_requests_read_no_table_whole_in_a_large_tenant(
    db: Pool, tenant: TenantHandle, migrated_database: str
) -> None:
    """What IdPs send, on a tenant of 20,000 users and 3,000 groups: no statement reads
    users, groups or memberships whole, so none costs more as a tenant grows. Plans that
    did (a rendered user's groups, a group's member groups, each hashing every group) were
    found by running these paths on such a tenant with every plan logged."""
    schema = await schema_of(db, tenant.slug)
    qualified = quoted_schema(schema)
    # Every statement on the tenant runs on this one connection, which publishes its
    # counts when asked (`read_whole`): another one would publish the setup's reads
    # whole up to seconds later, into the figures measured.
    one = await create_pool(migrated_database, min_size=1, max_size=1)
    tables = ("users", "groups", "group_members")

    def found(table: Table, text: str, excluded: str | None = None) -> Any:
        query = ListQuery(filter=parse_filter(text))
        projection = parse_projection(table.resource_type, None, excluded)
        return provisioning.search(one, table, scope, query, projection)

    try:
        async with one.acquire() as conn, conn.transaction():
            await _fill_large_tenant(conn, qualified)
        await one.execute(
            f"ANALYZE {qualified}.users, {qualified}.groups, {qualified}.group_members"
        )
        known = await one.fetchval(
            f"SELECT id::text FROM {qualified}.users WHERE external_id = 'ext77'"
        )
        a_group = await one.fetchval(
            f"SELECT id::text FROM {qualified}.groups WHERE display_name = 'group 20'"
        )
        scope = await announced_scope(one, tenant)
        # The guard counts a new window's users once, reading them whole (test_guard):
        # disabled, so that the delete below opens no window.
        await one.execute(
            "INSERT INTO scim_control.deprovision_guards (tenant, enabled) VALUES ($1, false)",
            scope.tenant_id,
        )
        before = await read_whole(one, schema, *tables)
        for text in (
            'userName eq "bulk5@x.example"',
            'userName eq "nobody@x.example"',
            'externalId eq "ext9"',
            'emails.value eq "BULK11@x.example"',
            'displayName eq "Bulk 13"',
        ):
            await found(USERS, text)
        await provisioning.get(one, USERS, scope, known)
        user = await provisioning.create(
            one, USERS, scope, {"userName": "new@x.example", "emails": [{"value": "n@x.example"}]}
        )
        title = patch_body({"op": "replace", "path": "title", "value": "Engineer"})
        await provisioning.apply_patch(one, USERS, scope, user["id"], title)
        await provisioning.replace(
            one, USERS, scope, user["id"], {"userName": "new@x.example", "displayName": "New"}
        )
        await found(GROUPS, 'displayName eq "group 7"', excluded="members")
        await found(GROUPS, 'externalId eq "none"')
        await provisioning.get(one, GROUPS, scope, a_group)
        group = await provisioning.create(one, GROUPS, scope, {"displayName": "New group"})
        for change in (
            {"op": "add", "path": "members", "value": [{"value": user["id"]}, {"value": known}]},
            {"op": "remove", "path": f'members[value eq "{known}"]'},
            {"op": "replace", "path": "displayName", "value": "Renamed group"},
        ):
            await provisioning.apply_patch(one, GROUPS, scope, group["id"], patch_body(change))
        await provisioning.delete(one, USERS, scope, user["id"])
        await provisioning.delete(one, GROUPS, scope, group["id"])
        after = await read_whole(one, schema, *tables)
    finally:
        await one.close()
    assert after == before
