"""Worker processes fed connections in turn by their supervisor.

When worker processes share one listening socket, each new connection goes
to whichever process the kernel wakes first, and a process that wakes
accepts every connection waiting. A burst of connections (an IdP starting a
provisioning cycle, or the benchmark's 32) lands unevenly: splits of 24/8
between 2 workers were measured, with the lookup p99 at 60 ms against 41 ms
for an even split. Node's cluster module deals connections from its primary
process in turn for the same reason.

Here the supervisor alone accepts. It passes each connection's descriptor to
the next ready worker over a Unix socket (SCM_RIGHTS) and closes its own
copy; the worker serves it as if it had accepted it. A connection costs one
more sendmsg and recvmsg; its requests never pass through the supervisor.
The supervisor also replaces a worker that dies, and on SIGINT or SIGTERM
stops taking connections and lets the workers finish theirs.

Dealing in turn has one danger a shared socket has not: a worker whose event
loop is stuck would still be dealt every other connection. So the supervisor
pings each worker every second, and the worker's event loop answers; a worker
2 s late is dealt nothing until it answers, and one silent for uvicorn's
`timeout_worker_healthcheck` (5 s) is killed and replaced.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from typing import TYPE_CHECKING, Any, Final

import uvicorn
from uvicorn.config import STARTUP_FAILURE

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

log = logging.getLogger(__name__)

_READY: Final = b"r"
"""A worker's first message: it has started and takes connections."""
_CONNECTION: Final = b"c"
"""The byte a connection's descriptor travels with."""
_PING: Final = b"p"
"""Asked of a worker every `_PING_INTERVAL` seconds, answered by its event loop."""
_PING_INTERVAL: Final = 1.0
_LATE_AFTER: Final = 2.0
"""Seconds without an answer after which a worker is dealt no connections until it answers."""
_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
_ACCEPT_PAUSE_SECONDS: Final = 1.0

# Sockets and connections of ours cross into spawned processes by pickling.
multiprocessing.allow_connection_pickling()
_spawn = multiprocessing.get_context("spawn")


@dataclass(eq=False)
class _Worker:
    process: SpawnProcess
    channel: socket.socket
    """The supervisor's end of the worker's Unix socket."""
    started: bool = False
    """It said it was ready, once."""
    ready: bool = False
    """It takes connections now."""
    pinged_at: float | None = None
    """When the unanswered ping was sent."""
    closing: bool = False
    """It closed its end: it is shutting down."""


