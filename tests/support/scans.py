"""How often a tenant's tables were read whole, as PostgreSQL counts it."""

from __future__ import annotations

from service.postgres import Pool


async def read_whole(pool: Pool, schema: str, *tables: str) -> dict[str, int]:
    """The sequential scans of ``tables`` in ``schema`` so far, by table.

    A backend publishes its counts only now and then: ``pool`` (of one connection,
    the one the statements measured ran on) has its own published first, so what
    it ran is in the figures."""
    await pool.execute("SELECT pg_stat_force_next_flush()")
    rows = await pool.fetch(
        "SELECT relname, seq_scan FROM pg_stat_user_tables "
        "WHERE schemaname = $1 AND relname = ANY($2::text[])",
        schema,
        list(tables),
    )
    return {row["relname"]: row["seq_scan"] for row in rows}
