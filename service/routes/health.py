"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

import asyncpg
from litestar import Response, get
from litestar.datastructures import State

from service.postgres import Pool

_READY_TIMEOUT_SECONDS = 2.0


@get("/healthz", sync_to_thread=False, include_in_schema=False)
def healthz() -> dict[str, str]:
    """The process is up and serving HTTP."""
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readyz(state: State) -> Response[dict[str, str]]:
    """The database answers: safe to route traffic here."""
    pool: Pool = state.pool
    try:
        await asyncio.wait_for(pool.fetchval("SELECT 1"), _READY_TIMEOUT_SECONDS)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return Response({"status": "unavailable", "detail": type(exc).__name__}, status_code=503)
    return Response({"status": "ok"})
