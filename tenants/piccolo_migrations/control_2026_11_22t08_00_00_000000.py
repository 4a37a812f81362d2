"""Control plane, first version: tenants, their tokens and their settings."""

from tenants.sql_migration import sql_migration

ID = "2026-11-22T08:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "tenants, tokens, tenant settings"

FORWARDS = """
CREATE SCHEMA IF NOT EXISTS scim_control;

CREATE TABLE scim_control.tenants (
    id uuid PRIMARY KEY,
    slug varchar(63) NOT NULL UNIQUE
        CHECK (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$'),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status varchar(16) NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    idp_type varchar(16) NOT NULL DEFAULT 'generic'
        CHECK (idp_type IN ('generic', 'entra', 'okta', 'onelogin', 'google', 'jumpcloud')),
    schema_name varchar(63) NOT NULL UNIQUE CHECK (schema_name ~ '^t_[0-9a-f]{32}$'),
    schema_version integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE scim_control.tokens (
    id uuid PRIMARY KEY,
    tenant uuid NOT NULL REFERENCES scim_control.tenants (id) ON DELETE CASCADE,
    name text NOT NULL DEFAULT '',
    display_prefix varchar(32) NOT NULL,
    secret_hash varchar(64) NOT NULL UNIQUE CHECK (secret_hash ~ '^[0-9a-f]{64}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz,
    replaced_by uuid
);
CREATE INDEX tokens_tenant_idx ON scim_control.tokens (tenant);

CREATE TABLE scim_control.tenant_settings (
    id uuid PRIMARY KEY,
    tenant uuid NOT NULL UNIQUE REFERENCES scim_control.tenants (id) ON DELETE CASCADE,
    token_rotation_grace_seconds integer CHECK (token_rotation_grace_seconds >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""

BACKWARDS = "DROP SCHEMA scim_control CASCADE;"

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
