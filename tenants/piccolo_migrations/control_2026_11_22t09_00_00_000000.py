"""Control plane: per-tenant rate-limit overrides."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-22T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "per-tenant rate limits"

# A row exists only for a tenant with an override; a NULL column means "the
# service default" (SCIM_RATE_LIMIT_*), so changing a default reaches every
# tenant that did not choose its own value.
FORWARDS = """
CREATE TABLE scim_control.rate_limits (
    tenant uuid PRIMARY KEY REFERENCES scim_control.tenants (id) ON DELETE CASCADE,
    per_second integer CHECK (per_second BETWEEN 1 AND 10000),
    burst integer CHECK (burst BETWEEN 1 AND 10000),
    concurrency integer CHECK (concurrency BETWEEN 1 AND 1000),
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""

BACKWARDS = "DROP TABLE scim_control.rate_limits;"


async def _execute(sql: str) -> None:
    # Piccolo runs each migration inside a transaction; using its connection
    # keeps the DDL and Piccolo's record of the migration atomic.
    engine = engine_finder()
    assert engine is not None
    transaction = engine.current_transaction.get()
    assert transaction is not None
    await transaction.connection.execute(sql)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="control", description=DESCRIPTION)

    async def run() -> None:
        await _execute(FORWARDS)

    async def run_backwards() -> None:
        await _execute(BACKWARDS)

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
