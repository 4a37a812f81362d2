"""What every SCIM endpoint shares: the tenant guard, JSON in, SCIM JSON out, list parameters."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Final

import msgspec
from litestar import Request, Response
from litestar.datastructures import State
from litestar.params import FromPath

from observability import request_context
from service import ratelimit
from service.pools import TenantPools
from service.postgres import Pool
from service.provisioning import Scope
from service.scim.attributes import ResourceType, resolve
from service.scim.clients import detect_client
from service.scim.errors import ScimError, invalid_syntax, invalid_value
from service.scim.filter import Filter, parse_filter, paths_in
from service.scim.projection import Projection, parse_projection
from service.settings import Settings
from service.store.paging import ListQuery
from tenants.auth import AuthenticationFailed, Authenticator, TenantDisabled
from tenants.context import TenantContext

SCIM_MEDIA_TYPE: Final = "application/scim+json"
SEARCH_REQUEST: Final = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
_ACCEPTED_MEDIA_TYPES: Final = frozenset({SCIM_MEDIA_TYPE, "application/json"})
DEFAULT_PAGE_SIZE: Final = 100

AnyRequest = Request[Any, Any, State]


def tenant_pool(state: State, tenant: TenantContext) -> AbstractAsyncContextManager[Pool]:
    """The connection pool serving this request of ``tenant`` (`service.pools`)."""
    pools: TenantPools = state.tenant_pools
    return pools.lease(tenant.schema)


def scim_response(
    body: dict[str, Any] | None, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response[bytes]:
    return Response(
        content=b"" if body is None else msgspec.json.encode(body),
        status_code=status_code,
        media_type=SCIM_MEDIA_TYPE,
        headers=headers,
    )


def error_response(error: ScimError) -> Response[bytes]:
    request_context.note_scim_error(error.scim_type)
    headers = {"WWW-Authenticate": 'Bearer realm="scim"'} if error.status == 401 else None
    return scim_response(error.body(), error.status, headers)


def resource_response(body: dict[str, Any], status_code: int = 200) -> Response[bytes]:
    meta = body.get("meta", {})
    headers = {"ETag": meta["version"]} if "version" in meta else {}
    if status_code == 201:
        headers["Location"] = meta["location"]
    return scim_response(body, status_code, headers)


async def provide_tenant(request: AnyRequest, tenant: FromPath[str]) -> TenantContext:
    authenticator: Authenticator = request.app.state.authenticator
    try:
        context = await authenticator.authenticate(tenant, request.headers.get("authorization"))
    except AuthenticationFailed as exc:
        # Unknown tenant, wrong tenant, revoked, expired or malformed token: one
        # answer for all, so the response tells an attacker nothing.
        raise ScimError(401, "The bearer token is not valid for this Tenant URL.") from exc
    except TenantDisabled as exc:
        raise ScimError(403, "This tenant is disabled; ask the operator to enable it.") from exc
    request_context.note_tenant(context.id, context.slug, context.idp_type)
    # Charged only once the tenant is known: an unauthenticated flood costs no tenant anything.
    await ratelimit.admit(request.scope, request.app.state.rate_limiter, context)
    return context


def scope_of(state: State, tenant: TenantContext, user_agent: str | None = None) -> Scope:
    """Where a request acts; `user_agent` (for writes that may link users) names the client."""
    settings: Settings = state.settings
    return Scope(
        schema=tenant.schema,
        base_url=settings.tenant_scim_url(tenant.slug),
        events=settings.events_enabled,
        tenant_id=tenant.id,
        client=detect_client(user_agent, tenant.idp_type),
        user_agent=user_agent,
        announcer=state.announcer,
        schema_version=tenant.schema_version,
    )


async def read_json(request: AnyRequest) -> Any:
    content_type = request.headers.get("content-type")
    if content_type:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type not in _ACCEPTED_MEDIA_TYPES:
            raise ScimError(
                415, f"send the body as {SCIM_MEDIA_TYPE} or application/json, not {media_type}"
            )
    body = await request.body()
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise invalid_syntax(f"the request body is not valid JSON: {exc}") from exc


def _integer(name: str, raw: Any) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise invalid_value(f"{name} must be an integer")
    try:
        return int(raw)
    except (TypeError, ValueError) as exc:
        raise invalid_value(f"{name} must be an integer") from exc


def _string(name: str, raw: Any) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return ",".join(raw)  # `attributes` in a SearchRequest body is a list
    if not isinstance(raw, str):
        raise invalid_value(f"{name} must be a string")
    return raw


def _refuse_secrets_in_uri(expr: Filter, resource_type: ResourceType) -> None:
    """RFC 7644 section 7.5.2: a password never travels in a URI (which proxies log)."""
    for path in paths_in(expr):
        resolved = resolve(resource_type, path.schema, path.attr, path.sub_attr)
        if resolved is not None and resolved[1].mutability == "writeOnly":
            raise ScimError(
                403, f"{resolved[1].name} must not be sent in a URI; use POST .search", "sensitive"
            )


def list_parameters(
    params: dict[str, Any], resource_type: ResourceType, max_page_size: int, *, in_uri: bool
) -> tuple[ListQuery, Projection, int]:
    """`filter`, `sortBy`, `sortOrder`, `startIndex`, `count`, `attributes`,
    `excludedAttributes` (RFC 7644 section 3.4.2), from a query string
    (``in_uri``) or a SearchRequest body; returns the query, the projection
    and `startIndex`."""
    raw_filter = _string("filter", params.get("filter"))
    parsed = parse_filter(raw_filter) if raw_filter and raw_filter.strip() else None
    if parsed is not None and in_uri:
        _refuse_secrets_in_uri(parsed, resource_type)
    sort_order = (_string("sortOrder", params.get("sortOrder")) or "ascending").lower()
    if sort_order not in ("ascending", "descending"):
        raise invalid_value("sortOrder must be 'ascending' or 'descending'")
    # Section 3.4.2.4: startIndex below 1 means 1; a negative count means 0.
    start_index = max(_integer("startIndex", params.get("startIndex")) or 1, 1)
    count = _integer("count", params.get("count"))
    count = DEFAULT_PAGE_SIZE if count is None else min(max(count, 0), max_page_size)
    query = ListQuery(
        filter=parsed,
        sort_by=_string("sortBy", params.get("sortBy")) or None,
        descending=sort_order == "descending",
        offset=start_index - 1,
        limit=count,
    )
    projection = parse_projection(
        resource_type,
        _string("attributes", params.get("attributes")),
        _string("excludedAttributes", params.get("excludedAttributes")),
    )
    return query, projection, start_index


def projection_parameters(request: AnyRequest, resource_type: ResourceType) -> Projection:
    return parse_projection(
        resource_type,
        request.query_params.get("attributes"),
        request.query_params.get("excludedAttributes"),
    )


def search_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid_syntax("a SearchRequest must be a JSON object")
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or SEARCH_REQUEST not in schemas:
        raise invalid_syntax(f"a SearchRequest must list the schema {SEARCH_REQUEST}")
    return body
