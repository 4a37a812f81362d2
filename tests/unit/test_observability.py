"""The pure parts of observability: SQL summaries, route classification, tenant labels, setup."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import msgspec
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import Counter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter, SpanExportResult

from observability.database import describe
from observability.logging import JsonFormatter
from observability.metering import ExemplarFilter
from observability.middleware import _server, classify, route_of
from observability.otlp import CompactSpanExporter
from observability.setup import (
    Telemetry,
    TelemetryConfigError,
    _exemplar_filter,
    metric_reader_from_env,
    resource_from_env,
    span_exporter_from_env,
)
from observability.tenants import Strategy, TenantLabels, parse_strategy
from service.scim.clients import detect_client

SCHEMA = "t_0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            f'INSERT INTO "{SCHEMA}".users AS r (id, resource) VALUES ($1, $2) RETURNING r.id',
            ("INSERT", "INSERT users", SCHEMA),
        ),
        (
            f'SELECT r.id FROM "{SCHEMA}".users r WHERE r.id = $1 FOR UPDATE',
            ("SELECT", "SELECT users", SCHEMA),
        ),
        (
            f'SELECT r.id FROM "{SCHEMA}".groups r WHERE r.id = $1 FOR UPDATE OF r SKIP LOCKED',
            ("SELECT", "SELECT groups", SCHEMA),
        ),
        (
            f'SELECT r.id FROM "{SCHEMA}".users r FOR NO KEY UPDATE OF r',
            ("SELECT", "SELECT users", SCHEMA),
        ),
        (
            f'WITH removed AS (DELETE FROM "{SCHEMA}".group_members WHERE member_id = $1 '
            f'RETURNING group_id) UPDATE "{SCHEMA}".groups SET version = version + 1',
            ("UPDATE", "UPDATE group_members groups", SCHEMA),
        ),
        (
            f'WITH written AS (UPDATE "{SCHEMA}".users AS r SET version = r.version + 1 '
            f'RETURNING r.id), along AS (INSERT INTO "{SCHEMA}".events (id) SELECT e.id '
            "FROM unnest($2::uuid[]) AS e(id) WHERE EXISTS (SELECT FROM written)) "
            "SELECT * FROM written",
            ("UPDATE", "UPDATE users events", SCHEMA),
        ),
        (
            "WITH state AS (SELECT t.id FROM scim_control.tenants t LEFT JOIN "
            "scim_control.role_mappings m ON m.tenant = t.id WHERE t.id = $1), "
            "ok AS (SELECT FROM state s WHERE s.id IS NOT NULL), "
            f'inserted AS (INSERT INTO "{SCHEMA}".users (id) SELECT $2 '
            "WHERE EXISTS (SELECT FROM ok) RETURNING id), "
            f'along AS (INSERT INTO "{SCHEMA}".events (id) SELECT e.id FROM unnest($3::uuid[]) '
            "AS e(id) WHERE EXISTS (SELECT FROM inserted)) SELECT s.* FROM state s",
            ("INSERT", "INSERT users events tenants", SCHEMA),
        ),
        (
            f'INSERT INTO "{SCHEMA}".user_roles AS s (id, roles) SELECT $1, $2 '
            "ON CONFLICT (id) DO UPDATE SET roles = excluded.roles",
            ("INSERT", "INSERT user_roles", SCHEMA),
        ),
        (
            f'WITH RECURSIVE reach(member_id, depth) AS (SELECT member_id, 1 FROM "{SCHEMA}"'
            ".group_members UNION SELECT r.member_id, r.depth + 1 FROM reach r) "
            "SELECT member_id FROM reach",
            ("SELECT", "SELECT group_members", SCHEMA),
        ),
        (
            "SELECT t.id FROM scim_control.tenants AS t "
            "LEFT JOIN scim_control.rate_limits AS r ON r.tenant = t.id WHERE t.slug = $1",
            ("SELECT", "SELECT tenants rate_limits", "scim_control"),
        ),
        (
            f'SELECT m.id FROM unnest($2::uuid[]) AS m(id) JOIN "{SCHEMA}".users u ON true',
            ("SELECT", "SELECT users", SCHEMA),
        ),
        ("SELECT pg_notify($1, $2)", ("SELECT", "SELECT pg_notify", None)),
        ("BEGIN ISOLATION LEVEL READ COMMITTED;", ("BEGIN", "BEGIN", None)),
        ("", ("UNKNOWN", "UNKNOWN", None)),
    ],
)
def test_statements_are_summarised_without_values(
    sql: str, expected: tuple[str, str, str | None]
) -> None:
    assert describe(sql) == expected


def test_a_summary_names_at_most_three_tables() -> None:
    sql = "SELECT 1 FROM a JOIN b ON true JOIN c ON true JOIN d ON true JOIN a ON true"
    assert describe(sql)[1] == "SELECT a b c"


@pytest.mark.parametrize(
    ("method", "route", "expected"),
    [
        ("GET", "/scim/v2/{tenant}/Users", ("User", "list")),
        ("POST", "/scim/v2/{tenant}/Users", ("User", "create")),
        ("POST", "/scim/v2/{tenant}/Groups/.search", ("Group", "search")),
        ("GET", "/scim/v2/{tenant}/Groups/{resource_id}", ("Group", "get")),
        ("PUT", "/scim/v2/{tenant}/Users/{resource_id}", ("User", "replace")),
        ("PATCH", "/scim/v2/{tenant}/Users/{resource_id}", ("User", "patch")),
        ("DELETE", "/scim/v2/{tenant}/Groups/{resource_id}", ("Group", "delete")),
        ("POST", "/scim/v2/{tenant}/.search", ("root", "search")),
        ("POST", "/scim/v2/{tenant}/Bulk", ("Bulk", "bulk")),
        ("GET", "/scim/v2/{tenant}/ServiceProviderConfig", ("ServiceProviderConfig", "get")),
        ("GET", "/scim/v2/{tenant}/Schemas", ("Schemas", "list")),
        ("GET", "/scim/v2/{tenant}/ResourceTypes/{type_id}", ("ResourceTypes", "get")),
        ("GET", "/admin/v1/tenants", None),
        ("GET", "/readyz", None),
    ],
)
def test_routes_are_classified(method: str, route: str, expected: tuple[str, str] | None) -> None:
    assert classify(method, route) == expected


def test_route_templates_lose_their_parameter_types() -> None:
    assert route_of("/scim/v2/{tenant:str}/Users/{resource_id:str}") == (
        "/scim/v2/{tenant}/Users/{resource_id}"
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("scim.example.com", ("scim.example.com", None)),
        ("scim.example.com:8443", ("scim.example.com", 8443)),
        ("[::1]:8000", ("::1", 8000)),
        ("[2001:db8::1]", ("2001:db8::1", None)),
        (None, ("10.0.0.5", 8000)),
    ],
)
def test_server_address_and_port(host: str | None, expected: tuple[str, int | None]) -> None:
    assert _server({"server": ("10.0.0.5", 8000)}, host) == expected


@pytest.mark.parametrize(
    ("user_agent", "idp_type", "expected"),
    [
        ("Microsoft.Identity.Provisioning/1.0", "generic", "entra"),
        ("Okta SCIM Client 1.0.0", "entra", "okta"),
        ("OneLogin SCIM", None, "onelogin"),
        ("Google-Auto-Provisioning", "generic", "google"),
        ("JumpCloud SCIM Client", "generic", "jumpcloud"),
        ("curl/8.5.0", "okta", "okta"),
        (None, "jumpcloud", "jumpcloud"),
        ("python-httpx/0.28", "generic", "generic"),
        (None, "something-new", "generic"),
    ],
)
def test_client_detection(user_agent: str | None, idp_type: str | None, expected: str) -> None:
    assert detect_client(user_agent, idp_type) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("all", Strategy("all")),
        ("none", Strategy("none")),
        ("top:25", Strategy("top", top=25)),
        ("allow:acme, contoso", Strategy("allow", allowed=frozenset({"acme", "contoso"}))),
    ],
)
def test_tenant_label_strategies_parse(raw: str, expected: Strategy) -> None:
    assert parse_strategy(raw) == expected


@pytest.mark.parametrize("raw", ["top:0", "top:x", "allow:", "some", ""])
def test_bad_tenant_label_strategies_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match=r"top|allow|expected"):
        parse_strategy(raw)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_top_n_admits_the_first_tenants_then_keeps_the_busiest() -> None:
    clock = Clock()
    labels = TenantLabels(parse_strategy("top:2"), refresh_seconds=60, clock=clock)
    assert labels.seen("a") == "a"
    assert labels.seen("b") == "b"
    assert labels.seen("c") == "other", "the set is full"
    for _ in range(10):
        labels.seen("c")
    labels.seen("b")
    clock.now += 61
    # The refresh ranks c (11 requests) and b (2) above a (1).
    assert labels.seen("c") == "c"
    assert labels.seen("a") == "other"
    assert labels.label("b") == "b"
    assert labels.label("a") == "other"
    assert labels.label(None) == "other"


def test_allow_list_none_and_all() -> None:
    allow = TenantLabels(parse_strategy("allow:acme"))
    assert (allow.seen("acme"), allow.seen("other-co")) == ("acme", "other")
    assert allow.label("acme") == "acme", "allowed tenants are labelled before their first call"
    nobody = TenantLabels(parse_strategy("none"))
    assert nobody.seen("acme") == "other"
    everyone = TenantLabels(parse_strategy("all"))
    assert everyone.label("acme") == "other", "not yet authenticated"
    assert everyone.seen("acme") == "acme"
    assert everyone.label("acme") == "acme"


def test_active_tenants_are_those_seen_in_the_last_five_minutes() -> None:
    clock = Clock()
    labels = TenantLabels(parse_strategy("none"), clock=clock)
    labels.seen("a")
    clock.now += 200
    labels.seen("b")
    assert labels.active() == 2
    clock.now += 200
    assert labels.active() == 1


def test_no_endpoint_means_no_span_exporter() -> None:
    assert span_exporter_from_env({}) is None
    assert metric_reader_from_env({}) is None


def test_an_otlp_endpoint_selects_the_http_exporters() -> None:
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}
    exporter = span_exporter_from_env(env)
    assert isinstance(exporter, CompactSpanExporter)
    assert isinstance(exporter, OTLPSpanExporter), "the SDK's exporter, with a faster encoder"
    assert metric_reader_from_env(env) is None, "a traces endpoint says nothing about metrics"
    both = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert metric_reader_from_env(both) is not None


def test_exporter_switches() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert span_exporter_from_env({**endpoint, "OTEL_SDK_DISABLED": "true"}) is None
    assert span_exporter_from_env({**endpoint, "OTEL_TRACES_EXPORTER": "none"}) is None
    assert isinstance(
        span_exporter_from_env({"OTEL_TRACES_EXPORTER": "console"}), ConsoleSpanExporter
    )
    with pytest.raises(TelemetryConfigError, match="zipkin"):
        span_exporter_from_env({**endpoint, "OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(TelemetryConfigError, match="http/json"):
        span_exporter_from_env({**endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_service_name_defaults_to_ours_and_honours_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert resource_from_env().attributes["service.name"] == "scim-platform"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "scim-eu")
    assert resource_from_env().attributes["service.name"] == "scim-eu"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=scim-us,region=us")
    resource = resource_from_env()
    assert (resource.attributes["service.name"], resource.attributes["region"]) == (
        "scim-us",
        "us",
    )


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("scim.access", logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def test_log_fields_are_merged_and_redacted() -> None:
    token = "scimsk_" + "a" * 38
    line = msgspec.json.decode(
        JsonFormatter().format(
            _record("GET /x 200", fields={"status": 200, "path": f"/x/{token}", "message": "no"})
        )
    )
    assert line["status"] == 200
    assert line["path"] == "/x/[REDACTED]"
    assert line["message"] == "GET /x 200", "a field cannot overwrite the standard keys"
    assert "trace_id" not in line


def test_log_lines_inside_a_span_carry_its_ids() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        line = msgspec.json.decode(JsonFormatter().format(_record("inside")))
    context = span.get_span_context()
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")


class _Batches(SpanExporter):
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.sizes.append(len(spans))
        return SpanExportResult.SUCCESS


@pytest.mark.parametrize(("configured", "largest"), [(None, 128), ("500", 300)])
def test_spans_are_exported_in_batches_of_128_unless_configured(
    monkeypatch: pytest.MonkeyPatch, configured: str | None, largest: int
) -> None:
    """Small batches keep the exporter's thread from stalling the event loop for long."""
    if configured is None:
        monkeypatch.delenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", raising=False)
    else:
        monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", configured)
    exporter = _Batches()
    telemetry = Telemetry(span_exporter=exporter)
    assert telemetry.tracer is not None
    for _ in range(300):
        telemetry.tracer.start_span("s").end()
    telemetry.shutdown()
    assert sum(exporter.sizes) == 300
    assert max(exporter.sizes) == largest


