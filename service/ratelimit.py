"""Enforcing each tenant's rate limits on the SCIM endpoint.

`admit` runs in `provide_tenant`, right after the tenant is authenticated, so
an unauthenticated flood is refused by authentication and never counted
against a tenant. It makes three checks, all without a database query (the
tenant's policy comes cached with the tenant, see `tenants.auth`):

1. Concurrency: at most `policy.concurrency` requests of one tenant in flight
   in this process (each replica has its own database pool, so the cap is per
   process). Over it: 429, `Retry-After: 1`, at once, without charging the rate.
2. Rate: a moving window of `burst` requests per `burst / per_second` seconds
   (in memory, see `service.moving_window`; or in Redis with the `limits`
   package when `REDIS_URL` is set, so every replica shares one window).
   Over it: 429 with `Retry-After` until the oldest request in the window
   leaves it.
3. Capacity: at most `SCIM_DB_POOL_MAX - 1` SCIM requests of all tenants in
   flight in this process. A SCIM request holds at most one connection at a
   time, so admitted requests never queue on the pool behind each other; one
   that finds no room within `SCIM_POOL_WAIT_SECONDS` gets 503 with
   `Retry-After` instead of waiting for ever.

Why a moving window: it is exact (never more than `burst` requests in any
window, where a fixed window lets twice that through around a boundary),
over a long run it admits `per_second` requests a second with bursts up to
`burst`, like a token bucket of that rate and size, and it maps one to one
onto the `q`/`w` of the RateLimit-Policy header field. Its cost is one stored
timestamp per request in the window, which the policy bounds (`MAX_BURST`).

Every response of an admitted or refused tenant request carries the
RateLimit-Policy and RateLimit header fields of
draft-ietf-httpapi-ratelimit-headers-11 (structured-field lists):

    RateLimit-Policy: "requests";q=100;w=2, "concurrency";q=10;qu="concurrent-requests"
    RateLimit: "requests";r=97;t=2, "concurrency";r=9
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from litestar import Litestar
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from redis.asyncio import ConnectionPool

from observability import tracing
from service.moving_window import MovingWindows
from service.pools import Layout
from service.scim.errors import ScimError
from service.settings import Settings
from tenants.context import TenantContext
from tenants.ratelimit import RateLimitPolicy

log = logging.getLogger(__name__)

_STATE_KEY: Final = "scim_rate_limit"
_REDIS_TIMEOUT_SECONDS: Final = 0.5
_WARN_EVERY_SECONDS: Final = 30.0


class RateLimited(Exception):
    """A request refused by a limit: its status, what to tell the client, its headers."""

    def __init__(self, status: int, detail: str, headers: list[tuple[str, str]]) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


@dataclass
class Admission:
    """An admitted request: the headers its response carries and what it holds."""

    headers: list[tuple[str, str]]
    _release: Callable[[], None] | None = field(default=None, repr=False)

    def release(self) -> None:
        """Give back the concurrency and capacity slots; safe to call more than once."""
        release, self._release = self._release, None
        if release is not None:
            release()


def policy_header(policy: RateLimitPolicy) -> str:
    return (
        f'"requests";q={policy.burst};w={policy.window_seconds}, '
        f'"concurrency";q={policy.concurrency};qu="concurrent-requests"'
    )


def _seconds_until(moment: float) -> int:
    """Whole seconds, at least 1: what Retry-After and the `t` parameter take."""
    return max(1, math.ceil(moment - time.time()))


def _redis_storage(redis_url: str) -> tuple[RedisStorage, ConnectionPool]:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    # Fail fast: a Redis outage must cost a request milliseconds, not the
    # client's retries with backoff, whichever way SCIM_RATE_LIMIT_REDIS_FAILURE goes.
    connections = ConnectionPool.from_url(
        redis_url,
        socket_timeout=_REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
    )
    options: dict[str, Any] = {"connection_pool": connections}
    storage = RedisStorage(
        f"async+{redis_url}",
        implementation="redispy",
        wrap_exceptions=True,
        key_prefix="scim-platform:ratelimit",
        **options,
    )
    return storage, connections


class RateLimiter:
    """One per process: the tenants' windows, their requests in flight, the capacity gate."""

    def __init__(self, settings: Settings) -> None:
        self._defaults = settings.rate_limit
        self._fail_open = settings.rate_limit_redis_failure == "open"
        self._pool_wait = settings.pool_wait_seconds
        # One SCIM request holds at most one tenant connection (`service.pools`);
        # the shared pool's stay for authentication, the admin API and background work.
        self._capacity = asyncio.Semaphore(Layout.of(settings.db_pool_max).capacity)
        self._in_flight: dict[uuid.UUID, int] = {}
        self._connections: ConnectionPool | None = None
        # In memory, the windows are plain data checked synchronously (see
        # `service.moving_window`); shared through Redis, the `limits` package's script.
        self._local: MovingWindows | None = None
        self._shared: MovingWindowRateLimiter | None = None
        if settings.redis_url is None:
            self._local = MovingWindows()
        else:
            storage, self._connections = _redis_storage(settings.redis_url)
            self._shared = MovingWindowRateLimiter(storage)
        self._warned_at = -_WARN_EVERY_SECONDS
        self.storage_failures = 0
        """Rate checks that could not reach Redis: exported as a metric by observability."""

    async def close(self) -> None:
        if self._connections is not None:
            await self._connections.aclose()

    async def admit(self, tenant: TenantContext) -> Admission:
        """Admit one request of ``tenant`` or raise `RateLimited`."""
        policy = self._defaults.with_override(tenant.rate_limit)
        headers = [("RateLimit-Policy", policy_header(policy))]
        # No await between the check and the increment: the count cannot race.
        in_flight = self._in_flight.get(tenant.id, 0)
        if in_flight >= policy.concurrency:
            headers += [("RateLimit", '"concurrency";r=0'), ("Retry-After", "1")]
            raise RateLimited(
                429,
                f"Too many concurrent requests: this tenant may have {policy.concurrency} "
                "in flight at once. Retry after the Retry-After delay.",
                headers,
            )
        self._in_flight[tenant.id] = in_flight + 1
        admitted = False
        try:
            requests_item = await self._charge(tenant, policy, headers)
            limits = [f'"concurrency";r={policy.concurrency - in_flight - 1}']
            if requests_item is not None:
                limits.insert(0, requests_item)
            headers.append(("RateLimit", ", ".join(limits)))
            await self._reserve_capacity(headers)
            admitted = True
        finally:
            if not admitted:
                self._leave(tenant.id)

        def release() -> None:
            self._leave(tenant.id)
            self._capacity.release()

        return Admission(headers, release)

    async def _charge(
        self, tenant: TenantContext, policy: RateLimitPolicy, headers: list[tuple[str, str]]
    ) -> str | None:
        """Count the request in the tenant's window; its RateLimit item, or None if unknown."""
        if self._local is not None:
            # Keyed by the limits too: a changed limit starts a fresh window.
            key = (tenant.id, policy.burst, policy.window_seconds)
            allowed, reset_time, remaining = self._local.hit(
                key, policy.burst, policy.window_seconds
            )
        else:
            assert self._shared is not None
            item = RateLimitItemPerSecond(policy.burst, policy.window_seconds, namespace="scim")
            try:
                # Two Redis round trips: worth a span, unlike the in-memory check.
                with tracing.span("scim.rate_limit"):
                    allowed = await self._shared.hit(item, str(tenant.id))
                    reset_time, remaining = await self._shared.get_window_stats(
                        item, str(tenant.id)
                    )
            except StorageError as exc:
                self._storage_failed(exc, headers)
                return None
        reset_in = _seconds_until(reset_time)
        if not allowed:
            headers += [
                ("RateLimit", f'"requests";r=0;t={reset_in}'),
                ("Retry-After", str(reset_in)),
            ]
            raise RateLimited(
                429,
                f"Rate limit exceeded: this tenant may send {policy.burst} requests in any "
                f"{policy.window_seconds} s ({policy.per_second} per second). "
                f"Retry after {reset_in} s.",
                headers,
            )
        return f'"requests";r={remaining};t={reset_in}'

    def _storage_failed(self, exc: StorageError, headers: list[tuple[str, str]]) -> None:
        self.storage_failures += 1
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(
                "rate limits cannot reach Redis (%s: %s); %s (%d failed checks so far)",
                type(exc.storage_error).__name__,
                exc.storage_error,
                "serving without rate limits" if self._fail_open else "refusing requests with 503",
                self.storage_failures,
            )
        if self._fail_open:
            return
        headers.append(("Retry-After", "1"))
        raise RateLimited(
            503, "Rate limiting is unavailable; retry after the Retry-After delay.", headers
        )

    async def _reserve_capacity(self, headers: list[tuple[str, str]]) -> None:
        if not self._capacity.locked():
            await self._capacity.acquire()  # a free slot: taken without waiting
            return
        try:
            await asyncio.wait_for(self._capacity.acquire(), self._pool_wait)
        except TimeoutError:
            headers.append(("Retry-After", "1"))
            raise RateLimited(
                503,
                "The service is at capacity; retry after the Retry-After delay.",
                headers,
            ) from None

    def _leave(self, tenant_id: uuid.UUID) -> None:
        remaining = self._in_flight[tenant_id] - 1
        if remaining:
            self._in_flight[tenant_id] = remaining
        else:
            del self._in_flight[tenant_id]


