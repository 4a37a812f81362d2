"""`make bench`: the whole benchmark, end to end, in one command.

Order matters: tenant scale runs first, because "1 tenant present" can only be
measured on an empty database; every later workload then runs with the
largest tenant count present, as a busy platform would. The floor and the peer
are measured in the same run, on the same machine (and the floor on the same
PostgreSQL), so ratios stay meaningful on a noisy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from tenants.schemas import quoted_schema
from tests.bench import environment, floor, loadgen, peer
from tests.bench.environment import ROOT, Service
from tests.bench.loadgen import Job, Samples, Target, Workload
from tests.bench.report import Cpu, Report, percentile, render
from tests.bench.report import Target as Goal
from tests.support.otlp_receiver import OtlpReceiver

RESULTS = ROOT / "bench-results"
DEFAULT_WORKERS = 2
"""Measured on the 2-core reference machine with every request traced: 2 workers served 1.55x
the lookups of 1 (1.2x untraced) and 3 no more than 2, as PostgreSQL and the load generator
share the two cores."""


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    connections: int = 32
    processes: int = 2
    cycle_tenants: int = 8
    users_per_tenant: int = 1000
    groups_per_tenant: int = 50
    """Over 8 tenants, 2,400 requests: 10 s of ours (20 groups took 4 s, too short a
    measurement for the ratio to the peer it reports)."""
    members_per_group: int = 100
    member_batch: int = 25
    seconds: float = 15.0
    """Each timed workload (lookups, the steady mix, the floor's select): some 7,000-15,000
    requests, enough for a stable p99; 20 s put a fresh machine's run over 15 minutes."""
    mix: tuple[tuple[str, float], ...] = (
        ("lookup", 50),
        ("patch_user", 15),  # Entra's attribute change
        ("put_user", 5),  # Okta's
        ("deactivate", 5),  # a pair of requests: deactivated, then reactivated
        ("members", 20),
    )
    large_group: int = 100_000
    large_ops: int = 50
    tenant_steps: tuple[int, ...] = (1, 100, 1000, 10_000)
    scale_seconds: float = 6.0
    """A tenant step's workloads at full speed (8 s before, for the same 15 minutes)."""
    paced_seconds: float = 18.0
    """A tenant step's paced steady mix, whose p50 the steps compare: over 6 s it moved
    by up to 25% from one window to the next on an unchanged service (1.70-2.66 ms at
    10,000 tenants, 2.10-2.41 at one, in one process a few seconds apart)."""
    scale_rate: float = 150.0
    """Jobs per second (a job is one request or two) of the paced steady mix whose latency
    the tenant steps compare."""
    onboard_interval: float = 0.25
    """Seconds from one onboarding through the admin API to the next (4 a second, far
    beyond an operator's pace): `serve` makes its spare schemas again in between, as
    it would between real onboardings. Back to back, onboardings beyond its spares
    (`SCIM_SPARE_SCHEMAS`) make their schemas themselves."""
    create_concurrency: int = 8
    peer_seconds: float = 60.0
    """The peer may be far slower: its finite workloads stop after this long."""
    large_seconds: float = 30.0
    """Each large-group measurement stops after this long (a change can take seconds)."""
    sweep_seconds: int = 60
    """The service's `SCIM_WEBHOOK_SWEEP_SECONDS` (its default in full runs); each idle
    window spans one period of the webhook worker's sweep, and a second more."""

    @classmethod
    def quick(cls) -> Config:
        """Every workload, shortened to what runs end to end in under two minutes."""
        return cls(
            cycle_tenants=4,
            users_per_tenant=100,
            groups_per_tenant=5,
            members_per_group=20,
            member_batch=10,
            seconds=4.0,
            large_group=5000,
            large_ops=10,
            tenant_steps=(1, 25),
            scale_seconds=3.0,
            paced_seconds=3.0,
            scale_rate=60.0,
            peer_seconds=15.0,
            large_seconds=10.0,
            sweep_seconds=5,
        )


def group_name(prefix: str, g: int, t: int) -> str:
    """The displayName of the initial cycle's group ``g`` of its tenant ``t``."""
    return f"{prefix}group {g} of {t}"


def _rate(samples: Samples) -> float:
    """Requests per second over a workload's whole length."""
    requests = sum(len(values) for values in samples.latencies.values())
    return round(requests / max(samples.ended - samples.started, 1e-9), 1)


def _mix(raw: str) -> tuple[tuple[str, float], ...]:
    pairs = []
    for part in raw.split(","):
        kind, _, weight = part.partition("=")
        if kind.strip() not in loadgen.STEADY_KINDS:
            raise argparse.ArgumentTypeError(f"{kind!r} is not one of {loadgen.STEADY_KINDS}")
        pairs.append((kind.strip(), float(weight)))
    return tuple(pairs)


Readings = tuple[float, float, float, float, float]
"""Now, and the CPU seconds so far of the server, PostgreSQL, the machine and the host's steal."""


class CpuWindow:
    """The CPU the server, PostgreSQL and the machine used between two readings.

    The load generator's processes are handed their jobs, and the floor opens its
    pool, before the load begins: a window from the start of the block counted
    that time as idle (when the processes were started for each workload, the
    machine showed 0.2-0.5 of a core short of busy under full load). The load's
    own start and end (`start`, `stop`) make the window the load's.
    """

    def __init__(self, read: Callable[[], Readings]) -> None:
        self._read = read
        self._before = read()
        self._after: Readings | None = None

    def start(self) -> None:
        self._before = self._read()

    def stop(self) -> None:
        if self._after is None:
            self._after = self._read()

    def measured(self, samples: Samples | None = None) -> Cpu:
        """Cores used over the window; ``samples``' CPU is the load generator's."""
        self.stop()
        assert self._after is not None
        wall, server, postgres, machine, steal = (
            b - a for a, b in zip(self._before, self._after, strict=True)
        )
        wall = max(wall, 1e-9)
        return Cpu(
            seconds=round(wall, 2),
            server=round(server / wall, 2),
            postgres=round(postgres / wall, 2),
            loadgen=round(samples.cpu_seconds / wall, 2) if samples else 0.0,
            machine=round(machine / wall, 2),
            steal=round(steal / wall, 2),
        )


class Bench:
    def __init__(
        self,
        config: Config,
        db: environment.Database,
        service: Service,
        load: loadgen.LoadGenerator,
    ) -> None:
        self.config = config
        self.load = load
        self.db = db
        self.service = service
        self.port = service.port
        """Where workloads go: the service, or the peer while it is measured."""
        self.report = Report(meta={}, config=dataclasses.asdict(config))

    def log(self, message: str) -> None:
        print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)

    # Measuring --------------------------------------------------------------

    def _readings(self, pid: int) -> Readings:
        """`Readings`, with ``pid`` the server."""
        postmaster = self.db.postmaster_pid
        return (
            time.perf_counter(),
            environment.tree_cpu(pid),
            environment.tree_cpu(postmaster) if postmaster else 0.0,
            *environment.machine_busy(),
        )

    @contextlib.contextmanager
    def cpu(self, server_pid: int | None = None) -> Iterator[CpuWindow]:
        """CPU of the server, PostgreSQL and the machine over the block, or over the
        part of it between the window's `start` and `stop` when the block calls them."""
        window = CpuWindow(functools.partial(self._readings, server_pid or self.service.pid))
        yield window
        window.stop()

    def drive(
        self, name: str, system: str, workload: Workload, server_pid: int | None = None
    ) -> Samples:
        self.log(f"{name} / {system}")
        with self.cpu(server_pid) as window:
            samples = self.load.run(workload, window=window)
        self.report.add(name, system, samples, window.measured(samples))
        if not self.service.alive():
            raise RuntimeError(f"the service died:\n{self.service.log_tail()}")
        return samples

    def workload(self, targets: list[Target], **kwargs: Any) -> Workload:
        defaults: dict[str, Any] = {"connections": self.config.connections}
        return Workload(self.service.host, self.port, tuple(targets), **(defaults | kwargs))

    # Tenants ----------------------------------------------------------------

    def onboard(self, slug: str) -> tuple[Target, float]:
        _, seconds = self.service.create_tenant(slug)
        # The steady mix deactivates users at a rate the mass-deprovisioning guard
        # exists to stop: it would trip within seconds and hold every later change
        # of those users until an operator decides, an incident, not the steady
        # state measured here.
        self.service.disable_guard(slug)
        return Target(f"/scim/v2/{slug}", self.service.issue_token(slug)), seconds

    async def _create_directly(self, slugs: list[str]) -> None:
        """Tenants through the registry code the admin API calls, many at once."""
        from service.settings import Settings
        from tenants.control import close_pool, open_pool
        from tenants.registry import TenantRegistry

        pool = await open_pool(self.db.dsn, min_size=1, max_size=self.config.create_concurrency)
        registry = TenantRegistry(Settings(database_url=self.db.dsn))
        semaphore = asyncio.Semaphore(self.config.create_concurrency)

        async def create(slug: str) -> None:
            async with semaphore:
                await registry.create(slug, slug)

        try:
            await asyncio.gather(*(create(slug) for slug in slugs))
        finally:
            await close_pool(pool)

    # Workloads --------------------------------------------------------------

    def cycle_jobs(self, targets: int, prefix: str) -> list[Job]:
        """Users of every tenant interleaved, so the tenants are provisioned at once."""
        return [
            ("user_cycle", t, {"userName": f"{prefix}{n}@t{t}.example", "n": n})
            for n in range(self.config.users_per_tenant)
            for t in range(targets)
        ]

    def group_jobs(self, created: dict[int, list[tuple[str, str]]], prefix: str) -> list[Job]:
        c = self.config
        jobs: list[Job] = []
        for g in range(c.groups_per_tenant):
            for t, users in sorted(created.items()):
                ids = [user_id for _, user_id in users]
                start = (g * c.members_per_group) % max(len(ids), 1)
                members = (ids[start:] + ids[:start])[: c.members_per_group]
                jobs.append(
                    (
                        "group_cycle",
                        t,
                        {
                            "displayName": group_name(prefix, g, t),
                            "members": members,
                            "batch": c.member_batch,
                        },
                    )
                )
        return jobs

    def initial_cycle(
        self,
        system: str,
        targets: list[Target],
        prefix: str,
        seconds: float = 0.0,
        server_pid: int | None = None,
    ) -> list[Target]:
        """Entra's first cycle over all tenants at once; returns the targets with their ids."""
        users = self.drive(
            "initial cycle: users",
            system,
            self.workload(
                targets, jobs=tuple(self.cycle_jobs(len(targets), prefix)), seconds=seconds
            ),
            server_pid,
        )
        groups = self.drive(
            "initial cycle: groups",
            system,
            self.workload(
                targets, jobs=tuple(self.group_jobs(users.created, prefix)), seconds=seconds
            ),
            server_pid,
        )
        return [
            dataclasses.replace(
                target,
                users=tuple(i for _, i in users.created.get(t, [])),
                user_names=tuple(n for n, _ in users.created.get(t, [])),
                groups=tuple(groups.created_groups.get(t, [])),
            )
            for t, target in enumerate(targets)
        ]

    def steady(self, system: str, targets: list[Target], server_pid: int | None = None) -> None:
        c = self.config
        self.drive(
            "lookups",
            system,
            self.workload(targets, mix=(("lookup", 1.0),), seconds=c.seconds),
            server_pid,
        )
        self.drive(
            "steady mix",
            system,
            self.workload(targets, mix=c.mix, seconds=c.seconds),
            server_pid,
        )

    def tenant_scale(self) -> Target:
        """Tenants onboarded and present, 1 to the largest step; returns the measured tenant."""
        c = self.config
        self.log("tenant scale: first tenant")
        first, _ = self.onboard("scale-0")
        [first] = self.initial_cycle_quiet([first])
        present, onboard_seconds = 1, []
        steps: list[dict[str, Any]] = []
        hot: list[Target] = [first]
        for step in c.tenant_steps:
            started = time.perf_counter()
            missing = [f"scale-{n}" for n in range(present, step)]
            # The first hundred go through the admin API, one at a time: the onboarding latency.
            by_api, direct = missing[: max(0, 100 - present)], missing[max(0, 100 - present) :]
            for slug in by_api:
                began = time.perf_counter()
                target, seconds = self.onboard(slug)
                onboard_seconds.append(seconds)
                hot.append(target)
                time.sleep(max(0.0, c.onboard_interval - (time.perf_counter() - began)))
            if direct:
                self.log(f"tenant scale: creating {len(direct)} tenants directly")
                asyncio.run(self._create_directly(direct))
                # Let the postmaster reap the closed backends before CPU is read again.
                time.sleep(1)
            created = time.perf_counter() - started
            # New schemas leave the catalogs grown by hundreds of thousands of rows, and
            # as many dirty pages and new files: autovacuum's rounds over the catalogs
            # and the checkpoint that writes them out are not the steady state.
            vacuum = self._vacuum_grown_tables() if missing else None
            checkpoint = self._checkpoint() if missing else None
            present = max(present, step)
            spread = [
                dataclasses.replace(t, user_names=tuple(f"nobody{i}@x.example" for i in range(8)))
                for t in hot
            ]
            samples = self.drive(
                f"tenant scale: {present} tenants",
                "scim-platform",
                self.workload([first], mix=c.mix, seconds=c.scale_seconds),
            )
            # At saturation latency only mirrors throughput (and, on one tenant, waits for
            # its group rows); at a fixed rate it is each request's own time.
            probe_ms = environment.speed_probe_ms()
            paced_name = f"tenant scale: {present} tenants, steady mix at {c.scale_rate:.0f}/s"
            paced = self.drive(
                paced_name,
                "scim-platform",
                self.workload([first], mix=c.mix, seconds=c.paced_seconds, rate=c.scale_rate),
            )
            spread_samples = self.drive(
                f"tenant scale: {present} tenants, lookups over {len(spread)}",
                "scim-platform",
                self.workload(spread, mix=(("lookup", 1.0),), seconds=c.scale_seconds),
            )
            migrate_seconds, migrated = self.service.migrate()
            all_values = [v for vs in samples.latencies.values() for v in vs]
            spread_values = [v for vs in spread_samples.latencies.values() for v in vs]
            paced_values = [v for vs in paced.latencies.values() for v in vs]
            steps.append(
                {
                    "tenants": present,
                    "create_seconds": round(created, 2),
                    "vacuum_seconds": vacuum,
                    "checkpoint_seconds": checkpoint,
                    "tenants_per_second": round(len(missing) / created, 1) if missing else 0.0,
                    "p50": round(percentile(all_values, 50), 2),
                    "p95": round(percentile(all_values, 95), 2),
                    "p99": round(percentile(all_values, 99), 2),
                    "rps": _rate(samples),
                    "paced_p50": round(percentile(paced_values, 50), 2),
                    "paced_p95": round(percentile(paced_values, 95), 2),
                    "paced_p99": round(percentile(paced_values, 99), 2),
                    "paced_rps": _rate(paced),
                    "paced_late": paced.late,
                    "probe_ms": probe_ms,
                    "paced_steal": self.report.cpu_of(paced_name, "scim-platform").steal,
                    "spread_p50": round(percentile(spread_values, 50), 2),
                    "spread_p99": round(percentile(spread_values, 99), 2),
                    "rss_mb": round(environment.tree_rss_mb(self.service.pid), 1),
                    "migrate_seconds": round(migrate_seconds, 2),
                    "migrate": migrated,
                }
            )
        onboarding_ms = [s * 1000 for s in onboard_seconds]
        self.report.extra["tenant_scale"] = steps
        self.report.extra["idle"] = self.idle(present)
        self.report.extra["onboarding_ms"] = {
            "n": len(onboarding_ms),
            "p50": round(percentile(onboarding_ms, 50), 2),
            "p95": round(percentile(onboarding_ms, 95), 2),
            "p99": round(percentile(onboarding_ms, 99), 2),
            "interval_seconds": self.config.onboard_interval,
            "what": "POST /admin/v1/tenants, one at a time, one every interval_seconds",
        }
        return first

    def idle(self, tenants: int) -> list[dict[str, Any]]:
        """CPU with no requests at all: without a webhook endpoint, then with one receiving
        every tenant's events, its first sweep period and the next.

        What idle tenants cost: background work that visits every tenant (above all the
        webhook worker's sweep for lost notifications, once a minute in one worker)
        grows with the tenants present, whatever their traffic. The first period with
        an endpoint also opens a stream for each tenant that has events, once. Quick
        runs sweep every few seconds, so their figures overstate the sweep's share.
        """
        self.log(f"tenant scale: {tenants} tenants, idle")
        windows = [self._idle_window(tenants, "no webhook endpoint")]
        receiver = OtlpReceiver()  # answers 200 to any POST; nothing is due to be delivered
        created = self.service.admin.post(
            "/admin/v1/webhooks", json={"url": f"{receiver.endpoint}/webhooks"}
        )
        created.raise_for_status()
        try:
            self.log(f"tenant scale: {tenants} tenants, idle, a webhook endpoint for every tenant")
            for period in ("first", "next"):
                windows.append(
                    self._idle_window(
                        tenants, f"an endpoint for every tenant, {period} sweep period"
                    )
                )
        finally:
            self.service.admin.delete(f"/admin/v1/webhooks/{created.json()['id']}")
            receiver.close()
        for window in windows:
            window["deliveries"] = receiver.exports
        return windows

    def _idle_window(self, tenants: int, what: str) -> dict[str, Any]:
        before = self._readings(self.service.pid)
        time.sleep(self.config.sweep_seconds + 1)
        wall, server, postgres, _machine, _steal = (
            b - a for a, b in zip(before, self._readings(self.service.pid), strict=True)
        )
        return {
            "tenants": tenants,
            "what": what,
            "seconds": round(wall, 1),
            "server_ms_per_second": round(server / wall * 1000, 1),
            "postgres_ms_per_second": (
                round(postgres / wall * 1000, 1) if self.db.postmaster_pid else None
            ),
        }

    def _vacuum_grown_tables(self) -> float:
        """Seconds of a `VACUUM (ANALYZE)` of the catalogs and control-plane tables that
        took rows since their last vacuum (a table the database user may not vacuum is
        skipped, with PostgreSQL's warning).

        Creating thousands of tenants at once grows `pg_attribute`, `pg_class`,
        `pg_depend` and the like by hundreds of thousands of rows, and autovacuum goes
        over each of them in turn for tens of seconds afterwards (up to a core): a
        step measured meanwhile measured that, not the tenants present. A platform
        whose tenants arrive over weeks has its catalogs vacuumed as they grow."""

        async def vacuum(conn: asyncpg.Connection[Any]) -> None:
            tables = await conn.fetch(
                "SELECT format('%I.%I', schemaname, relname) AS name "
                "FROM pg_stat_all_tables WHERE schemaname IN ('pg_catalog', 'scim_control') "
                "AND (n_ins_since_vacuum > 0 OR n_dead_tup > 0) ORDER BY 1"
            )
            for table in tables:
                await conn.execute(f"VACUUM (ANALYZE) {table['name']}")

        return self._timed("tenant scale: vacuum of the grown catalogs", vacuum)

    def _checkpoint(self) -> float | None:
        """Seconds of a `CHECKPOINT` (None: the database user may not run one)."""
        try:
            return self._timed(
                "tenant scale: checkpoint after creating tenants",
                lambda conn: conn.execute("CHECKPOINT"),
            )
        except asyncpg.InsufficientPrivilegeError:
            return None

    def _timed(self, what: str, work: Callable[[asyncpg.Connection[Any]], Awaitable[Any]]) -> float:
        """Seconds ``work`` takes on a database connection of its own; logged as ``what``."""

        async def run() -> None:
            conn = await asyncpg.connect(self.db.dsn)
            try:
                await work(conn)
            finally:
                await conn.close()

        started = time.perf_counter()
        asyncio.run(run())
        seconds = round(time.perf_counter() - started, 2)
        self.log(f"{what}, {seconds} s")
        return seconds

    def initial_cycle_quiet(self, targets: list[Target]) -> list[Target]:
        """Users and groups for a tenant that later workloads need, not measured."""
        c = self.config
        saved = self.config
        self.config = dataclasses.replace(
            c, users_per_tenant=min(c.users_per_tenant, 200), groups_per_tenant=4
        )
        try:
            users = self.load.run(
                self.workload(targets, jobs=tuple(self.cycle_jobs(len(targets), "s")))
            )
            groups = self.load.run(
                self.workload(targets, jobs=tuple(self.group_jobs(users.created, "s")))
            )
        finally:
            self.config = saved
        if users.errors or groups.errors:
            raise RuntimeError(
                f"seeding failed: {users.error_samples + groups.error_samples}\n"
                + self.service.log_tail()
            )
        return [
            dataclasses.replace(
                target,
                users=tuple(i for _, i in users.created[t]),
                user_names=tuple(n for n, _ in users.created[t]),
                groups=tuple(groups.created_groups[t]),
            )
            for t, target in enumerate(targets)
        ]

    def floor(self, users: int, measured: list[Target]) -> None:
        """The floor's create cycle (``users`` into a tenant of its own), then its
        lookups of the users of ``measured``, the tenants our lookups ran on."""
        self.onboard("floor-ref")
        slugs = ["floor-ref", *(target.base.rsplit("/", 1)[1] for target in measured)]
        schema, *measured_schemas = asyncio.run(self._schema_names(slugs))
        self.log("floor: create (lookup + insert in one transaction)")
        with self.cpu() as window:
            samples = floor.create_cycle(
                self.db.dsn, schema, self.config.connections, users, "f", window=window
            )
        self.report.add(
            "initial cycle: users", "floor (asyncpg)", samples, window.measured(samples)
        )
        tenants = [
            (name, list(target.user_names))
            for name, target in zip(measured_schemas, measured, strict=True)
        ]
        self.log("floor: filtered select")
        with self.cpu() as window:
            samples = floor.lookups(
                self.db.dsn, self.config.connections, self.config.seconds, tenants, window=window
            )
        self.report.add("lookups", "floor (asyncpg)", samples, window.measured(samples))

    async def _schema_names(self, slugs: list[str]) -> list[str]:
        """The tenants' schemas (bare names), in the order of ``slugs``."""
        conn = await asyncpg.connect(self.db.dsn)
        try:
            rows = await conn.fetch(
                "SELECT slug, schema_name FROM scim_control.tenants WHERE slug = ANY($1)", slugs
            )
        finally:
            await conn.close()
        names: dict[str, str] = {row["slug"]: row["schema_name"] for row in rows}
        return [names[slug] for slug in slugs]

    async def _schema_of(self, slug: str) -> str:
        """The tenant's schema, quoted for SQL."""
        [name] = await self._schema_names([slug])
        return quoted_schema(name)

    async def _seed_large(self, slug: str, template_user: str, groups: dict[str, int]) -> list[str]:
        """Users and memberships by SQL (the API would take minutes); returns spare user ids."""
        schema = await self._schema_of(slug)
        conn = await asyncpg.connect(self.db.dsn)
        try:
            total = self.config.large_group + self.config.large_ops
            await conn.execute(
                f"INSERT INTO {schema}.users (id, user_name, external_id, display_name, active, "
                "resource) SELECT gen_random_uuid(), 'm' || i || '@large.example', 'ext-m' || i, "
                "'Member ' || i, true, t.resource || jsonb_build_object('userName', "
                "'m' || i || '@large.example', 'externalId', 'ext-m' || i, "
                "'displayName', 'Member ' || i, 'emails', jsonb_build_array(jsonb_build_object("
                "'value', 'm' || i || '@large.example', 'type', 'work', 'primary', true))) "
                f"FROM generate_series(1, $1) i, {schema}.users t WHERE t.id = $2::uuid",
                total,
                template_user,
            )
            ids = [
                str(r["id"])
                for r in await conn.fetch(
                    f"SELECT id FROM {schema}.users WHERE user_name LIKE 'm%' ORDER BY user_name"
                )
            ]
            spare, members = ids[: self.config.large_ops], ids[self.config.large_ops :]
            for group_id, size in groups.items():
                await conn.execute(
                    f"INSERT INTO {schema}.group_members (group_id, member_id, member_type) "
                    "SELECT $1::uuid, m, 'User' FROM unnest($2::uuid[]) m",
                    group_id,
                    members[:size],
                )
            await conn.execute(f"ANALYZE {schema}.users")
            await conn.execute(f"ANALYZE {schema}.group_members")
            return spare
        finally:
            await conn.close()

    def large_groups(self) -> None:
        c = self.config
        target, _ = self.onboard("large")
        [target] = self.initial_cycle_quiet([target])
        big, small = target.groups[0], target.groups[1]
        self.log(f"large groups: seeding {c.large_group} members")
        started = time.perf_counter()
        spare = asyncio.run(
            self._seed_large("large", target.users[0], {big: c.large_group, small: 10})
        )
        self.report.extra["large_group_seed_seconds"] = round(time.perf_counter() - started, 1)
        size = f"{c.large_group:,}"
        # Warm the connection, caches and plans on both groups before timing anything.
        warmup = tuple(("members", 0, {"group": g, "user": spare[0]}) for g in (big, small) * 3)
        self.load.run(self.workload([target], jobs=warmup, connections=1), 1)
        for query, note in (("", ""), ("?excludedAttributes=members", ", excludedAttributes")):
            for group, label in ((small, "10"), (big, size)):
                jobs = tuple(
                    (
                        "members",
                        0,
                        {
                            "group": group,
                            "user": user,
                            "query": query,
                            "prefix": f"{label}: ",
                            "entra": True,
                        },
                    )
                    for user in spare
                )
                self.drive(
                    f"large groups{note}",
                    "scim-platform",
                    self.workload([target], jobs=jobs, connections=1, seconds=c.large_seconds),
                )
        self.user_import("large", target, len(target.users) + c.large_group + c.large_ops)

    def user_import(self, slug: str, target: Target, users: int) -> None:
        """An IdP importing every user of a large tenant pages through them unfiltered:
        the first pages and the last, one connection, so a page costs what it costs
        wherever it falls (the tenant's ``users``: its initial cycle's and those seeded
        for the large groups).

        Vacuumed first, as autovacuum does after a bulk load: a page is found in an
        index, whose entries PostgreSQL checks against the table until a vacuum has
        marked its pages all visible (a page of the seeded tenant took 60-90 ms
        before, 30-37 after)."""

        async def vacuum(conn: asyncpg.Connection[Any]) -> None:
            [schema] = await self._schema_names([slug])
            await conn.execute(f"VACUUM (ANALYZE) {quoted_schema(schema)}.users")

        self._timed("user import: vacuum of the tenant's users", vacuum)
        pages, size = 20, 100
        starts = {
            "first pages": [1 + size * n for n in range(pages)],
            "last pages": [users - size * (n + 1) + 1 for n in range(pages)],
        }
        jobs = tuple(
            ("page", 0, {"start": start, "count": size, "label": f"{label} of {users:,}"})
            for label, numbers in starts.items()
            for start in numbers
        )
        self.drive(
            "user import",
            "scim-platform",
            self.workload([target], jobs=jobs, connections=1, seconds=self.config.large_seconds),
        )

    def role_mapping(self) -> None:
        """The steady mix at full speed on one tenant without a role mapping, then on one
        whose every group grants a role (so every member change recomputes its members'
        roles): what the mapping costs."""
        c = self.config
        plain, _ = self.onboard("roles-none")
        mapped, _ = self.onboard("roles-mapped")
        # The groups `initial_cycle_quiet` creates for its second tenant.
        rules = [
            {"match": "displayName", "value": group_name("s", g, 1), "roles": [f"role-{g}"]}
            for g in range(4)
        ]
        self.service.set_role_mapping(
            "roles-mapped", {"default_roles": ["member"], "groups": rules}
        )
        seeded = self.initial_cycle_quiet([plain, mapped])
        rates = []
        for target, name in zip(seeded, ("no role mapping", "every group mapped"), strict=True):
            samples = self.drive(
                f"one tenant, {name}",
                "scim-platform",
                self.workload([target], mix=c.mix, seconds=c.scale_seconds),
            )
            rates.append(_rate(samples))
        self.report.extra["role_mapping"] = {
            "rps_without": rates[0],
            "rps_with": rates[1],
            "x_without": round(rates[1] / rates[0], 2) if rates[0] else None,
        }

    def peer(self) -> None:
        self.log("peer: installing scim2-server into bench-results/peer-venv")
        version = peer.install()
        self.report.meta["peer"] = f"scim2-server {version} (in memory, uvicorn)"
        with peer.running() as (port, pid):
            self.report.meta["peer_pid"] = pid
            targets = [
                Target(peer.BASE, "unused-by-the-peer") for _ in range(self.config.cycle_tenants)
            ]
            self.port = port
            try:
                filled = self.initial_cycle(
                    "peer", targets, "p", seconds=self.config.peer_seconds, server_pid=pid
                )
                self.steady("peer", filled, server_pid=pid)
            finally:
                self.port = self.service.port

    # Targets ----------------------------------------------------------------

    def ratios(self) -> None:
        def rate(workload: str, system: str, label: str) -> float:
            row = self.report.row(workload, system, label)
            return row.rps if row else 0.0

        ours, fl, pe = "scim-platform", "floor (asyncpg)", "peer"
        cycle = "initial cycle: users"
        entries = {
            "user provisioning (lookup + create)": (
                rate(cycle, ours, "create user"),
                rate(cycle, fl, "create (lookup+insert)"),
                rate(cycle, pe, "create user"),
            ),
            "filtered lookups": (
                rate("lookups", ours, "lookup"),
                rate("lookups", fl, "lookup"),
                rate("lookups", pe, "lookup"),
            ),
            "group provisioning (all requests)": (
                rate("initial cycle: groups", ours, "(all requests)"),
                0.0,
                rate("initial cycle: groups", pe, "(all requests)"),
            ),
            "steady mix (all requests)": (
                rate("steady mix", ours, "(all requests)"),
                0.0,
                rate("steady mix", pe, "(all requests)"),
            ),
        }
        self.report.extra["ratios"] = {
            name: {
                "service": s,
                "floor": f,
                "peer": p,
                "x_floor": round(s / f, 3) if f else None,
                "x_peer": round(s / p, 2) if p else None,
            }
            for name, (s, f, p) in entries.items()
        }

    def targets(self) -> None:
        goals: list[Goal] = []
        ratios = self.report.extra.get("ratios", {})
        for name in ("user provisioning (lookup + create)", "filtered lookups"):
            x = ratios.get(name, {}).get("x_floor")
            goals.append(
                Goal(
                    f"{name} vs floor",
                    f"{x}x" if x else "-",
                    ">= 0.5x",
                    None if x is None else x >= 0.5,
                )
            )
        for name, entry in ratios.items():
            x = entry.get("x_peer")
            goals.append(
                Goal(
                    f"{name} vs peer", f"{x}x" if x else "-", ">= 4x", None if x is None else x >= 4
                )
            )
        for workload in ("steady mix", "lookups"):
            row = self.report.row(workload, "scim-platform", "(all requests)") or self.report.row(
                workload, "scim-platform", "lookup"
            )
            if row:
                goals.append(
                    Goal(
                        f"{workload}: p99 at {self.config.connections} connections",
                        f"{row.p99:.1f} ms",
                        "< 50 ms",
                        row.p99 < 50,
                    )
                )
        steps = self.report.extra.get("tenant_scale", [])
        if len(steps) > 1:
            first, last = steps[0], steps[-1]
            ratio = last["paced_p50"] / first["paced_p50"] if first["paced_p50"] else 0
            goals.append(
                Goal(
                    f"steady mix p50 at {self.config.scale_rate:.0f} jobs/s, "
                    f"{last['tenants']} tenants vs 1",
                    f"{last['paced_p50']:.1f} vs {first['paced_p50']:.1f} ms ({ratio:.2f}x; "
                    f"speed probe {last['probe_ms']:.1f} vs {first['probe_ms']:.1f} ms, "
                    f"steal {last['paced_steal']:.2f} vs {first['paced_steal']:.2f} cores)",
                    "<= 1.15x",
                    ratio <= 1.15,
                )
            )
            goals.append(
                Goal(
                    f"service RSS at {last['tenants']} tenants",
                    f"{last['rss_mb']:.0f} MB",
                    "< 300 MB",
                    last["rss_mb"] < 300,
                )
            )
        onboarding = self.report.extra.get("onboarding_ms")
        if onboarding and onboarding["n"]:
            goals.append(
                Goal(
                    f"onboarding a tenant ({1 / onboarding['interval_seconds']:.0f}/s), p50",
                    f"{onboarding['p50']:.1f} ms",
                    "< 50 ms",
                    onboarding["p50"] < 50,
                )
            )
        size = f"{self.config.large_group:,}"
        for workload in ("large groups", "large groups, excludedAttributes"):
            for op in ("add member", "remove member"):
                small = self.report.row(workload, "scim-platform", f"10: {op}")
                big = self.report.row(workload, "scim-platform", f"{size}: {op}")
                if small and big and small.p50:
                    ratio = big.p50 / small.p50
                    goals.append(
                        Goal(
                            f"{workload}: {op}, {size} vs 10 members",
                            f"{big.p50:.1f} vs {small.p50:.1f} ms ({ratio:.1f}x)",
                            "<= 2x",
                            ratio <= 2,
                        )
                    )
        self.report.targets = goals


