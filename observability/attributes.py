"""Every attribute, metric and label name the service emits, in one place.

Span attributes follow the stable OpenTelemetry semantic conventions for HTTP
and databases; `scim.*` names are ours. Dashboards, alert rules and tests
refer to these names, so they change here or nowhere.
"""

from __future__ import annotations

from typing import Final

# Stable HTTP server semantic conventions.
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_ROUTE: Final = "http.route"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
URL_PATH: Final = "url.path"
URL_SCHEME: Final = "url.scheme"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
USER_AGENT_ORIGINAL: Final = "user_agent.original"
ERROR_TYPE: Final = "error.type"

# Database client semantic conventions.
DB_SYSTEM_NAME: Final = "db.system.name"
DB_NAMESPACE: Final = "db.namespace"
DB_OPERATION_NAME: Final = "db.operation.name"
DB_QUERY_SUMMARY: Final = "db.query.summary"
DB_SYSTEM_POSTGRESQL: Final = "postgresql"

# What SCIM adds to a request span.
SCIM_TENANT_ID: Final = "scim.tenant.id"
SCIM_TENANT_SLUG: Final = "scim.tenant.slug"
SCIM_RESOURCE_TYPE: Final = "scim.resource_type"
SCIM_OPERATION: Final = "scim.operation"
SCIM_CLIENT: Final = "scim.client"
SCIM_PATCH_OPERATIONS: Final = "scim.patch.operations"
SCIM_RESULT_COUNT: Final = "scim.list.result_count"
SCIM_TOTAL_RESULTS: Final = "scim.list.total_results"
SCIM_ERROR_TYPE: Final = "scim.error.type"

SCIM_OPERATIONS: Final = ("create", "replace", "patch", "delete", "get", "list", "search", "bulk")

# Metric instruments (OpenTelemetry names; Prometheus sees dots as underscores,
# counters with `_total`, and the unit as a suffix: `scim_request_duration_seconds`).
HTTP_SERVER_REQUEST_DURATION: Final = "http.server.request.duration"
SCIM_REQUESTS: Final = "scim.requests"
SCIM_REQUEST_DURATION: Final = "scim.request.duration"
SCIM_PROVISIONING_OPERATIONS: Final = "scim.provisioning.operations"
SCIM_ACTIVE_TENANTS: Final = "scim.tenants.active"
SCIM_USER_CHANGES: Final = "scim.user_changes"
SCIM_WRITE_DEADLOCKS: Final = "scim.write_deadlocks"
SCIM_RATE_LIMIT_STORAGE_FAILURES: Final = "scim.rate_limit.storage_failures"
SCIM_TENANT_ONBOARDINGS: Final = "scim.tenant.onboardings"
DB_CLIENT_CONNECTION_COUNT: Final = "db.client.connection.count"
DB_CLIENT_CONNECTION_MAX: Final = "db.client.connection.max"

# Metric labels. Short names: they are typed into PromQL all day.
LABEL_TENANT: Final = "tenant"
LABEL_RESOURCE_TYPE: Final = "resource_type"
LABEL_OPERATION: Final = "operation"
LABEL_STATUS_CODE: Final = "status_code"
LABEL_STATUS_CLASS: Final = "status_class"
LABEL_ACTION: Final = "action"
LABEL_FOUND: Final = "found"
LABEL_SCHEMA: Final = "schema"
DB_CLIENT_CONNECTION_STATE: Final = "db.client.connection.state"
DB_CLIENT_CONNECTION_POOL_NAME: Final = "db.client.connection.pool.name"

# What provisioning reports per resource, as the `action` label.
ACTION_CREATED: Final = "created"
ACTION_UPDATED: Final = "updated"
ACTION_DEACTIVATED: Final = "deactivated"
ACTION_REACTIVATED: Final = "reactivated"
ACTION_DELETED: Final = "deleted"

# How a user's PATCH or PUT found its user (`service.recent_users`), as the `found` label.
FOUND_SEEN: Final = "seen"
"""As this process last saw it: changed by the statement that reads it."""
FOUND_STALE: Final = "stale"
"""Seen, but it or the tenant's state changed since: changed by a second statement."""
FOUND_READ: Final = "read"
"""Not seen (or not a change to try as seen): read, then changed by a second statement."""

# How an onboarding got its tenant's schema (`tenants.spares`), as the `schema` label.
SCHEMA_SPARE: Final = "spare"
"""A spare schema made ahead: no DDL on the onboarding's path."""
SCHEMA_BUILT: Final = "built"
"""None was ready: the onboarding ran the schema's DDL itself."""

# The tenant label of every tenant that does not get its own (see observability.tenants).
OTHER_TENANT: Final = "other"
