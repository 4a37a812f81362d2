"""`GET /admin/v1/tenants/{slug}/requests`: search a tenant's provisioning request log."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Final

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery

from service.postgres import Pool
from service.request_log.recorder import OPERATIONS
from service.routes.admin import admin_guard
from service.store import request_log as store
from service.store.request_log import RequestQuery
from tenants.errors import Conflict, InvalidInput, NotFound

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000


class LoggedRequest(msgspec.Struct, kw_only=True):
    id: int
    received_at: datetime
    client: str | None
    user_agent: str | None
    method: str
    path: str
    query: str | None
    operation: str
    resource_id: str | None
    status: int
    scim_type: str | None
    detail: str | None
    latency_ms: float
    trace_id: str | None
    body: str | None
    """The request body as received, with secrets and configured PII masked."""
    body_bytes: int
    body_truncated: bool


class RequestPage(msgspec.Struct):
    requests: list[LoggedRequest]
    next: str | None
    """Pass as `after` for the next (older) page; null on the last page."""


def _statuses(raw: str | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """`404`, `4xx`, or a comma-separated mix: exact codes and hundreds."""
    codes: list[int] = []
    classes: list[int] = []
    for raw_part in (raw or "").split(","):
        part = raw_part.strip().lower()
        if not part:
            continue
        if len(part) == 3 and part[0] in "12345" and part[1:] == "xx":
            classes.append(int(part[0]))
        elif len(part) == 3 and part.isdigit() and 100 <= int(part) <= 599:
            codes.append(int(part))
        else:
            raise InvalidInput(f"status must be codes like 404 or classes like 4xx, got {part!r}")
    return tuple(codes), tuple(classes)


def _time(name: str, raw: str | None) -> datetime | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError as exc:
        raise InvalidInput(f"{name} must be an ISO 8601 time, e.g. 2026-11-22T09:00:00Z") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _operations(raw: str | None) -> tuple[str, ...]:
    operations = tuple(part.strip().lower() for part in (raw or "").split(",") if part.strip())
    unknown = [op for op in operations if op not in OPERATIONS]
    if unknown:
        raise InvalidInput(f"operation must be among {', '.join(OPERATIONS)}, got {unknown[0]!r}")
    return operations


def encode_cursor(received_at: datetime, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{received_at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(raw: str) -> tuple[datetime, int]:
    try:
        at, _, row_id = base64.urlsafe_b64decode(raw.encode()).decode().partition("|")
        return datetime.fromisoformat(at), int(row_id)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("after is not a cursor this API returned") from exc


class RequestLogController(Controller):
    path = "/admin/v1/tenants/{slug:str}/requests"
    guards = [admin_guard]  # noqa: RUF012
    tags = ["admin"]  # noqa: RUF012

    @get("/")
    async def search_requests(
        self,
        state: State,
        slug: FromPath[str],
        *,
        status: FromQuery[str | None] = None,
        since: FromQuery[str | None] = None,
        until: FromQuery[str | None] = None,
        operation: FromQuery[str | None] = None,
        resource_id: FromQuery[str | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        after: FromQuery[str | None] = None,
    ) -> RequestPage:
        """A tenant's SCIM requests, newest first. `status` takes codes and classes
        (`401,5xx`), `operation` a comma-separated list; `since` and `until` are
        ISO 8601 times (`until` exclusive); follow `next` with `after`."""
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
        codes, classes = _statuses(status)
        query = RequestQuery(
            status_codes=codes,
            status_classes=classes,
            since=_time("since", since),
            until=_time("until", until),
            operations=_operations(operation),
            resource_id=resource_id or None,
            limit=limit,
            after=decode_cursor(after) if after else None,
        )
        pool: Pool = state.pool
        tenant = (await store.tenants_by_slug(pool, [slug])).get(slug)
        if tenant is None:
            raise NotFound(f"no tenant with slug {slug!r}")
        if not tenant.has_log:
            raise Conflict(f"tenant {slug!r} has no request log yet; run `scim-platform migrate`")
        rows = await store.search(pool, tenant.schema, query)
        page = [LoggedRequest(**dict(row)) for row in rows[:limit]]
        more = len(rows) > limit
        return RequestPage(
            requests=page,
            next=encode_cursor(page[-1].received_at, page[-1].id) if more else None,
        )
