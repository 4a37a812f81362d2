"""Control plane: each tenant's provisioning policy and attribute mapping."""

from tenants.sql_migration import sql_migration

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

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
