"""Control plane: webhook endpoints, their per-tenant streams, deliveries and attempts."""

from tenants.sql_migration import sql_migration

ID = "2026-11-22T09:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "webhook endpoints, streams, deliveries, attempts"

# An endpoint with no tenant receives every tenant's events. A stream is one
# (endpoint, tenant) pair: its cursor into the tenant's outbox and the lease a
# worker holds while it delivers, so two workers never deliver the same
# stream at once. A delivery keeps its own copy of the event, so the outbox
# retention purge never loses an event that is still to be delivered.
FORWARDS = """
CREATE TABLE scim_control.webhook_endpoints (
    id uuid PRIMARY KEY,
    tenant uuid REFERENCES scim_control.tenants (id) ON DELETE CASCADE,
    url text NOT NULL CHECK (url ~ '^https?://'),
    event_types text[],
    secret bytea NOT NULL,
    previous_secret bytea,
    previous_secret_expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant_idx ON scim_control.webhook_endpoints (tenant);

CREATE TABLE scim_control.webhook_streams (
    id uuid PRIMARY KEY,
    endpoint uuid NOT NULL REFERENCES scim_control.webhook_endpoints (id) ON DELETE CASCADE,
    tenant uuid NOT NULL REFERENCES scim_control.tenants (id) ON DELETE CASCADE,
    last_sequence bigint NOT NULL,
    lease_owner uuid,
    lease_until timestamptz,
    -- Set while the oldest pending delivery waits for its next retry: until
    -- then the whole stream waits, which keeps deliveries in sequence order.
    retry_at timestamptz,
    UNIQUE (endpoint, tenant)
);
CREATE INDEX webhook_streams_tenant_idx ON scim_control.webhook_streams (tenant);

CREATE TABLE scim_control.webhook_deliveries (
    id uuid PRIMARY KEY,
    endpoint uuid NOT NULL,
    tenant uuid NOT NULL,
    sequence bigint NOT NULL,
    event_id uuid NOT NULL,
    event_type text NOT NULL,
    body jsonb NOT NULL,
    status varchar(16) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    UNIQUE (endpoint, tenant, sequence),
    FOREIGN KEY (endpoint, tenant)
        REFERENCES scim_control.webhook_streams (endpoint, tenant) ON DELETE CASCADE
);
-- The head of each stream: its oldest pending delivery.
CREATE INDEX webhook_deliveries_pending_idx ON scim_control.webhook_deliveries
    (endpoint, tenant, sequence) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_finished_idx ON scim_control.webhook_deliveries (finished_at)
    WHERE finished_at IS NOT NULL;

CREATE TABLE scim_control.webhook_attempts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery uuid NOT NULL REFERENCES scim_control.webhook_deliveries (id) ON DELETE CASCADE,
    endpoint uuid NOT NULL REFERENCES scim_control.webhook_endpoints (id) ON DELETE CASCADE,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    status_code integer,
    latency_ms integer NOT NULL,
    error text
);
CREATE INDEX webhook_attempts_endpoint_idx ON scim_control.webhook_attempts (endpoint, id);
CREATE INDEX webhook_attempts_delivery_idx ON scim_control.webhook_attempts (delivery);
"""

BACKWARDS = """
DROP TABLE scim_control.webhook_attempts;
DROP TABLE scim_control.webhook_deliveries;
DROP TABLE scim_control.webhook_streams;
DROP TABLE scim_control.webhook_endpoints;
"""

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
