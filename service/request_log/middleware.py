"""The one place in the request path that sees a SCIM request whole.

An ASGI middleware around every routed handler: it keeps the body chunks the
handler reads (so nothing is read twice), the response status, `Location`
and, for errors, the response body that carries `scimType`. Only tenant SCIM
routes are recorded; the admin API and health checks pass straight through.

Requests refused with 401 or 403 are recorded too, when the slug names a
tenant: "Test Connection fails" is the commonest support case, and the log
then shows that requests arrived and why they were refused. Headers are
never recorded except the User-Agent, so the presented token is not either.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Final

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send
from opentelemetry import trace

from service.request_log.recorder import SCIM_PREFIX, Captured, RequestLog

_LOGGED_METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_MAX_ERROR_BODY: Final = 8192


def _trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class RequestLogMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    def __init__(self, request_log: RequestLog) -> None:
        self._log = request_log

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        path: str = scope["path"]
        method: str = scope["method"]  # type: ignore[typeddict-item]  # HTTP scopes only
        if not path.startswith(SCIM_PREFIX) or method not in _LOGGED_METHODS:
            await next_app(scope, receive, send)
            return
        received_at = time.time()
        started = time.perf_counter()
        body: list[bytes] = []
        error_body: list[bytes] = []
        status = 500
        location: str | None = None
        # The tracing middleware may sit inside this one; its span is current
        # by the time the response starts, if not already now.
        trace_id = _trace_id()

        async def receive_and_keep() -> ReceiveMessage:
            message = await receive()
            if message["type"] == "http.request" and message.get("body"):
                body.append(message["body"])
            return message

        async def send_and_watch(message: Message) -> None:
            nonlocal status, location, trace_id
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 201:
                    location = _header(message.get("headers", ()), b"location")
                trace_id = trace_id or _trace_id()
            elif (
                message["type"] == "http.response.body"
                and status >= 400
                and sum(map(len, error_body)) < _MAX_ERROR_BODY
            ):
                error_body.append(message.get("body", b""))
            await send(message)

        try:
            await next_app(scope, receive_and_keep, send_and_watch)
        finally:
            self._log.record(
                Captured(
                    slug=path[len(SCIM_PREFIX) :].split("/", 1)[0],
                    received_at=received_at,
                    method=method,
                    path=path,
                    query=scope.get("query_string", b""),
                    user_agent=_header(scope["headers"], b"user-agent"),
                    body=b"".join(body),
                    status=status,
                    error_body=b"".join(error_body),
                    location=location,
                    latency_ms=(time.perf_counter() - started) * 1000,
                    trace_id=trace_id,
                )
            )
