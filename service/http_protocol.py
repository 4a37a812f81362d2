"""uvicorn's httptools protocol, sending each response's head and body in one system call.

uvicorn writes a response as two transport writes, the status line with the
headers and then the body; on uvloop each write is a `send(2)` of its own and
a TCP segment of its own, which the client's kernel wakes up for. Here a
write is held until the next one and both go out together; a write with no
successor in the same turn of the event loop (a `100 Continue`, the last
chunk of a stream) goes out at the end of that turn, and closing the
connection sends what is held first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _PairedWrites:
    """A transport that joins each write with the next one."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = data
            self._loop.call_soon(self._flush)
            return
        held, self._held = self._held, None
        self._transport.write(held + data)

    def writelines(self, chunks: Iterable[bytes]) -> None:
        self.write(b"".join(chunks))

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over `_PairedWrites`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, _PairedWrites(transport, self.loop)))
