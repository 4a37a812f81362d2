"""An OTLP/HTTP collector on 127.0.0.1 that reads each export and drops it.

The benchmarks trace every request, as the performance targets require, and
need somewhere for the spans to go that costs the service what a real
collector would (the same encoding and HTTP export) without a collector
process competing for the machine's two cores.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink:
    def __init__(self) -> None:
        self.exports = 0
        self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.exports += 1
                sink.bytes += len(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                del format, args

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        """For `OTEL_EXPORTER_OTLP_ENDPOINT`: exporters append `/v1/traces`, `/v1/metrics`."""
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
