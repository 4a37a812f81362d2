"""Control-plane tables, in the `scim_control` Postgres schema.

Tenants' own data (users, groups, memberships) lives in one schema per tenant;
see `tenants.migrations`. Secrets never reach these tables: tokens are kept as
a SHA-256 hash and a short display prefix.
"""

from __future__ import annotations

from piccolo.columns import (
    JSONB,
    UUID,
    Array,
    BigInt,
    Boolean,
    Bytea,
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


class ProvisioningPolicy(Table, tablename="provisioning_policies", schema=CONTROL_SCHEMA):
    """How a tenant links existing users, deprovisions, and maps attributes to profiles."""

    tenant = ForeignKey(references=Tenant, on_delete=OnDelete.cascade, primary_key=True)
    link_mode = Varchar(length=16, default="link")
    match_order = Array(base_column=Text(), default=["externalId", "userName", "email"])
    deprovision_mode = Varchar(length=16, default="soft_delete")
    retention_days = Integer(default=30)
    attribute_mapping = JSONB(default={})
    updated_at = Timestamptz(default=TimestamptzNow())


class RateLimit(Table, tablename="rate_limits", schema=CONTROL_SCHEMA):
    """A tenant's rate-limit override; NULL columns fall back to the service defaults."""

    tenant = ForeignKey(references=Tenant, on_delete=OnDelete.cascade, primary_key=True)
    per_second = Integer(null=True, default=None)
    burst = Integer(null=True, default=None)
    concurrency = Integer(null=True, default=None)
    updated_at = Timestamptz(default=TimestamptzNow())


class WebhookEndpoint(Table, tablename="webhook_endpoints", schema=CONTROL_SCHEMA):
    """Where events are delivered; no tenant means every tenant's events.

    The signing secrets are sealed (`service.webhooks.signing`), never plain text.
    """

    id = UUID(primary_key=True)
    tenant = ForeignKey(references=Tenant, on_delete=OnDelete.cascade, null=True)
    url = Text()
    event_types = Array(base_column=Text(), null=True, default=None)
    secret = Bytea()
    previous_secret = Bytea(null=True, default=None)
    previous_secret_expires_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class WebhookStream(Table, tablename="webhook_streams", schema=CONTROL_SCHEMA):
    """One endpoint's view of one tenant's outbox: a cursor and a delivery lease."""

    id = UUID(primary_key=True)
    endpoint = ForeignKey(references=WebhookEndpoint, on_delete=OnDelete.cascade)
    tenant = ForeignKey(references=Tenant, on_delete=OnDelete.cascade)
    last_sequence = BigInt()
    lease_owner = UUID(null=True, default=None)
    lease_until = Timestamptz(null=True, default=None)
    retry_at = Timestamptz(null=True, default=None)


class WebhookDelivery(Table, tablename="webhook_deliveries", schema=CONTROL_SCHEMA):
    id = UUID(primary_key=True)
    endpoint = UUID()
    tenant = UUID()
    sequence = BigInt()
    event_id = UUID()
    event_type = Text()
    body = JSONB()
    status = Varchar(length=16, default="pending")
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(default=TimestamptzNow())
    last_error = Text(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    finished_at = Timestamptz(null=True, default=None)


class WebhookAttempt(Table, tablename="webhook_attempts", schema=CONTROL_SCHEMA):
    id = BigInt(primary_key=True)
    delivery = ForeignKey(references=WebhookDelivery, on_delete=OnDelete.cascade)
    endpoint = ForeignKey(references=WebhookEndpoint, on_delete=OnDelete.cascade)
    attempted_at = Timestamptz(default=TimestamptzNow())
    status_code = Integer(null=True, default=None)
    latency_ms = Integer()
    error = Text(null=True, default=None)


class RoleMapping(Table, tablename="role_mappings", schema=CONTROL_SCHEMA):
    """A tenant's default roles and group-to-role rules (`service.roles`)."""

    tenant = ForeignKey(references=Tenant, on_delete=OnDelete.cascade, primary_key=True)
    default_roles = Array(base_column=Text(), default=[])
    group_rules = JSONB(default=[])
    updated_at = Timestamptz(default=TimestamptzNow())
    generation = BigInt(default=0)
    """Bumped by every write under the exclusive roles lock (`role_mappings.bumping`)."""


class DeprovisionGuard(Table, tablename="deprovision_guards", schema=CONTROL_SCHEMA):
    """A tenant's mass-deprovisioning guard: settings (NULL: default) and state.

    See `service.guard`.
    """

    tenant = ForeignKey(references=Tenant, on_delete=OnDelete.cascade, primary_key=True)
    enabled = Boolean(null=True, default=None)
    threshold_percent = Integer(null=True, default=None)
    window_seconds = Integer(null=True, default=None)
    min_users = Integer(null=True, default=None)
    window_started_at = Timestamptz(null=True, default=None)
    window_users = Integer(default=0)
    window_deprovisions = Integer(default=0)
    tripped_at = Timestamptz(null=True, default=None)
    updated_at = Timestamptz(default=TimestamptzNow())


class Chore(Table, tablename="chores", schema=CONTROL_SCHEMA):
    """When a deployment-wide periodic chore (a retention purge, the webhook sweep) is
    next due, and the worker that holds it, if it is held.

    See `service.chores`.
    """

    name = Text(primary_key=True)
    next_at = Timestamptz()
    holder = UUID(null=True, default=None)


TENANT_TABLES = (Tenant, Token, TenantSettings, ProvisioningPolicy, RateLimit)
