"""What the request in progress has learned about itself, for its span, metrics and log line.

The telemetry middleware opens a `RequestInfo` per request and makes it
current; code deeper in the request (tenant authentication, provisioning,
error rendering) adds what only it knows through the `note_*` functions.
Outside a request they do nothing, so the CLI and background tasks may call
the same code freely.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from observability.setup import Telemetry


@dataclass(slots=True)
class RequestInfo:
    telemetry: Telemetry
    span: Span | None
    """The server span, when tracing is on (recording or not: its ids go to the log)."""
    traced: bool = False
    """The server span is recorded (sampled): only then are child spans worth making."""
    tenant_id: str | None = None
    tenant_slug: str | None = None
    tenant_label: str | None = None
    """The tenant's metric label (see `observability.tenants`), once authenticated."""
    idp_type: str | None = None
    scim_type: str | None = None
    error_type: str | None = None
    patch_operations: int | None = None
    result_count: int | None = None
    total_results: int | None = None


_CURRENT: ContextVar[RequestInfo | None] = ContextVar("scim_request_info", default=None)


def current() -> RequestInfo | None:
    return _CURRENT.get()


def begin(info: RequestInfo) -> Any:
    """Make ``info`` current; returns the token `end` needs."""
    return _CURRENT.set(info)


def end(token: Any) -> None:
    _CURRENT.reset(token)


def note_tenant(tenant_id: object, slug: str, idp_type: str) -> None:
    """The request was authenticated for this tenant."""
    info = _CURRENT.get()
    if info is not None:
        info.tenant_id, info.tenant_slug, info.idp_type = str(tenant_id), slug, idp_type
        info.tenant_label = info.telemetry.tenant_labels.seen(slug)


def note_scim_error(scim_type: str | None) -> None:
    """The response is a SCIM error with this `scimType` (None: the error has none)."""
    info = _CURRENT.get()
    if info is not None and scim_type:
        info.scim_type = scim_type


def note_exception(exc: BaseException) -> None:
    """An unexpected exception became the response: its class names the 5xx (`error.type`)."""
    info = _CURRENT.get()
    if info is not None:
        info.error_type = type(exc).__qualname__


def note_patch_operations(count: int) -> None:
    info = _CURRENT.get()
    if info is not None:
        info.patch_operations = (info.patch_operations or 0) + count


def note_results(returned: int, total: int) -> None:
    """A list or search returned ``returned`` resources of ``total`` matches.

    Additive: a root search over Users and Groups reports each type in turn.
    """
    info = _CURRENT.get()
    if info is not None:
        info.result_count = (info.result_count or 0) + returned
        info.total_results = (info.total_results or 0) + total
