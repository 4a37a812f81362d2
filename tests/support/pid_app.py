"""An ASGI application that answers every request with the id of the process serving it.

For `tests/integration/test_balancer.py`: which worker took a connection is
then in the response. `?exit=1` makes the worker die on the spot (exit code 1),
`?block=S` blocks its event loop for S seconds; `BROKEN_PID_APP=1` makes its
startup fail.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            if os.environ.get("BROKEN_PID_APP"):
                await send({"type": "lifespan.startup.failed", "message": "broken on purpose"})
                return
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["query_string"] == b"exit=1":
        os._exit(1)
    if scope["query_string"].startswith(b"block="):
        # Blocking the event loop is the point: a stuck worker, for the supervisor to notice.
        time.sleep(float(scope["query_string"][len(b"block=") :]))  # noqa: ASYNC251
    body = str(os.getpid()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
