"""Tenant schema migrations: fan-out over many tenants, idempotence, concurrency, failures."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from service.postgres import Pool
from tenants import notifications
from tenants.migrations import LATEST_VERSION, TENANT_MIGRATIONS, apply_pending, migrate_all
from tenants.piccolo_migrations import control_2026_11_23t12_00_00_000000
from tenants.schemas import quoted_schema, schema_name_for
from tests.support.application import Client, TenantHandle, schema_of, seen_by_the_service
from tests.support.schemas import schema_shape

TENANT_TABLES = {"users", "groups", "group_members"}


async def add_tenant_at_version_zero(db: Pool, slug: str) -> str:
    """A tenant as an older release left it: registered, schema created, no tables yet."""
    tenant_id = uuid.uuid4()
    schema = schema_name_for(tenant_id)
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO scim_control.tenants (id, slug, name, schema_name, schema_version) "
            "VALUES ($1, $2, $3, $4, 0)",
            tenant_id,
            slug,
            slug,
            schema,
        )
        await conn.execute(f"CREATE SCHEMA {quoted_schema(schema)}")
    return schema


async def tables_in(db: Pool, schema: str) -> set[str]:
    rows = await db.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
    )
    return {row["table_name"] for row in rows}


@pytest.fixture
async def old_tenants(db: Pool) -> AsyncIterator[list[str]]:
    prefix = f"old-{uuid.uuid4().hex[:6]}"
    schemas = [await add_tenant_at_version_zero(db, f"{prefix}-{i}") for i in range(12)]
    yield schemas
    async with db.acquire() as conn:
        for schema in schemas:
            await conn.execute(f"DROP SCHEMA IF EXISTS {quoted_schema(schema)} CASCADE")
        await conn.execute("DELETE FROM scim_control.tenants WHERE slug LIKE $1", f"{prefix}-%")


def test_versions_are_consecutive_from_one() -> None:
    assert [m.version for m in TENANT_MIGRATIONS] == list(range(1, LATEST_VERSION + 1))


async def test_migrate_upgrades_every_old_tenant_then_has_nothing_to_do(
    db: Pool, old_tenants: list[str]
) -> None:
    progress: list[tuple[int, int]] = []
    report = await migrate_all(
        db, concurrency=3, progress=lambda done, total: progress.append((done, total))
    )
    assert report.failed == {}
    assert (report.tenants, report.upgraded) == (len(old_tenants), len(old_tenants))
    assert report.steps == len(old_tenants) * LATEST_VERSION
    assert progress[0] == (0, len(old_tenants))
    assert progress[-1] == (len(old_tenants), len(old_tenants))
    for schema in old_tenants:
        assert await tables_in(db, schema) >= TENANT_TABLES
    versions = await db.fetch(
        "SELECT DISTINCT schema_version FROM scim_control.tenants WHERE schema_name = ANY($1)",
        old_tenants,
    )
    assert [row["schema_version"] for row in versions] == [LATEST_VERSION]

    again = await migrate_all(db, concurrency=3)
    assert (again.tenants, again.upgraded, again.steps, again.failed) == (0, 0, 0, {})


async def test_two_migrators_at_once_upgrade_each_tenant_once(
    db: Pool, old_tenants: list[str]
) -> None:
    first, second = await asyncio.gather(
        migrate_all(db, concurrency=4), migrate_all(db, concurrency=4)
    )
    assert first.failed == second.failed == {}
    # Both saw the same backlog, but the row lock let only one apply each step.
    assert first.steps + second.steps == len(old_tenants) * LATEST_VERSION
    for schema in old_tenants:
        assert await tables_in(db, schema) >= TENANT_TABLES


async def test_one_broken_tenant_does_not_stop_the_others(db: Pool, old_tenants: list[str]) -> None:
    broken = old_tenants[0]
    await db.execute(f"DROP SCHEMA {quoted_schema(broken)}")
    report = await migrate_all(db, concurrency=2)
    assert len(report.failed) == 1
    [(slug, error)] = report.failed.items()
    assert "does not exist" in error
    assert report.upgraded == len(old_tenants) - 1
    # The failed tenant's step rolled back: it is still at version 0, not half-migrated.
    version = await db.fetchval(
        "SELECT schema_version FROM scim_control.tenants WHERE slug = $1", slug
    )
    assert version == 0


async def test_a_new_tenant_gets_the_schema_the_migrations_build_step_by_step(
    db: Pool, tenant: TenantHandle, old_tenants: list[str]
) -> None:
    """New tenants are built by one script; existing ones upgrade a step at a time: same result."""
    new = await db.fetchval(
        "SELECT schema_name FROM scim_control.tenants WHERE slug = $1 AND schema_version = $2",
        tenant.slug,
        LATEST_VERSION,
    )
    await migrate_all(db, concurrency=4)
    upgraded = old_tenants[0]
    assert await schema_shape(db, new) == await schema_shape(db, upgraded)
    assert (await schema_shape(db, new))["indexes"]


async def test_each_function_a_tenants_schema_names_is_the_only_one_of_its_name(
    db: Pool, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    """PostgreSQL finds a function named in SQL among every function of that name in the
    database, and reads them all again whenever any function was created since (each
    tenant created creates some). The functions the schema's DDL and our queries name
    (its indexes', its generated columns' and its trigger's) are shared by every tenant
    or named for one."""
    schema = await schema_of(db, tenant.slug)
    named = await db.fetch(
        "WITH used AS ("
        "SELECT d.refobjid AS function FROM pg_depend d JOIN pg_class c ON c.oid = d.objid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE d.classid = 'pg_class'::regclass "
        "AND d.refclassid = 'pg_proc'::regclass AND n.nspname = $1 "
        # A generated column's expression depends on its functions through its default.
        "UNION SELECT d.refobjid FROM pg_depend d JOIN pg_attrdef a ON a.oid = d.objid "
        "JOIN pg_class c ON c.oid = a.adrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE d.classid = 'pg_attrdef'::regclass AND d.refclassid = 'pg_proc'::regclass "
        "AND n.nspname = $1 "
        "UNION SELECT t.tgfoid FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND NOT t.tgisinternal) "
        "SELECT p.proname, (SELECT count(*) FROM pg_proc q WHERE q.proname = p.proname) "
        "AS namesakes FROM used JOIN pg_proc p ON p.oid = used.function",
        schema,
    )
    assert {row["proname"] for row in named} == {"user_email_values", f"number_event_{schema}"}
    assert {row["proname"]: row["namesakes"] for row in named} == {
        row["proname"]: 1 for row in named
    }


async def _back_to(version: int, db: Pool, tenant: TenantHandle, email_index_on: str) -> uuid.UUID:
    """The tenant's schema as at ``version`` (9 or 10), its email index on the expression
    ``email_index_on`` (`{schema}`: the quoted schema), its processes told; its id."""
    schema = await schema_of(db, tenant.slug)
    qualified = quoted_schema(schema)
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(
            f"DROP INDEX {qualified}.users_email_values_idx; "
            f"ALTER TABLE {qualified}.users DROP COLUMN email_values; "
            f"CREATE INDEX users_email_values_idx ON {qualified}.users "
            f"USING gin ({email_index_on.format(schema=qualified)})"
        )
        tenant_id: uuid.UUID = await conn.fetchval(
            "UPDATE scim_control.tenants SET schema_version = $2 WHERE slug = $1 RETURNING id",
            tenant.slug,
            version,
        )
        await notifications.notify_tenant_changed(conn, tenant_id)
    seen_by_the_service(tenant, tenant_id)
    return tenant_id


async def _found_by_email(client: Client, tenant: TenantHandle, address: str) -> list[str]:
    found = await client.get(
        f"{tenant.scim}/Users",
        params={"filter": f'emails.value eq "{address}"'},
        headers=tenant.auth(),
    )
    assert found.status_code == 200, found.text
    return [user["userName"] for user in found.json()["Resources"]]


async def _email_index(db: Pool, schema: str) -> str:
    definition: str = await db.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 "
        "AND indexname = 'users_email_values_idx'",
        schema,
    )
    return definition


async def test_a_tenant_at_version_9_gets_its_email_index_on_the_shared_function(
    db: Pool, client: Client, tenant: TenantHandle
) -> None:
    schema = await schema_of(db, tenant.slug)
    qualified = quoted_schema(schema)
    await tenant.create_user("kept@example.com", emails=[{"value": "Kept@Example.com"}])
    # As releases before step 10 built it: on the tenant's own function.
    tenant_id = await _back_to(9, db, tenant, "{schema}.email_values(resource)")
    assert await _found_by_email(client, tenant, "KEPT@example.com") == ["kept@example.com"]
    report = await migrate_all(db, concurrency=2)
    assert report.failed == {}
    seen_by_the_service(tenant, tenant_id)
    assert "gin (email_values)" in await _email_index(db, schema)
    # Releases before step 10 still call the tenant's own function while they roll out.
    assert await db.fetchval(
        f"SELECT {qualified}.email_values(resource) FROM {qualified}.users"
    ) == ["kept@example.com"]
    assert await _found_by_email(client, tenant, "KEPT@example.com") == ["kept@example.com"]


async def test_a_tenant_at_version_10_gets_its_addresses_stored_and_indexed_without_a_queue(
    db: Pool, client: Client, tenant: TenantHandle
) -> None:
    schema = await schema_of(db, tenant.slug)
    # As step 10 left it: on the shared function over the document, with GIN's default
    # fast update, which queues these users' entries; served at that version meanwhile.
    tenant_id = await _back_to(10, db, tenant, "scim_control.user_email_values(resource)")
    for number in range(3):
        address = f"queued{number}@example.com"
        await tenant.create_user(address, emails=[{"value": address.upper()}])
    assert await _found_by_email(client, tenant, "Queued1@example.com") == ["queued1@example.com"]
    report = await migrate_all(db, concurrency=2)
    assert report.failed == {}
    seen_by_the_service(tenant, tenant_id)
    assert "gin (email_values) WITH (fastupdate=off)" in await _email_index(db, schema)
    stored = await db.fetch(
        f"SELECT user_name, email_values FROM {quoted_schema(schema)}.users ORDER BY user_name"
    )
    assert [(row["user_name"], row["email_values"]) for row in stored] == [
        (f"queued{number}@example.com", [f"queued{number}@example.com"]) for number in range(3)
    ]
    assert await _found_by_email(client, tenant, "Queued1@example.com") == ["queued1@example.com"]
    await tenant.create_user("new@example.com", emails=[{"value": "New@Example.com"}])
    assert await _found_by_email(client, tenant, "new@EXAMPLE.com") == ["new@example.com"]


async def test_no_index_of_users_reads_the_document(db: Pool, tenant: TenantHandle) -> None:
    """PostgreSQL updates a row in place (HOT), adding no index entries, only when no
    column an index reads changed: an index over `resource` would take that from every
    PATCH and PUT, which change the document and rarely anything indexed."""
    schema = await schema_of(db, tenant.slug)
    reading = await db.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 "
        "AND tablename = 'users' AND indexdef ~ '\\mresource\\M'",
        schema,
    )
    assert [tuple(row) for row in reading] == []


_ADDRESS_CASES: list[object] = [
    {"emails": [{"value": "A@Example.COM", "type": "work"}, {"value": "b@example.com"}]},
    {"emails": [{"type": "work"}, {"value": None}, {"value": "Kept@Example.com"}]},
    {"emails": [{"value": 5}, {"value": True}, {"value": {"nested": "X"}}, {"value": ""}]},
    {"emails": ["Bare@Example.com", ["List@Example.com"], None, 7]},
    {"emails": [{"value": "Same@x.example"}, {"value": "SAME@X.EXAMPLE"}]},
    {
        "emails": [
            {"value": "ÉLODIE@Exemple.fr"},
            {"value": "İSTANBUL@x.tr"},
            {"value": "STRAẞE@x.de"},
        ]
    },
    {"emails": []},
    {"emails": {"value": "Object@Example.com"}},
    {"emails": "String@Example.com"},
    {"emails": None},
    {"userName": "no-emails@example.com"},
    None,
]


async def test_the_addresses_function_returns_what_its_first_definition_did(db: Pool) -> None:
    """Tenants' stored and indexed addresses were computed by the function's first
    definition; replacing its body recomputes none of them, so every value must stay
    the same, or filters would miss the users whose stored values differ."""
    first = control_2026_11_23t12_00_00_000000.FORWARDS.replace(
        "scim_control.user_email_values", "pg_temp.first_email_values"
    )
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(first)
        for case in _ADDRESS_CASES:
            both = await conn.fetchrow(
                "SELECT scim_control.user_email_values($1::jsonb) AS now, "
                "pg_temp.first_email_values($1::jsonb) AS first",
                case,
            )
            assert both is not None
            assert both["now"] == both["first"], case
        # Not vacuous: the cases hold addresses, in order, lower-cased, duplicates kept.
        assert await conn.fetchval(
            "SELECT scim_control.user_email_values($1::jsonb)", _ADDRESS_CASES[0]
        ) == ["a@example.com", "b@example.com"]
        await conn.execute("DROP FUNCTION pg_temp.first_email_values(jsonb)")


async def test_each_step_applied_tells_every_process_the_tenant_changed(
    db: Pool, tenant: TenantHandle, migrated_database: str
) -> None:
    """Processes cache a tenant's schema version with it, and filters compile by it."""
    tenant_id = await _back_to(10, db, tenant, "scim_control.user_email_values(resource)")
    heard: list[str] = []
    listener = await asyncpg.connect(migrated_database)
    try:
        await listener.add_listener(
            notifications.CHANNEL, lambda *args: heard.append(str(args[-1]))
        )
        async with db.acquire() as conn:
            assert await apply_pending(conn, tenant_id) == LATEST_VERSION - 10
        await listener.execute("SELECT 1")  # notifications arrive before a later reply
    finally:
        await listener.close()
    assert heard.count(f"tenant:{tenant_id}") == LATEST_VERSION - 10
