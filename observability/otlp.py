"""Spans encoded for OTLP/HTTP straight to protobuf bytes, and the exporter that sends them.

The OTLP exporter of the SDK builds a protobuf message object for every
span, attribute and value, then serialises the tree: about 35 us a span on
the benchmark machine, spent on the export thread while it holds the GIL,
so every request in flight waits for it. Most of what a span carries
repeats from span to span (the route, the tenant's schema, the statement's
summary), so here each attribute is encoded once and its bytes reused, and
a span is a handful of byte strings joined.

The output is the same `ExportTraceServiceRequest` the SDK's encoder makes
(`tests/unit/test_otlp.py` parses both and compares them); only the cost differs.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Final

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind

log = logging.getLogger(__name__)

# Wire types (https://protobuf.dev/programming-guides/encoding/).
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_CONTEXT_HAS_IS_REMOTE: Final = 0x100
_CONTEXT_IS_REMOTE: Final = 0x200
_ATTRIBUTE_CACHE_SIZE: Final = 8192
_SDK_EXPORTER_METRICS: Final = "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"

_fixed32 = struct.Struct("<I").pack
_fixed64 = struct.Struct("<Q").pack
_double = struct.Struct("<d").pack


def _varint(value: int) -> bytes:
    if value < 0:  # int64: two's complement over ten bytes
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SIZES: Final = [_varint(size) for size in range(128)]


def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _delimited(field: int, payload: bytes) -> bytes:
    size = len(payload)
    return _tag(field, _BYTES) + (_SIZES[size] if size < 128 else _varint(size)) + payload


def _string(field: int, value: str | None) -> bytes:
    """A proto3 string field: left out when empty, as the SDK's message would be."""
    return _delimited(field, value.encode()) if value else b""


def _uint(field: int, value: int) -> bytes:
    return _tag(field, _VARINT) + _varint(value) if value else b""


def _any_value(value: Any) -> bytes:
    """An `AnyValue`: its oneof field is written even when it holds a default."""
    if isinstance(value, bool):
        return _tag(2, _VARINT) + _varint(int(value))
    if isinstance(value, str):
        return _delimited(1, value.encode())
    if isinstance(value, int):
        return _tag(3, _VARINT) + _varint(value)
    if isinstance(value, float):
        return _tag(4, _FIXED64) + _double(value)
    if isinstance(value, bytes):
        return _delimited(7, value)
    if isinstance(value, Mapping):
        return _delimited(6, _key_values(1, value.items()))
    if isinstance(value, Sequence):
        return _delimited(5, b"".join(_delimited(1, _any_value(item)) for item in value))
    if value is None:
        return b""
    raise TypeError(f"an attribute value cannot be a {type(value).__name__}")


def _encode_key_value(field: int, key: str, value: Any) -> bytes:
    return _delimited(field, _delimited(1, key.encode()) + _delimited(2, _any_value(value)))


_cached_key_value = lru_cache(maxsize=_ATTRIBUTE_CACHE_SIZE, typed=True)(_encode_key_value)
"""Scalar attributes repeat from span to span (route, schema, summary): each is
encoded once. `typed`, so that `True` and `1` are cached apart."""
_SCALARS: Final = (str, bool, int, float)


def _key_values(field: int, items: Iterable[tuple[str, Any]]) -> bytes:
    encoded = []
    for key, value in items:
        try:
            if type(value) in _SCALARS:
                encoded.append(_cached_key_value(field, key, value))
            else:
                encoded.append(_encode_key_value(field, str(key), value))
        except TypeError:
            # As the SDK's encoder does: the attribute is left out, the span kept.
            log.exception("an attribute could not be encoded: %s", key)
    return b"".join(encoded)


def _flags(context: SpanContext | None) -> bytes:
    flags = _CONTEXT_HAS_IS_REMOTE
    if context is not None and context.is_remote:
        flags |= _CONTEXT_IS_REMOTE
    return _fixed32(flags)


def _event(event: Event) -> bytes:
    return _delimited(
        11,
        _tag(1, _FIXED64)
        + _fixed64(event.timestamp)
        + _string(2, event.name)
        + _key_values(3, (event.attributes or {}).items())
        + _uint(4, event.dropped_attributes),
    )


# A span's and a link's identifiers are fields 1 and 2 of either, of fixed sizes.
_TRACE_ID: Final = _tag(1, _BYTES) + _varint(16)
_SPAN_ID: Final = _tag(2, _BYTES) + _varint(8)


def _link(link: Link) -> bytes:
    context = link.context
    return _delimited(
        13,
        _TRACE_ID
        + context.trace_id.to_bytes(16, "big")
        + _SPAN_ID
        + context.span_id.to_bytes(8, "big")
        + _key_values(4, (link.attributes or {}).items())
        + _uint(5, link.dropped_attributes)
        + _tag(6, _FIXED32)
        + _flags(context),
    )


