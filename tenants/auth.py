"""Checking a presented bearer token against the tenant of the URL.

Every SCIM request passes through `Authenticator.authenticate`, so it is built
for the hot path: a malformed token is refused without I/O, a verified token
and its tenant are cached in memory for `auth_cache_seconds`, and a token's
last-used time is batched into one UPDATE per flush interval rather than a
write per request. Disabling or deleting a tenant and revoking or rotating a
token reach every replica at once through `tenants.notifications`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from service.background import cancel_all
from service.postgres import Pool
from tenants import notifications
from tenants.context import TenantContext
from tenants.ratelimit import RateLimitOverride
from tenants.secrets import hash_secret, is_well_formed

log = logging.getLogger(__name__)


class AuthenticationFailed(Exception):
    """401: no usable token for this URL. One message for every cause, on purpose."""


class TenantDisabled(Exception):
    """403: the token is valid but its tenant is disabled."""


@dataclass(frozen=True, slots=True)
class _CachedToken:
    token_id: uuid.UUID
    tenant_id: uuid.UUID
    expires_at: datetime | None
    cached_until: float


@dataclass(frozen=True, slots=True)
class _CachedTenant:
    tenant: TenantContext
    cached_until: float


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


class Authenticator:
    def __init__(self, pool: Pool, *, cache_seconds: int, flush_seconds: int) -> None:
        self._pool = pool
        self._cache_seconds = cache_seconds
        self._flush_seconds = flush_seconds
        self._tokens: dict[str, _CachedToken] = {}
        self._tenants: dict[str, _CachedTenant] = {}
        self._last_used: dict[uuid.UUID, datetime] = {}
        self._listener: asyncpg.Connection[asyncpg.Record] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, dsn: str) -> None:
        await self._listen(dsn)
        self._tasks.append(asyncio.create_task(self._flush_periodically()))

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks.clear()
        await self.flush_last_used()
        if self._listener is not None:
            await self._listener.close()
            self._listener = None

    async def authenticate(self, slug: str, authorization: str | None) -> TenantContext:
        secret = bearer_token(authorization)
        if secret is None or not is_well_formed(secret):
            raise AuthenticationFailed
        tenant = await self._tenant(slug)
        token = await self._token(hash_secret(secret))
        now = datetime.now(UTC)
        if (
            tenant is None
            or token is None
            or token.tenant_id != tenant.id
            or (token.expires_at is not None and token.expires_at <= now)
        ):
            raise AuthenticationFailed
        self._last_used[token.token_id] = now
        if not tenant.enabled:
            raise TenantDisabled
        return tenant

    async def _tenant(self, slug: str) -> TenantContext | None:
        cached = self._tenants.get(slug)
        if cached is not None and cached.cached_until > time.monotonic():
            return cached.tenant
        row = await self._pool.fetchrow(
            "SELECT t.id, t.slug, t.schema_name, t.status, t.idp_type, t.schema_version, "
            "r.tenant IS NOT NULL AS limited, r.per_second, r.burst, r.concurrency "
            "FROM scim_control.tenants AS t "
            "LEFT JOIN scim_control.rate_limits AS r ON r.tenant = t.id WHERE t.slug = $1",
            slug,
        )
        if row is None:
            self._tenants.pop(slug, None)
            return None
        tenant = TenantContext(
            id=row["id"],
            slug=row["slug"],
            schema=row["schema_name"],
            enabled=row["status"] == "enabled",
            idp_type=row["idp_type"],
            rate_limit=RateLimitOverride(row["per_second"], row["burst"], row["concurrency"])
            if row["limited"]
            else None,
            schema_version=row["schema_version"],
        )
        self._tenants[slug] = _CachedTenant(tenant, time.monotonic() + self._cache_seconds)
        return tenant

    async def _token(self, secret_hash: str) -> _CachedToken | None:
        cached = self._tokens.get(secret_hash)
        if cached is not None and cached.cached_until > time.monotonic():
            return cached
        row = await self._pool.fetchrow(
            "SELECT id, tenant, expires_at FROM scim_control.tokens "
            "WHERE secret_hash = $1 AND revoked_at IS NULL",
            secret_hash,
        )
        if row is None:
            self._tokens.pop(secret_hash, None)
            return None
        token = _CachedToken(
            token_id=row["id"],
            tenant_id=row["tenant"],
            expires_at=row["expires_at"],
            cached_until=time.monotonic() + self._cache_seconds,
        )
        self._tokens[secret_hash] = token
        return token

    def forget(self, kind: str, object_id: uuid.UUID) -> None:
        """Drop cached entries for a tenant or a token that just changed."""
        if kind == "tenant":
            self._tenants = {k: v for k, v in self._tenants.items() if v.tenant.id != object_id}
            self._tokens = {k: v for k, v in self._tokens.items() if v.tenant_id != object_id}
        elif kind == "token":
            self._tokens = {k: v for k, v in self._tokens.items() if v.token_id != object_id}

    def changed_here(self, slug: str, token_id: str | None = None) -> None:
        """Drop at once what is cached of the tenant ``slug`` (and its tokens), or of one
        of its tokens, after this process changed it. The NOTIFY sent with the change
        reaches this process too, but a moment after the commit: the operator's next
        request may come sooner, and must see the change."""
        if token_id is not None:
            with contextlib.suppress(ValueError):
                self.forget("token", uuid.UUID(token_id))
            return
        cached = self._tenants.pop(slug, None)
        if cached is not None:
            self.forget("tenant", cached.tenant.id)

    def forget_all(self) -> None:
        self._tenants.clear()
        self._tokens.clear()

    async def _listen(self, dsn: str) -> None:
        def on_notification(_conn: object, _pid: int, _channel: str, payload: object) -> None:
            parsed = notifications.parse(str(payload))
            if parsed is not None:
                self.forget(*parsed)

        def on_termination(_conn: object) -> None:
            # Notifications may have been missed: trust nothing cached, and listen again.
            self.forget_all()
            self._listener = None
            self._tasks.append(asyncio.create_task(self._relisten(dsn)))

        conn: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(dsn)
        await conn.add_listener(notifications.CHANNEL, on_notification)
        conn.add_termination_listener(on_termination)
        self._listener = conn

    async def _relisten(self, dsn: str) -> None:
        delay = 0.5
        while self._listener is None:
            try:
                await self._listen(dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("cache invalidation listener reconnect failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            # Entries cached while the listener was down may have missed a change.
            self.forget_all()

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            try:
                await self.flush_last_used()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("could not record token last-used times: %s", exc)

    async def flush_last_used(self) -> None:
        if not self._last_used:
            return
        pending, self._last_used = self._last_used, {}
        ids = list(pending)
        await self._pool.execute(
            "UPDATE scim_control.tokens AS t SET last_used_at = u.used "
            "FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, used) "
            "WHERE t.id = u.id AND (t.last_used_at IS NULL OR t.last_used_at < u.used)",
            ids,
            [pending[i] for i in ids],
        )
