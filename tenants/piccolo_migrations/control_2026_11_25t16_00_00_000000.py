"""Control plane: spare tenant schemas, made ahead of onboarding (`tenants.spares`)."""

from tenants.sql_migration import sql_migration

ID = "2026-11-25T16:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "spare_schemas"

# One row per spare: its schema is `t_<id>` (`tenants.schemas.schema_name_for`), built
# at `schema_version`, and belongs to no tenant until onboarding takes it.
FORWARDS = """
CREATE TABLE scim_control.spare_schemas (
    id uuid PRIMARY KEY,
    schema_version integer NOT NULL,
    made_at timestamptz NOT NULL DEFAULT now()
);
"""

BACKWARDS = """
DROP TABLE scim_control.spare_schemas;
"""


forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
