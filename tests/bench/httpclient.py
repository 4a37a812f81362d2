"""A minimal HTTP/1.1 keep-alive client: the only network code of the load generator.

Why not aiohttp or httpx: on this 2-core machine the load generator shares the
CPU with the service and PostgreSQL, so every microsecond it spends is taken
from what it measures. A request here is one ``write`` of pre-built bytes and a
header parse, with none of a general-purpose client's cookie, redirect, pool
and header-object machinery; the harness reports the CPU the generator used on
every workload, so whether it stays out of the way is checked on every run.
"""

from __future__ import annotations

import asyncio
import contextlib


class Connection:
    """One keep-alive connection; requests on it are sequential, as an IdP's are."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._host_header = f"Host: {host}:{port}\r\n".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, target: str, headers: bytes = b"", body: bytes = b""
    ) -> tuple[int, bytes]:
        """Send one request and return the status and the body.

        ``headers`` are complete ``Name: value\\r\\n`` lines.
        """
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._reader, self._writer
        writer.write(
            f"{method} {target} HTTP/1.1\r\n".encode()
            + self._host_header
            + f"Content-Length: {len(body)}\r\n".encode()
            + headers
            + b"\r\n"
            + body
        )
        try:
            return await self._response(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            raise

    async def _response(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length: int | None = None
        chunked = close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = value.strip().lower() == b"close"
        if chunked:
            body = await self._chunked(reader)
        elif length is not None:
            body = await reader.readexactly(length)
        elif status in (204, 304) or status < 200:
            body = b""
        else:  # no length: the body ends with the connection
            body = await reader.read()
            close = True
        if close:
            await self.close()
        return status, body

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
