"""Control-plane tables, in the `scim_control` Postgres schema.

Tenants' own data (users, groups, memberships) lives in one schema per tenant;
see `tenants.migrations`. Secrets never reach these tables: tokens are kept as
a SHA-256 hash and a short display prefix.
"""

from __future__ import annotations

from piccolo.columns import (
    UUID,
    ForeignKey,
    Integer,
    OnDelete,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

CONTROL_SCHEMA = "scim_control"


class Tenant(Table, tablename="tenants", schema=CONTROL_SCHEMA):
    id = UUID(primary_key=True)
    slug = Varchar(length=63, unique=True)
    name = Text()
    status = Varchar(length=16, default="enabled")
    idp_type = Varchar(length=16, default="generic")
    schema_name = Varchar(length=63, unique=True)
    schema_version = Integer(default=0)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class Token(Table, tablename="tokens", schema=CONTROL_SCHEMA):
    id = UUID(primary_key=True)
    tenant = ForeignKey(references=Tenant, on_delete=OnDelete.cascade)
    name = Text(default="")
    display_prefix = Varchar(length=32)
    secret_hash = Varchar(length=64, unique=True)
    created_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)
    last_used_at = Timestamptz(null=True, default=None)
    replaced_by = UUID(null=True, default=None)


class TenantSettings(Table, tablename="tenant_settings", schema=CONTROL_SCHEMA):
    id = UUID(primary_key=True)
    tenant = ForeignKey(references=Tenant, on_delete=OnDelete.cascade, unique=True)
    token_rotation_grace_seconds = Integer(null=True, default=None)
    updated_at = Timestamptz(default=TimestamptzNow())


TENANT_TABLES = (Tenant, Token, TenantSettings)
