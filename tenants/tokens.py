"""Issuing, rotating, revoking and listing a tenant's Secret Tokens.

The secret is returned once, by `issue` or `rotate`, and never stored: the
table keeps its SHA-256 hash (the lookup key) and a display prefix.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from tenants import notifications
from tenants.control import engine
from tenants.errors import InvalidInput, NotFound
from tenants.models import Token
from tenants.registry import TenantRegistry
from tenants.secrets import display_prefix, generate_secret, hash_secret

_MAX_NAME = 200


class TokenInfo(msgspec.Struct, kw_only=True):
    id: str
    name: str
    display_prefix: str
    status: str
    """`active`, `expired` or `revoked`, as of the moment of the request."""
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    replaced_by: str | None


class IssuedToken(TokenInfo, kw_only=True):
    token: str
    """The secret itself: shown this once, never again."""


def _status(row: dict[str, Any], now: datetime) -> str:
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] is not None and row["expires_at"] <= now:
        return "expired"
    return "active"


def _info(row: dict[str, Any], now: datetime) -> TokenInfo:
    return TokenInfo(
        id=str(row["id"]),
        name=row["name"],
        display_prefix=row["display_prefix"],
        status=_status(row, now),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
        replaced_by=str(row["replaced_by"]) if row["replaced_by"] else None,
    )


def _parse_token_id(token_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(token_id)
    except ValueError as exc:
        raise NotFound(f"no token with id {token_id!r}") from exc


class TokenStore:
    def __init__(self, registry: TenantRegistry) -> None:
        self._registry = registry

    async def issue(
        self, slug: str, *, name: str = "", expires_in_seconds: int | None = None
    ) -> IssuedToken:
        tenant_id = await self._registry.tenant_id(slug)
        return await self._insert(tenant_id, name=name, expires_in_seconds=expires_in_seconds)

    async def _insert(
        self, tenant_id: uuid.UUID, *, name: str, expires_in_seconds: int | None
    ) -> IssuedToken:
        name = name.strip()
        if len(name) > _MAX_NAME:
            raise InvalidInput(f"token name must be at most {_MAX_NAME} characters")
        if expires_in_seconds is not None and expires_in_seconds <= 0:
            raise InvalidInput("expires_in_seconds must be positive")
        now = datetime.now(UTC)
        secret = generate_secret()
        row: dict[str, Any] = {
            "id": uuid.uuid4(),
            "name": name,
            "display_prefix": display_prefix(secret),
            "created_at": now,
            "expires_at": now + timedelta(seconds=expires_in_seconds)
            if expires_in_seconds
            else None,
            "revoked_at": None,
            "last_used_at": None,
            "replaced_by": None,
        }
        await Token.insert(
            Token(
                id=row["id"],
                tenant=tenant_id,
                name=name,
                display_prefix=row["display_prefix"],
                secret_hash=hash_secret(secret),
                created_at=now,
                expires_at=row["expires_at"],
            )
        )
        return IssuedToken(token=secret, **msgspec.structs.asdict(_info(row, now)))

    async def list(self, slug: str) -> list[TokenInfo]:
        tenant_id = await self._registry.tenant_id(slug)
        rows = await (
            Token.select(
                Token.id,
                Token.name,
                Token.display_prefix,
                Token.created_at,
                Token.expires_at,
                Token.revoked_at,
                Token.last_used_at,
                Token.replaced_by,
            )
            .where(Token.tenant == tenant_id)
            .order_by(Token.created_at)
        )
        now = datetime.now(UTC)
        return [_info(row, now) for row in rows]

    async def _lock_usable(self, conn: Any, tenant_id: uuid.UUID, token_id: str) -> Any:
        row = await conn.fetchrow(
            "SELECT id, name, expires_at, revoked_at FROM scim_control.tokens "
            "WHERE id = $1 AND tenant = $2 FOR UPDATE",
            _parse_token_id(token_id),
            tenant_id,
        )
        if row is None:
            raise NotFound(f"no token with id {token_id!r} for this tenant")
        return row

    async def rotate(
        self, slug: str, token_id: str, *, grace_seconds: int | None = None
    ) -> IssuedToken:
        """Issue a successor, and let the old token work for ``grace_seconds`` more.

        The overlap lets the customer paste the new token into the IdP while
        provisioning goes on with the old one. 0 ends the old token at once.
        """
        tenant_id = await self._registry.tenant_id(slug)
        if grace_seconds is None:
            grace_seconds = await self._registry.rotation_grace_seconds(tenant_id)
        if grace_seconds < 0:
            raise InvalidInput("grace_seconds must be 0 or more")
        async with engine().transaction() as transaction:
            conn = transaction.connection
            old = await self._lock_usable(conn, tenant_id, token_id)
            now = datetime.now(UTC)
            if _status(dict(old), now) != "active":
                raise InvalidInput("only an active token can be rotated")
            new = await self._insert(tenant_id, name=old["name"], expires_in_seconds=None)
            ends = now + timedelta(seconds=grace_seconds)
            if old["expires_at"] is not None:
                ends = min(ends, old["expires_at"])
            await conn.execute(
                "UPDATE scim_control.tokens SET expires_at = $2, replaced_by = $3 WHERE id = $1",
                old["id"],
                ends,
                uuid.UUID(new.id),
            )
            await notifications.notify_token_changed(conn, old["id"])
        return new

    async def revoke(self, slug: str, token_id: str) -> TokenInfo:
        tenant_id = await self._registry.tenant_id(slug)
        async with engine().transaction() as transaction:
            conn = transaction.connection
            await self._lock_usable(conn, tenant_id, token_id)
            row = await conn.fetchrow(
                "UPDATE scim_control.tokens SET revoked_at = coalesce(revoked_at, now()) "
                "WHERE id = $1 RETURNING id, name, display_prefix, created_at, expires_at, "
                "revoked_at, last_used_at, replaced_by",
                uuid.UUID(token_id),
            )
            await notifications.notify_token_changed(conn, uuid.UUID(token_id))
        return _info(dict(row), datetime.now(UTC))
