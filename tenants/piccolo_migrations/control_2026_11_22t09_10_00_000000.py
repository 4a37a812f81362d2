"""Control plane: each tenant's provisioning policy and attribute mapping."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-22T09:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "provisioning policies: linking, deprovisioning, attribute mapping"

# A tenant without a row has the default policy; the checks keep a row that
# the API did not write (a hand-edited one) from meaning something undefined.
FORWARDS = """
CREATE TABLE scim_control.provisioning_policies (
    tenant uuid PRIMARY KEY REFERENCES scim_control.tenants (id) ON DELETE CASCADE,
    link_mode varchar(16) NOT NULL DEFAULT 'link' CHECK (link_mode IN ('link', 'refuse')),
    match_order text[] NOT NULL DEFAULT '{externalId,userName,email}'
        CHECK (match_order <@ '{externalId,userName,email}'::text[]),
    deprovision_mode varchar(16) NOT NULL DEFAULT 'soft_delete'
        CHECK (deprovision_mode IN ('deactivate', 'soft_delete', 'hard_delete')),
    retention_days integer NOT NULL DEFAULT 30 CHECK (retention_days BETWEEN 0 AND 3650),
    attribute_mapping jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""

BACKWARDS = "DROP TABLE scim_control.provisioning_policies;"


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
