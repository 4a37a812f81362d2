"""What the served HTTP/1.1 looks like on the wire: pipelining, `100 Continue`, `close`.

`serve` writes each response's head and body in one system call
(`service.http_protocol`); these replay what clients do on a raw socket.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.support.application import ADMIN_TOKEN
from tests.support.ports import free_port
from tests.support.serving import served


@pytest.fixture(scope="module")
def address(
    migrated_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int]]:
    tmp = tmp_path_factory.mktemp("wire")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_")}
    env |= {
        "DATABASE_URL": migrated_database,
        "SCIM_DATA_DIR": str(tmp / "unused-data"),
        "SCIM_ADMIN_TOKEN": ADMIN_TOKEN,
        "SCIM_LOG_LEVEL": "WARNING",
    }
    with served(env, free_port(), tmp / "serve.log") as url:
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        yield parts.hostname, parts.port


class _Reader:
    """Responses read off a socket one at a time (Content-Length framed)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"connection closed mid-head: {self.buffer!r}"
        raw, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = raw.decode().split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), headers

    def response(self) -> tuple[int, dict[str, str], bytes]:
        status, headers = self.head()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert self._fill(), "connection closed mid-body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def closed(self) -> bool:
        return not self.buffer and not self._fill()


def _connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def test_pipelined_requests_get_their_responses_in_order(address: tuple[str, int]) -> None:
    with _connect(address) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /no-such-page HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        reader = _Reader(sock)
        statuses = [reader.response()[0] for _ in range(3)]
    assert statuses == [200, 404, 200]


def test_a_client_that_expects_100_continue_gets_it_before_sending_its_body(
    address: tuple[str, int],
) -> None:
    body = json.dumps({"slug": "wire-expect", "name": "Wire"}).encode()
    with _connect(address) as sock:
        sock.sendall(
            b"POST /admin/v1/tenants HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {ADMIN_TOKEN}\r\n".encode()
            + b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        reader = _Reader(sock)
        assert reader.head()[0] == 100
        sock.sendall(body)
        status, headers, answer = reader.response()
    assert status == 201, answer
    assert headers["content-type"].startswith("application/json")
    assert json.loads(answer)["slug"] == "wire-expect"


def test_connection_close_ends_the_connection_after_a_whole_response(
    address: tuple[str, int],
) -> None:
    with _connect(address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reader = _Reader(sock)
        status, headers, body = reader.response()
        assert (status, headers.get("connection")) == (200, "close")
        assert json.loads(body)
        assert reader.closed()
