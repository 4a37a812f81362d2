"""Control plane: users' email addresses computed without planning a query per write."""

from tenants.piccolo_migrations import control_2026_11_23t12_00_00_000000 as first_definition
from tenants.sql_migration import sql_migration

ID = "2026-11-24T20:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "user_email_values(): a PL/pgSQL loop, not a SQL function"

# Every insert and update of a user computes its stored `email_values` column
# (tenant migration 11) with this function. As a SQL function with a FROM
# clause it cannot be inlined, so PostgreSQL set up and ran a query for it in
# every statement that wrote a user: 50-80 us of a single-row update's 75-105
# us. A PL/pgSQL loop over the array evaluates each expression directly: 25 us.
# It returns exactly what the SQL function did (the addresses lower-cased, in
# array order, skipping elements without a value; none when `emails` is not an
# array), so the values stored and indexed stay valid without recomputing them.
FORWARDS = """
CREATE OR REPLACE FUNCTION scim_control.user_email_values(resource jsonb) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    emails jsonb := resource -> 'emails';
    found text[] := '{}';
    address text;
BEGIN
    IF jsonb_typeof(emails) IS DISTINCT FROM 'array' THEN
        RETURN found;
    END IF;
    FOR i IN 0 .. jsonb_array_length(emails) - 1 LOOP
        address := emails -> i ->> 'value';
        IF address IS NOT NULL THEN
            found := found || lower(address);
        END IF;
    END LOOP;
    RETURN found;
END
$$;
"""

# Back to the SQL function, as the migration that created it defined it.
BACKWARDS = first_definition.FORWARDS.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
