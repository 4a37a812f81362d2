"""`GET /metrics`: every metric of this process in the Prometheus text format."""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import State
from prometheus_client import CONTENT_TYPE_LATEST

from observability.setup import Telemetry


@get("/metrics", sync_to_thread=False, include_in_schema=False)
def metrics(state: State) -> Response[bytes]:
    telemetry: Telemetry = state.telemetry
    return Response(telemetry.prometheus_text(), media_type=CONTENT_TYPE_LATEST)
