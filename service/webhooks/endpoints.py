"""Webhook endpoints as operators manage them: register, list, rotate, inspect, replay."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import asyncpg
import msgspec

from service.events import EVENT_TYPES
from service.postgres import Pool
from service.webhooks.signing import SecretBox, generate_secret
from tenants.errors import ControlPlaneError, InvalidInput, NotFound

DEFAULT_ROTATION_OVERLAP_SECONDS = 24 * 60 * 60
RECEIVERS_CHANNEL = "scim_webhook_receivers"
"""NOTIFYed by the statement that adds or deletes an endpoint: the webhook workers ask
again which tenants some endpoint receives (`service.webhooks.worker`)."""
DELIVERY_STATUSES = ("pending", "delivered", "dead")
_MAX_LIST = 1000


class WebhooksDisabled(ControlPlaneError):
    """No `SCIM_SECRET_KEY`: signing secrets could not be stored safely."""


class Endpoint(msgspec.Struct, kw_only=True):
    id: str
    tenant: str | None
    """The tenant's slug; null: the endpoint receives every tenant's events."""
    url: str
    events: list[str] | None
    """The event types delivered; null: all of them."""
    created_at: datetime
    previous_secret_expires_at: datetime | None
    """While set and in the future, the previous secret signs too."""


class EndpointWithSecret(Endpoint, kw_only=True):
    secret: str
    """Shown once, when the endpoint is registered or its secret rotated."""


class Delivery(msgspec.Struct, kw_only=True):
    id: str
    tenant: str
    sequence: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


class Attempt(msgspec.Struct, kw_only=True):
    id: int
    delivery_id: str
    event_id: str
    event_type: str
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None


def _endpoint_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise NotFound(f"no webhook endpoint {raw!r}") from exc


def _validate_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("url must be an absolute http:// or https:// URL")
    return url


def _validate_events(events: list[str] | None) -> list[str] | None:
    if events is None:
        return None
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown or not events:
        raise InvalidInput(
            f"events must be a non-empty list of: {', '.join(EVENT_TYPES)}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    return sorted(set(events))


_SELECT_ENDPOINT = (
    "SELECT e.id, t.slug, e.url, e.event_types, e.created_at, e.previous_secret_expires_at "
    "FROM scim_control.webhook_endpoints e LEFT JOIN scim_control.tenants t ON t.id = e.tenant"
)


def _endpoint(row: asyncpg.Record) -> Endpoint:
    return Endpoint(
        id=str(row["id"]),
        tenant=row["slug"],
        url=row["url"],
        events=row["event_types"],
        created_at=row["created_at"],
        previous_secret_expires_at=row["previous_secret_expires_at"],
    )


class WebhookStore:
    def __init__(self, pool: Pool, box: SecretBox | None) -> None:
        self._pool = pool
        self._box = box

    @property
    def enabled(self) -> bool:
        return self._box is not None

    def _sealer(self) -> SecretBox:
        if self._box is None:
            raise WebhooksDisabled(
                "webhooks need SCIM_SECRET_KEY to store their signing secrets encrypted"
            )
        return self._box

    async def _tenant_id(self, slug: str) -> uuid.UUID:
        tenant_id: uuid.UUID | None = await self._pool.fetchval(
            "SELECT id FROM scim_control.tenants WHERE slug = $1", slug
        )
        if tenant_id is None:
            raise NotFound(f"no tenant with slug {slug!r}")
        return tenant_id

    async def create(
        self, tenant_slug: str | None, url: str, events: list[str] | None
    ) -> EndpointWithSecret:
        """A new endpoint for one tenant, or for every tenant when ``tenant_slug`` is None."""
        box = self._sealer()
        tenant_id = None if tenant_slug is None else await self._tenant_id(tenant_slug)
        endpoint_id = uuid.uuid4()
        secret = generate_secret()
        await self._pool.execute(
            "WITH added AS (INSERT INTO scim_control.webhook_endpoints "
            "(id, tenant, url, event_types, secret) VALUES ($1, $2, $3, $4, $5) RETURNING id) "
            "SELECT pg_notify($6, '') FROM added",
            endpoint_id,
            tenant_id,
            _validate_url(url),
            _validate_events(events),
            box.seal(secret, endpoint_id),
            RECEIVERS_CHANNEL,
        )
        return await self._with_secret(endpoint_id, secret)

    async def _with_secret(self, endpoint_id: uuid.UUID, secret: str) -> EndpointWithSecret:
        endpoint = await self.get(str(endpoint_id))
        return EndpointWithSecret(**msgspec.structs.asdict(endpoint), secret=secret)

    async def endpoints(self, tenant_slug: str | None = None) -> list[Endpoint]:
        """A tenant's own endpoints, or with no tenant every endpoint there is."""
        if tenant_slug is None:
            rows = await self._pool.fetch(f"{_SELECT_ENDPOINT} ORDER BY e.created_at")
        else:
            rows = await self._pool.fetch(
                f"{_SELECT_ENDPOINT} WHERE e.tenant = $1 ORDER BY e.created_at",
                await self._tenant_id(tenant_slug),
            )
        return [_endpoint(row) for row in rows]

    async def get(self, raw_id: str) -> Endpoint:
        row = await self._pool.fetchrow(f"{_SELECT_ENDPOINT} WHERE e.id = $1", _endpoint_id(raw_id))
        if row is None:
            raise NotFound(f"no webhook endpoint {raw_id!r}")
        return _endpoint(row)

    async def delete(self, raw_id: str) -> None:
        deleted = await self._pool.fetch(
            "WITH deleted AS (DELETE FROM scim_control.webhook_endpoints WHERE id = $1 "
            "RETURNING id) SELECT pg_notify($2, '') FROM deleted",
            _endpoint_id(raw_id),
            RECEIVERS_CHANNEL,
        )
        if not deleted:
            raise NotFound(f"no webhook endpoint {raw_id!r}")

    async def rotate(self, raw_id: str, *, overlap_seconds: int | None) -> EndpointWithSecret:
        """A new secret; the current one keeps signing too for ``overlap_seconds``."""
        box = self._sealer()
        overlap = DEFAULT_ROTATION_OVERLAP_SECONDS if overlap_seconds is None else overlap_seconds
        if overlap < 0:
            raise InvalidInput("overlap_seconds must be 0 or more")
        endpoint_id = _endpoint_id(raw_id)
        secret = generate_secret()
        result = await self._pool.execute(
            "UPDATE scim_control.webhook_endpoints SET previous_secret = secret, "
            "previous_secret_expires_at = $3, secret = $2, updated_at = now() WHERE id = $1",
            endpoint_id,
            box.seal(secret, endpoint_id),
            datetime.now(UTC) + timedelta(seconds=overlap),
        )
        if result.endswith(" 0"):
            raise NotFound(f"no webhook endpoint {raw_id!r}")
        return await self._with_secret(endpoint_id, secret)

    async def deliveries(
        self, raw_id: str, *, status: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        """The endpoint's most recent deliveries, newest first."""
        endpoint_id = (await self.get(raw_id)).id
        if status is not None and status not in DELIVERY_STATUSES:
            raise InvalidInput(f"status must be one of: {', '.join(DELIVERY_STATUSES)}")
        rows = await self._pool.fetch(
            "SELECT d.*, t.slug FROM scim_control.webhook_deliveries d "
            "JOIN scim_control.tenants t ON t.id = d.tenant "
            "WHERE d.endpoint = $1 AND ($2::text IS NULL OR d.status = $2) "
            "ORDER BY d.created_at DESC, d.sequence DESC LIMIT $3",
            uuid.UUID(endpoint_id),
            status,
            _limit(limit),
        )
        return [
            Delivery(
                id=str(row["id"]),
                tenant=row["slug"],
                sequence=row["sequence"],
                event_id=str(row["event_id"]),
                event_type=row["event_type"],
                status=row["status"],
                attempts=row["attempts"],
                next_attempt_at=row["next_attempt_at"] if row["status"] == "pending" else None,
                last_error=row["last_error"],
                created_at=row["created_at"],
                finished_at=row["finished_at"],
            )
            for row in rows
        ]

    async def attempts(self, raw_id: str, *, limit: int = 100) -> list[Attempt]:
        """The endpoint's most recent delivery attempts, newest first."""
        endpoint_id = (await self.get(raw_id)).id
        rows = await self._pool.fetch(
            "SELECT a.*, d.event_id, d.event_type FROM scim_control.webhook_attempts a "
            "JOIN scim_control.webhook_deliveries d ON d.id = a.delivery "
            "WHERE a.endpoint = $1 ORDER BY a.id DESC LIMIT $2",
            uuid.UUID(endpoint_id),
            _limit(limit),
        )
        return [
            Attempt(
                id=row["id"],
                delivery_id=str(row["delivery"]),
                event_id=str(row["event_id"]),
                event_type=row["event_type"],
                attempted_at=row["attempted_at"],
                status_code=row["status_code"],
                latency_ms=row["latency_ms"],
                error=row["error"],
            )
            for row in rows
        ]

    async def replay(self, raw_id: str, *, delivery_id: str | None = None) -> int:
        """Send dead-lettered deliveries again (one, or all of the endpoint's); returns how many."""
        endpoint_id = uuid.UUID((await self.get(raw_id)).id)
        only: uuid.UUID | None = None
        if delivery_id is not None:
            try:
                only = uuid.UUID(delivery_id)
            except ValueError as exc:
                raise NotFound(f"no delivery {delivery_id!r}") from exc
        result = await self._pool.execute(
            "UPDATE scim_control.webhook_deliveries SET status = 'pending', attempts = 0, "
            "next_attempt_at = now(), last_error = NULL, finished_at = NULL "
            "WHERE endpoint = $1 AND status = 'dead' AND ($2::uuid IS NULL OR id = $2)",
            endpoint_id,
            only,
        )
        replayed = int(result.split()[-1])
        if only is not None and replayed == 0:
            raise NotFound(f"no dead-lettered delivery {delivery_id!r} on this endpoint")
        return replayed


def _limit(limit: int) -> int:
    if not 1 <= limit <= _MAX_LIST:
        raise InvalidInput(f"limit must be between 1 and {_MAX_LIST}")
    return limit