def test_exemplars_are_kept_only_where_a_reader_can_carry_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_METRICS_EXEMPLAR_FILTER", raising=False)
    # Only /metrics: the Prometheus exposition has no place for them.
    assert _exemplar_filter([]) is ExemplarFilter.ALWAYS_OFF
    # An OTLP push (any other reader): the SDK's default, or what the variable says.
    assert _exemplar_filter([InMemoryMetricReader()]) is ExemplarFilter.TRACE_BASED
    monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", "always_on")
    assert _exemplar_filter([]) is ExemplarFilter.ALWAYS_ON
    monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", "sometimes")
    with pytest.raises(TelemetryConfigError, match="OTEL_METRICS_EXEMPLAR_FILTER"):
        _exemplar_filter([])


def _exemplar_span_ids(data: MetricsData | None, name: str) -> list[int | None]:
    assert data is not None
    return [
        exemplar.span_id
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
        for exemplar in point.exemplars
    ]


def test_a_pushing_reader_gets_the_span_of_a_measurement_as_its_exemplar(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_METRICS_EXEMPLAR_FILTER", raising=False)
    reader = InMemoryMetricReader()
    telemetry = Telemetry(span_exporter=_Batches(), metric_readers=[reader])
    assert telemetry.tracer is not None
    span = telemetry.tracer.start_span("request")
    with trace.use_span(span, end_on_exit=True):
        telemetry.instruments.http_duration.record(0.01, ("GET", 200, None, None), span)
    assert _exemplar_span_ids(reader.get_metrics_data(), "http.server.request.duration") == [
        span.get_span_context().span_id
    ]
    telemetry.shutdown()


def test_a_reader_asking_for_delta_gets_the_sdks_instruments() -> None:
    """The lean instruments keep cumulative points only; delta is the SDK's to compute."""
    delta = InMemoryMetricReader(preferred_temporality={Counter: AggregationTemporality.DELTA})
    telemetry = Telemetry(metric_readers=[delta])
    for _ in range(2):
        telemetry.instruments.scim_requests.add(1, ("acme", "User", "list", "200"))
        data = delta.get_metrics_data()
        assert data is not None
        [requests] = [
            metric
            for scope in data.resource_metrics[0].scope_metrics
            for metric in scope.metrics
            if metric.name == "scim.requests"
        ]
        assert isinstance(requests.data, Sum)
        assert requests.data.aggregation_temporality is AggregationTemporality.DELTA
        assert [point.value for point in requests.data.data_points] == [1]
    telemetry.shutdown()
