"""A webhook receiver on 127.0.0.1 for the tests: records what it gets, answers as told."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


Behaviour = Callable[[int], tuple[int, float]]
"""Given the 0-based number of the request, the status to answer and seconds to wait first."""


def always_ok(_: int) -> tuple[int, float]:
    return 200, 0.0


@dataclass
class Receiver:
    behaviour: Behaviour = always_ok
    requests: list[Received] = field(default_factory=list)
    """Every request, whatever it was answered."""
    accepted: list[Received] = field(default_factory=list)
    """The requests answered with a 2xx."""
    port: int = 0
    in_flight: int = 0
    max_in_flight: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            index = len(self.requests)
            received = Received(headers, body)
            self.requests.append(received)
            status, delay = self.behaviour(index)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(delay)
            finally:
                self.in_flight -= 1
            if 200 <= status < 300:
                self.accepted.append(received)
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def wait_for_request(self, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not self.requests:
            if time.monotonic() > deadline:
                raise AssertionError("the receiver got no request")
            await asyncio.sleep(0.02)

    async def wait_for(self, accepted: int, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while len(self.accepted) < accepted:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"receiver got {len(self.accepted)} of {accepted} events "
                    f"({len(self.requests)} requests)"
                )
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(behaviour: Behaviour = always_ok) -> AsyncIterator[Receiver]:
    receiver = Receiver(behaviour)
    server = await asyncio.start_server(receiver._handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()
        await server.wait_closed()
