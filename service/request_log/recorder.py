"""The in-memory buffer between the SCIM request path and each tenant's `requests` table.

`record` is all a request pays: one append to a list, never I/O and never a
wait. A background task writes the buffer every `flush_seconds`, or sooner
once `batch_size` requests are waiting, one COPY per tenant; masking,
classification and client detection happen there, off the request path.
The buffer is bounded in requests and in bytes: when the database cannot
keep up, new requests are dropped and counted rather than slowing SCIM or
growing without limit. The buffer is written once more on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
import msgspec
from opentelemetry import metrics

from observability.logging import redact
from service import chores
from service.background import cancel_all
from service.postgres import Pool
from service.request_log.masking import Masker
from service.scim.clients import detect_client
from service.settings import Settings
from service.store import request_log as store
from service.store.request_log import LoggedTenant, PurgeReport

log = logging.getLogger(__name__)

SCIM_PREFIX: Final = "/scim/v2/"
OPERATIONS: Final = ("create", "replace", "patch", "delete", "get", "list", "search", "bulk")
_ITEM_OPERATIONS: Final = {"GET": "get", "PUT": "replace", "PATCH": "patch", "DELETE": "delete"}
_MAX_USER_AGENT: Final = 512
_MAX_DETAIL: Final = 2000
_FIRST_PURGE_SECONDS: Final = 60.0
_PURGE_CHORE: Final = "request_log_purge"
ROWS_PER_SLICE: Final = 64
"""Rows prepared (masked, classified) between two yields to the event loop: a
flush's few hundred prepared at once held every request in flight for
milliseconds, which showed in the service's p99."""
_WRITE_ERRORS: Final = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)

_dropped = metrics.get_meter(__name__).create_counter(
    "scim.request_log.dropped",
    unit="{request}",
    description="SCIM requests not recorded in the request log (buffer full or write failed)",
)


@dataclass(slots=True)
class Captured:
    """One request as the middleware saw it: raw, unmasked, only ever held in memory."""

    slug: str
    received_at: float
    """Seconds since the epoch."""
    method: str
    path: str
    query: bytes
    user_agent: str | None
    body: bytes
    status: int
    error_body: bytes
    """The response body of an error (status >= 400), for its scimType and detail."""
    location: str | None
    latency_ms: float
    trace_id: str | None

    def size(self) -> int:
        return len(self.body) + len(self.error_body) + len(self.path) + len(self.query) + 256


def classify(method: str, path: str, location: str | None) -> tuple[str, str | None]:
    """The SCIM operation and the resource it acted on, from the request line.

    The id of a created resource comes from the `Location` of the response.
    """
    segments = path[len(SCIM_PREFIX) :].split("/")[1:]  # without the tenant slug
    first = segments[0] if segments else ""
    if first == "Bulk":
        return "bulk", None
    if first == ".search" or segments[1:2] == [".search"]:
        return "search", None
    if len(segments) >= 2 and segments[1]:
        return _ITEM_OPERATIONS.get(method, method.lower()), segments[1]
    if method == "POST":
        created = location.rstrip("/").rsplit("/", 1)[-1] if location else None
        return "create", created
    return ("get" if first == "ServiceProviderConfig" else "list"), None


def _error_fields(status: int, error_body: bytes) -> tuple[str | None, str | None]:
    if status < 400 or not error_body:
        return None, None
    try:
        error = msgspec.json.decode(error_body)
    except msgspec.DecodeError:
        return None, None
    if not isinstance(error, dict):
        return None, None
    scim_type, detail = error.get("scimType"), error.get("detail")
    return (
        scim_type if isinstance(scim_type, str) else None,
        detail[:_MAX_DETAIL] if isinstance(detail, str) else None,
    )


