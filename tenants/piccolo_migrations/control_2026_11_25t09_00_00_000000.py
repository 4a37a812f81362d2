"""Control plane: a generation of each tenant's roles, for member changes in one statement."""

from tenants.sql_migration import sql_migration

ID = "2026-11-25T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "role_mappings.generation, roles_generation()"

# A mapped tenant's member change computes its users' roles in the statement that
# changes the members (`service.roles.settling`). That statement's snapshot is taken
# before it waits for the tenant's roles lock, so a write holding the lock
# exclusively (which changes what every write computes roles from: nesting, a
# granting group's name, the mapping) may commit unseen. Every such write bumps
# `generation` under the lock; the statement compares the generation its snapshot
# shows with the one `roles_generation()` reads once the lock is held: a VOLATILE
# function reads with a snapshot of its own, taken when it runs.
FORWARDS = """
ALTER TABLE scim_control.role_mappings ADD COLUMN generation bigint NOT NULL DEFAULT 0;

CREATE FUNCTION scim_control.roles_generation(tenant uuid) RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT m.generation FROM scim_control.role_mappings m WHERE m.tenant = $1
$$;
"""

BACKWARDS = """
DROP FUNCTION scim_control.roles_generation(uuid);
ALTER TABLE scim_control.role_mappings DROP COLUMN generation;
"""


forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
