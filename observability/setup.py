"""Building the tracer and meter providers from the standard `OTEL_*` variables.

- Traces are recorded only when they can go somewhere: an OTLP endpoint
  (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`),
  `OTEL_TRACES_EXPORTER=console`, or an exporter handed in (tests). Otherwise
  no span is made at all, which is the cheapest tracing there is.
- Metrics are always served on `/metrics` in the Prometheus text format,
  and also pushed over OTLP when an endpoint is set.
- `OTEL_SDK_DISABLED=true` turns both OTLP and tracing off; `/metrics` stays.
- The SDK itself reads `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
  `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_EXPORTER_OTLP_*` headers, timeouts,
  compression and metric preferences, `OTEL_BSP_*` and
  `OTEL_METRIC_EXPORT_INTERVAL`; the export batch size has a default of ours
  (`DEFAULT_EXPORT_BATCH_SIZE`), and exemplars are off unless a metric reader
  besides Prometheus can carry them or `OTEL_METRICS_EXEMPLAR_FILTER` asks
  (`_exemplar_filter`).
- The request path's counters and histograms are `observability.metering`'s
  when every reader takes them as it keeps them, the SDK's otherwise.

Each `Telemetry` owns its providers and its Prometheus registry instead of
setting OpenTelemetry's globals, so several applications (tests) can live in
one process without seeing each other's data.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    ExemplarFilter,
    MeterProvider,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

from observability import attributes as attr
from observability import metering
from observability.instruments import Instruments
from observability.spans import LeanTracer
from observability.tenants import DEFAULT_STRATEGY, TenantLabels, parse_strategy

if TYPE_CHECKING:
    import asyncpg

DEFAULT_SERVICE_NAME = "scim-platform"
_INSTRUMENTATION = "scim-platform"
_HTTP_PROTOBUF = "http/protobuf"
_GRPC = "grpc"


# The exporter's thread encodes a whole batch while holding the GIL, and the
# event loop waits meanwhile: the SDK's 512 spans stall every request in flight
# for some 15 ms. Measured (2 workers, every request traced): batches of 128
# cut the lookup p99 from 62 to 33 ms and the create p99 from 97 to 70 ms at
# the same throughput; 64 cost 3% of it.
DEFAULT_EXPORT_BATCH_SIZE = 128


def _export_batch_size() -> int | None:
    """Ours unless `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` says otherwise (None: the SDK reads it)."""
    return None if "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" in os.environ else DEFAULT_EXPORT_BATCH_SIZE


def _exemplar_filter(metric_readers: Sequence[MetricReader]) -> metering.ExemplarFilter:
    """`OTEL_METRICS_EXEMPLAR_FILTER` (trace_based by default), or none when only `/metrics` reads.

    An exemplar ties a measurement to the span it was made in. The Prometheus
    exposition drops them, so unless the variable asks for them they are kept
    only for another reader (an OTLP push).
    """
    name = os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER")
    if name is None:
        return (
            metering.ExemplarFilter.TRACE_BASED
            if metric_readers
            else metering.ExemplarFilter.ALWAYS_OFF
        )
    try:
        return metering.ExemplarFilter(name.strip().lower())
    except ValueError as exc:
        choices = ", ".join(choice.value for choice in metering.ExemplarFilter)
        raise TelemetryConfigError(f"OTEL_METRICS_EXEMPLAR_FILTER {name!r}: use {choices}") from exc


_SDK_EXEMPLAR_FILTERS: dict[metering.ExemplarFilter, Callable[[], ExemplarFilter]] = {
    metering.ExemplarFilter.ALWAYS_OFF: AlwaysOffExemplarFilter,
    metering.ExemplarFilter.ALWAYS_ON: AlwaysOnExemplarFilter,
    metering.ExemplarFilter.TRACE_BASED: TraceBasedExemplarFilter,
}


class TelemetryConfigError(ValueError):
    """An `OTEL_*` variable asks for something this service cannot do."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scim-platform")
    except PackageNotFoundError:
        return "0"


def resource_from_env() -> Resource:
    """`OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`, with our name as the default."""
    resource = Resource.create({SERVICE_VERSION: _version()})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