class RequestLog:
    def __init__(
        self,
        masker: Masker,
        *,
        enabled: bool = True,
        retention_days: int = 14,
        body_max_bytes: int = 65_536,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        batch_size: int = 500,
        flush_seconds: float = 0.5,
        purge_seconds: float = 3600.0,
    ) -> None:
        self.enabled = enabled
        self._masker = masker
        self._retention = timedelta(days=retention_days)
        self._body_max_bytes = body_max_bytes
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._purge_seconds = purge_seconds
        self._entries: list[Captured] = []
        self._bytes = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._pool: Pool | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.dropped = 0
        """Requests never recorded because the buffer was full."""
        self.lost = 0
        """Requests taken from the buffer whose write failed."""

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestLog:
        return cls(
            Masker(settings.request_log_mask),
            enabled=settings.request_log_enabled,
            retention_days=settings.request_log_retention_days,
            body_max_bytes=settings.request_log_body_max_bytes,
            max_entries=settings.request_log_buffer,
        )

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, entry: Captured) -> None:
        """Queue one request for writing; drops it if the buffer is full. Never blocks."""
        size = entry.size()
        if len(self._entries) >= self._max_entries or self._bytes + size > self._max_bytes:
            self.dropped += 1
            _dropped.add(1, {"reason": "buffer_full"})
            return
        self._entries.append(entry)
        self._bytes += size
        if len(self._entries) >= self._batch_size:
            self._wake.set()

    async def start(self, pool: Pool) -> None:
        self._pool = pool
        self._tasks.append(asyncio.create_task(self._flush_periodically()))
        self._tasks.append(asyncio.create_task(self._purge_periodically()))

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks.clear()
        try:
            await self.flush()
        except _WRITE_ERRORS as exc:
            log.warning("request log: final flush failed: %s", exc)

    async def flush(self) -> int:
        """Write everything buffered so far; returns the rows written.

        Serialised, so when it returns every request recorded before the call
        has been written (or counted as lost), even if a periodic flush was
        already running.
        """
        async with self._lock:
            if not self._entries or self._pool is None:
                return 0
            entries, self._entries, self._bytes = self._entries, [], 0
            by_slug: dict[str, list[Captured]] = defaultdict(list)
            for entry in entries:
                by_slug[entry.slug].append(entry)
            try:
                tenants = await store.tenants_by_slug(self._pool, list(by_slug))
            except _WRITE_ERRORS as exc:
                self._lose(len(entries), exc)
                return 0
            written = 0
            for slug, batch in by_slug.items():
                tenant = tenants.get(slug)
                if tenant is None or not tenant.has_log:
                    continue  # no such tenant (a typo in a URL), or not migrated yet
                rows = await self._rows(batch, tenant)
                try:
                    if rows and await store.insert(self._pool, tenant.schema, rows):
                        written += len(rows)
                except _WRITE_ERRORS as exc:
                    self._lose(len(rows), exc)
            return written

    def _lose(self, count: int, exc: BaseException) -> None:
        self.lost += count
        _dropped.add(count, {"reason": "write_failed"})
        log.warning("request log: %d request(s) not written: %s", count, exc)

    async def _rows(self, batch: list[Captured], tenant: LoggedTenant) -> list[tuple[Any, ...]]:
        # Requests that reached a slug before its current tenant was
        # created (deleted and re-created since) are not this tenant's.
        created = tenant.created_at.timestamp()
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(batch), ROWS_PER_SLICE):
            if start:
                await asyncio.sleep(0)
            chunk = batch[start : start + ROWS_PER_SLICE]
            rows.extend(self._row(entry, tenant) for entry in chunk if entry.received_at >= created)
        return rows

    def _row(self, entry: Captured, tenant: LoggedTenant) -> tuple[Any, ...]:
        operation, resource_id = classify(entry.method, entry.path, entry.location)
        body: str | None = None
        truncated = False
        if entry.body:
            encoded = self._masker.body(entry.body).encode()
            if len(encoded) > self._body_max_bytes:
                encoded, truncated = encoded[: self._body_max_bytes], True
            body = encoded.decode("utf-8", "ignore")
        scim_type, detail = _error_fields(entry.status, entry.error_body)
        user_agent = entry.user_agent[:_MAX_USER_AGENT] if entry.user_agent else None
        return (
            datetime.fromtimestamp(entry.received_at, UTC),
            detect_client(entry.user_agent, tenant.idp_type),
            redact(user_agent) if user_agent else None,
            entry.method,
            redact(entry.path),
            self._masker.query(entry.query),
            operation,
            resource_id,
            entry.status,
            scim_type,
            self._masker.detail(detail) if detail else None,
            entry.latency_ms,
            entry.trace_id,
            body,
            len(entry.body),
            truncated,
        )

    async def purge(self) -> PurgeReport:
        assert self._pool is not None, "start() first"
        return await purge_expired(self._pool, self._retention)

    async def _flush_periodically(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_seconds)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # the writer must outlive any one bad batch
                log.exception("request log: flush failed")

    async def _purge_periodically(self) -> None:
        # Soon after start as well, so replicas that never live an hour still purge;
        # one process of the deployment purges per period (`service.chores`).
        delay = min(self._purge_seconds, _FIRST_PURGE_SECONDS)
        while True:
            await asyncio.sleep(delay)
            delay = min(self._purge_seconds, chores.CHECK_SECONDS)
            assert self._pool is not None
            try:
                if not await chores.claim(self._pool, _PURGE_CHORE, self._purge_seconds):
                    continue
                report = await self.purge()
            except _WRITE_ERRORS as exc:
                log.warning("request log: purge failed: %s", exc)
            else:
                if report.deleted:
                    log.info("request log: purged %d request(s)", report.deleted)


async def purge_expired(pool: Pool, retention: timedelta) -> PurgeReport:
    """Delete logged requests older than ``retention`` in every tenant."""
    return await store.purge(pool, datetime.now(UTC) - retention)
