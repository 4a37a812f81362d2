"""Opening the control plane: Piccolo's engine, the shared pool, control migrations."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from typing import Any

from service.postgres import Pool, create_pool

# Piccolo looks its engine up through this module; set before any table is used.
os.environ.setdefault("PICCOLO_CONF", "tenants.piccolo_conf")

from piccolo.engine.postgres import PostgresEngine

log = logging.getLogger(__name__)
# Piccolo announces the server version at INFO each time an engine is built.
logging.getLogger("piccolo").setLevel(logging.WARNING)

# Any constant works; it only has to be the same in every process.
_MIGRATION_LOCK_KEY = 0x5C1A_C0DE


_engine: PostgresEngine | None = None


def engine() -> PostgresEngine:
    """The control plane's Piccolo engine; `open_pool` must have run."""
    if _engine is None:
        raise RuntimeError("the control plane is not open: call tenants.control.open_pool first")
    return _engine


async def open_pool(dsn: str, *, min_size: int, max_size: int, **options: Any) -> Pool:
    """Create the one pool of the process and hand it to Piccolo as well.

    The control plane (through Piccolo) and the tenant data (through asyncpg)
    share it, so the pool size set by the operator is the real bound.
    ``options`` go to asyncpg (the server passes its traced connection class).
    """
    global _engine  # noqa: PLW0603 - Piccolo's tables find their engine through module state
    pool = await create_pool(dsn, min_size=min_size, max_size=max_size, **options)
    if _engine is None:
        _engine = PostgresEngine(config={"dsn": dsn})
    _engine.config = {"dsn": dsn}
    _engine.pool = pool
    return pool


async def close_pool(pool: Pool) -> None:
    if _engine is not None and _engine.pool is pool:
        _engine.pool = None
    await pool.close()


async def migrate_control_plane(pool: Pool) -> None:
    """Apply the control plane's Piccolo migrations, one process at a time."""
    # Imported here: Piccolo's migration machinery (black, rich, ...) weighs some
    # 30 MB that a serving process, which never migrates, would carry for nothing.
    from piccolo.apps.migrations.commands.forwards import run_forwards

    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_KEY)
        try:
            # Piccolo reports progress with print(); keep it out of our output.
            chatter = io.StringIO()
            with contextlib.redirect_stdout(chatter):
                result = await run_forwards("control")
            log.debug("control plane migrations: %s", chatter.getvalue().strip())
            if not result.success:
                raise RuntimeError(f"control plane migration failed: {result.message}")
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_KEY)
