"""Control plane: per-tenant rate-limit overrides."""

from tenants.sql_migration import sql_migration

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

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
