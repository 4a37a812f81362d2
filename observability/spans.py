"""The tracer behind the service's spans: the SDK's pipeline, a lighter span.

The SDK's span is built to be shared between threads and filled by any
instrumentation: each one takes a lock, validates every attribute through
`BoundedAttributes`, allocates bounded lists for events and links, and at its
end is copied into a fresh `ReadableSpan` for the processors. On the benchmark
machine that is 37-43 us to make, fill and end a server span with 15
attributes; a request makes 2 to 7 spans. `LeanTracer` makes the same span,
as the same `ReadableSpan` the processors and exporters expect, in 8-9 us.

What stays the SDK's: the provider's sampler (`OTEL_TRACES_SAMPLER`), id
generator and resource, the `SpanLimits` (`OTEL_SPAN_*_LIMIT`,
`OTEL_ATTRIBUTE_*_LIMIT`), the span processors and the exporters.
What is lighter, and why that is safe here:
- an attribute whose value is a `str`, `bool`, `int` or `float` is stored as
  it is (a `str` cut to the length limit, if one is set); any other value is
  validated by the SDK's own `BoundedAttributes`, as the SDK's span would;
- no lock: a span is changed by the code that made it, on the event loop's
  thread, and the processors read it only after `end()`, after which it no
  longer changes (as with the SDK's span, a change after the end is ignored
  with a warning);
- `end()` hands the span itself to the processor instead of a copy.

`tests/unit/test_spans.py` replays the same calls on both tracers and
compares what reaches the exporter.
"""

from __future__ import annotations

import logging
import traceback
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from time import time_ns
from types import TracebackType
from typing import Any, Final, cast

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, SpanProcessor
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_ESCAPED,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types
from opentelemetry.util._decorator import _agnosticcontextmanager

log = logging.getLogger(__name__)

_SCALARS: Final = frozenset({str, bool, int, float})
_UNSET: Final = Status(StatusCode.UNSET)
_ENDED: Final = "%s on an ended span is ignored"


def _validated(
    limit: int | None, attributes: types.Attributes, max_value_len: int | None
) -> BoundedAttributes:
    """Attributes of an event or a link, as the SDK's span keeps them."""
    return BoundedAttributes(limit, attributes, immutable=True, max_value_len=max_value_len)


def _kept_link(
    limits: SpanLimits, context: SpanContext, attributes: types.Attributes
) -> Link | None:
    """A link as the SDK's span keeps it, or None for one it drops (nothing to point at)."""
    if not (context and (context.is_valid or attributes or context.trace_state)):
        return None
    return Link(
        context,
        _validated(limits.max_link_attributes, attributes, limits.max_attribute_length),
    )


def _bounded(items: Sequence[Any], limit: int | None) -> tuple[tuple[Any, ...], int]:
    """The newest ``limit`` items and how many older ones were dropped (SDK's `BoundedList`)."""
    if limit is None or len(items) <= limit:
        return tuple(items), 0
    return tuple(items[len(items) - limit :]), len(items) - limit


