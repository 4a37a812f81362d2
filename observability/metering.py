"""Counters and histograms of the request path, aggregated in place and read by the SDK's readers.

Every request makes three measurements (two durations and a count), and
each write one more. Through the SDK's instruments a measurement costs
15-20 us, once per metric reader (`/metrics` and an OTLP push make two),
plus an exemplar offer: ~62 us per request in a loop, and 12% of a served
lookup's CPU when profiled (the benchmark's configuration: both readers,
every request traced). These instruments keep one point per tuple of
attribute values, found with one dict lookup under one lock, ~1 us each.

At each collection a reader gets these points merged into what the SDK's
own instruments (the observable gauges) gave it, as the SDK's data types,
so the Prometheus exposition and the OTLP exporters read them as they
read the SDK's. That covers what readers ask by default: cumulative
temporality, a sum per counter and explicit buckets per histogram, and
the SDK's cardinality limit with its overflow point. `takes_defaults`
tells whether a reader asks for something else (say
`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta`); then the SDK's
instruments are used instead (`observability.instruments`).

Exemplars follow the SDK's: the measurement's span, when it is sampled
(`trace_based`) or always (`always_on`); one per counter point and one per
histogram bucket, the latest, each reported to a reader once, as the SDK's
reservoirs are emptied by each collection.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from time import time_ns
from typing import Any, Final

from opentelemetry.sdk.metrics import Counter, Exemplar
from opentelemetry.sdk.metrics import Histogram as HistogramInstrument
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.metrics.view import DefaultAggregation, ExplicitBucketHistogramAggregation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

Labels = tuple[AttributeValue | None, ...]
"""Attribute values in the instrument's label order; None leaves that attribute out."""

CARDINALITY_LIMIT: Final = 2000
"""Points per instrument before the overflow point takes the rest: the SDK's default."""
_OVERFLOW_ATTRIBUTES: Final[dict[str, AttributeValue]] = {"otel.metric.overflow": True}

_Sample = tuple[float, int, int | None, int | None]
"""A measurement kept as an exemplar: value, time, span id, trace id (the `Exemplar`
is made when collected, not for every measurement)."""


def attributes_of(labels: tuple[str, ...], values: Labels) -> dict[str, AttributeValue]:
    """The attributes ``values`` name, in ``labels``' order, without the ones left out."""
    return {label: value for label, value in zip(labels, values, strict=True) if value is not None}


class ExemplarFilter(Enum):
    """Which measurements may become exemplars (`OTEL_METRICS_EXEMPLAR_FILTER`)."""

    ALWAYS_OFF = "always_off"
    ALWAYS_ON = "always_on"
    TRACE_BASED = "trace_based"


def takes_defaults(reader: MetricReader) -> bool:
    """Whether ``reader`` wants counters and histograms as these instruments keep them.

    Reads the reader's resolved preferences, which the SDK keeps in private
    attributes (the provider reads them the same way); a reader without them
    is taken as not taking the defaults, so the SDK's instruments serve it.
    """
    temporality = getattr(reader, "_instrument_class_temporality", None)
    aggregation = getattr(reader, "_instrument_class_aggregation", None)
    limit = getattr(reader, "_instrument_class_cardinality_limit", None)
    if not (isinstance(temporality, dict) and isinstance(aggregation, dict)):
        return False
    if not isinstance(limit, dict):
        return False
    ours = [cls for cls in temporality if issubclass(cls, (Counter, HistogramInstrument))]
    return bool(ours) and all(
        temporality.get(cls) is AggregationTemporality.CUMULATIVE
        and _default(aggregation.get(cls))
        and limit.get(cls) == CARDINALITY_LIMIT
        for cls in ours
    )


def _default(aggregation: object) -> bool:
    """The default aggregation, or explicit buckets as the instrument advises (the OTLP
    exporters' choice for histograms unless told otherwise)."""
    if isinstance(aggregation, ExplicitBucketHistogramAggregation):
        return (
            getattr(aggregation, "_boundaries", ()) is None
            and getattr(aggregation, "_record_min_max", False) is True
        )
    return isinstance(aggregation, DefaultAggregation)


