"""The admin API's event feed and webhook endpoints, under `/admin/v1`."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.params import FromPath, FromQuery, JSONBody

from service import events
from service.postgres import Pool
from service.routes.admin import _optional_body, admin_guard
from service.store import outbox
from service.webhooks.endpoints import (
    Attempt,
    Delivery,
    Endpoint,
    EndpointWithSecret,
    WebhooksDisabled,
    WebhookStore,
)
from tenants.errors import InvalidInput, NotFound

MAX_EVENTS_PAGE = 1000
DEFAULT_EVENTS_PAGE = 100


class EventPage(msgspec.Struct):
    events: list[dict[str, Any]]
    next: str
    """Pass as `after` to get what follows; the same cursor when nothing new has come yet."""


class RecentEvents(msgspec.Struct):
    events: list[dict[str, Any]]
    next: str | None
    """Pass as `before` for the events before these; null when these reach the first."""


class NewEndpoint(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    events: list[str] | None = None
    """Event types to deliver; omitted or null: all of them."""


class SecretRotation(msgspec.Struct, forbid_unknown_fields=True):
    overlap_seconds: int | None = None
    """How long the old secret keeps signing too; unset: 24 hours."""


class Replay(msgspec.Struct, forbid_unknown_fields=True):
    delivery_id: str | None = None
    """One dead-lettered delivery; unset: all of the endpoint's."""


class Replayed(msgspec.Struct):
    replayed: int


class EndpointList(msgspec.Struct):
    webhooks: list[Endpoint]


class DeliveryList(msgspec.Struct):
    deliveries: list[Delivery]


class AttemptList(msgspec.Struct):
    attempts: list[Attempt]


def _cursor(after: str | None) -> int:
    if after is None or after == "":
        return 0
    if not after.isdigit():
        raise InvalidInput("after must be a cursor returned as `next` by this API")
    return int(after)


def _check_page_size(limit: int) -> None:
    if not 1 <= limit <= MAX_EVENTS_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_EVENTS_PAGE}")


async def _tenant(state: State, slug: str) -> asyncpg.Record:
    """The tenant's id and schema name; NotFound if there is no such tenant."""
    pool: Pool = state.pool
    tenant: asyncpg.Record | None = await pool.fetchrow(
        "SELECT id, schema_name FROM scim_control.tenants WHERE slug = $1", slug
    )
    if tenant is None:
        raise NotFound(f"no tenant with slug {slug!r}")
    return tenant


def _store(state: State) -> WebhookStore:
    store: WebhookStore = state.webhooks
    return store


async def _with_secret(call: Any) -> EndpointWithSecret:
    try:
        created: EndpointWithSecret = await call
    except WebhooksDisabled as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    return created


class EventsController(Controller):
    path = "/admin/v1"
    guards = [admin_guard]  # noqa: RUF012
    tags = ["events"]  # noqa: RUF012

    @get("/tenants/{slug:str}/events")
    async def list_events(
        self,
        state: State,
        slug: FromPath[str],
        after: FromQuery[str | None] = None,
        limit: FromQuery[int] = DEFAULT_EVENTS_PAGE,
    ) -> EventPage:
        """A tenant's events in commit order, after the cursor `after` (from the start if unset).

        Events are numbered without gaps in commit order, so a consumer that stores
        `next` and resumes with it after a crash neither misses nor repeats an event.
        """
        _check_page_size(limit)
        cursor = _cursor(after)
        tenant = await _tenant(state, slug)
        stored = await outbox.read(state.pool, tenant["schema_name"], after=cursor, limit=limit)
        return EventPage(
            events=[events.envelope(event, tenant["id"], slug) for event in stored],
            next=str(stored[-1].sequence if stored else cursor),
        )

    @get("/tenants/{slug:str}/events/recent")
    async def recent_events(
        self,
        state: State,
        slug: FromPath[str],
        before: FromQuery[str | None] = None,
        limit: FromQuery[int] = DEFAULT_EVENTS_PAGE,
    ) -> RecentEvents:
        """A tenant's latest events, newest first, those numbered below `before` if given:
        for a person looking at what happened lately (consumers read forward, above)."""
        _check_page_size(limit)
        tenant = await _tenant(state, slug)
        stored = await outbox.read_back(
            state.pool, tenant["schema_name"], before=_cursor(before) or None, limit=limit
        )
        return RecentEvents(
            events=[events.envelope(event, tenant["id"], slug) for event in stored],
            next=str(stored[-1].sequence) if len(stored) == limit else None,
        )

    @post("/tenants/{slug:str}/webhooks")
    async def create_tenant_webhook(
        self, state: State, slug: FromPath[str], data: JSONBody[NewEndpoint]
    ) -> EndpointWithSecret:
        """Register an endpoint for this tenant's events; the `secret` is shown only now."""
        return await _with_secret(_store(state).create(slug, data.url, data.events))

    @get("/tenants/{slug:str}/webhooks")
    async def list_tenant_webhooks(self, state: State, slug: FromPath[str]) -> EndpointList:
        return EndpointList(await _store(state).endpoints(slug))

    @post("/webhooks")
    async def create_webhook(self, state: State, data: JSONBody[NewEndpoint]) -> EndpointWithSecret:
        """Register an endpoint for every tenant's events; the `secret` is shown only now."""
        return await _with_secret(_store(state).create(None, data.url, data.events))

    @get("/webhooks")
    async def list_webhooks(self, state: State) -> EndpointList:
        """Every endpoint, of one tenant (`tenant` is its slug) or of all (`tenant` null)."""
        return EndpointList(await _store(state).endpoints())

    @get("/webhooks/{endpoint_id:str}")
    async def get_webhook(self, state: State, endpoint_id: FromPath[str]) -> Endpoint:
        return await _store(state).get(endpoint_id)

    @delete("/webhooks/{endpoint_id:str}", status_code=204)
    async def delete_webhook(self, state: State, endpoint_id: FromPath[str]) -> None:
        await _store(state).delete(endpoint_id)

    @post("/webhooks/{endpoint_id:str}/rotate")
    async def rotate_secret(
        self, request: Request[Any, Any, State], state: State, endpoint_id: FromPath[str]
    ) -> EndpointWithSecret:
        """A new signing secret; the old one signs too until `previous_secret_expires_at`."""
        data = await _optional_body(request, SecretRotation)
        return await _with_secret(
            _store(state).rotate(endpoint_id, overlap_seconds=data.overlap_seconds)
        )

    @get("/webhooks/{endpoint_id:str}/deliveries")
    async def list_deliveries(
        self,
        state: State,
        endpoint_id: FromPath[str],
        status: FromQuery[str | None] = None,
        limit: FromQuery[int] = 100,
    ) -> DeliveryList:
        return DeliveryList(await _store(state).deliveries(endpoint_id, status=status, limit=limit))

    @get("/webhooks/{endpoint_id:str}/attempts")
    async def list_attempts(
        self, state: State, endpoint_id: FromPath[str], limit: FromQuery[int] = 100
    ) -> AttemptList:
        """Delivery attempts, newest first: status code, latency and error of each."""
        return AttemptList(await _store(state).attempts(endpoint_id, limit=limit))

    @post("/webhooks/{endpoint_id:str}/replay", status_code=200)
    async def replay(
        self, request: Request[Any, Any, State], state: State, endpoint_id: FromPath[str]
    ) -> Replayed:
        """Send dead-lettered deliveries again, in sequence order."""
        data = await _optional_body(request, Replay)
        return Replayed(await _store(state).replay(endpoint_id, delivery_id=data.delivery_id))