class LeanSpan(ReadableSpan, trace_api.Span):
    """A recording span that is its own `ReadableSpan` (see the module's docstring)."""

    def __init__(
        self,
        tracer: LeanTracer,
        name: str,
        *,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        links: Sequence[Link],
        start_time: int | None,
        record_exception: bool,
        set_status_on_exception: bool,
    ) -> None:
        limits = tracer.limits
        kept, self._dropped_links = _bounded(links, limits.max_links)
        super().__init__(
            name=name,
            context=context,
            parent=parent,
            resource=tracer.resource,
            kind=kind,
            links=kept,
            status=_UNSET,
            start_time=start_time if start_time is not None else time_ns(),
            instrumentation_scope=tracer.scope,
        )
        self._attributes: dict[str, types.AnyValue] = {}
        self._dropped_attributes = 0
        self._events: deque[Event] | tuple[()] = ()
        self._dropped_events = 0
        self._tracer = tracer
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception

    # -- what the processors and exporters read

    @property
    def dropped_attributes(self) -> int:
        return self._dropped_attributes

    @property
    def dropped_events(self) -> int:
        return self._dropped_events

    @property
    def dropped_links(self) -> int:
        return self._dropped_links

    def get_span_context(self) -> SpanContext:
        assert self._context is not None
        return self._context

    # -- what instrumentation calls

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._end_time is not None:
            log.warning(_ENDED, "Setting an attribute")
            return
        self._put(key, value)

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._end_time is not None:
            log.warning(_ENDED, "Setting attributes")
            return
        for key, value in attributes.items():
            self._put(key, value)

    def _put(self, key: str, value: types.AnyValue) -> None:
        limits = self._tracer.limits
        max_len = limits.max_attribute_length
        if type(value) in _SCALARS and type(key) is str and key:
            if max_len is not None and type(value) is str:
                value = value[:max_len]
        else:
            validated = _validated(None, {key: value}, max_len)  # logs what it refuses
            if key not in validated:
                self._dropped_attributes += 1
                return
            value = validated[key]
        attributes = self._attributes
        limit = limits.max_span_attributes
        if key in attributes:
            del attributes[key]  # a changed value moves to the end, as in the SDK's span
        elif limit is not None and len(attributes) >= limit:
            self._dropped_attributes += 1
            if not attributes:  # a limit of 0
                return
            del attributes[next(iter(attributes))]  # the oldest makes room
        attributes[key] = value

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        if self._end_time is not None:
            log.warning(_ENDED, "Adding an event")
            return
        limits = self._tracer.limits
        if not self._events:
            self._events = deque(maxlen=limits.max_events)
        events = self._events
        assert isinstance(events, deque)
        if events.maxlen is not None and len(events) == events.maxlen:
            self._dropped_events += 1  # the oldest goes, as in the SDK's bounded list
        validated = _validated(limits.max_event_attributes, attributes, limits.max_attribute_length)
        events.append(Event(name, validated, timestamp))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._end_time is not None:
            log.warning(_ENDED, "Adding a link")
            return
        limits = self._tracer.limits
        link = _kept_link(limits, context, attributes)
        if link is None:
            return
        kept, dropped = _bounded([*self._links, link], limits.max_links)
        self._links, self._dropped_links = kept, self._dropped_links + dropped

    def update_name(self, name: str) -> None:
        if self._end_time is not None:
            log.warning(_ENDED, "Renaming")
            return
        self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is not None:
            log.warning(_ENDED, "Setting the status")
            return
        # OK is final, and UNSET never replaces anything (the SDK's and the spec's rule).
        if self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is StatusCode.UNSET:
                return
            if description is not None:
                log.warning("A description beside a Status is ignored: %s", description)
            self._status = status
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        if self._end_time is not None:
            log.warning(_ENDED, "Recording an exception")
            return
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        described: dict[str, types.AnyValue] = {
            EXCEPTION_TYPE: qualname if module in ("", "builtins") else f"{module}.{qualname}",
            EXCEPTION_MESSAGE: str(exception),
            EXCEPTION_STACKTRACE: "".join(traceback.format_exception(exception)),
            EXCEPTION_ESCAPED: str(escaped),
        }
        described.update(attributes or {})
        self.add_event("exception", described, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            log.warning(_ENDED, "Ending again")
            return
        self._end_time = end_time if end_time is not None else time_ns()
        self._tracer.processor.on_end(self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is not None and self.is_recording():
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        super().__exit__(exc_type, exc_val, exc_tb)


class LeanTracer(trace_api.Tracer):
    """Makes `LeanSpan`s for ``processor``, sampled and identified as the SDK's tracer would."""

    def __init__(
        self,
        *,
        sampler: Sampler,
        id_generator: IdGenerator,
        resource: Resource,
        processor: SpanProcessor,
        scope: InstrumentationScope,
        limits: SpanLimits | None = None,
    ) -> None:
        self.sampler = sampler
        self.id_generator = id_generator
        self.resource = resource
        self.processor = processor
        self.scope = scope
        self.limits = limits or SpanLimits()  # reads OTEL_SPAN_*_LIMIT and friends

    def start_span(  # noqa: PLR0917 - the API's signature
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        found = trace_api.get_current_span(context).get_span_context()
        parent = found if found.is_valid else None
        trace_id = parent.trace_id if parent else self.id_generator.generate_trace_id()
        links = links or ()
        sampling = self.sampler.should_sample(context, trace_id, name, kind, attributes, links)
        flags = (
            TraceFlags.SAMPLED
            if sampling.decision is Decision.RECORD_AND_SAMPLE
            else TraceFlags.DEFAULT
        )
        random_id = (
            parent.trace_flags.random_trace_id if parent else self.id_generator.is_trace_id_random()
        )
        if random_id:
            flags |= TraceFlags.RANDOM_TRACE_ID
        span_context = SpanContext(
            trace_id,
            self.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=TraceFlags(flags),
            trace_state=sampling.trace_state,
        )
        if sampling.decision is Decision.DROP:
            return trace_api.NonRecordingSpan(span_context)
        kept = (_kept_link(self.limits, link.context, link.attributes) for link in links if link)
        span = LeanSpan(
            self,
            name,
            context=span_context,
            parent=parent,
            kind=kind,
            links=[link for link in kept if link is not None],
            start_time=start_time,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        )
        if sampling.attributes:
            span.set_attributes(sampling.attributes)
        # Typed for the SDK's span; the SDK's processors do nothing on start, and any
        # other gets a span with the whole API.
        self.processor.on_start(cast(SdkSpan, span), parent_context=context)
        return span

    @_agnosticcontextmanager  # the API's own: usable with `with` and `async with`
    def start_as_current_span(  # noqa: PLR0917 - the API's signature
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace_api.Span]:
        span = self.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )
        with trace_api.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current
