"""The retention purges: one process of the deployment runs each per period, and it opens
every tenant's tables on a connection it closes afterwards."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest

from service import chores
from service.postgres import Pool, create_pool
from service.request_log.masking import Masker
from service.request_log.recorder import RequestLog, purge_expired
from service.settings import Settings
from service.store.request_log import PurgeReport
from service.webhooks.worker import WebhookWorker
from tests.support.application import TenantHandle
from tests.support.claims import ClaimAsks

pytestmark = pytest.mark.usefixtures("no_chore_claimed")


async def test_of_concurrent_claims_one_wins_per_period(db: Pool) -> None:
    async def claims() -> list[bool]:
        return list(await asyncio.gather(*(chores.claim(db, "test", 0.5) for _ in range(8))))

    assert sorted(await claims()) == [False] * 7 + [True]
    assert await claims() == [False] * 8
    await asyncio.sleep(0.6)
    assert sorted(await claims()) == [False] * 7 + [True]


async def test_a_held_chore_stays_with_its_holder_while_it_keeps_time(db: Pool) -> None:
    # A 2 s period gives the claim after the first sleep 0.8 s of slack on a loaded
    # machine (0.4 s with 1 s, which a stalled test process could overrun).
    first, second = uuid.uuid4(), uuid.uuid4()
    assert await chores.claim(db, "held", 2.0, holder=first)
    await asyncio.sleep(2.2)  # due, but not half a period overdue
    assert not await chores.claim(db, "held", 2.0, holder=second)
    assert await chores.claim(db, "held", 2.0, holder=first)
    await asyncio.sleep(3.6)  # the holder missed its turn by more than half a period
    assert await chores.claim(db, "held", 2.0, holder=second)
    assert not await chores.claim(db, "held", 2.0, holder=first)


class CountingWorker(WebhookWorker):
    """A worker that counts the purges it would run, and runs none (as `CountingLog`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.purges = 0
        self.ticked = asyncio.Event()

    async def purge(self) -> None:
        self.purges += 1

    async def tick(self) -> None:
        await super().tick()
        self.ticked.set()


async def test_of_two_webhook_workers_one_purges_the_events(
    settings: Settings, migrated_database: str
) -> None:
    pool = await create_pool(migrated_database, min_size=1, max_size=4)
    workers = [CountingWorker(pool, settings, None, dsn=migrated_database) for _ in range(2)]
    try:
        for worker in workers:
            await worker.start()  # each purges at its first round, when the chore is due
        await asyncio.wait_for(asyncio.gather(*(w.ticked.wait() for w in workers)), 10)
    finally:
        for worker in workers:
            await worker.stop()
        await pool.close()
    assert sum(w.purges for w in workers) == 1


class CountingLog(RequestLog):
    """A log that counts the purges it would run, and runs none: a purge visits every
    tenant of the test database, hundreds by the end of a run, which would set the
    pace of a test about which log purges when."""

    def __init__(self, purge_seconds: float) -> None:
        super().__init__(Masker(()), purge_seconds=purge_seconds)
        self.purges = 0

    async def purge(self) -> PurgeReport:
        self.purges += 1
        return PurgeReport()


async def test_of_two_request_logs_one_purges_per_period(
    migrated_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The two logs ask every 0.4 s. Only their asks count: the session's application
    # claims its own chores meanwhile.
    pools = [await create_pool(migrated_database, min_size=1, max_size=2) for _ in range(2)]
    asks = ClaimAsks(monkeypatch, lambda pool, _: pool in pools, askers=2, times=2)
    logs = [CountingLog(purge_seconds=0.4), CountingLog(purge_seconds=0.4)]
    try:
        for log, pool in zip(logs, pools, strict=True):
            await log.start(pool)
        await asyncio.wait_for(asks.enough.wait(), 30)
    finally:
        for log in logs:
            await log.stop()
        for pool in pools:
            await pool.close()
    most, every = asks.bounds()
    assert 1 <= sum(log.purges for log in logs) <= most < every


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
