"""OTLP over HTTP, configured only by `OTEL_*` variables, received by a tiny local collector."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar.testing import AsyncTestClient
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from observability.setup import Telemetry
from service.app import create_app
from service.settings import Settings
from tests.support.application import BASE_URL, make_tenant
from tests.support.otlp_receiver import OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver(keep=True)
    yield receiver
    receiver.close()


def values(attributes: list[KeyValue]) -> dict[str, object]:
    found: dict[str, object] = {}
    for item in attributes:
        kind = item.value.WhichOneof("value")
        found[item.key] = getattr(item.value, kind) if kind else None
    return found


async def test_traces_and_metrics_reach_an_otlp_http_endpoint(
    settings: Settings, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "scim-under-test")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=ci")
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    app = create_app(settings, Telemetry.from_env("all"))
    async with AsyncTestClient(app, base_url=BASE_URL) as client:
        tenant = await make_tenant(client)
        response = await client.get(
            f"{tenant.scim}/Users",
            headers=tenant.auth() | {"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
        )
        assert response.status_code == 200
    # Leaving the client ran the lifespan's shutdown, which flushed both signals.

    spans = []
    for body in receiver.bodies("/v1/traces"):
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = values(list(resource_spans.resource.attributes))
            assert resource["service.name"] == "scim-under-test"
            assert resource["deployment.environment.name"] == "ci"
            for scope_spans in resource_spans.scope_spans:
                spans.extend(scope_spans.spans)
    [server] = [span for span in spans if span.name == "GET /scim/v2/{tenant}/Users"]
    assert server.trace_id.hex() == trace_id
    assert server.parent_span_id.hex() == "b7ad6b7169203331"
    found = values(list(server.attributes))
    assert found["scim.tenant.slug"] == tenant.slug
    assert found["scim.operation"] == "list"
    assert found["http.response.status_code"] == 200
    statements = [span for span in spans if span.parent_span_id == server.span_id]
    assert any(values(list(span.attributes)).get("db.query.summary") for span in statements)

    metric_names: set[str] = set()
    for body in receiver.bodies("/v1/metrics"):
        request = ExportMetricsServiceRequest.FromString(body)
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                metric_names.update(metric.name for metric in scope_metrics.metrics)
    assert {"scim.requests", "scim.request.duration", "http.server.request.duration"} <= (
        metric_names
    )
