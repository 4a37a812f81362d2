"""The lean instruments against the SDK's: the same measurements must reach readers alike.

Each test makes the same measurements through the SDK's instruments and
through `observability.metering`, each side with its own reader, and
compares what the readers collect, timestamps aside.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricReader,
    MetricsData,
    NumberDataPoint,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Span
from prometheus_client import CollectorRegistry, generate_latest

from observability.metering import CARDINALITY_LIMIT, ExemplarFilter, Labels, Metering
from observability.setup import _SDK_EXEMPLAR_FILTERS

RESOURCE = Resource({"service.name": "metering-test"})
SCOPE = InstrumentationScope("scim-platform", "1")
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 1.0)
LABELS = ("tenant", "operation", "status")

Measure = Callable[[str, float | int, Labels, Span | None], None]


class _Side:
    """One way of measuring: ``measure(kind, value, values, span)`` and a reader to collect."""

    def __init__(self, reader: MetricReader, provider: MeterProvider, measure: Measure) -> None:
        self.reader = reader
        self.provider = provider
        self.measure = measure


def _attributes(values: Labels) -> dict[str, Any]:
    return {label: value for label, value in zip(LABELS, values, strict=True) if value is not None}


def _sdk(reader: MetricReader, exemplars: ExemplarFilter) -> _Side:
    provider = MeterProvider(
        resource=RESOURCE,
        metric_readers=[reader],
        exemplar_filter=_SDK_EXEMPLAR_FILTERS[exemplars](),
    )
    meter = provider.get_meter(SCOPE.name, SCOPE.version)
    counter = meter.create_counter("requests", unit="{request}", description="Requests.")
    histogram = meter.create_histogram(
        "duration", unit="s", description="Durations.", explicit_bucket_boundaries_advisory=BOUNDS
    )

    def measure(kind: str, value: float | int, values: Labels, span: Span | None) -> None:
        context = trace.set_span_in_context(span) if span is not None else None
        if kind == "count":
            counter.add(int(value), _attributes(values), context=context)
        else:
            histogram.record(value, _attributes(values), context=context)

    return _Side(reader, provider, measure)


def _lean(reader: MetricReader, exemplars: ExemplarFilter) -> _Side:
    # As `Telemetry` does: the SDK's provider registers the reader, the lean
    # instruments join its collection.
    provider = MeterProvider(
        resource=RESOURCE,
        metric_readers=[reader],
        exemplar_filter=_SDK_EXEMPLAR_FILTERS[exemplars](),
    )
    metering = Metering(RESOURCE, SCOPE, exemplars)
    metering.attach(reader)
    counter = metering.counter("requests", unit="{request}", description="Requests.", labels=LABELS)
    histogram = metering.histogram(
        "duration", unit="s", description="Durations.", labels=LABELS, bounds=BOUNDS
    )

    def measure(kind: str, value: float | int, values: Labels, span: Span | None) -> None:
        if kind == "count":
            counter.add(int(value), values, span)
        else:
            histogram.record(value, values, span)

    return _Side(reader, provider, measure)


def _shape(data: MetricsData | None) -> list[Any]:
    """What a reader collected, without the timestamps, in a stable order."""
    assert data is not None
    shaped = []
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points = []
                for point in metric.data.data_points:
                    numbers: tuple[Any, ...]
                    if isinstance(point, NumberDataPoint):
                        numbers = (point.value,)
                    else:
                        assert isinstance(point, HistogramDataPoint)
                        numbers = (
                            point.count,
                            point.sum,
                            tuple(point.bucket_counts),
                            tuple(point.explicit_bounds),
                            point.min,
                            point.max,
                        )
                    exemplars = sorted(
                        (
                            e.value,
                            e.span_id,
                            e.trace_id,
                            tuple((e.filtered_attributes or {}).items()),
                        )
                        for e in point.exemplars
                    )
                    points.append((sorted((point.attributes or {}).items()), numbers, exemplars))
                shaped.append(
                    (
                        resource_metrics.resource.attributes.get("service.name"),
                        scope_metrics.scope.name,
                        scope_metrics.scope.version,
                        metric.name,
                        metric.unit,
                        metric.description,
                        type(metric.data).__name__,
                        getattr(metric.data, "aggregation_temporality", None),
                        getattr(metric.data, "is_monotonic", None),
                        sorted(points, key=repr),
                    )
                )
    return sorted(shaped, key=repr)


def _both(
    exemplars: ExemplarFilter, reader: Callable[[], MetricReader] = InMemoryMetricReader
) -> tuple[_Side, _Side]:
    return _sdk(reader(), exemplars), _lean(reader(), exemplars)


def _collected(side: _Side) -> MetricsData | None:
    assert isinstance(side.reader, InMemoryMetricReader)
    return side.reader.get_metrics_data()


def test_counts_and_durations_reach_the_reader_as_the_sdk_reports_them() -> None:
    sdk, lean = _both(ExemplarFilter.ALWAYS_OFF)
    values: list[tuple[str, float | int, Labels]] = [
        ("count", 1, ("acme", "list", "200")),
        ("count", 1, ("acme", "list", "200")),
        ("count", 3, ("globex", "create", "201")),
        ("count", 1, ("acme", None, "500")),  # an attribute left out
        ("time", 0.003, ("acme", "list", "200")),
        ("time", 0.005, ("acme", "list", "200")),  # on a bound: the bucket it closes
        ("time", 0.0051, ("acme", "list", "200")),
        ("time", 0.7, ("globex", "create", "201")),
        ("time", 12.0, ("globex", "create", "201")),  # above the last bound
        ("time", 0.0, ("acme", None, "500")),
    ]
    for side in (sdk, lean):
        for kind, value, labels in values:
            side.measure(kind, value, labels, None)
    assert _shape(_collected(lean)) == _shape(_collected(sdk))
    # Cumulative: a second collection adds to the first.
    for side in (sdk, lean):
        side.measure("count", 1, ("acme", "list", "200"), None)
        side.measure("time", 0.02, ("acme", "list", "200"), None)
    assert _shape(_collected(lean)) == _shape(_collected(sdk))


def test_points_beyond_the_cardinality_limit_go_to_the_overflow_point() -> None:
    sdk, lean = _both(ExemplarFilter.ALWAYS_OFF)
    for side in (sdk, lean):
        for n in range(CARDINALITY_LIMIT + 5):
            side.measure("count", 1, (f"t{n}", "list", "200"), None)
            side.measure("time", 0.01, (f"t{n}", "list", "200"), None)
        side.measure("count", 1, ("t0", "list", "200"), None)  # still its own point
    shaped = _shape(_collected(lean))
    assert shaped == _shape(_collected(sdk))
    overflow = [
        point
        for metric in shaped
        for point in metric[-1]
        if point[0] == [("otel.metric.overflow", True)]
    ]
    assert [point[1][0] for point in overflow] == [5, 5]


@pytest.mark.parametrize("exemplars", list(ExemplarFilter))
def test_exemplars_follow_the_filter_and_are_reported_once(exemplars: ExemplarFilter) -> None:
    tracer = TracerProvider().get_tracer("t")
    unsampled = TracerProvider(sampler=ALWAYS_OFF).get_tracer("t")
    sdk, lean = _both(exemplars)
    sampled_span = tracer.start_span("sampled")
    unsampled_span = unsampled.start_span("unsampled")
    for side in (sdk, lean):
        side.measure("count", 2, ("acme", "list", "200"), sampled_span)
        side.measure("count", 1, ("globex", "list", "200"), unsampled_span)
        side.measure("count", 1, ("initech", "list", "200"), None)
        side.measure("time", 0.02, ("acme", "list", "200"), unsampled_span)
        side.measure("time", 0.03, ("acme", "list", "200"), sampled_span)  # another bucket
        side.measure("time", 0.7, ("acme", "list", "200"), None)
        side.measure("time", 0.8, ("acme", "list", "200"), sampled_span)  # the bucket's latest
        side.measure("time", 5.0, ("acme", "list", "200"), None)
    first = _shape(_collected(lean))
    assert first == _shape(_collected(sdk))
    carried = [exemplar for metric in first for point in metric[-1] for exemplar in point[2]]
    if exemplars is ExemplarFilter.ALWAYS_OFF:
        assert carried == []
    else:
        assert carried
    # The next collection carries only what was measured since.
    for side in (sdk, lean):
        side.measure("time", 0.04, ("acme", "list", "200"), sampled_span)
    again = _shape(_collected(lean))
    assert again == _shape(_collected(sdk))
    assert [e for metric in again for point in metric[-1] for e in point[2]] == (
        [] if exemplars is ExemplarFilter.ALWAYS_OFF else [(0.04, *_ids(sampled_span), ())]
    )


def _ids(span: Span) -> tuple[int, int]:
    context = span.get_span_context()
    return context.span_id, context.trace_id


def test_each_reader_gets_its_own_exemplars() -> None:
    """A `/metrics` scrape must not take the exemplars an OTLP push is owed."""
    tracer = TracerProvider().get_tracer("t")
    span = tracer.start_span("s")
    scrape, push = InMemoryMetricReader(), InMemoryMetricReader()
    MeterProvider(resource=RESOURCE, metric_readers=[scrape, push])
    metering = Metering(RESOURCE, SCOPE, ExemplarFilter.TRACE_BASED)
    for reader in (scrape, push):
        metering.attach(reader)
    counter = metering.counter("requests", unit="1", description="", labels=("tenant",))
    counter.add(1, ("acme",), span)
    scraped, pushed = scrape.get_metrics_data(), push.get_metrics_data()
    for data in (scraped, pushed):
        assert [e[1] for m in _shape(data) for p in m[-1] for e in p[2]] == [_ids(span)[0]]


def test_the_sdks_own_instruments_are_collected_alongside() -> None:
    """Observable gauges stay the SDK's; both land in one scope of one resource."""
    sdk, lean = _both(ExemplarFilter.ALWAYS_OFF)

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        del options
        return [Observation(7, {"pool": "shared"})]

    for side in (sdk, lean):
        meter = side.provider.get_meter(SCOPE.name, SCOPE.version)
        meter.create_observable_gauge("connections", callbacks=[observe], unit="{connection}")
        side.measure("count", 1, ("acme", "list", "200"), None)
    data = _collected(lean)
    assert _shape(data) == _shape(_collected(sdk))
    assert data is not None
    assert [len(r.scope_metrics) for r in data.resource_metrics] == [1]
    # Before any lean measurement, the SDK's collection alone.
    _, quiet = _both(ExemplarFilter.ALWAYS_OFF)
    assert _collected(quiet) is None


def test_the_prometheus_exposition_is_the_same() -> None:
    registries = [CollectorRegistry(auto_describe=True) for _ in range(2)]
    readers = iter([PrometheusMetricReader(registry=registry) for registry in registries])
    sdk, lean = _both(ExemplarFilter.ALWAYS_OFF, lambda: next(readers))
    for side in (sdk, lean):
        side.measure("count", 1, ("acme", "list", "200"), None)
        side.measure("time", 0.02, ("acme", "list", "200"), None)
        side.measure("time", 3.0, ("acme", None, "500"), None)
    text = [generate_latest(registry).decode() for registry in registries]
    assert "duration_seconds_bucket" in text[0]
    assert text[1] == text[0]