@dataclass(eq=False)
class Supervisor:
    """Accepts on ``listener`` and deals the connections to ``workers`` processes."""

    config: uvicorn.Config
    listener: socket.socket
    workers: int
    _running: list[_Worker] = field(default_factory=list)
    _next: int = 0
    _stopping: bool = False
    _status: int = 0
    _paused_until: float = 0.0
    _next_ping: float = 0.0
    _selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)

    def run(self) -> int:
        """Serve until SIGINT or SIGTERM; the exit status (non-zero if workers cannot start)."""
        wake_read, wake_write = socket.socketpair()
        wake_write.setblocking(False)
        previous = {sig: signal.signal(sig, lambda *_: None) for sig in _STOP_SIGNALS}
        previous_fd = signal.set_wakeup_fd(wake_write.fileno())
        self.listener.setblocking(False)
        self._selector.register(wake_read, selectors.EVENT_READ, self._on_signal)
        log.info("supervisor [%d] dealing connections to %d workers", os.getpid(), self.workers)
        try:
            for _ in range(self.workers):
                self._start_worker()
            while not self._stopping:
                now = time.monotonic()
                wake_at = self._next_ping
                if self._paused_until > now:
                    wake_at = min(wake_at, self._paused_until)
                for key, _ in self._selector.select(max(wake_at - now, 0.0)):
                    # An earlier event of the same batch may have retired this one's worker.
                    if self._registered(key.fileobj):
                        key.data(key.fileobj)
                    if self._stopping:
                        break
                self._check_workers()
                self._listen()  # after every batch: whatever it changed, the listener follows
        finally:
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._stop_workers()
            self._selector.close()
            wake_read.close()
            wake_write.close()
        return self._status

    # -- workers

    def _start_worker(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        process = _spawn.Process(target=serve_worker, args=(self.config, theirs), daemon=False)
        process.start()
        theirs.close()
        ours.setblocking(False)
        worker = _Worker(process, ours)
        self._running.append(worker)
        self._selector.register(ours, selectors.EVENT_READ, lambda _: self._on_message(worker))
        self._selector.register(
            process.sentinel, selectors.EVENT_READ, lambda _: self._on_exit(worker)
        )

    def _on_message(self, worker: _Worker) -> None:
        try:
            message = worker.channel.recv(1)
        except BlockingIOError:
            return
        except OSError:
            message = b""
        if message == _READY:
            worker.started = worker.ready = True
            log.info("worker [%d] is serving", worker.process.pid)
        elif message == _PING:
            worker.pinged_at = None
            worker.ready = True  # if it was late, it has caught up
        elif not message and self._registered(worker.channel):
            # It is going (its sentinel says when it is gone), finishing what it has.
            worker.ready = False
            worker.closing = True
            self._selector.unregister(worker.channel)

    def _on_exit(self, worker: _Worker) -> None:
        worker.process.join()
        self._forget(worker)
        if self._stopping:
            return
        if not worker.started:
            # It failed before serving (the application, the database): the next one
            # would fail the same way.
            log.error("worker [%d] could not start; stopping", worker.process.pid)
            self._status = STARTUP_FAILURE
            self._stopping = True
            return
        log.warning(
            "worker [%d] died (exit code %s); starting another",
            worker.process.pid,
            worker.process.exitcode,
        )
        self._start_worker()

    def _check_workers(self) -> None:
        """Ping the workers; deal none to one whose event loop does not answer.

        A worker stuck in a blocking call would otherwise be dealt every other new
        connection and answer none of them. Late by `_LATE_AFTER` seconds, it is
        dealt nothing until it answers; silent for uvicorn's
        `timeout_worker_healthcheck` (5 s), it is killed, and its exit starts another.
        """
        now = time.monotonic()
        if now < self._next_ping:
            return
        self._next_ping = now + _PING_INTERVAL
        for worker in self._running:
            if not worker.started or worker.closing:
                continue
            if worker.pinged_at is None:
                try:
                    worker.channel.send(_PING)
                except OSError:
                    continue  # it is going away, or too far behind to queue this
                worker.pinged_at = now
                continue
            silent = now - worker.pinged_at
            if silent > self.config.timeout_worker_healthcheck:
                log.error(
                    "worker [%d] has not answered for %.0f s; killing it",
                    worker.process.pid,
                    silent,
                )
                worker.ready = False
                worker.process.kill()
            elif silent > _LATE_AFTER and worker.ready:
                log.warning(
                    "worker [%d] is not answering; no connections for it until it does",
                    worker.process.pid,
                )
                worker.ready = False

    def _forget(self, worker: _Worker) -> None:
        self._running.remove(worker)
        for registered in (worker.channel, worker.process.sentinel):
            if self._registered(registered):
                self._selector.unregister(registered)
        worker.channel.close()

    def _registered(self, fileobj: FileDescriptorLike) -> bool:
        try:
            self._selector.get_key(fileobj)
        except (KeyError, ValueError):  # ValueError: closed, and no longer registered
            return False
        return True

    def _stop_workers(self) -> None:
        for worker in self._running:
            if worker.process.exitcode is None:
                worker.process.terminate()  # SIGTERM: uvicorn's graceful shutdown
        for worker in self._running:
            worker.process.join()
            worker.channel.close()
        self._running.clear()

    # -- connections

    def _listen(self) -> None:
        """Accept only while some worker is ready: until then connections wait in the backlog."""
        wanted = (
            not self._stopping
            and time.monotonic() >= self._paused_until
            and any(worker.ready for worker in self._running)
        )
        if wanted and not self._registered(self.listener):
            self._selector.register(self.listener, selectors.EVENT_READ, self._accept)
        elif not wanted and self._registered(self.listener):
            self._selector.unregister(self.listener)

    def _accept(self, listener: FileDescriptorLike) -> None:
        del listener
        while True:
            try:
                connection, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:  # reset by the client before we took it
                continue
            except OSError as exc:
                # Out of descriptors, most likely: retrying at once would spin. As
                # asyncio's servers do, stop accepting for a moment; the backlog waits.
                log.error("accepting connections failed (%s); pausing for 1 s", exc)
                self._paused_until = time.monotonic() + _ACCEPT_PAUSE_SECONDS
                return
            with connection:  # our copy: the worker holds its own once sent
                self._deal(connection)

    def _deal(self, connection: socket.socket) -> None:
        for _ in range(len(self._running)):
            worker = self._running[self._next % len(self._running)]
            self._next += 1
            if not worker.ready:
                continue
            try:
                socket.send_fds(worker.channel, [_CONNECTION], [connection.fileno()])
            except BlockingIOError:
                continue  # its queue is full: it is behind, the next one takes this
            except OSError:
                worker.ready = False  # it is going away
                continue
            return
        log.warning("no worker could take a connection; closing it")

    def _on_signal(self, wake: FileDescriptorLike) -> None:
        assert isinstance(wake, socket.socket)
        wake.recv(64)
        self._stopping = True


class DealtServer(uvicorn.Server):
    """A worker's uvicorn server, serving the connections its supervisor passes it."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        self._channel = channel
        self._connecting: set[asyncio.Task[Any]] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        del sockets
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        loop = asyncio.get_running_loop()
        self.servers = []
        self._channel.setblocking(False)
        loop.add_reader(self._channel.fileno(), self._receive, loop)
        self._channel.send(_READY)
        self.started = True

    def _receive(self, loop: asyncio.AbstractEventLoop) -> None:
        config = self.config
        while True:
            try:
                message, descriptors, _, _ = socket.recv_fds(self._channel, 1, 1)
            except BlockingIOError:
                return
            except OSError:
                message, descriptors = b"", []
            if not message:  # the supervisor is gone: finish what is open, then stop
                self._stop_receiving()
                self.should_exit = True
                return
            if message == _PING:
                self._channel.send(_PING)
            for descriptor in descriptors:
                connection = socket.socket(fileno=descriptor)
                accepted = loop.connect_accepted_socket(
                    lambda: config.http_protocol_class(  # type: ignore[call-arg]
                        config=config,
                        server_state=self.server_state,
                        app_state=self.lifespan.state,
                        _loop=loop,
                    ),
                    connection,
                )
                task = loop.create_task(accepted)
                self._connecting.add(task)
                task.add_done_callback(self._connecting.discard)

    def _stop_receiving(self) -> None:
        if self._channel.fileno() != -1:
            asyncio.get_running_loop().remove_reader(self._channel.fileno())
            self._channel.close()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._stop_receiving()
        await super().shutdown(sockets)


def supervise(config: uvicorn.Config, workers: int) -> int:
    """Bind ``config``'s address and serve it with ``workers`` processes; the exit status."""
    listener = config.bind_socket()
    listener.listen(config.backlog)  # uvicorn's workers would, each on its copy; here only we do
    return Supervisor(config, listener, workers).run()


def serve_worker(config: uvicorn.Config, channel: socket.socket) -> None:
    """A worker process's life: serve what the supervisor deals until told to stop."""
    config.configure_logging()
    DealtServer(config, channel).run()
