"""Two writes made to overlap: the first paused inside its transaction, the second run
meanwhile, so a test can see what the second waits for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, NamedTuple, TypeVar

import pytest

_T = TypeVar("_T")

_WAIT_SECONDS = 5
"""How long a write may take to pause or to finish once resumed."""


class Pause(NamedTuple):
    paused: asyncio.Event
    """Set once the first call has reached its pause."""
    resume: asyncio.Event
    """Set to let it go on."""


def pause_first_call(
    monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, *, after: bool = False
) -> Pause:
    """The first call of ``owner.name`` (a module's function or a class's method) pauses,
    before it runs or ``after``, until `Pause.resume` is set; later calls run through."""
    pause = Pause(asyncio.Event(), asyncio.Event())
    original: Callable[..., Any] = getattr(owner, name)

    async def pausing(*args: Any, **kwargs: Any) -> Any:
        first = not pause.paused.is_set()
        if first and not after:
            pause.paused.set()
            await pause.resume.wait()
        result = await original(*args, **kwargs)
        if first and after:
            pause.paused.set()
            await pause.resume.wait()
        return result

    monkeypatch.setattr(owner, name, pausing)
    return pause


@asynccontextmanager
async def paused_inside(pause: Pause, write: Awaitable[_T]) -> AsyncIterator[asyncio.Future[_T]]:
    """Start ``write`` and wait until it pauses; leaving, however the body leaves, resume
    it and wait for it to finish, so no failure leaves its transaction open."""
    task = asyncio.ensure_future(write)
    try:
        await asyncio.wait_for(pause.paused.wait(), _WAIT_SECONDS)
        yield task
    finally:
        pause.resume.set()
        await asyncio.wait_for(task, _WAIT_SECONDS)


async def still_waiting(task: asyncio.Future[Any], why: str) -> None:
    """Fail with ``why`` if ``task`` finishes within 0.3 s: it did not wait."""
    await asyncio.sleep(0.3)
    assert not task.done(), why


async def finished(task: Awaitable[_T]) -> _T:
    """``task``'s result, once the write it waited for has gone on."""
    return await asyncio.wait_for(task, _WAIT_SECONDS)
