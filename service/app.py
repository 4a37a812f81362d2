"""`create_app(settings)`: the one place where everything is wired."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig

from observability import request_context
from observability.database import TracedConnection
from observability.middleware import TelemetryMiddleware
from observability.prometheus import metrics
from observability.setup import Telemetry
from service import ratelimit
from service.console import console
from service.pools import Layout, open_tenant_pools
from service.request_log.plugin import RequestLogPlugin
from service.routes.admin import AdminController
from service.routes.discovery import DiscoveryController
from service.routes.events import EventsController
from service.routes.health import healthz, readyz
from service.routes.provisioning_admin import ProvisioningAdminController
from service.routes.rate_limits import RateLimitController
from service.routes.resources import GroupsController, UsersController
from service.routes.roles_guard import RolesGuardController
from service.routes.scim_http import error_response
from service.routes.tenant_root import TenantRootController
from service.scim.errors import ScimError
from service.settings import Settings
from service.store import outbox
from service.webhooks import runtime as webhooks
from tenants.auth import Authenticator
from tenants.control import close_pool, open_pool
from tenants.errors import Conflict, ControlPlaneError, InvalidInput, NotFound
from tenants.registry import TenantRegistry
from tenants.spares import SpareKeeper
from tenants.tokens import TokenStore

log = logging.getLogger(__name__)

_SCIM_PREFIX = "/scim/"
# RFC 7644 section 3.13: the version is in the path; answer another one with invalidVers.
_OTHER_SCIM_VERSION = re.compile(r"^/scim/(v(?!2/)[0-9][^/]*)/")
_CONTROL_PLANE_STATUS: dict[type[ControlPlaneError], int] = {
    NotFound: 404,
    Conflict: 409,
    InvalidInput: 400,
}


def _problem(status: int, detail: str) -> Response[bytes]:
    """An RFC 9457 problem document: the admin API's error shape."""
    body = {"type": "about:blank", "status": status, "detail": detail}
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type="application/problem+json",
    )


def _is_scim(request: Request[Any, Any, State]) -> bool:
    return request.url.path.startswith(_SCIM_PREFIX)


def _on_scim_error(request: Request[Any, Any, State], exc: ScimError) -> Response[bytes]:
    del request
    return error_response(exc)


def _on_control_plane_error(
    request: Request[Any, Any, State], exc: ControlPlaneError
) -> Response[bytes]:
    del request
    return _problem(_CONTROL_PLANE_STATUS.get(type(exc), 400), str(exc))


def _on_http_error(request: Request[Any, Any, State], exc: HTTPException) -> Response[bytes]:
    """Framework errors (unknown route, wrong method, body too large, bad input)."""
    headers = dict(exc.headers or {})
    if _is_scim(request):
        version = _OTHER_SCIM_VERSION.match(request.url.path)
        if exc.status_code == 404 and version:
            error = ScimError(
                400, f"SCIM version {version[1]} is not supported; use /scim/v2", "invalidVers"
            )
        else:
            scim_type = "invalidSyntax" if exc.status_code == 400 else None
            error = ScimError(exc.status_code, exc.detail, scim_type)
        response = error_response(error)
        response.headers.update(headers)
        return response
    response = _problem(exc.status_code, exc.detail)
    response.headers.update(headers)
    return response


def _on_unexpected(request: Request[Any, Any, State], exc: Exception) -> Response[bytes]:
    # The detail stays in our logs: a client learns only that it was our fault.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    request_context.note_exception(exc)
    if _is_scim(request):
        return error_response(ScimError(500, "internal server error"))
    return _problem(500, "internal server error")


def create_app(settings: Settings, telemetry: Telemetry | None = None) -> Litestar:
    """Build the ASGI application. ``settings.database_url`` must be resolved.

    ``telemetry`` defaults to what the `OTEL_*` environment asks for.
    """
    if not settings.database_url:
        raise ValueError("create_app needs settings.database_url (see service.postgres)")
    dsn = settings.database_url
    telemetry = telemetry or Telemetry.from_env(settings.metrics_tenant_labels)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        layout = Layout.of(settings.db_pool_max)
        pool = await open_pool(
            dsn,
            min_size=min(settings.db_pool_min, layout.shared),
            max_size=layout.shared,
            connection_class=TracedConnection,
        )
        tenant_pools = await open_tenant_pools(
            dsn, pool, layout, min_size=settings.db_pool_min, connection_class=TracedConnection
        )
        telemetry.bind_pools({"shared": [pool], "tenants": tenant_pools.own})
        authenticator = Authenticator(
            pool,
            cache_seconds=settings.auth_cache_seconds,
            flush_seconds=settings.last_used_flush_seconds,
        )
        await authenticator.start(dsn)
        keeper = SpareKeeper(pool, settings.spare_schemas)
        keeper.start()
        telemetry.watch_onboardings(lambda: keeper.onboardings)
        registry = TenantRegistry(settings, onboarded=keeper.onboarded)
        announcer = outbox.Announcer(pool)
        app.state.update(
            pool=pool,
            tenant_pools=tenant_pools,
            authenticator=authenticator,
            registry=registry,
            tokens=TokenStore(registry),
            announcer=announcer,
            spare_keeper=keeper,
        )
        try:
            yield
        finally:
            await announcer.stop()
            await keeper.stop()
            await authenticator.stop()
            telemetry.bind_pools({})
            await tenant_pools.close()
            await close_pool(pool)
            telemetry.shutdown()

    app = Litestar(
        route_handlers=[
            UsersController,
            GroupsController,
            DiscoveryController,
            TenantRootController,
            AdminController,
            EventsController,
            ProvisioningAdminController,
            RolesGuardController,
            RateLimitController,
            healthz,
            readyz,
            metrics,
            console,
        ],
        lifespan=[lifespan, ratelimit.lifespan, webhooks.lifespan],
        middleware=[ratelimit.rate_limit_middleware],
        plugins=[RequestLogPlugin(settings)],
        before_send=[ratelimit.rate_limit_headers],
        state=State(
            {"settings": settings, "admin_token": settings.admin_token, "telemetry": telemetry}
        ),
        exception_handlers={
            ScimError: _on_scim_error,
            ControlPlaneError: _on_control_plane_error,
            HTTPException: _on_http_error,
            Exception: _on_unexpected,
        },
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="SCIM platform admin API", version="1.0.0", path="/schema"
        ),
        debug=False,
        # Logging is ours (`observability.logging`: JSON, redacted, written in place).
        # Litestar's default config would replace the root handler with a queue to a
        # thread and a plain-text formatter: unredacted lines, and a handoff per line.
        logging_config=None,
    )
    # Outside Litestar's routing, so that requests matching no route are traced too.
    app.asgi_handler = TelemetryMiddleware(app.asgi_handler, telemetry)
    telemetry.watch_rate_limiter(lambda: app.state.get("rate_limiter"))
    return app
