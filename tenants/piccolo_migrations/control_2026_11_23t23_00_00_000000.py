"""Control plane: which users of a tenant have held events, read afresh mid-statement."""

from tenants.sql_migration import sql_migration

ID = "2026-11-23T23:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "held_users(): a tenant's users with held events, in a snapshot of its own"

# A member PATCH while a tenant's deprovisioning guard is tripped changes the
# members and holds the events of those with held events in one statement,
# after sharing the guard row (`service.guard.appending_members`). The
# statement's own snapshot predates its wait for that lock, so it would miss
# the events a deprovision it waited for held. In READ COMMITTED a VOLATILE
# function takes a new snapshot for each query it runs: called once the lock
# is granted, this one sees them. Dynamic SQL, as every tenant has its own
# `held_events`; a function in the tenant schemas would be one more name
# every tenant repeats (see control migration 2026-11-23T12:00).
FORWARDS = """
CREATE FUNCTION scim_control.held_users(tenant_schema text, ids uuid[]) RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT DISTINCT user_id FROM %I.held_events WHERE user_id = ANY($1)', tenant_schema
    ) USING ids;
END
$$;
"""

BACKWARDS = """
DROP FUNCTION scim_control.held_users(text, uuid[]);
"""


forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
