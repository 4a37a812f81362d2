"""Spare tenant schemas, made ahead so that onboarding a tenant runs no DDL.

A tenant's schema is some forty statements making nearly sixty relations, each
one or more files: 20 ms where the disk creates files quickly, 80 ms and more
where it does not (this project's benchmark machine, some days: about 1 ms a
file). A spare is a schema made exactly as a new tenant's (`new_schema_script`),
named for an id no tenant has yet; onboarding takes one and gives the tenant the
spare's id, so the schema is already named for it (`schema_name_for`). A spare
is never renamed: the events trigger's function names its schema in its body.

Spares are made at the running release's `LATEST_VERSION`, and onboarding takes
only spares of that version; a newer release's keeper drops older ones (they
hold no data). Without a spare, onboarding makes the schema itself, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Final

from observability.attributes import SCHEMA_BUILT, SCHEMA_SPARE
from service.background import cancel_all
from service.postgres import Connection, Pool
from tenants.migrations import LATEST_VERSION, new_schema_script
from tenants.schemas import quoted_schema, schema_name_for

log = logging.getLogger(__name__)

CHECK_SECONDS: Final = 60.0
"""How often a keeper looks at the pool without being asked: spares another process
(the CLI, another worker) took are made again at most this long after."""

KEEPER_LOCK_KEY: Final = 0x5C1A_5BA8
"""The advisory lock a process keeps the pool under (any constant the same in every process)."""


async def take(conn: Connection) -> uuid.UUID | None:
    """Take a spare of this release's version, in the caller's transaction.

    The caller's tenant gets the returned id; if its transaction rolls back the
    spare stays. Spares another transaction is taking are skipped, not waited for.
    """
    taken: uuid.UUID | None = await conn.fetchval(
        "DELETE FROM scim_control.spare_schemas WHERE id = ("
        " SELECT id FROM scim_control.spare_schemas WHERE schema_version = $1"
        " ORDER BY made_at LIMIT 1 FOR UPDATE SKIP LOCKED"
        ") RETURNING id",
        LATEST_VERSION,
    )
    return taken


async def count(db: Connection | Pool) -> int:
    """Spares of this release's version (``db``: a pool or a connection)."""
    spares: int = await db.fetchval(
        "SELECT count(*) FROM scim_control.spare_schemas WHERE schema_version = $1",
        LATEST_VERSION,
    )
    return spares


async def keep(pool: Pool, wanted: int) -> tuple[int, int]:
    """Bring the pool to ``wanted`` spares of this release's version, dropping
    older-version spares and any beyond ``wanted``; returns (made, dropped).

    One process keeps the pool at a time; another keeping it already makes this
    call return (0, 0) at once.
    """
    async with pool.acquire() as conn:
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", KEEPER_LOCK_KEY):
                return 0, 0
            dropped = await _drop_unwanted(conn, wanted)
            made = 0
            while await count(conn) < wanted:
                await _make(conn)
                made += 1
            await conn.execute("SELECT pg_advisory_unlock($1)", KEEPER_LOCK_KEY)
        except BaseException:
            # Cancelled (the keeper stopping) or failed in the middle of a statement
            # (the lock's own included), the session may hold the lock and not take
            # the unlock, and the pool does not reset sessions (`service.postgres`):
            # ending the session releases the lock and rolls back.
            conn.terminate()
            raise
        return made, dropped


async def _make(conn: Connection) -> None:
    spare = uuid.uuid4()
    async with conn.transaction():
        await conn.execute(new_schema_script(schema_name_for(spare)))
        await conn.execute(
            "INSERT INTO scim_control.spare_schemas (id, schema_version) VALUES ($1, $2)",
            spare,
            LATEST_VERSION,
        )


async def _drop_unwanted(conn: Connection, wanted: int) -> int:
    # Spares of a newer release are left to it.
    async with conn.transaction():
        unwanted = await conn.fetch(
            "DELETE FROM scim_control.spare_schemas WHERE id IN ("
            " SELECT id FROM scim_control.spare_schemas"
            " WHERE schema_version < $1 OR id IN ("
            "  SELECT id FROM scim_control.spare_schemas WHERE schema_version = $1"
            "  ORDER BY made_at OFFSET $2"
            " ) FOR UPDATE SKIP LOCKED"
            ") RETURNING id",
            LATEST_VERSION,
            wanted,
        )
        for row in unwanted:
            await conn.execute(f"DROP SCHEMA {quoted_schema(schema_name_for(row['id']))} CASCADE")
    return len(unwanted)


class SpareKeeper:
    """Keeps a serving process's share of the pool: at start, after each spare this
    process took (`onboarded`), and every `CHECK_SECONDS`; counts its onboardings."""

    def __init__(self, pool: Pool, wanted: int) -> None:
        self._pool = pool
        self._wanted = wanted
        self._asked = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.onboardings = {SCHEMA_SPARE: 0, SCHEMA_BUILT: 0}
        """This process's onboardings, by whether a spare was ready (the metric's label)."""

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._run(), name="spare-schemas"))

    def onboarded(self, spare: bool) -> None:
        """A tenant was onboarded here, on a spare schema (one to make again) or not."""
        self.onboardings[SCHEMA_SPARE if spare else SCHEMA_BUILT] += 1
        if spare:
            self._asked.set()

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks.clear()

    async def _run(self) -> None:
        while True:
            self._asked.clear()
            try:
                made, dropped = await keep(self._pool, self._wanted)
            except Exception:
                # A database that went away: the next round tries again, and
                # onboarding meanwhile makes its schema itself.
                log.exception("could not keep the spare tenant schemas")
            else:
                if made or dropped:
                    log.debug("spare tenant schemas: %d made, %d dropped", made, dropped)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._asked.wait(), CHECK_SECONDS)
