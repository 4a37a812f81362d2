"""The SCIM endpoints of every tenant, under `/scim/v2/{tenant}`."""

from __future__ import annotations

import uuid
from typing import Any, Final

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from service.postgres import Pool
from service.scim import resources
from service.scim.errors import ScimError, invalid_syntax, invalid_value, not_found
from service.scim.schemas import list_response, service_provider_config
from service.settings import Settings
from service.store import groups, users
from tenants.auth import AuthenticationFailed, Authenticator, TenantDisabled
from tenants.context import TenantContext

SCIM_MEDIA_TYPE: Final = "application/scim+json"
_ACCEPTED_MEDIA_TYPES: Final = frozenset({SCIM_MEDIA_TYPE, "application/json"})
_DEFAULT_PAGE_SIZE: Final = 100


def scim_response(
    body: dict[str, Any], status_code: int = 200, headers: dict[str, str] | None = None
) -> Response[bytes]:
    return Response(
        content=msgspec.json.encode(body),
        status_code=status_code,
        media_type=SCIM_MEDIA_TYPE,
        headers=headers,
    )


def error_response(error: ScimError) -> Response[bytes]:
    headers = {"WWW-Authenticate": 'Bearer realm="scim"'} if error.status == 401 else None
    return scim_response(error.body(), error.status, headers)


async def provide_tenant(request: Request[Any, Any, State], tenant: FromPath[str]) -> TenantContext:
    authenticator: Authenticator = request.app.state.authenticator
    try:
        return await authenticator.authenticate(tenant, request.headers.get("authorization"))
    except AuthenticationFailed as exc:
        # Unknown tenant, wrong tenant, revoked, expired or malformed token: one
        # answer for all, so the response tells an attacker nothing.
        raise ScimError(401, "The bearer token is not valid for this Tenant URL.") from exc
    except TenantDisabled as exc:
        raise ScimError(403, "This tenant is disabled; ask the operator to enable it.") from exc


async def read_json(request: Request[Any, Any, State]) -> Any:
    content_type = request.headers.get("content-type")
    if content_type:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type not in _ACCEPTED_MEDIA_TYPES:
            raise ScimError(
                415, f"send the body as {SCIM_MEDIA_TYPE} or application/json, not {media_type}"
            )
    body = await request.body()
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise invalid_syntax(f"the request body is not valid JSON: {exc}") from exc


