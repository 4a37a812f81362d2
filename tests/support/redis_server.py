"""A throw-away `redis-server` on a free loopback port, started and stopped by the test."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.ports import free_port

ENSURE_REDIS = Path(__file__).with_name("ensure_redis.sh")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Yield the URL of a fresh, empty Redis that keeps nothing on disk."""
    if shutil.which("redis-server") is None:
        # `make test` runs this first; a bare `pytest` gets the same install.
        subprocess.run(["bash", str(ENSURE_REDIS)], check=True, timeout=600)  # noqa: S603, S607
    port = free_port()
    # No persistence: nothing of the test's stays on disk.
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    process = subprocess.Popen(  # noqa: S603 - redis-server from PATH (ensure_redis.sh)
        [*command, "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=20)
