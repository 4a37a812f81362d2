"""Tenant shards: a tenant's requests stay on its home shard's connections until it is full."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.pools import Layout, TenantPools, open_tenant_pools
from service.postgres import Pool, create_pool
from service.settings import Settings
from tests.support.application import BASE_URL, TenantHandle, make_tenant, schema_of


@pytest.fixture
async def tenant_pools(migrated_database: str) -> AsyncIterator[TenantPools]:
    shared = await create_pool(migrated_database, min_size=0, max_size=2)
    pools = await open_tenant_pools(migrated_database, shared, Layout.of(12), min_size=0)
    try:
        yield pools
    finally:
        await pools.close()
        await shared.close()


async def test_a_tenant_spills_over_only_when_its_home_shard_is_fully_leased(
    tenant_pools: TenantPools,
) -> None:
    shards = tenant_pools.shards
    assert [pool.get_max_size() for pool in shards] == [5, 5]
    schema = "t_" + "0" * 32
    home = shards[tenant_pools.home(schema)]
    [other] = [pool for pool in shards if pool is not home]
    async with contextlib.AsyncExitStack() as stack:
        leased = [await stack.enter_async_context(tenant_pools.lease(schema)) for _ in range(5)]
        assert all(pool is home for pool in leased)
        # Home is full: the next requests go where there is room, not into home's queue.
        spilled = [await stack.enter_async_context(tenant_pools.lease(schema)) for _ in range(5)]
        assert all(pool is other for pool in spilled)
        # Everything is leased (the rate limiter never admits this many): home again.
        async with tenant_pools.lease(schema) as beyond:
            assert beyond is home
    async with tenant_pools.lease(schema) as again:
        assert again is home


async def test_a_lease_is_given_back_when_the_request_fails(tenant_pools: TenantPools) -> None:
    schema = "t_" + "1" * 32
    home = tenant_pools.shards[tenant_pools.home(schema)]
    for _ in range(10):
        with contextlib.suppress(RuntimeError):
            async with tenant_pools.lease(schema):
                raise RuntimeError("the request failed")
    async with tenant_pools.lease(schema) as pool:
        assert pool is home


async def test_each_tenant_is_served_from_its_own_shard(settings: Settings, db: Pool) -> None:
    app = create_app(dataclasses.replace(settings, db_pool_max=20, db_pool_min=1))
    async with AsyncTestClient(app, base_url=BASE_URL) as client:
        pools: TenantPools = app.state.tenant_pools
        assert len(pools.shards) == 4
        # Two tenants whose schemas hash to different shards.
        first = await make_tenant(client)
        homes = {pools.home(await schema_of(db, first.slug))}
        second: TenantHandle | None = None
        while second is None:
            candidate = await make_tenant(client)
            if pools.home(await schema_of(db, candidate.slug)) not in homes:
                second = candidate
        assert all(pool.get_size() == 0 for pool in pools.shards)  # opened on demand
        for handle in (first, second):
            await handle.create_user(f"someone@{handle.slug}.example")
            for _ in range(3):
                found = await client.get(
                    f"{handle.scim}/Users",
                    params={"filter": 'userName eq "x"'},
                    headers=handle.auth(),
                )
                assert found.status_code == 200
            homes.add(pools.home(await schema_of(db, handle.slug)))
            opened = {i for i, pool in enumerate(pools.shards) if pool.get_size()}
            assert opened == homes