def _resource_id(raw: str, resource_type: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise not_found(f"{resource_type} {raw!r} not found") from exc


def _positive_int(request: Request[Any, Any, State], name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise invalid_value(f"{name} must be an integer") from exc


def _pagination(request: Request[Any, Any, State], max_page_size: int) -> tuple[int, int]:
    """`startIndex` and `count` as RFC 7644 section 3.4.2.4 defines their edge cases."""
    if request.query_params.get("filter") is not None:
        raise ScimError(400, "this server does not support filtering yet", "invalidFilter")
    start_index = max(_positive_int(request, "startIndex") or 1, 1)
    count = _positive_int(request, "count")
    count = _DEFAULT_PAGE_SIZE if count is None else count
    return start_index, min(max(count, 0), max_page_size)


def _user_body(base_url: str, row: users.UserRow) -> dict[str, Any]:
    return resources.render_user(
        base_url=base_url,
        user_id=row["id"],
        attributes=row["resource"],
        created=row["created"],
        last_modified=row["last_modified"],
        version=row["version"],
    )


def _group_body(
    base_url: str, row: groups.GroupRow, members: list[resources.Member]
) -> dict[str, Any]:
    return resources.render_group(
        base_url=base_url,
        group_id=row["id"],
        attributes=row["resource"],
        members=members,
        created=row["created"],
        last_modified=row["last_modified"],
        version=row["version"],
    )


def _resource_response(body: dict[str, Any], status_code: int = 200) -> Response[bytes]:
    meta = body["meta"]
    headers = {"ETag": meta["version"]}
    if status_code == 201:
        headers["Location"] = meta["location"]
    return scim_response(body, status_code, headers)


class ScimController(Controller):
    path = "/scim/v2/{tenant:str}"
    dependencies = {"scim_tenant": Provide(provide_tenant)}  # noqa: RUF012

    @staticmethod
    def _base_url(state: State, scim_tenant: NamedDependency[TenantContext]) -> str:
        settings: Settings = state.settings
        return settings.tenant_scim_url(scim_tenant.slug)

    @get("/ServiceProviderConfig")
    async def service_provider_config(
        self, state: State, scim_tenant: NamedDependency[TenantContext]
    ) -> Response[bytes]:
        settings: Settings = state.settings
        return scim_response(
            service_provider_config(
                base_url=self._base_url(state, scim_tenant), max_results=settings.max_page_size
            )
        )

    @post("/Users")
    async def create_user(
        self,
        request: Request[Any, Any, State],
        state: State,
        scim_tenant: NamedDependency[TenantContext],
    ) -> Response[bytes]:
        draft = resources.parse_user(await read_json(request))
        pool: Pool = state.pool
        row = await users.create(pool, scim_tenant.schema, draft)
        return _resource_response(_user_body(self._base_url(state, scim_tenant), row), 201)

    @get("/Users/{resource_id:str}")
    async def get_user(
        self, state: State, scim_tenant: NamedDependency[TenantContext], resource_id: FromPath[str]
    ) -> Response[bytes]:
        pool: Pool = state.pool
        row = await users.get(pool, scim_tenant.schema, _resource_id(resource_id, "User"))
        if row is None:
            raise not_found(f"User {resource_id!r} not found")
        return _resource_response(_user_body(self._base_url(state, scim_tenant), row))

    @get("/Users")
    async def list_users(
        self,
        request: Request[Any, Any, State],
        state: State,
        scim_tenant: NamedDependency[TenantContext],
    ) -> Response[bytes]:
        settings: Settings = state.settings
        start_index, count = _pagination(request, settings.max_page_size)
        pool: Pool = state.pool
        total, rows = await users.page(
            pool, scim_tenant.schema, offset=start_index - 1, limit=count
        )
        base_url = self._base_url(state, scim_tenant)
        return scim_response(
            list_response(
                [_user_body(base_url, row) for row in rows], total=total, start_index=start_index
            )
        )

    @delete("/Users/{resource_id:str}", status_code=204)
    async def delete_user(
        self, state: State, scim_tenant: NamedDependency[TenantContext], resource_id: FromPath[str]
    ) -> None:
        pool: Pool = state.pool
        if not await users.delete(pool, scim_tenant.schema, _resource_id(resource_id, "User")):
            raise not_found(f"User {resource_id!r} not found")

    @post("/Groups")
    async def create_group(
        self,
        request: Request[Any, Any, State],
        state: State,
        scim_tenant: NamedDependency[TenantContext],
    ) -> Response[bytes]:
        draft = resources.parse_group(await read_json(request))
        pool: Pool = state.pool
        row = await groups.create(pool, scim_tenant.schema, draft)
        members = await groups.members_of(pool, scim_tenant.schema, [row["id"]])
        body = _group_body(self._base_url(state, scim_tenant), row, members.get(row["id"], []))
        return _resource_response(body, 201)

    @get("/Groups/{resource_id:str}")
    async def get_group(
        self, state: State, scim_tenant: NamedDependency[TenantContext], resource_id: FromPath[str]
    ) -> Response[bytes]:
        pool: Pool = state.pool
        row = await groups.get(pool, scim_tenant.schema, _resource_id(resource_id, "Group"))
        if row is None:
            raise not_found(f"Group {resource_id!r} not found")
        members = await groups.members_of(pool, scim_tenant.schema, [row["id"]])
        body = _group_body(self._base_url(state, scim_tenant), row, members.get(row["id"], []))
        return _resource_response(body)

    @get("/Groups")
    async def list_groups(
        self,
        request: Request[Any, Any, State],
        state: State,
        scim_tenant: NamedDependency[TenantContext],
    ) -> Response[bytes]:
        settings: Settings = state.settings
        start_index, count = _pagination(request, settings.max_page_size)
        pool: Pool = state.pool
        total, rows = await groups.page(
            pool, scim_tenant.schema, offset=start_index - 1, limit=count
        )
        members = await groups.members_of(pool, scim_tenant.schema, [row["id"] for row in rows])
        base_url = self._base_url(state, scim_tenant)
        bodies = [_group_body(base_url, row, members.get(row["id"], [])) for row in rows]
        return scim_response(list_response(bodies, total=total, start_index=start_index))

    @delete("/Groups/{resource_id:str}", status_code=204)
    async def delete_group(
        self, state: State, scim_tenant: NamedDependency[TenantContext], resource_id: FromPath[str]
    ) -> None:
        pool: Pool = state.pool
        if not await groups.delete(pool, scim_tenant.schema, _resource_id(resource_id, "Group")):
            raise not_found(f"Group {resource_id!r} not found")
