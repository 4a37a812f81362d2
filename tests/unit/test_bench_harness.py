"""The benchmark's own pieces that can be wrong without any service: HTTP parsing, statistics."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.bench import environment, loadgen
from tests.bench.httpclient import Connection
from tests.bench.loadgen import Samples, Target, Workload, _run
from tests.bench.report import Cpu, Report, percentile, render
from tests.bench.run import CpuWindow, summarise_profile

_ANSWERS = {
    b"/length": b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello",
    b"/chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n"
    ),
    b"/empty": b"HTTP/1.1 204 No Content\r\n\r\n",
    b"/close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
}


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, list[int]]]:
    """A server answering by path; it records how many connections it accepted."""
    accepted: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            path = head.split(b" ")[1]
            writer.write(_ANSWERS[path])
            await writer.drain()
            if path == b"/close":
                break
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield port, accepted


async def test_client_reads_every_body_framing_and_reuses_connections(
    server: tuple[int, list[int]],
) -> None:
    port, accepted = server
    conn = Connection("127.0.0.1", port)
    assert await conn.request("POST", "/length", b"X-A: b\r\n", b"{}") == (201, b"hello")
    assert await conn.request("GET", "/chunked") == (200, b"abcdefg")
    assert await conn.request("DELETE", "/empty") == (204, b"")
    assert len(accepted) == 1
    assert await conn.request("GET", "/close") == (200, b"until the end")
    assert await conn.request("GET", "/length") == (201, b"hello")
    assert len(accepted) == 2
    await conn.close()


@pytest.fixture
async def slow_server() -> AsyncIterator[tuple[int, list[float]]]:
    """A server answering every request with an empty list after ``delay[0]`` seconds."""
    delay = [0.0]
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            await asyncio.sleep(delay[0])
            writer.write(answer)
            await writer.drain()
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with listener:
        yield listener.sockets[0].getsockname()[1], delay


async def _lookups(port: int, *, rate: float, seconds: float) -> Samples:
    """Lookups from 4 connections in this event loop."""
    target = Target("/scim/v2/t", "token", user_names=("a@x.example",))
    workload = Workload(
        "127.0.0.1", port, (target,), 4, mix=(("lookup", 1.0),), seconds=seconds, rate=rate
    )
    return await _run(workload, [], workload.connections)


async def test_a_paced_workload_keeps_to_its_rate(slow_server: tuple[int, list[float]]) -> None:
    port, _ = slow_server
    unpaced = await _lookups(port, rate=0, seconds=0.5)
    paced = await _lookups(port, rate=40, seconds=1.0)
    # 4 connections at 10 jobs/s each: at most 10 + 1 per connection in a second,
    # where an unpaced loop against an instant server does hundreds.
    assert unpaced.jobs > 100
    assert 20 <= paced.jobs <= 44
    assert paced.errors == {}


async def test_jobs_the_service_is_too_slow_for_count_as_late(
    slow_server: tuple[int, list[float]],
) -> None:
    port, delay = slow_server
    delay[0] = 0.3  # three times each connection's interval of 0.1 s
    samples = await _lookups(port, rate=40, seconds=1.0)
    # Each connection's first job is on time; every later one starts behind schedule.
    assert samples.jobs >= 8
    assert samples.late >= samples.jobs - 4


async def test_the_cpu_window_opens_when_the_load_begins(
    slow_server: tuple[int, list[float]],
) -> None:
    port, _ = slow_server
    marks: dict[str, float] = {}

    class Window:
        def start(self) -> None:
            marks["start"] = time.time()

        def stop(self) -> None:
            marks["stop"] = time.time()

    target = Target("/scim/v2/t", "token", user_names=("a@x.example",))
    workload = Workload("127.0.0.1", port, (target,), 2, mix=(("lookup", 1.0),), seconds=0.5)
    with loadgen.LoadGenerator(2) as load:
        called = time.time()
        samples = await asyncio.to_thread(load.run, workload, window=Window())
    assert samples.jobs > 0
    # The processes are handed their jobs before they load anything; that is not
    # the load's, and the window leaves it out.
    assert marks["start"] - called >= 0.4
    assert abs(marks["start"] - samples.started) < 0.2
    assert 0 <= marks["stop"] - samples.ended < 0.5


async def test_the_load_generators_processes_serve_every_workload(
    slow_server: tuple[int, list[float]],
) -> None:
    port, _ = slow_server
    target = Target("/scim/v2/t", "token", user_names=("a@x.example",))
    workload = Workload("127.0.0.1", port, (target,), 2, mix=(("lookup", 1.0),), seconds=0.3)
    with loadgen.LoadGenerator(2) as load:
        started = load.pids()
        assert len(started) == 2
        # Started once: the same two processes run every workload.
        for _ in range(2):
            samples = await asyncio.to_thread(load.run, workload)
            assert samples.jobs > 0
            assert samples.errors == {}
            assert samples.processes == started


def test_a_cpu_window_is_the_cores_used_between_its_start_and_stop() -> None:
    readings = iter(
        [
            (0.0, 0.0, 0.0, 0.0, 0.0),
            (2.0, 1.0, 0.5, 1.6, 0.1),
            (4.0, 3.0, 1.5, 5.6, 0.3),
            (9.0, 9.0, 9.0, 9.0, 9.0),
        ]
    )
    window = CpuWindow(lambda: next(readings))
    window.start()
    window.stop()
    samples = Samples()
    samples.cpu_seconds = 0.4
    cpu = window.measured(samples)
    assert (cpu.seconds, cpu.server, cpu.postgres, cpu.machine, cpu.steal, cpu.loadgen) == (
        2.0,
        1.0,
        0.5,
        2.0,
        0.1,
        0.2,
    )


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([], 50) == 0
    assert percentile([7.0], 99) == 7


def test_report_counts_errors_per_request_kind() -> None:
    samples = Samples()
    samples.latencies["lookup"].extend([1.0, 2.0, 3.0])
    samples.latencies["create"].extend([4.0])
    samples.errors["create"] += 2
    samples.started, samples.ended = 10.0, 12.0
    report = Report(meta={}, config={})
    report.add("cycle", "svc", samples)
    lookup = report.row("cycle", "svc", "lookup")
    assert lookup is not None
    assert (lookup.requests, lookup.rps, lookup.p50) == (3, 1.5, 2.0)
    everything = report.row("cycle", "svc", "(all requests)")
    assert everything is not None
    assert (everything.requests, everything.errors) == (4, 2)
    assert report.errors == 2


def test_the_hosts_steal_is_reported_apart_from_other_jobs() -> None:
    samples = Samples()
    samples.latencies["lookup"].extend([1.0, 2.0])
    samples.started, samples.ended = 0.0, 1.0
    report = Report(meta={}, config={})
    cpu = Cpu(seconds=1.0, server=0.5, postgres=0.3, loadgen=0.1, machine=1.5, steal=0.4)
    report.add("lookups", "svc", samples, cpu)
    assert cpu.others == pytest.approx(0.2)
    assert report.to_json()["cpu_cores"]["lookups / svc"]["steal"] == 0.4
    assert report.cpu_of("lookups", "svc") is cpu
    table = render(report)
    header = next(line for line in table.splitlines() if line.startswith("CPU (cores of 2)"))
    row = next(line for line in table.splitlines() if line.startswith("lookups / svc"))
    assert header.split()[-6:-3] == ["others", "steal", "server"]
    assert row.split()[-4:-2] == ["0.20", "0.40"]


def test_the_role_mappings_cost_is_the_mapped_tenants_throughput_over_the_other() -> None:
    report = Report(meta={}, config={})
    report.extra["role_mapping"] = {"rps_without": 700.4, "rps_with": 420.0, "x_without": 0.6}
    row = next(line for line in render(report).splitlines() if line.startswith("requests/s"))
    assert row.split() == ["requests/s", "700", "420", "0.60"]


def test_profile_summary_separates_self_from_inclusive_time(tmp_path: Path) -> None:
    profile = tmp_path / "profile.txt"
    profile.write_text("main;handler;json 3\nmain;handler 1\nmain;db 4\n")
    summary = summarise_profile(profile)
    assert summary["self_percent"][0] == ("db", 50.0)
    assert ("handler", 50.0) in summary["inclusive_percent"]
    assert summary["inclusive_percent"][0] == ("main", 100.0)


def test_a_runs_database_files_are_deleted_behind_it_and_before_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    finished = Path(tempfile.mkdtemp(prefix="scim-bench-pg-"))
    (finished / "pgdata" / "base").mkdir(parents=True)
    for n in range(50):
        (finished / "pgdata" / "base" / str(n)).write_bytes(b"x" * 8192)
    environment._discard(finished)
    assert not finished.exists()  # out of the way at once; deleted in the background
    deadline = time.monotonic() + 30
    while list(tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.iterdir()) == []

    # One whose background deletion had not finished: the next run deletes it first.
    leftover = tmp_path / "scim-bench-discarded-abc" / "pgdata"
    leftover.mkdir(parents=True)
    (leftover / "1").write_bytes(b"x")
    environment._await_discarded()
    assert list(tmp_path.iterdir()) == []
