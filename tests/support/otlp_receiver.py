"""An OTLP/HTTP collector on 127.0.0.1, for tests (which read what arrived) and
benchmarks (which only count it).

The benchmarks trace every request, as the performance targets require, and
need somewhere for the spans to go that costs the service what a real
collector would (the same encoding and HTTP export) without a collector
process competing for the machine's two cores.
"""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class OtlpReceiver:
    def __init__(self, *, keep: bool = False) -> None:
        """``keep``: remember each export's (path, content type, body), gunzipped."""
        self.exports = 0
        self.bytes = 0
        self.received: list[tuple[str, str, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as a real collector serves: an exporter sends every batch on
            # one connection, not a new connection per batch (HTTP/1.0's default).
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.exports += 1
                receiver.bytes += len(body)
                if keep:
                    if self.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    receiver.received.append((self.path, self.headers["Content-Type"], body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                del format, args

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        """For `OTEL_EXPORTER_OTLP_ENDPOINT`: exporters append `/v1/traces`, `/v1/metrics`."""
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[bytes]:
        return [body for got, _, body in self.received if got == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