def _protocol(env: Mapping[str, str], signal: str) -> str:
    protocol = (
        env.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or _HTTP_PROTOBUF
    ).strip()
    if protocol not in (_HTTP_PROTOBUF, _GRPC):
        raise TelemetryConfigError(
            f"OTLP protocol {protocol!r} is not supported; use {_HTTP_PROTOBUF} or {_GRPC}"
        )
    return protocol


def _otlp_endpoint(env: Mapping[str, str], signal: str) -> str | None:
    return (
        env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    ) or None


def _grpc_exporter(module: str, name: str) -> object:
    """An OTLP/gRPC exporter: optional, as grpcio is a large dependency most do without."""
    try:
        found = importlib.import_module(f"opentelemetry.exporter.otlp.proto.grpc.{module}")
    except ImportError as exc:
        raise TelemetryConfigError(
            "OTLP over grpc needs the opentelemetry-exporter-otlp-proto-grpc package "
            f"(or use {_HTTP_PROTOBUF}): {exc}"
        ) from exc
    exporter: object = getattr(found, name)()
    return exporter


def span_exporter_from_env(env: Mapping[str, str]) -> SpanExporter | None:
    """The exporter `OTEL_TRACES_EXPORTER` and the OTLP variables ask for, or None."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    kind = (env.get("OTEL_TRACES_EXPORTER") or "otlp").strip().lower()
    if kind == "none":
        return None
    if kind == "console":
        return ConsoleSpanExporter()
    if kind != "otlp":
        raise TelemetryConfigError(f"OTEL_TRACES_EXPORTER {kind!r}: use otlp, console or none")
    if _otlp_endpoint(env, "TRACES") is None:
        return None
    if _protocol(env, "TRACES") == _GRPC:
        return cast(SpanExporter, _grpc_exporter("trace_exporter", "OTLPSpanExporter"))
    from observability.otlp import CompactSpanExporter  # its import is heavy: only when used

    return CompactSpanExporter()


def metric_reader_from_env(env: Mapping[str, str]) -> MetricReader | None:
    """A periodic OTLP metric push, when an endpoint is set."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if (env.get("OTEL_METRICS_EXPORTER") or "otlp").strip().lower() == "none":
        return None
    if _otlp_endpoint(env, "METRICS") is None:
        return None
    if _protocol(env, "METRICS") == _GRPC:
        exporter = cast(MetricExporter, _grpc_exporter("metric_exporter", "OTLPMetricExporter"))
        return PeriodicExportingMetricReader(exporter)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return PeriodicExportingMetricReader(OTLPMetricExporter())


