"""Control plane: the webhook worker's sweep asks which tenants have events to fan out."""

from tenants.sql_migration import sql_migration

ID = "2026-11-23T06:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "webhook_backlog(): tenants whose streams are behind their events"

# The worker's periodic sweep catches events whose NOTIFY was lost (a listener
# that dropped, a process that died between its commit and its NOTIFY). It
# used to fan out every tenant with an endpoint, a transaction of three
# statements and a row lock per tenant, in every worker every minute: with a
# global endpoint and 2,000 idle tenants, 0.14 of a core doing nothing. This
# reads each tenant's event counter in one call instead and names only the
# tenants with something to copy: a cursor behind the counter, or an endpoint
# without a stream yet while the tenant has events. A tenant dropped while the
# loop runs is skipped. (One whose undelivered events were purged by retention
# before any worker copied them stays listed: its fan-out finds nothing to copy.)
FORWARDS = """
CREATE FUNCTION scim_control.webhook_backlog(outbox_version integer)
RETURNS TABLE (tenant uuid, schema_name text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    t record;
    latest bigint;
BEGIN
    FOR t IN
        SELECT c.id, c.schema_name, s.delivered, coalesce(s.streams, 0) AS streams,
               (SELECT count(*) FROM scim_control.webhook_endpoints e
                WHERE e.tenant = c.id OR e.tenant IS NULL) AS endpoints
        FROM scim_control.tenants c
        LEFT JOIN (SELECT w.tenant, min(w.last_sequence) AS delivered, count(*) AS streams
                   FROM scim_control.webhook_streams w GROUP BY w.tenant) s ON s.tenant = c.id
        WHERE c.schema_version >= outbox_version
    LOOP
        CONTINUE WHEN t.endpoints = 0;
        BEGIN
            EXECUTE format('SELECT last FROM %I.event_sequence', t.schema_name) INTO latest;
        EXCEPTION WHEN undefined_table OR invalid_schema_name THEN
            CONTINUE;
        END;
        IF latest > coalesce(t.delivered, 0) OR (t.streams < t.endpoints AND latest > 0) THEN
            tenant := t.id;
            schema_name := t.schema_name;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;
"""

BACKWARDS = """
DROP FUNCTION scim_control.webhook_backlog(integer);
"""


forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
