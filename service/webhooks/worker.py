"""The background worker: fans events out to webhook endpoints, delivers them, purges old ones.

It runs inside `serve` (in the app's lifespan) or alone (`scim-platform
worker`), as many replicas as you like, all sharing the database:

- **Fan-out.** A NOTIFY from the outbox names the tenant that has new events;
  the worker copies them, in sequence order, into a delivery row per matching
  endpoint and advances that (endpoint, tenant) *stream*'s cursor, in one
  transaction under the stream's row lock, so no event is copied twice or
  skipped. A sweep every minute (`SCIM_WEBHOOK_SWEEP_SECONDS`; one worker of
  the deployment per period, and each at its start) catches what a lost
  NOTIFY missed (a dropped listener, a process gone between its commit and
  its NOTIFY): one call compares every tenant's event counter with its
  streams' cursors, and only the tenants behind are fanned out.
- **Delivery.** A worker leases a stream (a short UPDATE with `FOR UPDATE SKIP
  LOCKED`), then delivers its oldest pending deliveries one at a time, in
  sequence order, holding no connection while it waits on HTTP. Another
  worker skips a leased stream, so an event is never delivered by two workers
  at once; a crashed worker's lease expires and its stream is picked up again
  (at-least-once). A failed head is retried on `SCIM_WEBHOOK_RETRY_SECONDS`
  with jitter, and blocks its stream meanwhile (ordering); after the last retry
  it and the stream's backlog are dead-lettered until an operator replays them.
- **Purge.** Events and finished deliveries older than
  `SCIM_EVENT_RETENTION_DAYS` are deleted once an hour, by one worker of the
  deployment.

SCIM requests never wait on any of this: they only insert outbox rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec

from service import chores, events
from service.background import cancel_all
from service.postgres import Connection, Pool, discarded_after
from service.settings import Settings
from service.store import outbox
from service.webhooks.endpoints import RECEIVERS_CHANNEL
from service.webhooks.signing import SecretBox, SecretUnreadable, signature_header
from tenants.schemas import InvalidSchemaName, quoted_schema

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

FAN_OUT_BATCH = 500
"""Events copied per tenant per transaction."""
DRAIN_BATCH = 100
"""Deliveries one lease sends before the stream goes back in the queue, for fairness."""
PURGE_SECONDS = 3600.0
_PURGE_CHORE = "event_purge"
SWEEP_CHORE = "webhook_sweep"
_LEASE_MARGIN_SECONDS = 30.0
_JITTER = 0.2
_USER_AGENT = "scim-platform-webhooks/1"
_OUTBOX_VERSION = 3
"""The tenant schema version that has the `events` table."""


@dataclass(frozen=True, slots=True)
class _Stream:
    id: uuid.UUID
    endpoint: uuid.UUID
    tenant: uuid.UUID


@dataclass(frozen=True, slots=True)
class _Target:
    url: str
    secrets: list[str]


def _tenant_of(schema: str) -> uuid.UUID | None:
    try:
        quoted_schema(schema)
    except InvalidSchemaName:
        return None
    return uuid.UUID(schema.removeprefix("t_"))


class WebhookWorker:
    def __init__(self, pool: Pool, settings: Settings, box: SecretBox | None, *, dsn: str) -> None:
        self._pool = pool
        self._settings = settings
        self._box = box
        self._dsn = dsn
        self._id = uuid.uuid4()
        self._lease_seconds = settings.webhook_timeout_seconds + _LEASE_MARGIN_SECONDS
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._listener: asyncpg.Connection[asyncpg.Record] | None = None
        self._client: httpx.AsyncClient | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._next_sweep = 0.0
        self._missed = True
        """Notifications may have been lost (before the start, or while the listener was
        down): this worker sweeps at once, whether or not another swept lately."""
        self._next_purge = 0.0
        self._receiver_changes = 0
        """Endpoints added or deleted (`RECEIVERS_CHANNEL`) and listeners dropped so far."""
        self._known_receivers: tuple[int, set[uuid.UUID | None]] | None = None
        """`_receivers` as last read while listening, with `_receiver_changes` then: kept
        while that count stands."""

    async def start(self) -> None:
        if self._box is None:
            log.warning("SCIM_SECRET_KEY is not set: webhooks are not delivered")
        await self._listen()
        self._loop_task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await cancel_all([*self._in_flight, *([self._loop_task] if self._loop_task else [])])
        self._loop_task = None
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        """The HTTP client, made at the first delivery.

        httpx is imported only then: its import pulls in its command-line tool's
        libraries (rich, pygments), about 3 MB in every serving process, which
        the processes of a deployment without endpoints would never use.
        """
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                timeout=self._settings.webhook_timeout_seconds,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=self._settings.webhook_concurrency),
            )
        return self._client

    # -- the loop ---------------------------------------------------------------------

    async def _listen(self) -> None:
        def on_notification(_conn: object, _pid: int, _channel: str, payload: object) -> None:
            self._dirty.add(str(payload))
            self._wake.set()

        def on_receivers_changed(_conn: object, _pid: int, _channel: str, _payload: object) -> None:
            self._receiver_changes += 1

        def on_termination(_conn: object) -> None:
            # Notifications may have been missed: listen again and sweep everything.
            self._listener = None
            self._missed = True
            self._next_sweep = 0.0
            self._receiver_changes += 1

        conn: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(self._dsn)
        await conn.add_listener(outbox.CHANNEL, on_notification)
        await conn.add_listener(RECEIVERS_CHANNEL, on_receivers_changed)
        conn.add_termination_listener(on_termination)
        self._listener = conn

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.tick()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("webhook worker: %s", exc)
            except Exception:
                # The loop must outlive any one bad round; the next one starts afresh.
                log.exception("webhook worker round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.worker_poll_seconds)

    async def tick(self) -> None:
        """One round: purge when due, fan out new events, start due deliveries."""
        now = time.monotonic()
        if self._listener is None:
            await self._listen()
        if now >= self._next_purge:
            # One worker of the deployment purges per period (`service.chores`).
            self._next_purge = now + chores.CHECK_SECONDS
            if await chores.claim(self._pool, _PURGE_CHORE, PURGE_SECONDS):
                await self.purge()
        if self._box is None:
            return
        if await self._sweep_due(now):
            self._dirty.clear()
            tenants = await self._tenants_behind()
        else:
            schemas, self._dirty = self._dirty, set()
            tenants = [(t, s) for s in schemas if (t := _tenant_of(s)) is not None]
            if tenants:
                receivers = await self._receivers()
                if not receivers:
                    return  # no endpoint: nothing to copy, nothing to deliver
                if None not in receivers:
                    tenants = [(t, s) for t, s in tenants if t in receivers]
        for tenant_id, schema in tenants:
            try:
                more = await self.fan_out(tenant_id, schema)
            except asyncpg.PostgresError as exc:
                # One tenant (deleted meanwhile, say) must not hold up the others.
                log.warning("webhook fan-out for %s failed: %s", schema, exc)
                continue
            if more:
                self._dirty.add(schema)
                self._wake.set()
        await self.dispatch()

    async def _sweep_due(self, now: float) -> bool:
        """Whether this round sweeps: at once after missed notifications, else when this
        worker holds the period's claim. Any worker's sweep fans out every tenant behind,
        so one sweep per period serves the whole deployment (`service.chores`), and the
        same worker keeps sweeping: its listening connection has the catalog entries."""
        if now < self._next_sweep:
            return False
        period = self._settings.webhook_sweep_seconds
        self._next_sweep = now + period
        missed, self._missed = self._missed, False
        return missed or await chores.claim(self._pool, SWEEP_CHORE, period, holder=self._id)

    async def _receivers(self) -> set[uuid.UUID | None]:
        """The tenants some endpoint receives the events of, None standing for every tenant.

        Needed on each round that fans out notified tenants: fanning out a tenant no
        endpoint receives is a transaction that finds no stream to copy into, and
        every write of such a tenant would pay for one. Read once and kept while
        the listener hears of every endpoint added or deleted (`RECEIVERS_CHANNEL`,
        sent by the statement that does it): reading them on every round took 3.7%
        of a serving process's py-spy samples under the benchmark's paced mix,
        with no endpoint at all. A round that used them just before a change committed
        leaves its tenants to the sweep, as a read just before it did.
        """
        changes = self._receiver_changes
        if self._known_receivers is not None and self._known_receivers[0] == changes:
            return self._known_receivers[1]
        found = await self._read_receivers()
        if self._listener is not None:
            self._known_receivers = (changes, found)
        return found

    async def _read_receivers(self) -> set[uuid.UUID | None]:
        rows = await self._pool.fetch("SELECT DISTINCT tenant FROM scim_control.webhook_endpoints")
        return {row["tenant"] for row in rows}

    async def _tenants_behind(self) -> list[tuple[uuid.UUID, str]]:
        # On the listener's connection when there is one: the call reads a table of
        # every tenant, and a backend keeps the catalog entries of what it read for its
        # whole life. The sweeping worker's listener keeps them warm for its next sweep
        # (`_sweep_due` keeps the sweep with one worker), where each connection of the
        # pool would in time come to hold every tenant's.
        source = self._listener or self._pool
        rows = await source.fetch(
            "SELECT tenant, schema_name FROM scim_control.webhook_backlog($1)", _OUTBOX_VERSION
        )
        return [(row["tenant"], row["schema_name"]) for row in rows]

    # -- fan-out ----------------------------------------------------------------------

    async def fan_out(self, tenant_id: uuid.UUID, schema: str) -> bool:
        """Copy a tenant's new events into deliveries; True when more are waiting."""
        qualified = quoted_schema(schema)
        async with self._pool.acquire() as conn, conn.transaction():
            # A new stream starts at its endpoint's registration: no history.
            await conn.execute(
                "INSERT INTO scim_control.webhook_streams (id, endpoint, tenant, last_sequence) "
                "SELECT gen_random_uuid(), e.id, $1, coalesce((SELECT max(ev.sequence) "
                f"FROM {qualified}.events ev WHERE ev.occurred_at < e.created_at), 0) "
                "FROM scim_control.webhook_endpoints e "
                "WHERE (e.tenant = $1 OR e.tenant IS NULL) AND NOT EXISTS (SELECT 1 FROM "
                "scim_control.webhook_streams s WHERE s.endpoint = e.id AND s.tenant = $1) "
                "ON CONFLICT (endpoint, tenant) DO NOTHING",
                tenant_id,
            )
            streams = await conn.fetch(
                "SELECT s.id, s.endpoint, s.last_sequence, e.event_types, t.slug "
                "FROM scim_control.webhook_streams s "
                "JOIN scim_control.webhook_endpoints e ON e.id = s.endpoint "
                "JOIN scim_control.tenants t ON t.id = s.tenant "
                "WHERE s.tenant = $1 ORDER BY s.id FOR UPDATE OF s",
                tenant_id,
            )
            if not streams:
                return False
            start = min(row["last_sequence"] for row in streams)
            stored = await outbox.read(conn, schema, after=start, limit=FAN_OUT_BATCH)
            if not stored:
                return False
            slug = streams[0]["slug"]
            bodies = {event.sequence: events.envelope(event, tenant_id, slug) for event in stored}
            for stream in streams:
                await self._copy(conn, stream, tenant_id, stored, bodies)
            return len(stored) == FAN_OUT_BATCH

    @staticmethod
    async def _copy(
        conn: Connection,
        stream: asyncpg.Record,
        tenant_id: uuid.UUID,
        stored: list[outbox.StoredEvent],
        bodies: dict[int, dict[str, Any]],
    ) -> None:
        wanted = stream["event_types"]
        chosen = [
            event
            for event in stored
            if event.sequence > stream["last_sequence"] and (wanted is None or event.type in wanted)
        ]
        if chosen:
            await conn.execute(
                "INSERT INTO scim_control.webhook_deliveries "
                "(id, endpoint, tenant, sequence, event_id, event_type, body) "
                "SELECT gen_random_uuid(), $1, $2, d.sequence, d.event_id, d.event_type, d.body "
                "FROM unnest($3::bigint[], $4::uuid[], $5::text[], $6::jsonb[]) "
                "AS d(sequence, event_id, event_type, body) "
                "ON CONFLICT (endpoint, tenant, sequence) DO NOTHING",
                stream["endpoint"],
                tenant_id,
                [event.sequence for event in chosen],
                [event.id for event in chosen],
                [event.type for event in chosen],
                [bodies[event.sequence] for event in chosen],
            )
        await conn.execute(
            "UPDATE scim_control.webhook_streams SET last_sequence = greatest(last_sequence, $2) "
            "WHERE id = $1",
            stream["id"],
            stored[-1].sequence,
        )

    # -- delivery ---------------------------------------------------------------------

    async def dispatch(self) -> int:
        """Lease streams with due deliveries, as many as there are free slots; returns how many."""
        free = self._settings.webhook_concurrency - len(self._in_flight)
        if free <= 0:
            return 0
        rows = await self._pool.fetch(
            "WITH waiting AS (SELECT DISTINCT endpoint, tenant FROM "
            "scim_control.webhook_deliveries WHERE status = 'pending'), "
            "claimable AS (SELECT s.id FROM scim_control.webhook_streams s "
            "JOIN waiting w ON w.endpoint = s.endpoint AND w.tenant = s.tenant "
            "WHERE (s.lease_until IS NULL OR s.lease_until < now()) "
            "AND (s.retry_at IS NULL OR s.retry_at <= now()) "
            "LIMIT $3 FOR UPDATE OF s SKIP LOCKED) "
            "UPDATE scim_control.webhook_streams s SET lease_owner = $1, "
            "lease_until = now() + make_interval(secs => $2) FROM claimable "
            "WHERE s.id = claimable.id RETURNING s.id, s.endpoint, s.tenant",
            self._id,
            self._lease_seconds,
            free,
        )
        for row in rows:
            task = asyncio.create_task(
                self._drain(_Stream(row["id"], row["endpoint"], row["tenant"]))
            )
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return len(rows)

    async def idle(self) -> None:
        """Wait until every delivery this worker started has finished."""
        while self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _drain(self, stream: _Stream) -> None:
        more = False
        try:
            target = await self._target(stream.endpoint)
            for _ in range(DRAIN_BATCH):
                head = await self._pool.fetchrow(
                    "SELECT id, event_id, body, attempts FROM scim_control.webhook_deliveries "
                    "WHERE endpoint = $1 AND tenant = $2 AND status = 'pending' "
                    "ORDER BY sequence LIMIT 1",
                    stream.endpoint,
                    stream.tenant,
                )
                if head is None or target is None or not await self._renew(stream):
                    return
                if not await self._attempt(stream, target, head):
                    return
            more = True
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("webhook delivery stopped: %s", exc)
        except Exception:
            log.exception("webhook delivery failed")
        finally:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await self._pool.execute(
                    "UPDATE scim_control.webhook_streams SET lease_owner = NULL, "
                    "lease_until = NULL WHERE id = $1 AND lease_owner = $2",
                    stream.id,
                    self._id,
                )
            if more:
                self._wake.set()

    async def _target(self, endpoint_id: uuid.UUID) -> _Target | None:
        """The endpoint's URL and the secrets that sign now; None if it was deleted."""
        row = await self._pool.fetchrow(
            "SELECT url, secret, previous_secret, previous_secret_expires_at > now() AS overlap "
            "FROM scim_control.webhook_endpoints WHERE id = $1",
            endpoint_id,
        )
        if row is None:
            return None
        assert self._box is not None
        sealed = [row["secret"]] + ([row["previous_secret"]] if row["overlap"] else [])
        try:
            secrets = [self._box.open(bytes(item), endpoint_id) for item in sealed]
        except SecretUnreadable:
            # Attempted without a signature: the attempt fails and is recorded as such.
            secrets = []
        return _Target(row["url"], secrets)

    async def _renew(self, stream: _Stream) -> bool:
        renewed = await self._pool.fetchval(
            "UPDATE scim_control.webhook_streams SET "
            "lease_until = now() + make_interval(secs => $3) "
            "WHERE id = $1 AND lease_owner = $2 RETURNING true",
            stream.id,
            self._id,
            self._lease_seconds,
        )
        return bool(renewed)

    async def _send(
        self, target: _Target, message_id: str, body: bytes
    ) -> tuple[int | None, str | None]:
        """POST one signed message; (status code, error) with error None on a 2xx."""
        if not target.secrets:
            return None, "the signing secret cannot be decrypted: SCIM_SECRET_KEY has changed"
        import httpx

        client = self._http()
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": _USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(target.secrets, message_id, timestamp, body),
        }
        try:
            async with asyncio.timeout(self._settings.webhook_timeout_seconds):
                request = client.build_request("POST", target.url, content=body, headers=headers)
                response = await client.send(request, stream=True)
                await response.aclose()
        except TimeoutError:
            return None, f"timed out after {self._settings.webhook_timeout_seconds:g} s"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}"

    async def _attempt(self, stream: _Stream, target: _Target, head: asyncpg.Record) -> bool:
        started = time.perf_counter()
        status, error = await self._send(
            target, str(head["event_id"]), msgspec.json.encode(head["body"])
        )
        latency_ms = round((time.perf_counter() - started) * 1000)
        attempts = head["attempts"] + 1
        schedule = self._settings.webhook_retry_schedule
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO scim_control.webhook_attempts "
                "(delivery, endpoint, status_code, latency_ms, error) VALUES ($1, $2, $3, $4, $5)",
                head["id"],
                stream.endpoint,
                status,
                latency_ms,
                error,
            )
            if error is None:
                await conn.execute(
                    "UPDATE scim_control.webhook_deliveries SET status = 'delivered', "
                    "attempts = $2, last_error = NULL, finished_at = now() WHERE id = $1",
                    head["id"],
                    attempts,
                )
                await _set_retry(conn, stream, None)
                return True
            if attempts > len(schedule):
                await _dead_letter(conn, stream, head["id"], attempts, error)
                return False
            delay = schedule[attempts - 1] * random.uniform(1 - _JITTER, 1 + _JITTER)  # noqa: S311
            retry_at = datetime.now(UTC) + timedelta(seconds=delay)
            await conn.execute(
                "UPDATE scim_control.webhook_deliveries SET attempts = $2, last_error = $3, "
                "next_attempt_at = $4 WHERE id = $1",
                head["id"],
                attempts,
                error,
                retry_at,
            )
            await _set_retry(conn, stream, retry_at)
            return False

    # -- retention --------------------------------------------------------------------

    async def purge(self) -> None:
        """Delete events and finished deliveries older than the retention period."""
        cutoff = datetime.now(UTC) - timedelta(days=self._settings.event_retention_days)
        removed = 0
        async with discarded_after(self._pool) as conn:  # it opens every tenant's events
            schemas = await conn.fetch(
                "SELECT schema_name FROM scim_control.tenants WHERE schema_version >= $1",
                _OUTBOX_VERSION,
            )
            for row in schemas:
                removed += await outbox.purge(conn, row["schema_name"], older_than=cutoff)
        await self._pool.execute(
            "DELETE FROM scim_control.webhook_deliveries WHERE finished_at < $1", cutoff
        )
        if removed:
            log.info(
                "purged %d events older than %d days", removed, self._settings.event_retention_days
            )


async def _set_retry(conn: Connection, stream: _Stream, retry_at: datetime | None) -> None:
    await conn.execute(
        "UPDATE scim_control.webhook_streams SET retry_at = $2 WHERE id = $1", stream.id, retry_at
    )


async def _dead_letter(
    conn: Connection, stream: _Stream, head_id: uuid.UUID, attempts: int, error: str
) -> None:
    """The head failed for good: it and the stream's backlog wait for a manual replay."""
    await conn.execute(
        "UPDATE scim_control.webhook_deliveries SET status = 'dead', finished_at = now(), "
        "attempts = CASE WHEN id = $3 THEN $4 ELSE attempts END, "
        "last_error = CASE WHEN id = $3 THEN $5 "
        "ELSE 'not attempted: an earlier event of this stream was dead-lettered' END "
        "WHERE endpoint = $1 AND tenant = $2 AND status = 'pending'",
        stream.endpoint,
        stream.tenant,
        head_id,
        attempts,
        error,
    )
    await _set_retry(conn, stream, None)