class Telemetry:
    """The providers, instruments and tenant labelling of one application."""

    def __init__(
        self,
        *,
        span_exporter: SpanExporter | None = None,
        metric_readers: Sequence[MetricReader] = (),
        tenant_labels: str = DEFAULT_STRATEGY,
        resource: Resource | None = None,
        batch_spans: bool = True,
    ) -> None:
        resource = resource or resource_from_env()
        scope = InstrumentationScope(_INSTRUMENTATION, _version())
        self.tenant_labels = TenantLabels(parse_strategy(tenant_labels))
        self._tracer_provider: TracerProvider | None = None
        self.tracer: Tracer | None = None
        if span_exporter is not None:
            # The sampler comes from OTEL_TRACES_SAMPLER(_ARG), parent-based by default,
            # so a caller's sampling decision in `traceparent` is honoured.
            self._tracer_provider = TracerProvider(resource=resource)
            processor = (
                BatchSpanProcessor(span_exporter, max_export_batch_size=_export_batch_size())
                if batch_spans
                else SimpleSpanProcessor(span_exporter)
            )
            self._tracer_provider.add_span_processor(processor)
            # The provider configures and, at shutdown, flushes; the spans are ours.
            self.tracer = LeanTracer(
                sampler=self._tracer_provider.sampler,
                id_generator=self._tracer_provider.id_generator,
                resource=resource,
                processor=processor,
                scope=scope,
            )
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        readers = [PrometheusMetricReader(registry=self.registry), *metric_readers]
        exemplars = _exemplar_filter(metric_readers)
        self._meter_provider = MeterProvider(
            resource=resource,
            metric_readers=readers,
            exemplar_filter=_SDK_EXEMPLAR_FILTERS[exemplars](),
        )
        meter = self._meter_provider.get_meter(scope.name, scope.version)
        lean = None
        if all(metering.takes_defaults(reader) for reader in readers):
            lean = metering.Metering(resource, scope, exemplars)
            for reader in readers:
                lean.attach(reader)
        self.instruments = Instruments(meter, self.tenant_labels.active, lean)
        self._pools: dict[str, tuple[asyncpg.Pool[Any], ...]] = {}
        meter.create_observable_gauge(
            attr.DB_CLIENT_CONNECTION_COUNT,
            callbacks=[self._observe_connections],
            unit="{connection}",
            description="Database connections of this process, by pool (shared, tenants) "
            "and state.",
        )
        self._rate_limiter: Callable[[], Any] = lambda: None
        meter.create_observable_counter(
            attr.SCIM_RATE_LIMIT_STORAGE_FAILURES,
            callbacks=[self._observe_storage_failures],
            unit="{check}",
            description="Rate-limit checks that could not reach Redis.",
        )
        self._onboardings: Callable[[], Mapping[str, int]] = dict
        meter.create_observable_counter(
            attr.SCIM_TENANT_ONBOARDINGS,
            callbacks=[self._observe_onboardings],
            unit="{tenant}",
            description="Tenants this process onboarded, by whether a spare schema was "
            "ready (spare) or the onboarding built its own (built).",
        )
        meter.create_observable_gauge(
            attr.DB_CLIENT_CONNECTION_MAX,
            callbacks=[self._observe_max],
            unit="{connection}",
            description="The most connections each pool (shared, tenants) may open.",
        )

    @classmethod
    def from_env(
        cls, tenant_labels: str = DEFAULT_STRATEGY, environ: Mapping[str, str] | None = None
    ) -> Telemetry:
        env = os.environ if environ is None else environ
        reader = metric_reader_from_env(env)
        return cls(
            span_exporter=span_exporter_from_env(env),
            metric_readers=[reader] if reader is not None else [],
            tenant_labels=tenant_labels,
        )

    def bind_pools(self, pools: Mapping[str, Sequence[asyncpg.Pool[Any]]]) -> None:
        """Report these pools' connections, summed per name (empty: the pools are closed)."""
        self._pools = {name: tuple(group) for name, group in pools.items() if group}

    def watch_rate_limiter(self, limiter: Callable[[], Any]) -> None:
        """Where the rate limiter is found (it has `storage_failures`), once it exists."""
        self._rate_limiter = limiter

    def watch_onboardings(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Where this process's onboardings are counted, by `attr.LABEL_SCHEMA` value."""
        self._onboardings = counts

    def _observe_onboardings(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        return [
            Observation(count, {attr.LABEL_SCHEMA: schema})
            for schema, count in self._onboardings().items()
        ]

    def _observe_storage_failures(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        limiter = self._rate_limiter()
        return () if limiter is None else (Observation(limiter.storage_failures),)

    def _observe_connections(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        observations = []
        for name, pools in self._pools.items():
            size = sum(pool.get_size() for pool in pools)
            idle = sum(pool.get_idle_size() for pool in pools)
            for state, count in (("idle", idle), ("used", size - idle)):
                labels = {
                    attr.DB_CLIENT_CONNECTION_POOL_NAME: name,
                    attr.DB_CLIENT_CONNECTION_STATE: state,
                }
                observations.append(Observation(count, labels))
        return observations

    def _observe_max(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        return [
            Observation(
                sum(pool.get_max_size() for pool in pools),
                {attr.DB_CLIENT_CONNECTION_POOL_NAME: name},
            )
            for name, pools in self._pools.items()
        ]

    def prometheus_text(self) -> bytes:
        """Every metric in the Prometheus text exposition format."""
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        """Flush what is buffered (spans, the last OTLP metric push) and stop."""
        if self._tracer_provider is not None:
            self._tracer_provider.shutdown()
        self._meter_provider.shutdown()