class _Instrument(ABC):
    def __init__(
        self, meter: Metering, name: str, *, unit: str, description: str, labels: tuple[str, ...]
    ) -> None:
        self.name = name
        self.unit = unit
        self.description = description
        self._labels = labels
        # One longer than any tuple of values: no measurement's key can equal it.
        self._overflow: Labels = (None,) * (len(labels) + 1)
        self._lock = meter.lock
        self._filter = meter.exemplar_filter

    def _admitted(self, values: Labels, points: int) -> Labels:
        """The key of a new point for ``values``, the instrument having ``points``: the
        overflow point's once the cardinality limit is reached."""
        return values if points < CARDINALITY_LIMIT else self._overflow

    def _attributes(self, values: Labels) -> dict[str, AttributeValue]:
        if values == self._overflow:
            return dict(_OVERFLOW_ATTRIBUTES)
        return attributes_of(self._labels, values)

    def _exemplar(self, value: float, span: Span | None) -> _Sample | None:
        if self._filter is ExemplarFilter.ALWAYS_OFF:
            return None
        context = span.get_span_context() if span is not None else None
        if context is not None and context.is_valid:
            if self._filter is ExemplarFilter.TRACE_BASED and not context.trace_flags.sampled:
                return None
            return (value, time_ns(), context.span_id, context.trace_id)
        if self._filter is ExemplarFilter.ALWAYS_ON:
            return (value, time_ns(), None, None)
        return None

    def collect(self, now: int, since: int) -> Metric | None:
        """The instrument's points at ``now``, with the exemplars taken after ``since``."""
        with self._lock:
            points = self._points_at(now, since)
        if not points:
            return None
        return Metric(self.name, self.description, self.unit, self._data(points))

    @abstractmethod
    def _points_at(self, now: int, since: int) -> list[Any]:
        """Each point as the SDK's data point type; called under the lock."""

    @abstractmethod
    def _data(self, points: list[Any]) -> Sum | Histogram:
        """``points`` as the SDK's data of this kind of instrument."""


@dataclass(slots=True)
class _SumPoint:
    start: int
    value: int = 0
    exemplar: _Sample | None = None


class LeanCounter(_Instrument):
    """A monotonic sum per tuple of attribute values."""

    def __init__(
        self, meter: Metering, name: str, *, unit: str, description: str, labels: tuple[str, ...]
    ) -> None:
        super().__init__(meter, name, unit=unit, description=description, labels=labels)
        self._points: dict[Labels, _SumPoint] = {}

    def add(self, amount: int, values: Labels, span: Span | None = None) -> None:
        exemplar = self._exemplar(amount, span)
        with self._lock:
            point = self._points.get(values)
            if point is None:
                key = self._admitted(values, len(self._points))
                point = self._points.setdefault(key, _SumPoint(time_ns()))
            point.value += amount
            if exemplar is not None:
                point.exemplar = exemplar

    def _points_at(self, now: int, since: int) -> list[Any]:
        return [
            NumberDataPoint(
                self._attributes(values),
                point.start,
                now,
                point.value,
                _newer([point.exemplar], since),
            )
            for values, point in self._points.items()
        ]

    def _data(self, points: list[Any]) -> Sum:
        return Sum(points, AggregationTemporality.CUMULATIVE, is_monotonic=True)


@dataclass(slots=True)
class _HistogramPoint:
    start: int
    counts: list[int]
    exemplars: list[_Sample | None]
    count: int = 0
    total: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")


class LeanHistogram(_Instrument):
    """Explicit-bucket histograms per tuple of attribute values."""

    def __init__(
        self,
        meter: Metering,
        name: str,
        *,
        unit: str,
        description: str,
        labels: tuple[str, ...],
        bounds: Sequence[float],
    ) -> None:
        super().__init__(meter, name, unit=unit, description=description, labels=labels)
        self._bounds = tuple(bounds)
        self._points: dict[Labels, _HistogramPoint] = {}

    def record(self, value: float, values: Labels, span: Span | None = None) -> None:
        # A value on a bound belongs to the bucket it closes, as (lower, upper] says.
        bucket = bisect_left(self._bounds, value)
        exemplar = self._exemplar(value, span)
        with self._lock:
            point = self._points.get(values)
            if point is None:
                key = self._admitted(values, len(self._points))
                buckets = len(self._bounds) + 1
                point = self._points.setdefault(
                    key, _HistogramPoint(time_ns(), [0] * buckets, [None] * buckets)
                )
            point.counts[bucket] += 1
            point.count += 1
            point.total += value
            point.low = min(point.low, value)
            point.high = max(point.high, value)
            if exemplar is not None:
                point.exemplars[bucket] = exemplar

    def _points_at(self, now: int, since: int) -> list[Any]:
        return [
            HistogramDataPoint(
                self._attributes(values),
                point.start,
                now,
                point.count,
                point.total,
                list(point.counts),
                self._bounds,
                point.low,
                point.high,
                _newer(point.exemplars, since),
            )
            for values, point in self._points.items()
        ]

    def _data(self, points: list[Any]) -> Histogram:
        return Histogram(points, AggregationTemporality.CUMULATIVE)


