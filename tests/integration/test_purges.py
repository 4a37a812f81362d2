"""The retention purges open every tenant's tables, on a connection they close afterwards."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.postgres import create_pool
from service.request_log.recorder import purge_expired
from service.settings import Settings
from service.webhooks.worker import WebhookWorker
from tests.integration.conftest import TenantHandle


@pytest.mark.parametrize("purge", ["requests", "events"])
async def test_a_purge_closes_the_connection_it_ran_on(
    purge: str, settings: Settings, migrated_database: str, tenant: TenantHandle
) -> None:
    # A backend keeps the catalog entries of every table it opened for as long as it
    # lives: left in the pool, the purging one would carry every tenant's from then on.
    del tenant  # one tenant at least, for the purge to visit
    pool = await create_pool(migrated_database, min_size=1, max_size=1)
    try:
        before = await pool.fetchval("SELECT pg_backend_pid()")
        if purge == "requests":
            await purge_expired(pool, timedelta(days=14))
        else:
            await WebhookWorker(pool, settings, None, dsn=migrated_database).purge()
        after = await pool.fetchval("SELECT pg_backend_pid()")
    finally:
        await pool.close()
    assert after != before
