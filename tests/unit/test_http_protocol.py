"""Each response's head and body leave in one write; nothing is held back or lost."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from service.http_protocol import _PairedWrites


class _Recorded:
    """The transport under the pairing: what reached it, in order."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.eof = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def write_eof(self) -> None:
        self.eof = True

    def get_extra_info(self, name: str) -> Any:
        return {"peername": ("127.0.0.1", 4321)}.get(name)


def _paired() -> tuple[_PairedWrites, _Recorded]:
    recorded = _Recorded()
    return _PairedWrites(cast(asyncio.Transport, recorded), asyncio.get_running_loop()), recorded


async def test_a_head_and_its_body_are_one_write() -> None:
    paired, recorded = _paired()
    paired.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert recorded.writes == []
    paired.write(b"{}")
    assert recorded.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    await asyncio.sleep(0)
    assert len(recorded.writes) == 1  # the turn's end finds nothing held


async def test_a_lone_write_leaves_at_the_end_of_the_loop_turn() -> None:
    paired, recorded = _paired()
    paired.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    await asyncio.sleep(0)
    assert recorded.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    # The next pair starts afresh.
    paired.write(b"a")
    paired.write(b"b")
    paired.write(b"c")
    assert recorded.writes[1:] == [b"ab"]
    await asyncio.sleep(0)
    assert recorded.writes[1:] == [b"ab", b"c"]


async def test_closing_sends_what_is_held_first_and_aborting_drops_it() -> None:
    paired, recorded = _paired()
    paired.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    paired.close()
    assert recorded.writes == [b"HTTP/1.1 400 Bad Request\r\n\r\n"]
    assert recorded.closed
    await asyncio.sleep(0)
    assert len(recorded.writes) == 1

    paired, recorded = _paired()
    paired.write(b"partial")
    paired.abort()
    await asyncio.sleep(0)
    assert (recorded.writes, recorded.aborted) == ([], True)


async def test_writelines_and_eof_keep_the_order_of_the_bytes() -> None:
    paired, recorded = _paired()
    paired.write(b"head ")
    paired.writelines([b"body ", b"more"])
    assert recorded.writes == [b"head body more"]
    paired.write(b"last")
    paired.write_eof()
    assert recorded.writes[1:] == [b"last"]
    assert recorded.eof


async def test_everything_else_is_the_transport_s() -> None:
    paired, _ = _paired()
    assert paired.get_extra_info("peername") == ("127.0.0.1", 4321)
    assert not paired.is_closing()
