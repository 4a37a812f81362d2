"""`LeanTracer` hands the exporters what the SDK's tracer would, call for call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
)
from opentelemetry.trace.span import TraceFlags, TraceState

from observability.otlp import encode_spans
from observability.spans import LeanSpan, LeanTracer

RESOURCE = Resource.create({"service.name": "scim-platform", "service.instance.id": "w-1"})
SCOPE = ("scim-platform", "1.2.3")
REMOTE = SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "value")]),
)
UNSAMPLED = SpanContext(REMOTE.trace_id, REMOTE.span_id, is_remote=True)

Tracers = tuple[Tracer, InMemorySpanExporter, Tracer, InMemorySpanExporter]


def tracers(limits: SpanLimits | None = None, sampler: Sampler | None = None) -> Tracers:
    """The SDK's tracer and ours, each exporting into memory, configured alike."""
    sdk_memory, lean_memory = InMemorySpanExporter(), InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE, span_limits=limits, sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(sdk_memory))
    lean = LeanTracer(
        sampler=provider.sampler,
        id_generator=provider.id_generator,
        resource=RESOURCE,
        processor=SimpleSpanProcessor(lean_memory),
        scope=InstrumentationScope(*SCOPE),
        limits=limits,
    )
    return provider.get_tracer(*SCOPE), sdk_memory, lean, lean_memory


def described(spans: Sequence[ReadableSpan]) -> list[dict[str, Any]]:
    """What an exporter sees of each span, with the random ids replaced by positions."""
    position = {span.context.span_id: n for n, span in enumerate(spans) if span.context}
    out = []
    for span in spans:
        assert span.context is not None
        parent = span.parent
        out.append(
            {
                "name": span.name,
                "kind": span.kind,
                "parent": None
                if parent is None
                else position.get(parent.span_id, (parent.span_id, parent.is_remote)),
                "remote trace": span.context.trace_id == REMOTE.trace_id,
                "flags": int(span.context.trace_flags),
                "trace state": span.context.trace_state.to_header(),
                "attributes": list(span.attributes.items()) if span.attributes else [],
                "dropped": (span.dropped_attributes, span.dropped_events, span.dropped_links),
                "events": [
                    (
                        event.name,
                        {
                            # A stack trace's frames differ between the two; its last line not.
                            k: v.splitlines()[-1]
                            if k == "exception.stacktrace" and isinstance(v, str)
                            else v
                            for k, v in (event.attributes or {}).items()
                        },
                        event.timestamp if event.timestamp < 10**18 else "now",
                    )
                    for event in span.events
                ],
                "links": [
                    (link.context.span_id, dict(link.attributes or {})) for link in span.links
                ],
                "status": (span.status.status_code, span.status.description),
                "resource": dict(span.resource.attributes),
                "scope": (span.instrumentation_scope.name, span.instrumentation_scope.version)
                if span.instrumentation_scope
                else None,
                "times": span.start_time is not None
                and span.end_time is not None
                and span.start_time <= span.end_time,
            }
        )
    return out


def same_on_both(script: Callable[[Tracer], None], **config: Any) -> list[dict[str, Any]]:
    sdk, sdk_memory, lean, lean_memory = tracers(**config)
    script(sdk)
    script(lean)
    expected = described(sdk_memory.get_finished_spans())
    got = described(lean_memory.get_finished_spans())
    assert got == expected
    return got


def request(tracer: Tracer) -> None:
    """What the service does to spans: a server span, a current child, statements."""
    server = tracer.start_span(
        "GET",
        context=trace.set_span_in_context(NonRecordingSpan(REMOTE)),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "GET", "server.port": 8000, "url.path": "/x"},
    )
    with trace.use_span(server, end_on_exit=False):
        statement = tracer.start_span(
            "SELECT users",
            kind=SpanKind.CLIENT,
            attributes={"db.namespace": "t_1", "db.query.summary": "SELECT users"},
        )
        statement.set_attribute("error.type", "UniqueViolationError")
        statement.set_status(Status(StatusCode.ERROR))
        statement.end()
    server.update_name("GET /scim/v2/{tenant}/Users")
    server.set_attributes(
        {"http.response.status_code": 200, "scim.result_count": 1, "ratio": 0.5, "ok": True}
    )
    server.end()


def test_a_request_s_spans_are_the_sdk_s() -> None:
    spans = same_on_both(request)
    assert [span["parent"] for span in spans] == [1, (REMOTE.span_id, True)]
    assert spans[1]["remote trace"]


def test_values_that_are_not_plain_scalars_are_validated_as_the_sdk_does() -> None:
    def script(tracer: Tracer) -> None:
        span = tracer.start_span("values", attributes={"names": ["a", "b"], "none": None})
        span.set_attribute("numbers", [1, 2, 3])
        span.set_attribute("mixed", [1, "a"])  # refused: one type per sequence
        span.set_attribute("mapping", {"a": 1})  # refused
        span.set_attribute("", "no key")  # refused
        span.set_attributes({"bools": (True, False), "empty": (), "text": "Zoë"})
        span.set_attribute("names", "replaced, and moved to the end")
        span.end()

    [values] = same_on_both(script)
    assert values["attributes"][-1] == ("names", "replaced, and moved to the end")