def _newer(samples: Sequence[_Sample | None], since: int) -> list[Exemplar]:
    return [Exemplar({}, *sample) for sample in samples if sample is not None and sample[1] > since]


_Collect = Callable[..., MetricsData | None]


class Metering:
    """The lean instruments of one `Telemetry`, and their delivery to its readers."""

    def __init__(
        self, resource: Resource, scope: InstrumentationScope, exemplar_filter: ExemplarFilter
    ) -> None:
        self.lock = threading.Lock()
        """One for all instruments: measurements come from the event loop, collections
        from the OTLP reader's thread, and a point is read whole."""
        self.exemplar_filter = exemplar_filter
        self._resource = resource
        self._scope = scope
        self._instruments: list[_Instrument] = []
        self._collected: dict[int, int] = {}

    def counter(
        self, name: str, *, unit: str, description: str, labels: tuple[str, ...]
    ) -> LeanCounter:
        counter = LeanCounter(self, name, unit=unit, description=description, labels=labels)
        self._instruments.append(counter)
        return counter

    def histogram(
        self,
        name: str,
        *,
        unit: str,
        description: str,
        labels: tuple[str, ...],
        bounds: Sequence[float],
    ) -> LeanHistogram:
        histogram = LeanHistogram(
            self, name, unit=unit, description=description, labels=labels, bounds=bounds
        )
        self._instruments.append(histogram)
        return histogram

    def attach(self, reader: MetricReader) -> None:
        """Have ``reader`` collect these instruments with the SDK's, once the provider
        has registered it (the provider sets the collection callback this wraps)."""
        sdk_collect: _Collect | None = getattr(reader, "_collect", None)

        def collect(reader: MetricReader, timeout_millis: float = 10_000) -> MetricsData | None:
            sdk = (
                None if sdk_collect is None else sdk_collect(reader, timeout_millis=timeout_millis)
            )
            return self._merged(sdk, self._collect_for(reader))

        # The SDK's annotation of the callback's second parameter is wrong: the
        # reader passes `timeout_millis`, as the provider's own callback takes.
        reader._set_collect_callback(collect)  # type: ignore[arg-type]

    def _collect_for(self, reader: MetricReader) -> list[Metric]:
        now = time_ns()
        since = self._collected.get(id(reader), 0)
        self._collected[id(reader)] = now
        return [
            metric
            for instrument in self._instruments
            if (metric := instrument.collect(now, since)) is not None
        ]

    def _merged(self, sdk: MetricsData | None, metrics: list[Metric]) -> MetricsData | None:
        if not metrics:
            return sdk
        found: list[Any] = list(sdk.resource_metrics) if sdk is not None else []
        if not found:
            scope = ScopeMetrics(self._scope, metrics, self._scope.schema_url or "")
            return MetricsData(
                [ResourceMetrics(self._resource, [scope], self._resource.schema_url)]
            )
        first: ResourceMetrics = found[0]
        scopes = list(first.scope_metrics)
        for index, scope_metrics in enumerate(scopes):
            if scope_metrics.scope == self._scope:
                scopes[index] = ScopeMetrics(
                    scope_metrics.scope,
                    [*scope_metrics.metrics, *metrics],
                    scope_metrics.schema_url,
                )
                break
        else:
            scopes.append(ScopeMetrics(self._scope, metrics, self._scope.schema_url or ""))
        found[0] = ResourceMetrics(first.resource, scopes, first.schema_url)
        return MetricsData(found)
