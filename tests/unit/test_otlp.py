"""The compact OTLP span encoding says exactly what the SDK's encoder says."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.span import TraceFlags, TraceState

from observability.otlp import CompactSpanExporter, encode_spans
from tests.support.otlp_receiver import OtlpReceiver


def provider(resource: Resource, memory: InMemorySpanExporter, **limits: int) -> TracerProvider:
    made = TracerProvider(resource=resource, span_limits=SpanLimits(**limits))
    made.add_span_processor(SimpleSpanProcessor(memory))
    return made


@pytest.fixture(scope="module")
def spans() -> Sequence[ReadableSpan]:
    """Spans of every shape the service makes, and the rarer ones the SDK allows."""
    memory = InMemorySpanExporter()
    service = provider(
        Resource.create({"service.name": "scim-platform", "service.instance.id": "w-1"}),
        memory,
    )
    other = provider(Resource({"service.name": "other"}, "https://example/schema"), memory)
    limited = provider(Resource({"service.name": "limited"}), memory, max_attributes=2)
    tracer = service.get_tracer("scim-platform", "1.2.3", "https://opentelemetry.io/schemas/1")
    scoped = service.get_tracer("scoped", attributes={"scope.kind": "test", "scope.n": 3})

    remote = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "value"), ("other", "x")]),
    )
    parent = trace.set_span_in_context(NonRecordingSpan(remote))
    with tracer.start_as_current_span(
        "PATCH /scim/v2/{tenant}/Users/{resource_id}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": "PATCH",
            "http.response.status_code": 200,
            "scim.patch.operations": 2,
            "ratio": 0.25,
            "negative": -42,
            "big": 2**62,
            "flag": True,
            "off": False,
            "empty": "",
            "unicode": "Zoë, 東京",
            "names": ("a", "b"),
            "numbers": (1, -2, 3),
            "bools": (True, False),
            "floats": (1.5, -0.0),
            "nothing": (),
        },
    ) as server:
        with tracer.start_as_current_span(
            "SELECT users",
            kind=SpanKind.CLIENT,
            attributes={"db.system.name": "postgresql", "db.query.summary": "SELECT users"},
        ) as statement:
            statement.set_status(Status(StatusCode.ERROR, "a description"))
        server.add_event("retry", {"attempt": 2, "why": "busy"}, timestamp=1_700_000_000_000)
        server.add_event("plain")
    link = Link(remote, {"link.kind": "follows"})
    for kind in SpanKind:
        with scoped.start_as_current_span(f"kind {kind.name}", kind=kind, links=[link]) as span:
            span.set_status(Status(StatusCode.OK))
    with other.get_tracer("other").start_as_current_span("elsewhere"):
        pass
    with limited.get_tracer("limited").start_as_current_span(
        "crowded", attributes={"a": 1, "b": 2, "c": 3, "d": 4}
    ):
        pass
    finished = memory.get_finished_spans()
    assert len(finished) == 2 + len(SpanKind) + 2
    return finished


def parsed(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return request


def test_every_shape_of_span_encodes_as_the_sdk_encodes_it(spans: Sequence[ReadableSpan]) -> None:
    assert parsed(encode_spans(spans)) == sdk_encode(spans)


def test_each_span_alone_encodes_as_the_sdk_encodes_it(spans: Sequence[ReadableSpan]) -> None:
    # Field by field, so a difference names the span it is in.
    for span in spans:
        assert parsed(encode_spans([span])) == sdk_encode([span]), span.name


def test_no_spans_make_an_empty_request() -> None:
    assert encode_spans([]) == b""
    assert parsed(b"") == sdk_encode([])


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    made = OtlpReceiver(keep=True)
    yield made
    made.close()


def _exporter(receiver: OtlpReceiver) -> CompactSpanExporter:
    return CompactSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces")


def _sent(
    exporter: CompactSpanExporter, spans: Sequence[ReadableSpan], receiver: OtlpReceiver
) -> bytes:
    """Export ``spans`` and return the one request body the receiver got (gunzipped)."""
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    [body] = receiver.bodies("/v1/traces")
    return body


def test_the_exporter_sends_the_compact_encoding(
    spans: Sequence[ReadableSpan], receiver: OtlpReceiver
) -> None:
    exporter = _exporter(receiver)
    # If a release of the SDK moves what the fast path uses, this says so.
    assert exporter.uses_compact_encoding
    body = _sent(exporter, spans, receiver)
    assert body == encode_spans(spans)
    assert parsed(body) == sdk_encode(spans)


def test_the_exporter_keeps_the_sdks_compression(
    spans: Sequence[ReadableSpan], receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
    assert parsed(_sent(_exporter(receiver), spans, receiver)) == sdk_encode(spans)


def test_asking_for_the_sdks_exporter_metrics_uses_the_sdks_encoder(
    spans: Sequence[ReadableSpan], receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    exporter = _exporter(receiver)
    assert not exporter.uses_compact_encoding
    assert parsed(_sent(exporter, spans, receiver)) == sdk_encode(spans)
