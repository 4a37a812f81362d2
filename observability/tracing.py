"""Child spans for work inside a request, for code that knows nothing of the tracer.

    with tracing.span("scim.rate_limit", {"scim.rate_limit.policy": "tenant"}) as span:
        allowed = await limiter.check(...)
        span.set_attribute("scim.rate_limit.allowed", allowed)

Outside a traced request (tracing off, not sampled, the CLI) the span is a
non-recording one and costs next to nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from observability import attributes as attr
from observability import request_context


@contextmanager
def span(name: str, attributes: Mapping[str, AttributeValue] | None = None) -> Iterator[Span]:
    """A child span of the current request, current itself while the block runs.

    An exception leaving the block marks the span as failed with its class
    as `error.type` (never its message, which may quote input).
    """
    info = request_context.current()
    if info is None or not info.traced or info.telemetry.tracer is None:
        yield INVALID_SPAN
        return
    # Started and made current by hand: the SDK's `start_as_current_span` wraps the
    # same in two more generator context managers, a cost paid on every request.
    child = info.telemetry.tracer.start_span(name, attributes=attributes)
    token = otel_context.attach(trace.set_span_in_context(child))
    try:
        yield child
    except BaseException as exc:
        child.set_attribute(attr.ERROR_TYPE, type(exc).__qualname__)
        child.set_status(Status(StatusCode.ERROR))
        raise
    finally:
        otel_context.detach(token)
        child.end()


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span in W3C hex form, if there is one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
