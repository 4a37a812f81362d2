"""Control plane: group-to-role mappings and the mass-deprovisioning guard of each tenant."""

from tenants.sql_migration import sql_migration

ID = "2026-11-22T09:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "role mappings, deprovisioning guards"

# A tenant without a role_mappings row has no roles at all, and the SCIM write
# path then computes none. `group_rules` is a list of
# {"match": "displayName"|"externalId", "value": ..., "roles": [...]}.
#
# deprovision_guards holds each tenant's guard settings (NULL: the default)
# and its state: the current counting window and, while `tripped_at` is set,
# the fact that deprovisioning events are being held.
FORWARDS = """
CREATE TABLE scim_control.role_mappings (
    tenant uuid PRIMARY KEY REFERENCES scim_control.tenants (id) ON DELETE CASCADE,
    default_roles text[] NOT NULL DEFAULT '{}',
    group_rules jsonb NOT NULL DEFAULT '[]',
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE scim_control.deprovision_guards (
    tenant uuid PRIMARY KEY REFERENCES scim_control.tenants (id) ON DELETE CASCADE,
    enabled boolean,
    threshold_percent integer CHECK (threshold_percent BETWEEN 1 AND 100),
    window_seconds integer CHECK (window_seconds > 0),
    min_users integer CHECK (min_users >= 0),
    window_started_at timestamptz,
    window_users integer NOT NULL DEFAULT 0,
    window_deprovisions integer NOT NULL DEFAULT 0,
    tripped_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""

BACKWARDS = """
DROP TABLE scim_control.deprovision_guards;
DROP TABLE scim_control.role_mappings;
"""


forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
