"""Control plane: periodic chores that one process runs for the whole deployment."""

from tenants.sql_migration import sql_migration

ID = "2026-11-23T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "chores: when each deployment-wide chore is next due"

# The retention purges visit every tenant. Each serving process and each worker
# kept its own hourly timer, so a deployment of N processes purged N times an
# hour (and once more at every restart), some 10 s of CPU per run at 10,000
# tenants. A process now claims the chore's row before running it
# (`service.chores.claim`): of all the claims made in a period, one wins. The
# webhook sweep, run every minute by every worker, is claimed the same way and
# kept by its `holder`, whose connection has every tenant's catalog entries warm.
FORWARDS = """
CREATE TABLE scim_control.chores (
    name text PRIMARY KEY,
    next_at timestamptz NOT NULL,
    holder uuid
);
"""

BACKWARDS = """
DROP TABLE scim_control.chores;
"""


forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
