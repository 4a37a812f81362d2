"""Spare tenant schemas (`tenants.spares`): onboarding takes one, the keeper makes
them again, and a spare is a new tenant's schema in every respect."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from litestar import Litestar

from service.postgres import Pool
from service.settings import Settings
from tenants import spares
from tenants.migrations import LATEST_VERSION
from tenants.schemas import quoted_schema, schema_name_for
from tenants.spares import SpareKeeper
from tests.integration.test_observability import scrape
from tests.support.application import Client, admin_headers, make_tenant, schema_of
from tests.support.schemas import schema_shape


@pytest.fixture
async def quiet_keeper(app: Litestar, client: Client, db: Pool) -> AsyncIterator[None]:
    """The serving process's keeper stopped, so a test's own `keep` calls are the only ones;
    started again after (it brings the pool back to the setting)."""
    keeper: SpareKeeper = app.state.spare_keeper
    client.blocking_portal.call(keeper.stop)
    # Stopped while keeping, it ended its session: the server lets the lock go
    # once that backend has exited.
    deadline = time.monotonic() + 10
    while await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = $1)",
        spares.KEEPER_LOCK_KEY,
    ):
        assert time.monotonic() < deadline, "the stopped keeper's lock was never released"
        await asyncio.sleep(0.02)
    yield
    client.blocking_portal.call(keeper.start)


async def spare_ids(db: Pool) -> set[uuid.UUID]:
    rows = await db.fetch(
        "SELECT id FROM scim_control.spare_schemas WHERE schema_version = $1", LATEST_VERSION
    )
    return {row["id"] for row in rows}


async def schema_exists(db: Pool, schema: str) -> bool:
    exists: bool = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema
    )
    return exists


async def until_spares(db: Pool, wanted: int) -> set[uuid.UUID]:
    deadline = time.monotonic() + 30
    while len(ids := await spare_ids(db)) != wanted:
        assert time.monotonic() < deadline, f"{len(ids)} spares, never {wanted}"
        await asyncio.sleep(0.05)
    return ids


async def create(client: Client, slug: str) -> uuid.UUID:
    made = await client.post(
        "/admin/v1/tenants", json={"slug": slug, "name": slug}, headers=admin_headers()
    )
    assert made.status_code == 201, made.text
    return uuid.UUID(made.json()["id"])


async def test_onboarding_takes_a_spare_and_the_keeper_makes_another(
    db: Pool, client: Client, settings: Settings
) -> None:
    assert settings.spare_schemas > 0
    before = await until_spares(db, settings.spare_schemas)
    tenant = await make_tenant(client)
    schema = await schema_of(db, tenant.slug)
    taken = uuid.UUID(schema.removeprefix("t_"))
    assert taken in before
    assert taken not in await spare_ids(db)
    # The tenant's schema is the spare's, and works as any tenant's.
    user = await tenant.create_user("ada@example.com", displayName="Ada")
    found = await client.get(
        f"{tenant.scim}/Users",
        params={"filter": 'userName eq "ada@example.com"'},
        headers=tenant.auth(),
    )
    assert found.json()["Resources"][0]["id"] == user["id"]
    after = await until_spares(db, settings.spare_schemas)
    assert after - before, "the keeper made no new spare"


async def test_a_spare_is_the_schema_a_new_tenant_would_get(
    db: Pool, client: Client, quiet_keeper: None
) -> None:
    await spares.keep(db, 1)
    [spare] = await spare_ids(db)
    await spares.keep(db, 0)
    assert not await schema_exists(db, schema_name_for(spare))
    made_fresh = await create(client, f"fresh-{uuid.uuid4().hex[:8]}")
    await spares.keep(db, 1)
    [spare] = await spare_ids(db)
    assert made_fresh != spare
    fresh, built_ahead = schema_name_for(made_fresh), schema_name_for(spare)
    assert await schema_exists(db, fresh)
    assert await schema_shape(db, built_ahead) == await schema_shape(db, fresh)
    assert (await schema_shape(db, built_ahead))["triggers"]


async def test_a_refused_onboarding_leaves_its_spare(
    db: Pool, client: Client, quiet_keeper: None
) -> None:
    await spares.keep(db, 2)
    slug = f"twice-{uuid.uuid4().hex[:8]}"
    first = await create(client, slug)
    left = await spare_ids(db)
    assert len(left) == 1
    assert first not in left
    again = await client.post(
        "/admin/v1/tenants", json={"slug": slug, "name": "x"}, headers=admin_headers()
    )
    assert again.status_code == 409
    assert await spare_ids(db) == left
    [spare] = left
    assert await schema_exists(db, schema_name_for(spare))
    count: int = await db.fetchval("SELECT count(*) FROM scim_control.tenants WHERE id = $1", spare)
    assert count == 0


async def test_onboardings_at_once_take_different_spares_and_then_make_their_own(
    db: Pool, client: Client, quiet_keeper: None
) -> None:
    await spares.keep(db, 3)
    ready = await spare_ids(db)
    prefix = uuid.uuid4().hex[:8]
    made = await asyncio.gather(*(create(client, f"{prefix}-{n}") for n in range(5)))
    assert len(set(made)) == 5
    assert len(set(made) & ready) == 3
    assert not await spare_ids(db)
    for tenant_id in made:
        assert await schema_exists(db, schema_name_for(tenant_id))


async def test_keep_drops_older_versions_and_extras_and_leaves_a_newer_releases(
    db: Pool, quiet_keeper: None
) -> None:
    await spares.keep(db, 0)
    older, newer = uuid.uuid4(), uuid.uuid4()
    for spare, version in ((older, LATEST_VERSION - 1), (newer, LATEST_VERSION + 1)):
        # What another release left: its schema (empty here) and its row.
        await db.execute(f"CREATE SCHEMA {quoted_schema(schema_name_for(spare))}")
        await db.execute(
            "INSERT INTO scim_control.spare_schemas (id, schema_version) VALUES ($1, $2)",
            spare,
            version,
        )
    try:
        async with db.acquire() as conn, conn.transaction():
            assert await spares.take(conn) is None  # neither is this release's
        assert await spares.keep(db, 3) == (3, 1)
        assert not await schema_exists(db, schema_name_for(older))
        assert await schema_exists(db, schema_name_for(newer))
        three = await spare_ids(db)
        assert len(three) == 3
        assert await spares.keep(db, 1) == (0, 2)
        [kept] = await spare_ids(db)
        assert kept in three
        for gone in three - {kept}:
            assert not await schema_exists(db, schema_name_for(gone))
        assert await spares.keep(db, 1) == (0, 0)
    finally:
        await db.execute("DELETE FROM scim_control.spare_schemas WHERE id = $1", newer)
        await db.execute(f"DROP SCHEMA IF EXISTS {quoted_schema(schema_name_for(newer))}")


async def test_two_keepers_at_once_make_the_pool_once(db: Pool, quiet_keeper: None) -> None:
    await spares.keep(db, 0)
    first, second = await asyncio.gather(spares.keep(db, 3), spares.keep(db, 3))
    # One of the two kept it; the other found it being kept and returned.
    assert sorted([first, second]) == [(0, 0), (3, 0)]
    assert len(await spare_ids(db)) == 3


async def test_without_spares_onboarding_makes_the_schema_itself(
    db: Pool, client: Client, quiet_keeper: None
) -> None:
    await spares.keep(db, 0)
    tenant = await make_tenant(client)
    assert not await spare_ids(db)
    await tenant.create_user("grace@example.com")


async def onboardings(client: Client) -> dict[str, float]:
    """`scim_tenant_onboardings_total` by its `schema` label, as `/metrics` serves it."""
    family = (await scrape(client))["scim_tenant_onboardings"]
    return {
        sample.labels["schema"]: sample.value
        for sample in family.samples
        if sample.name == "scim_tenant_onboardings_total"
    }


async def test_onboardings_are_counted_by_whether_a_spare_was_ready(
    db: Pool, client: Client, quiet_keeper: None
) -> None:
    before = await onboardings(client)
    await spares.keep(db, 1)
    for _ in range(2):  # the first takes the spare; the second finds none
        await create(client, f"counted-{uuid.uuid4().hex[:8]}")
    after = await onboardings(client)
    assert after["spare"] == before.get("spare", 0) + 1
    assert after["built"] == before.get("built", 0) + 1