@contextlib.contextmanager
def _profiler(pid: int, out: Path) -> Iterator[None]:
    """py-spy sampling the service while the block runs (collapsed stacks)."""
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        print("py-spy is not installed (make install): no profile", file=sys.stderr)
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [str(py_spy), "record", "--pid", str(pid), "--subprocesses", "--rate", "200"]
    command += ["--format", "raw"]
    process = subprocess.Popen(  # noqa: S603
        [*command, "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


def summarise_profile(path: Path, top: int = 25) -> dict[str, list[tuple[str, float]]]:
    """Self and inclusive shares of the sampled frames, from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count

    def best(counts: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [(frame, round(100 * n / max(total, 1), 1)) for frame, n in ranked]

    return {"self_percent": best(own), "inclusive_percent": best(inclusive)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a 2-minute smoke run (CI)")
    parser.add_argument("--connections", type=int, help="concurrent connections (default 32)")
    parser.add_argument("--processes", type=int, help="load generator processes (default 2)")
    parser.add_argument("--seconds", type=float, help="length of each timed workload")
    parser.add_argument("--mix", type=_mix, help="steady mix, e.g. lookup=50,patch_user=20,...")
    parser.add_argument(
        "--tenant-steps", help="comma-separated tenant counts (default 1,100,1000,10000)"
    )
    parser.add_argument(
        "--scale-rate",
        type=float,
        help="jobs/s of the paced steady mix the tenant steps compare (default 150)",
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the service, e.g. an OTEL_* exporter (repeatable)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help=f"service processes, SCIM_WORKERS (default {DEFAULT_WORKERS}: one per core here)",
    )
    parser.add_argument(
        "--no-tracing",
        action="store_true",
        help="leave tracing off (default: every request traced, exported over OTLP/HTTP "
        "to a collector on 127.0.0.1 that drops what it reads)",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip scim2-server")
    parser.add_argument("--profile", action="store_true", help="py-spy the service under load")
    parser.add_argument("--output", type=Path, default=RESULTS, help="report directory")
    return parser


def _config(args: argparse.Namespace) -> Config:
    config = Config.quick() if args.quick else Config()
    changes: dict[str, Any] = {}
    for name in ("connections", "processes", "seconds", "mix", "scale_rate"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.tenant_steps:
        changes["tenant_steps"] = tuple(int(s) for s in args.tenant_steps.split(","))
    return dataclasses.replace(config, **changes)


def _git_commit() -> str:
    """The commit measured, marked `+dirty` when the tree has changes on top of it."""

    def git(*args: str) -> str:
        result = subprocess.run(  # noqa: S603
            ["git", *args],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout.strip()

    dirty = "+dirty" if git("status", "--porcelain", "--untracked-files=no") else ""
    return git("rev-parse", "--short", "HEAD") + dirty


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = _config(args)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    started = time.perf_counter()
    service_env = {
        "SCIM_WORKERS": str(args.workers),
        "SCIM_WEBHOOK_SWEEP_SECONDS": str(config.sweep_seconds),
    }
    sink = None if args.no_tracing else OtlpReceiver()
    if sink is not None:
        service_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.endpoint
    service_env.update(item.partition("=")[::2] for item in args.service_env)
    with (
        environment.database() as db,
        Service(db.dsn, env=service_env) as service,
        loadgen.LoadGenerator(config.processes) as load,
    ):
        bench = Bench(config, db, service, load)
        bench.report.meta.update(
            machine=environment.machine(),
            postgres=db.version,
            commit=_git_commit(),
            started=stamp,
            mode="quick" if args.quick else "full",
            service_env=sorted(service_env),
            workers=args.workers,
            tracing="off" if sink is None else "every request, OTLP/HTTP to 127.0.0.1",
            loadgen=f"{config.processes} processes, {config.connections} keep-alive connections",
        )
        bench.tenant_scale()
        targets = [bench.onboard(f"cycle-{t}")[0] for t in range(config.cycle_tenants)]
        profile = args.output / f"profile-{stamp}.txt"
        with _profiler(service.pid, profile) if args.profile else contextlib.nullcontext():
            filled = bench.initial_cycle("scim-platform", targets, "u")
            bench.steady("scim-platform", filled)
        bench.floor(config.cycle_tenants * config.users_per_tenant, filled)
        bench.large_groups()
        bench.role_mapping()
        if not args.no_peer:
            bench.peer()
        bench.report.meta["service_rss_mb_end"] = round(environment.tree_rss_mb(service.pid), 1)
        bench.ratios()
        bench.targets()
        if args.profile and profile.exists():
            bench.report.extra["profile"] = summarise_profile(profile)
        bench.log("stopping the service and the database")
    bench.log("stopped")
    if sink is not None:
        bench.report.meta["otlp_exports"] = {"requests": sink.exports, "bytes": sink.bytes}
        sink.close()
    bench.report.meta["total_seconds"] = round(time.perf_counter() - started, 1)
    path = bench.report.write(args.output, stamp)
    print()
    print(render(bench.report))
    if "profile" in bench.report.extra:
        print("\nprofile (self %):")
        for frame, share in bench.report.extra["profile"]["self_percent"]:
            print(f"  {share:5.1f}  {frame}")
    print(f"\nreport: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    print(f"total: {bench.report.meta['total_seconds']} s")
    if bench.report.errors:
        print(f"FAILED: {bench.report.errors} request(s) failed", file=sys.stderr)
        return 1
    return 0
