"""The peer: `scim2-server` (python-scim's reference server), in memory, as a team would pick it.

It is installed from PyPI into a virtual environment of its own under
`bench-results/` (git-ignored), so its dependencies never mix with ours. It
runs as an ASGI application under the same uvicorn version as the service, so
the comparison is between the two SCIM implementations, not two HTTP servers
(its own `scim2-server` command uses the standard library's threaded WSGI
server, which closes the connection after every response).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import httpx

from tests.bench.environment import ROOT
from tests.support.ports import free_port

VENV = ROOT / "bench-results" / "peer-venv"
PACKAGE = "scim2-server"
BASE = "/v2"

_APP = """
import sys
import uvicorn
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.memory import AsyncInMemoryStorage
from scim2_server.utils import load_default_provider

app = ASGIApplication(AsyncInMemoryStorage(), load_default_provider())
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def _python() -> Path:
    return VENV / "bin" / "python"


def install() -> str:
    """Make sure the peer's environment exists; returns the peer's version."""
    if not _python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)  # noqa: S603
    uvicorn = f"uvicorn=={version('uvicorn')}"
    pip = [str(_python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(  # noqa: S603 - pip of the peer's own venv, fixed arguments
        [*pip, "--upgrade", PACKAGE, uvicorn], check=True, capture_output=True, timeout=600
    )
    probe = f"import importlib.metadata as m; print(m.version({PACKAGE!r}))"
    result = subprocess.run(  # noqa: S603
        [str(_python()), "-c", probe], check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


@contextlib.contextmanager
def running() -> Iterator[tuple[int, int]]:
    """Start the peer on a free port; yields (port, pid)."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(  # noqa: S603
            [str(_python()), "-c", _APP, str(port)], stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"scim2-server did not start: {log.read()[-2000:]!r}")
                with contextlib.suppress(httpx.HTTPError):
                    url = f"http://127.0.0.1:{port}{BASE}/ServiceProviderConfig"
                    if httpx.get(url, timeout=2).status_code == 200:
                        break
                time.sleep(0.2)
            yield port, process.pid
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
