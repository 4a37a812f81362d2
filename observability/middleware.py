"""The outermost ASGI layer: one server span, the request metrics and one log line per request.

It wraps Litestar's whole handler (not a route middleware), so requests that
match no route are measured too. The route template, known only after
routing, is read back from the ASGI scope when the response is done.
"""

from __future__ import annotations

import logging
import re
import time
from functools import lru_cache
from typing import Any, Final, cast

from litestar.types import ASGIApp, Message, Receive, Send
from litestar.types import Scope as ASGIScope
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from observability import attributes as attr
from observability import request_context
from observability.request_context import RequestInfo
from observability.setup import Telemetry
from service.scim.clients import detect_client

Scope = dict[str, Any]

access_log = logging.getLogger("scim.access")

# Probes and scrapes are measured but neither traced nor logged: they would drown the rest.
QUIET_PATHS: Final = frozenset({"/metrics", "/healthz", "/readyz"})
_SCIM_PREFIX: Final = "/scim/v2/{tenant}"
_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
_PLURAL: Final = {"Users": "User", "Groups": "Group"}
_SINGLETONS: Final = frozenset({"ServiceProviderConfig"})
_ITEM_OPERATIONS: Final = {"GET": "get", "PUT": "replace", "PATCH": "patch", "DELETE": "delete"}
_COLLECTION_OPERATIONS: Final = {"GET": "list", "POST": "create"}
_PATH_PARAMETER = re.compile(r"\{(\w+):[^}]*\}")


@lru_cache(maxsize=256)
def route_of(path_template: str) -> str:
    """Litestar's `/Users/{resource_id:str}` as the `http.route` `/Users/{resource_id}`."""
    return _PATH_PARAMETER.sub(r"{\1}", path_template)


@lru_cache(maxsize=256)
def classify(method: str, route: str) -> tuple[str, str] | None:
    """(resource type, SCIM operation) of a SCIM route; None for other routes."""
    if not route.startswith(_SCIM_PREFIX):
        return None
    parts = route[len(_SCIM_PREFIX) :].strip("/").split("/")
    head = parts[0]
    if head == ".search":
        return "root", "search"
    if head == "Bulk":
        return "Bulk", "bulk"
    resource_type = _PLURAL.get(head, head)
    if len(parts) > 1 and parts[1] == ".search":
        return resource_type, "search"
    if len(parts) > 1 or head in _SINGLETONS:
        return resource_type, _ITEM_OPERATIONS.get(method, method.lower())
    return resource_type, _COLLECTION_OPERATIONS.get(method, method.lower())


def _headers(scope: Scope) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in (b"host", b"user-agent", b"traceparent", b"tracestate"):
            wanted[name.decode("latin-1")] = value.decode("latin-1")
    return wanted


