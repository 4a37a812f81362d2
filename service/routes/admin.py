"""The operator admin API, under `/admin/v1`, guarded by `SCIM_ADMIN_TOKEN`."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, TypeVar

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody

from tenants.auth import Authenticator, bearer_token
from tenants.errors import InvalidInput
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
    slug: FromPath[str]
    name: str
    idp_type: str = "generic"


class NewToken(msgspec.Struct, forbid_unknown_fields=True):
    name: str = ""
    expires_in_seconds: int | None = None


class Rotation(msgspec.Struct, forbid_unknown_fields=True):
    grace_seconds: int | None = None
    """Unset: the tenant's setting, else `SCIM_TOKEN_ROTATION_GRACE_SECONDS`."""


_Body = TypeVar("_Body", bound=msgspec.Struct)


def forget_changed(state: State, slug: str, token_id: str | None = None) -> None:
    """This process's cached tenant (or token) dropped once the change has committed."""
    authenticator: Authenticator = state.authenticator
    authenticator.changed_here(slug, token_id)


async def _optional_body(request: Request[Any, Any, State], kind: type[_Body]) -> _Body:
    """A JSON body whose every field has a default, so an empty body is fine."""
    raw = await request.body()
    if not raw.strip():
        return kind()
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise InvalidInput(f"invalid request body: {exc}") from exc


DEFAULT_TENANT_PAGE = 100
MAX_TENANT_PAGE = 1000


class TenantList(msgspec.Struct):
    tenants: list[TenantInfo]
    next: str | None
    """The slug to ask for the tenants `after`; null on the last page."""


class TokenList(msgspec.Struct):
    tokens: list[TokenInfo]


class AdminController(Controller):
    path = "/admin/v1"
    guards = [admin_guard]  # noqa: RUF012
    tags = ["admin"]  # noqa: RUF012

    @post("/tenants")
    async def create_tenant(self, state: State, data: JSONBody[NewTenant]) -> TenantInfo:
        registry: TenantRegistry = state.registry
        return await registry.create(data.slug, data.name, data.idp_type)

    @get("/tenants")
    async def list_tenants(
        self,
        state: State,
        limit: FromQuery[int] = DEFAULT_TENANT_PAGE,
        after: FromQuery[str | None] = None,
        search: FromQuery[str | None] = None,
    ) -> TenantList:
        """Tenants in slug order, a page at a time: follow `next` with `after`. With
        `search`, those whose slug starts with it or whose name contains it (any case)."""
        if not 1 <= limit <= MAX_TENANT_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_TENANT_PAGE}")
        registry: TenantRegistry = state.registry
        tenants, following = await registry.page(limit=limit, after=after, search=search)
        return TenantList(tenants, following)

    @get("/tenants/{slug:str}")
    async def get_tenant(self, state: State, slug: FromPath[str]) -> TenantInfo:
        registry: TenantRegistry = state.registry
        return await registry.get(slug)

    @patch("/tenants/{slug:str}")
    async def update_tenant(
        self, state: State, slug: FromPath[str], data: JSONBody[TenantChanges]
    ) -> TenantInfo:
        registry: TenantRegistry = state.registry
        updated = await registry.update(slug, data)
        forget_changed(state, slug)
        return updated

    @delete("/tenants/{slug:str}", status_code=204)
    async def delete_tenant(
        self, state: State, slug: FromPath[str], confirm: FromQuery[str | None] = None
    ) -> None:
        """Drops the tenant's schema and all its data; `?confirm=<slug>` is required."""
        registry: TenantRegistry = state.registry
        await registry.delete(slug, confirm=confirm)
        forget_changed(state, slug)

    @post("/tenants/{slug:str}/tokens")
    async def issue_token(
        self, request: Request[Any, Any, State], state: State, slug: FromPath[str]
    ) -> IssuedToken:
        tokens: TokenStore = state.tokens
        data = await _optional_body(request, NewToken)
        return await tokens.issue(slug, name=data.name, expires_in_seconds=data.expires_in_seconds)

    @get("/tenants/{slug:str}/tokens")
    async def list_tokens(self, state: State, slug: FromPath[str]) -> TokenList:
        tokens: TokenStore = state.tokens
        return TokenList(await tokens.list(slug))

    @post("/tenants/{slug:str}/tokens/{token_id:str}/rotate")
    async def rotate_token(
        self,
        request: Request[Any, Any, State],
        state: State,
        slug: FromPath[str],
        token_id: FromPath[str],
    ) -> IssuedToken:
        tokens: TokenStore = state.tokens
        data = await _optional_body(request, Rotation)
        rotated = await tokens.rotate(slug, token_id, grace_seconds=data.grace_seconds)
        forget_changed(state, slug, token_id)
        return rotated

    @delete("/tenants/{slug:str}/tokens/{token_id:str}", status_code=204)
    async def revoke_token(
        self, state: State, slug: FromPath[str], token_id: FromPath[str]
    ) -> None:
        tokens: TokenStore = state.tokens
        await tokens.revoke(slug, token_id)
        forget_changed(state, slug, token_id)