def test_limits_drop_as_the_sdk_drops() -> None:
    def script(tracer: Tracer) -> None:
        span = tracer.start_span(
            "crowded",
            attributes={"a": "abcdefgh", "b": 2},
            links=[Link(REMOTE, {"n": 1}), Link(UNSAMPLED, {"n": 2, "m": 3, "k": 4})],
        )
        span.set_attributes({"c": 3, "d": ["longer than four", "ok"], "a": "again"})
        for n in range(4):
            span.add_event(f"event {n}", {"n": n, "text": "truncated", "x": 1, "y": 2})
        span.add_link(REMOTE, {"late": True})
        span.end()

    limits = SpanLimits(
        max_span_attributes=3,
        max_attribute_length=4,
        max_events=2,
        max_links=1,
        max_event_attributes=2,
        max_link_attributes=2,
    )
    [crowded] = same_on_both(script, limits=limits)
    assert crowded["dropped"] == (2, 2, 2)
    assert crowded["attributes"] == [("c", 3), ("d", ("long", "ok")), ("a", "agai")]


def test_a_limit_of_zero_keeps_nothing() -> None:
    def script(tracer: Tracer) -> None:
        span = tracer.start_span("bare", attributes={"a": 1})
        span.set_attribute("b", 2)
        span.add_event("gone")
        span.end()

    limits = SpanLimits(max_span_attributes=0, max_events=0)
    [bare] = same_on_both(script, limits=limits)
    assert bare["attributes"] == []
    assert bare["dropped"][:2] == (2, 1)


def test_status_rules_are_the_sdk_s() -> None:
    def script(tracer: Tracer) -> None:
        for first, then in (
            (Status(StatusCode.ERROR, "boom"), Status(StatusCode.UNSET)),
            (Status(StatusCode.OK), Status(StatusCode.ERROR, "too late")),
            (StatusCode.ERROR, StatusCode.OK),
        ):
            span = tracer.start_span("status")
            span.set_status(first, "ignored beside a Status" if isinstance(first, Status) else "d")
            span.set_status(then)
            span.end()

    spans = same_on_both(script)
    assert [span["status"] for span in spans] == [
        (StatusCode.ERROR, "boom"),
        (StatusCode.OK, None),
        (StatusCode.OK, None),
    ]


def test_exceptions_and_events_are_recorded_as_the_sdk_records_them() -> None:
    def script(tracer: Tracer) -> None:
        with pytest.raises(KeyError), tracer.start_as_current_span("fails"):
            raise KeyError("missing")
        with pytest.raises(ValueError, match="bad"), tracer.start_span("direct"):
            raise ValueError("bad")
        span = tracer.start_span("events")
        span.add_event("retry", {"attempt": 2}, timestamp=1_700_000_000_000)
        span.record_exception(RuntimeError("noted"), {"extra": 1}, timestamp=5, escaped=False)
        span.end()

    spans = same_on_both(script)
    assert spans[0]["events"][0][1]["exception.type"] == "KeyError"
    assert spans[0]["events"][0][1]["exception.stacktrace"] == "KeyError: 'missing'"
    assert spans[0]["status"] == (StatusCode.ERROR, "KeyError: 'missing'")
    assert spans[1]["status"] == (StatusCode.ERROR, "ValueError: bad")
    assert spans[2]["events"][1][1]["extra"] == 1


def test_an_ended_span_changes_no_more_and_is_exported_once() -> None:
    def script(tracer: Tracer) -> None:
        span = tracer.start_span("ended", attributes={"a": 1})
        span.end()
        span.set_attribute("b", 2)
        span.set_attributes({"c": 3})
        span.update_name("renamed")
        span.set_status(Status(StatusCode.ERROR))
        span.add_event("late")
        span.add_link(REMOTE)
        span.end()
        assert not span.is_recording()

    [ended] = same_on_both(script)
    assert ended["name"] == "ended"
    assert ended["attributes"] == [("a", 1)]


@pytest.mark.parametrize(
    ("sampler", "parent", "recorded"),
    [
        (None, UNSAMPLED, False),  # the default: parent-based, so a caller's "no" holds
        (None, REMOTE, True),
        (None, None, True),
        (ALWAYS_ON, UNSAMPLED, True),
        (ALWAYS_OFF, None, False),
    ],
)
def test_the_provider_s_sampler_decides(
    sampler: Sampler | None, parent: SpanContext | None, recorded: bool
) -> None:
    context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent else None
    sdk, sdk_memory, lean, lean_memory = tracers(sampler=sampler)
    for tracer in (sdk, lean):
        span = tracer.start_span("sampled?", context=context)
        assert span.is_recording() is recorded
        if parent is not None:
            assert span.get_span_context().trace_id == parent.trace_id
        span.end()
    assert isinstance(span, LeanSpan) is recorded
    assert described(lean_memory.get_finished_spans()) == described(sdk_memory.get_finished_spans())


def test_both_encoders_agree_on_lean_spans() -> None:
    sdk, sdk_memory, lean, lean_memory = tracers()
    del sdk, sdk_memory
    request(lean)
    with lean.start_as_current_span("linked", links=[Link(REMOTE, {"k": "v"})]) as span:
        span.add_event("event", {"n": 1}, timestamp=7)
    spans = lean_memory.get_finished_spans()
    parsed = ExportTraceServiceRequest()
    parsed.ParseFromString(encode_spans(spans))
    assert parsed == sdk_encode(spans)
