"""The operator admin API, under `/admin/v1`, guarded by `SCIM_ADMIN_TOKEN`."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from tenants.auth import bearer_token
from tenants.registry import TenantChanges, TenantInfo, TenantRegistry
from tenants.tokens import IssuedToken, TokenInfo, TokenStore


def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    expected: str | None = connection.app.state.admin_token
    if not expected:
        raise NotAuthorizedException("the admin API is disabled: SCIM_ADMIN_TOKEN is not set")
    presented = bearer_token(connection.headers.get("authorization")) or ""
    # Compare digests so the comparison time says nothing about the token.
    if not hmac.compare_digest(
        hashlib.sha256(presented.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    ):
        raise NotAuthorizedException("a valid admin bearer token is required")


class NewTenant(msgspec.Struct, forbid_unknown_fields=True):
    slug: str
    name: str
    idp_type: str = "generic"


class NewToken(msgspec.Struct, forbid_unknown_fields=True):
    name: str = ""
    expires_in_seconds: int | None = None


class Rotation(msgspec.Struct, forbid_unknown_fields=True):
    grace_seconds: int | None = None
    """Unset: the tenant's setting, else `SCIM_TOKEN_ROTATION_GRACE_SECONDS`."""


class TenantList(msgspec.Struct):
    tenants: list[TenantInfo]


class TokenList(msgspec.Struct):
    tokens: list[TokenInfo]


class AdminController(Controller):
    path = "/admin/v1"
    guards = [admin_guard]  # noqa: RUF012
    tags = ["admin"]  # noqa: RUF012

    @post("/tenants")
    async def create_tenant(self, state: State, data: NewTenant) -> TenantInfo:
        registry: TenantRegistry = state.registry
        return await registry.create(data.slug, data.name, data.idp_type)

    @get("/tenants")
    async def list_tenants(self, state: State) -> TenantList:
        registry: TenantRegistry = state.registry
        return TenantList(await registry.list())

    @get("/tenants/{slug:str}")
    async def get_tenant(self, state: State, slug: str) -> TenantInfo:
        registry: TenantRegistry = state.registry
        return await registry.get(slug)

    @patch("/tenants/{slug:str}")
    async def update_tenant(self, state: State, slug: str, data: TenantChanges) -> TenantInfo:
        registry: TenantRegistry = state.registry
        return await registry.update(slug, data)

    @delete("/tenants/{slug:str}", status_code=204)
    async def delete_tenant(self, state: State, slug: str, confirm: str | None = None) -> None:
        """Drops the tenant's schema and all its data; `?confirm=<slug>` is required."""
        registry: TenantRegistry = state.registry
        await registry.delete(slug, confirm=confirm)

    @post("/tenants/{slug:str}/tokens")
    async def issue_token(self, state: State, slug: str, data: NewToken | None) -> IssuedToken:
        tokens: TokenStore = state.tokens
        data = data or NewToken()
        return await tokens.issue(
            slug, name=data.name, expires_in_seconds=data.expires_in_seconds
        )

    @get("/tenants/{slug:str}/tokens")
    async def list_tokens(self, state: State, slug: str) -> TokenList:
        tokens: TokenStore = state.tokens
        return TokenList(await tokens.list(slug))

    @post("/tenants/{slug:str}/tokens/{token_id:str}/rotate")
    async def rotate_token(
        self, state: State, slug: str, token_id: str, data: Rotation | None
    ) -> IssuedToken:
        tokens: TokenStore = state.tokens
        grace = data.grace_seconds if data else None
        return await tokens.rotate(slug, token_id, grace_seconds=grace)

    @delete("/tenants/{slug:str}/tokens/{token_id:str}", status_code=204)
    async def revoke_token(self, state: State, slug: str, token_id: str) -> None:
        tokens: TokenStore = state.tokens
        await tokens.revoke(slug, token_id)