# The other fixed parts of a `Span`: a field's tag and, where it never varies, its size.
_PARENT_SPAN_ID: Final = _tag(4, _BYTES) + _varint(8)
_START: Final = _tag(7, _FIXED64)
_END: Final = _tag(8, _FIXED64)
_FLAGS: Final = _tag(16, _FIXED32)
# The SDK's kinds count from INTERNAL = 0; OTLP's from UNSPECIFIED = 0.
_KINDS: Final = {kind: _uint(6, kind.value + 1) for kind in SpanKind}


@lru_cache(maxsize=256)
def _name(name: str) -> bytes:
    return _string(5, name)


@lru_cache(maxsize=64)
def _status(code: int, description: str | None) -> bytes:
    return _delimited(15, _string(2, description) + _uint(3, code))


def _trace_state(context: SpanContext) -> bytes:
    if not context.trace_state:
        return b""
    return _string(3, ",".join(f"{key}={value}" for key, value in context.trace_state.items()))


def _span(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    assert context is not None
    assert span.start_time is not None
    assert span.end_time is not None
    parent = span.parent
    status = span.status
    parts = [
        _TRACE_ID + context.trace_id.to_bytes(16, "big"),
        _SPAN_ID + context.span_id.to_bytes(8, "big"),
        _trace_state(context),
        b"" if parent is None else _PARENT_SPAN_ID + parent.span_id.to_bytes(8, "big"),
        _name(span.name),
        _KINDS[span.kind],
        _START + _fixed64(span.start_time),
        _END + _fixed64(span.end_time),
        _key_values(9, (span.attributes or {}).items()),
        _uint(10, span.dropped_attributes),
        *map(_event, span.events),
        _uint(12, span.dropped_events),
        *map(_link, span.links),
        _uint(14, span.dropped_links),
        _status(status.status_code.value, status.description),
        _FLAGS + _flags(parent),
    ]
    return _delimited(2, b"".join(parts))


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return _delimited(1, b"")
    return _delimited(
        1,
        _string(1, scope.name)
        + _string(2, scope.version)
        + _key_values(3, (scope.attributes or {}).items()),
    )


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """An OTLP `ExportTraceServiceRequest` of ``spans``, grouped by resource, then scope."""
    # By identity: a Resource hashes by serialising its attributes to JSON, and
    # the spans of one provider share one Resource and one scope per tracer.
    resources: dict[int, Resource] = {}
    scopes: dict[int, InstrumentationScope | None] = {}
    grouped: dict[int, dict[int, list[bytes]]] = {}
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope or None
        resources[id(resource)], scopes[id(scope)] = resource, scope
        by_scope = grouped.setdefault(id(resource), {})
        by_scope.setdefault(id(scope), []).append(_span(span))
    request = []
    for resource_key, by_scope in grouped.items():
        resource = resources[resource_key]
        scope_spans = []
        for scope_key, encoded in by_scope.items():
            scope = scopes[scope_key]
            schema_url = scope.schema_url if scope is not None else None
            scope_spans.append(
                _delimited(2, _scope(scope) + b"".join(encoded) + _string(3, schema_url))
            )
        resource_spans = (
            _delimited(1, _key_values(1, resource.attributes.items()))
            + b"".join(scope_spans)
            + _string(3, resource.schema_url)
        )
        request.append(_delimited(1, resource_spans))
    return b"".join(request)


class CompactSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter, with `encode_spans` as its encoder.

    Everything else (endpoint, headers, TLS, compression, timeout, retries) is
    the SDK's, configured by the same `OTEL_EXPORTER_OTLP_*` variables. The
    encoded bytes are handed to the SDK exporter's HTTP client, a detail of
    the SDK: should a release change it, or should the SDK's own exporter
    metrics be asked for (they are counted in its `export`), the SDK's
    encoding is used instead (`uses_compact_encoding`).
    """

    @property
    def uses_compact_encoding(self) -> bool:
        if os.environ.get(_SDK_EXPORTER_METRICS, "").strip().lower() == "true":
            return False
        return callable(getattr(getattr(self, "_client", None), "export", None))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.uses_compact_encoding or getattr(self, "_shutdown", False):
            return super().export(spans)
        try:
            body = encode_spans(spans)
        except Exception:  # an unforeseen span shape: the SDK's encoder decides
            log.exception("spans could not be encoded compactly; using the SDK's encoder")
            return super().export(spans)
        sent = self._client.export(body)
        return SpanExportResult.SUCCESS if sent.success else SpanExportResult.FAILURE
