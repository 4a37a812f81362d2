"""Control-plane migrations written as SQL and run by Piccolo.

Each migration file under `piccolo_migrations/` keeps its `ID`, `VERSION`,
`DESCRIPTION` and SQL, as Piccolo expects, and gets its `forwards` from
`sql_migration`. SQL rather than Piccolo's auto-generated operations, so that
constraints the ORM cannot express (checks, partial indexes) are part of the
schema from day one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder


async def _execute(sql: str) -> None:
    # Piccolo runs each migration inside a transaction; using its connection
    # keeps the DDL and Piccolo's record of the migration atomic.
    engine = engine_finder()
    assert engine is not None
    transaction = engine.current_transaction.get()
    assert transaction is not None
    await transaction.connection.execute(sql)


def sql_migration(
    migration_id: str, description: str, forwards_sql: str, backwards_sql: str
) -> Callable[[], Awaitable[MigrationManager]]:
    """The `forwards` coroutine Piccolo calls for one SQL migration."""

    async def forwards() -> MigrationManager:
        manager = MigrationManager(
            migration_id=migration_id, app_name="control", description=description
        )

        async def run() -> None:
            await _execute(forwards_sql)

        async def run_backwards() -> None:
            await _execute(backwards_sql)

        manager.add_raw(run)
        manager.add_raw_backwards(run_backwards)
        return manager

    return forwards
