"""Control plane: the function every tenant's email index is built on, shared."""

from tenants.sql_migration import sql_migration

ID = "2026-11-23T12:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "user_email_values(): one function for every tenant's email index"

# PostgreSQL finds a function named in SQL by listing every function of that
# name in the database, whatever its schema, and keeps the list only until
# any function is created or dropped. Each tenant schema had its own
# `email_values`, and every new tenant creates functions: at 10,000 tenants,
# each statement naming `<tenant>.email_values` after a tenant was created
# read 10,000 catalog rows again (5 ms, against 0.25 ms for a name only one
# function has), twice per tenant created. One function shared by all
# tenants, under a name of its own, is found in one row. Tenant migration 10
# rebuilds each tenant's email index on it.
FORWARDS = """
CREATE FUNCTION scim_control.user_email_values(resource jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(lower(e ->> 'value')), '{}')
    FROM jsonb_array_elements(
        CASE WHEN jsonb_typeof(resource -> 'emails') = 'array'
        THEN resource -> 'emails' ELSE '[]'::jsonb END
    ) AS e
    WHERE e ->> 'value' IS NOT NULL
$$;
"""

BACKWARDS = """
DROP FUNCTION scim_control.user_email_values(jsonb);
"""


forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