def _server(scope: Scope, host: str | None) -> tuple[str | None, int | None]:
    """`server.address` and `server.port` from the Host header, else the socket."""
    if host:
        if host.startswith("["):  # an IPv6 literal: [::1]:8000
            address, _, rest = host[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            address, _, port = host.partition(":")
        return address, int(port) if port.isdigit() else None
    server = scope.get("server")
    return (server[0], server[1]) if server else (None, None)


class TelemetryMiddleware:
    """Traces, measures and logs every HTTP request of the wrapped application."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self._app = app
        self._telemetry = telemetry

    async def __call__(self, asgi_scope: ASGIScope, receive: Receive, send: Send) -> None:
        # Read as a plain dict: Litestar adds keys (`path_template`) its TypedDicts do not name.
        scope = cast(Scope, asgi_scope)
        if scope["type"] != "http":
            await self._app(asgi_scope, receive, send)
            return
        quiet = scope["path"] in QUIET_PATHS
        headers = _headers(scope)
        telemetry = self._telemetry
        tracer = None if quiet else telemetry.tracer
        method = scope["method"]
        span = None
        context_token = None
        if tracer is not None:
            parent = propagate.extract(headers) if "traceparent" in headers else None
            span = tracer.start_span(
                method,
                context=parent,
                kind=SpanKind.SERVER,
                attributes=_request_attributes(scope, method, headers),
            )
            context_token = otel_context.attach(trace.set_span_in_context(span, parent))
        info = RequestInfo(telemetry, span, traced=span is not None and span.is_recording())
        info_token = request_context.begin(info)
        status = 500
        start = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(asgi_scope, receive, send_status)
        except BaseException as exc:
            info.error_type = type(exc).__qualname__
            raise
        finally:
            duration = time.perf_counter() - start
            template = scope.get("path_template")
            route = route_of(template) if template else None
            try:
                self._record(
                    scope,
                    method=method,
                    route=route,
                    status=status,
                    duration=duration,
                    info=info,
                    headers=headers,
                    quiet=quiet,
                )
            finally:
                request_context.end(info_token)
                if context_token is not None:
                    otel_context.detach(context_token)

    def _record(
        self,
        scope: Scope,
        *,
        method: str,
        route: str | None,
        status: int,
        duration: float,
        info: RequestInfo,
        headers: dict[str, str],
        quiet: bool,
    ) -> None:
        instruments = self._telemetry.instruments
        span = info.span
        instruments.http_duration.record(
            duration,
            (
                method if method in _KNOWN_METHODS else "_OTHER",
                status,
                route,
                (info.error_type or str(status)) if status >= 500 else None,
            ),
            span,
        )
        scim = classify(method, route) if route is not None else None
        client = None
        if scim is not None:
            tenant = info.tenant_label or self._telemetry.tenant_labels.label(
                scope.get("path_params", {}).get("tenant")
            )
            resource_type, operation = scim
            instruments.scim_requests.add(1, (tenant, resource_type, operation, str(status)), span)
            instruments.scim_duration.record(
                duration, (tenant, resource_type, operation, f"{status // 100}xx"), span
            )
            client = detect_client(headers.get("user-agent"), info.idp_type)
        if info.traced:
            _finish_span(info, route=route, status=status, scim=scim, client=client, scope=scope)
        elif info.span is not None:
            info.span.end()  # sampled out: nothing to describe
        if not quiet and access_log.isEnabledFor(logging.INFO):
            _log(
                info,
                scope,
                method=method,
                route=route,
                status=status,
                duration=duration,
                client=client,
            )


def _request_attributes(
    scope: Scope, method: str, headers: dict[str, str]
) -> dict[str, AttributeValue]:
    address, port = _server(scope, headers.get("host"))
    attributes: dict[str, AttributeValue] = {
        attr.HTTP_REQUEST_METHOD: method if method in _KNOWN_METHODS else "_OTHER",
        attr.URL_PATH: scope["path"],
        attr.URL_SCHEME: scope.get("scheme", "http"),
    }
    if address:
        attributes[attr.SERVER_ADDRESS] = address
    if port is not None:
        attributes[attr.SERVER_PORT] = port
    if "user-agent" in headers:
        attributes[attr.USER_AGENT_ORIGINAL] = headers["user-agent"]
    return attributes


def _finish_span(
    info: RequestInfo,
    *,
    route: str | None,
    status: int,
    scim: tuple[str, str] | None,
    client: str | None,
    scope: Scope,
) -> None:
    span = info.span
    assert span is not None
    found: dict[str, AttributeValue] = {attr.HTTP_RESPONSE_STATUS_CODE: status}
    if route is not None:
        method = scope["method"] if scope["method"] in _KNOWN_METHODS else "HTTP"
        span.update_name(f"{method} {route}")
        found[attr.HTTP_ROUTE] = route
    if scim is not None:
        found[attr.SCIM_RESOURCE_TYPE], found[attr.SCIM_OPERATION] = scim
    slug = info.tenant_slug or scope.get("path_params", {}).get("tenant")
    if slug:
        found[attr.SCIM_TENANT_SLUG] = slug
    if info.tenant_id:
        found[attr.SCIM_TENANT_ID] = info.tenant_id
    if client:
        found[attr.SCIM_CLIENT] = client
    if info.patch_operations is not None:
        found[attr.SCIM_PATCH_OPERATIONS] = info.patch_operations
    if info.result_count is not None:
        found[attr.SCIM_RESULT_COUNT] = info.result_count
        found[attr.SCIM_TOTAL_RESULTS] = info.total_results or 0
    if info.scim_type:
        found[attr.SCIM_ERROR_TYPE] = info.scim_type
    if status >= 500:
        # Server spans: only 5xx is an error; a 4xx is the client's (semantic conventions).
        found[attr.ERROR_TYPE] = info.error_type or str(status)
        span.set_status(Status(StatusCode.ERROR))
    span.set_attributes(found)  # one lock, not one per attribute
    span.end()


def _log(
    info: RequestInfo,
    scope: Scope,
    *,
    method: str,
    route: str | None,
    status: int,
    duration: float,
    client: str | None,
) -> None:
    fields: dict[str, object] = {
        "method": method,
        "route": route,
        "path": scope["path"],
        "status": status,
        "duration_ms": round(duration * 1000, 3),
    }
    if info.span is not None:
        span_context = info.span.get_span_context()
        fields["trace_id"] = format(span_context.trace_id, "032x")
        fields["span_id"] = format(span_context.span_id, "016x")
    slug = info.tenant_slug or scope.get("path_params", {}).get("tenant")
    if slug:
        fields["tenant"] = slug
    if client:
        fields["client"] = client
    if info.scim_type:
        fields["scimType"] = info.scim_type
    access_log.info("%s %s %d", method, route or scope["path"], status, extra={"fields": fields})
