"""`scim-platform serve` as a real subprocess on a free port, as an operator runs it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def served(env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """Serve with ``env`` on ``port`` until the block ends; yield the base URL.

    The output goes to ``log`` (a pipe nobody reads would fill and stall the server).
    """
    base_url = f"http://127.0.0.1:{port}"
    env = env | {"SCIM_PORT": str(port), "SCIM_PUBLIC_URL": base_url}
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"],
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"serve did not start:\n{log.read_text()}")
                try:
                    if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            yield base_url
        finally:
            process.terminate()
            process.wait(timeout=30)
