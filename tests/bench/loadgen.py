# ruff: noqa: S311 - random picks the workload, never a secret
"""The load generator: IdP-shaped request sequences from several processes at once.

A workload is either a finite list of jobs (the initial cycle: one job per user
or group) or a duration with a weighted mix (steady state). Jobs run on
``connections`` keep-alive connections split over ``processes`` OS processes,
each with its own event loop; a job's requests are sequential on one
connection, as an IdP sends them. Every request is timed and labelled; a
status outside the expected ones counts as an error.

A workload with a ``rate`` is paced: each connection starts its jobs on a
fixed schedule instead of as soon as the last one finished, so latency is
measured at a known load rather than at saturation (where it only mirrors
throughput: 32 connections at N requests/s wait 32/N s on average). A job that
starts more than `LATE_AFTER` behind its schedule is counted as late: many
late jobs mean the service could not keep up with the rate asked.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
import urllib.parse
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any, Protocol

from tests.bench.httpclient import Connection

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
_ERROR_SAMPLES = 3
LATE_AFTER = 0.005
"""Seconds behind schedule after which a paced job counts as late."""


@dataclass(frozen=True, slots=True)
class Target:
    """One tenant as the load generator sees it: a base path and a bearer token."""

    base: str
    token: str
    users: tuple[str, ...] = ()
    """Ids of existing users, for steady-state jobs."""
    user_names: tuple[str, ...] = ()
    """Their userNames, in the same order (lookups may name users that do not exist)."""
    groups: tuple[str, ...] = ()
    """Ids of existing groups."""


Job = tuple[str, int, dict[str, Any]]
"""(kind, index of the target, arguments)."""


@dataclass(slots=True)
class Samples:
    """What one process (or, merged, a whole workload) measured."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    error_samples: list[str] = field(default_factory=list)
    created: dict[int, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    """Per target: (name, id) of each user or group created, for later workloads."""
    created_groups: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    jobs: int = 0
    late: int = 0
    """Paced jobs that started more than `LATE_AFTER` behind their schedule."""
    started: float = 0.0
    ended: float = 0.0
    cpu_seconds: float = 0.0
    processes: set[int] = field(default_factory=set)
    """The ids of the processes that measured them."""

    def merge(self, other: Samples) -> None:
        for label, values in other.latencies.items():
            self.latencies[label].extend(values)
        for label, count in other.errors.items():
            self.errors[label] += count
        self.error_samples.extend(other.error_samples[: _ERROR_SAMPLES - len(self.error_samples)])
        for index, pairs in other.created.items():
            self.created[index].extend(pairs)
        for index, ids in other.created_groups.items():
            self.created_groups[index].extend(ids)
        self.jobs += other.jobs
        self.late += other.late
        self.started = min(self.started, other.started) if self.started else other.started
        self.ended = max(self.ended, other.ended)
        self.cpu_seconds += other.cpu_seconds
        self.processes |= other.processes


@dataclass(frozen=True, slots=True)
class Workload:
    host: str
    port: int
    targets: tuple[Target, ...]
    connections: int
    jobs: tuple[Job, ...] = ()
    mix: tuple[tuple[str, float], ...] = ()
    """Steady state: (kind, weight) pairs, drawn until ``seconds`` have passed."""
    seconds: float = 0.0
    """With ``jobs``: stop early after this long (0: run them all)."""
    seed: int = 0
    rate: float = 0.0
    """Jobs per second over all connections, evenly paced (0: each as soon as the last ended)."""


class _Client:
    def __init__(self, workload: Workload, samples: Samples) -> None:
        self.workload = workload
        self.samples = samples
        self.headers = [
            (
                f"Authorization: Bearer {t.token}\r\n"
                "Content-Type: application/scim+json\r\nAccept: application/scim+json\r\n"
            ).encode()
            for t in workload.targets
        ]

    async def call(  # noqa: PLR0917 - reads like the HTTP request it sends
        self,
        conn: Connection,
        label: str,
        index: int,
        method: str,
        path: str,
        body: Any = None,
        expect: tuple[int, ...] = (200,),
    ) -> bytes | None:
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        target = self.workload.targets[index].base + path
        started = time.perf_counter()
        try:
            status, answer = await conn.request(method, target, self.headers[index], payload)
        except (OSError, asyncio.IncompleteReadError) as exc:
            self._error(label, f"{method} {target}: {type(exc).__name__}: {exc}")
            return None
        self.samples.latencies[label].append((time.perf_counter() - started) * 1000)
        if status not in expect:
            self._error(label, f"{method} {target} -> {status}: {answer[:300]!r}")
            return None
        return answer

    def _error(self, label: str, detail: str) -> None:
        self.samples.errors[label] += 1
        if len(self.samples.error_samples) < _ERROR_SAMPLES:
            self.samples.error_samples.append(detail)


def _filter(attribute: str, value: str) -> str:
    return "?filter=" + urllib.parse.quote(f'{attribute} eq "{value}"')


def _patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


def user_body(user_name: str, n: int) -> dict[str, Any]:
    """A user as Entra ID sends it on creation."""
    return {
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "externalId": f"ext-{user_name}",
        "userName": user_name,
        "active": True,
        "displayName": f"User {n}",
        "name": {"givenName": "User", "familyName": str(n), "formatted": f"User {n}"},
        "emails": [{"primary": True, "type": "work", "value": user_name}],
        "title": "Engineer",
        ENTERPRISE_SCHEMA: {"department": f"Dept {n % 10}", "employeeNumber": str(n)},
    }


async def _user_cycle(client: _Client, conn: Connection, index: int, args: dict[str, Any]) -> None:
    """Entra's initial cycle for one user: look it up by userName (none), then create it."""
    name = args["userName"]
    if await client.call(conn, "lookup user", index, "GET", "/Users" + _filter("userName", name)):
        answer = await client.call(
            conn, "create user", index, "POST", "/Users", user_body(name, args["n"]), (201,)
        )
        if answer:
            client.samples.created[index].append((name, json.loads(answer)["id"]))


async def _group_cycle(client: _Client, conn: Connection, index: int, args: dict[str, Any]) -> None:
    """Entra's initial cycle for one group: look up, create empty, add members in batches."""
    name = args["displayName"]
    path = "/Groups" + _filter("displayName", name) + "&excludedAttributes=members"
    if not await client.call(conn, "lookup group", index, "GET", path):
        return
    body = {"schemas": [GROUP_SCHEMA], "displayName": name, "externalId": f"ext-{name}"}
    answer = await client.call(conn, "create group", index, "POST", "/Groups", body, (201,))
    if not answer:
        return
    group_id = json.loads(answer)["id"]
    client.samples.created_groups[index].append(group_id)
    members: list[str] = args["members"]
    batch: int = args["batch"]
    for start in range(0, len(members), batch):
        value = [{"value": member} for member in members[start : start + batch]]
        await client.call(
            conn,
            "add members",
            index,
            "PATCH",
            f"/Groups/{group_id}",
            _patch({"op": "add", "path": "members", "value": value}),
            (200, 204),
        )


async def _lookup(client: _Client, conn: Connection, index: int, args: dict[str, Any]) -> None:
    name = args.get("userName") or random.choice(client.workload.targets[index].user_names)
    await client.call(conn, "lookup", index, "GET", "/Users" + _filter("userName", name))


async def _patch_user(client: _Client, conn: Connection, index: int, args: dict[str, Any]) -> None:
    user = random.choice(client.workload.targets[index].users)
    change = {"op": "replace", "path": "displayName", "value": f"Renamed {random.random():.6f}"}
    await client.call(
        conn, "patch user", index, "PATCH", f"/Users/{user}", _patch(change), (200, 204)
    )


async def _put_user(client: _Client, conn: Connection, index: int, args: dict[str, Any]) -> None:
    """Okta's profile push: the whole user PUT, with a new title."""
    target = client.workload.targets[index]
    n = random.randrange(len(target.users))
    body = user_body(target.user_names[n], n) | {"title": f"Title {random.random():.6f}"}
    await client.call(conn, "put user", index, "PUT", f"/Users/{target.users[n]}", body, (200,))


async def _deactivate(client: _Client, conn: Connection, index: int, args: dict[str, Any]) -> None:
    """A user deactivated, then reactivated: each a change, as the IdP sends it.

    Deactivations alone would leave every user of a tenant inactive within
    seconds, and the rest of the run would measure PATCHes that change nothing.
    """
    user = random.choice(client.workload.targets[index].users)
    for active, label in ((False, "deactivate user"), (True, "reactivate user")):
        change = {"op": "replace", "path": "active", "value": active}
        await client.call(conn, label, index, "PATCH", f"/Users/{user}", _patch(change), (200, 204))


async def _members(client: _Client, conn: Connection, index: int, args: dict[str, Any]) -> None:
    """A membership change: one user added to a group, then removed (both always valid).

    The removal is RFC 7644's `members[value eq "..."]` path, which every server
    takes; with ``entra`` it is Entra ID's own form (the member as a `value`),
    which not every server accepts (scim2-server does not).
    """
    target = client.workload.targets[index]
    group = args.get("group") or random.choice(target.groups)
    user = args.get("user") or random.choice(target.users)
    suffix = args.get("query", "")
    add = {"op": "add", "path": "members", "value": [{"value": user}]}
    remove = (
        {"op": "remove", "path": "members", "value": [{"value": user}]}
        if args.get("entra")
        else {"op": "remove", "path": f'members[value eq "{user}"]'}
    )
    for change, label in ((add, "add member"), (remove, "remove member")):
        await client.call(
            conn,
            args.get("prefix", "") + label,
            index,
            "PATCH",
            f"/Groups/{group}{suffix}",
            _patch(change),
            (200, 204),
        )


async def _page(client: _Client, conn: Connection, index: int, args: dict[str, Any]) -> None:
    """A page of every user, unfiltered, as an IdP importing them asks for it."""
    path = f"/Users?startIndex={args['start']}&count={args['count']}"
    await client.call(conn, args["label"], index, "GET", path)


_KINDS = {
    "user_cycle": _user_cycle,
    "group_cycle": _group_cycle,
    "lookup": _lookup,
    "patch_user": _patch_user,
    "put_user": _put_user,
    "deactivate": _deactivate,
    "members": _members,
    "page": _page,
}
STEADY_KINDS = ("lookup", "patch_user", "put_user", "deactivate", "members")


async def _run(workload: Workload, jobs: list[Job], connections: int) -> Samples:
    samples = Samples()
    client = _Client(workload, samples)
    rng = random.Random(workload.seed)
    random.seed(workload.seed)
    kinds = [kind for kind, _ in workload.mix]
    weights = [weight for _, weight in workload.mix]
    pending = iter(jobs)
    deadline = time.perf_counter() + workload.seconds if workload.seconds else None

    def next_job() -> Job | None:
        if deadline is not None and time.perf_counter() >= deadline:
            return None
        if workload.mix:
            kind = rng.choices(kinds, weights)[0]
            return kind, rng.randrange(len(workload.targets)), {}
        return next(pending, None)

    # Each connection runs one job per interval; their schedules are staggered evenly.
    interval = connections / workload.rate if workload.rate else 0.0
    begin = time.perf_counter()

    async def connection_loop(slot: int) -> None:
        conn = Connection(workload.host, workload.port)
        due = begin + interval * slot / connections
        try:
            while True:
                behind = time.perf_counter() - due
                if interval and behind < 0:
                    await asyncio.sleep(-behind)
                if (job := next_job()) is None:
                    break
                if interval:
                    samples.late += behind > LATE_AFTER
                    due += interval
                kind, index, args = job
                await _KINDS[kind](client, conn, index, args)
                samples.jobs += 1
        finally:
            await conn.close()

    cpu = time.process_time()
    samples.started = time.time()
    await asyncio.gather(*(connection_loop(slot) for slot in range(connections)))
    samples.ended = time.time()
    samples.cpu_seconds = time.process_time() - cpu
    samples.processes.add(os.getpid())
    return samples


def _process_main(
    workload: Workload, jobs: list[Job], connections: int, start_at: float
) -> Samples:
    # Each process is handed its jobs at its own moment; they begin the load together.
    time.sleep(max(0.0, start_at - time.time()))
    return asyncio.run(_run(workload, jobs, connections))


class Window(Protocol):
    """Told when the load begins and when the last process has finished it."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class LoadGenerator:
    """The load generator's processes, started once and kept for every workload.

    A process takes a second or two to start (a fresh interpreter importing
    this module); started for each workload, that was some 2 s of waiting per
    workload, a fifth of a quick run. Kept, a workload begins half a second
    after it is handed over, the time it takes to send each process its jobs.
    """

    _START_MARGIN = 0.5
    """Seconds between handing a workload over and its load beginning in every process."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool = ProcessPoolExecutor(processes, mp_context=get_context("spawn"))
        try:
            self.pids()
        except BaseException:
            self._pool.shutdown(cancel_futures=True)
            raise

    def pids(self, timeout: float = 60.0) -> set[int]:
        """The processes' ids, once every one of them runs: rounds of one short task per
        process until as many have answered as there are processes (an idle process
        takes a task while a busy one sleeps through its own)."""
        answered: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(answered) < self.processes:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(answered)} of {self.processes} load processes started")
            rounds = [self._pool.submit(_pid_after, 0.2) for _ in range(self.processes)]
            answered.update(future.result() for future in rounds)
        return answered

    def close(self) -> None:
        self._pool.shutdown()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def run(
        self, workload: Workload, processes: int | None = None, window: Window | None = None
    ) -> Samples:
        """Run a workload over ``processes`` of the processes (default: all) and merge
        what they measured."""
        processes = max(1, min(processes or self.processes, self.processes, workload.connections))
        shares = [workload.connections // processes] * processes
        for i in range(workload.connections % processes):
            shares[i] += 1
        job_lists: list[list[Job]] = [[] for _ in range(processes)]
        for i, job in enumerate(workload.jobs):
            job_lists[i % processes].append(job)
        start_at = time.time() + self._START_MARGIN
        # The load begins at `start_at` in every process; the window opens then.
        opening = threading.Timer(start_at - time.time(), window.start) if window else None
        if opening:
            opening.start()
        futures = [
            self._pool.submit(
                _process_main,
                Workload(
                    workload.host,
                    workload.port,
                    workload.targets,
                    share,
                    (),
                    workload.mix,
                    workload.seconds,
                    workload.seed * 1000 + i,
                    workload.rate * share / workload.connections,
                ),
                job_lists[i],
                share,
                start_at,
            )
            for i, share in enumerate(shares)
        ]
        merged = Samples()
        for future in futures:
            merged.merge(future.result())
        if window and opening:
            opening.join()
            window.stop()
        return merged


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()