async def admit(scope: Scope, limiter: RateLimiter, tenant: TenantContext) -> None:
    """Admit the request of ``scope`` for ``tenant``; raise the SCIM error if refused.

    The outcome is kept in the request's scope state, where `rate_limit_headers`
    finds the headers for the response and `rate_limit_middleware` the slots to
    give back when the request ends.
    """
    state = scope.setdefault("state", {})
    if _STATE_KEY in state:
        return  # admitted once already (a handler resolved the tenant twice)
    try:
        state[_STATE_KEY] = await limiter.admit(tenant)
    except RateLimited as refused:
        state[_STATE_KEY] = Admission(refused.headers)
        raise ScimError(refused.status, refused.detail) from None


async def rate_limit_headers(message: Message, scope: Scope) -> None:
    """`before_send` hook: add the rate-limit header fields to a tenant's response."""
    if message["type"] != "http.response.start":
        return
    admission = scope.get("state", {}).get(_STATE_KEY)
    if admission is None:
        return
    extra = [(name.lower().encode(), value.encode()) for name, value in admission.headers]
    message["headers"] = [*message.get("headers", ()), *extra]


def rate_limit_middleware(app: ASGIApp) -> ASGIApp:
    """Give back an admitted request's slots when it ends, however it ends."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        finally:
            admission = scope.get("state", {}).get(_STATE_KEY)
            if admission is not None:
                admission.release()

    return middleware


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    """The process's `RateLimiter`, as `app.state.rate_limiter`."""
    limiter = RateLimiter(app.state.settings)
    app.state.rate_limiter = limiter
    try:
        yield
    finally:
        await limiter.close()
