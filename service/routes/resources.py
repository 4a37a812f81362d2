"""`/Users` and `/Groups` of every tenant: one controller, two resource types."""

from __future__ import annotations

from typing import Any, ClassVar

from litestar import Controller, Response, delete, get, patch, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from service import provisioning
from service.routes.scim_http import (
    AnyRequest,
    list_parameters,
    projection_parameters,
    provide_tenant,
    read_json,
    resource_response,
    scim_response,
    scope_of,
    search_body,
    tenant_pool,
)
from service.scim.projection import parse_projection
from service.scim.schemas import list_response
from service.settings import Settings
from service.store.resources import GROUPS, USERS, Table
from tenants.context import TenantContext

Tenant = NamedDependency[TenantContext]


def _asks_for_attributes(request: AnyRequest) -> bool:
    return any(request.query_params.get(name) for name in ("attributes", "excludedAttributes"))


class ResourceController(Controller):
    """The SCIM operations of RFC 7644 section 3 on one resource type."""

    table: ClassVar[Table]
    dependencies = {"scim_tenant": Provide(provide_tenant)}  # noqa: RUF012

    async def _list(
        self, state: State, scim_tenant: TenantContext, params: dict[str, Any], *, in_uri: bool
    ) -> Response[bytes]:
        settings: Settings = state.settings
        query, projection, start_index = list_parameters(
            params, self.table.resource_type, settings.max_page_size, in_uri=in_uri
        )
        async with tenant_pool(state, scim_tenant) as pool:
            total, bodies = await provisioning.search(
                pool, self.table, scope_of(state, scim_tenant), query, projection
            )
        return scim_response(list_response(bodies, total=total, start_index=start_index))

    @get("/")
    async def list_resources(
        self, request: AnyRequest, state: State, scim_tenant: Tenant
    ) -> Response[bytes]:
        return await self._list(state, scim_tenant, dict(request.query_params), in_uri=True)

    @post("/.search", status_code=200)
    async def search_resources(
        self, request: AnyRequest, state: State, scim_tenant: Tenant
    ) -> Response[bytes]:
        body = search_body(await read_json(request))
        return await self._list(state, scim_tenant, body, in_uri=False)

    @post("/")
    async def create_resource(
        self, request: AnyRequest, state: State, scim_tenant: Tenant
    ) -> Response[bytes]:
        payload = await read_json(request)
        async with tenant_pool(state, scim_tenant) as pool:
            body = await provisioning.create(
                pool,
                self.table,
                scope_of(state, scim_tenant, request.headers.get("user-agent")),
                payload,
                projection_parameters(request, self.table.resource_type),
            )
        return resource_response(body, 201)

    @get("/{resource_id:str}")
    async def get_resource(
        self, request: AnyRequest, state: State, scim_tenant: Tenant, resource_id: FromPath[str]
    ) -> Response[bytes]:
        async with tenant_pool(state, scim_tenant) as pool:
            body, version = await provisioning.get(
                pool,
                self.table,
                scope_of(state, scim_tenant),
                resource_id,
                projection_parameters(request, self.table.resource_type),
            )
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None and provisioning.etag_matches(if_none_match, version):
            return scim_response(None, 304, {"ETag": body["meta"]["version"]})
        return resource_response(body)

    @put("/{resource_id:str}")
    async def replace_resource(
        self, request: AnyRequest, state: State, scim_tenant: Tenant, resource_id: FromPath[str]
    ) -> Response[bytes]:
        payload = await read_json(request)
        async with tenant_pool(state, scim_tenant) as pool:
            body = await provisioning.replace(
                pool,
                self.table,
                scope_of(state, scim_tenant),
                resource_id,
                payload,
                if_match=request.headers.get("if-match"),
                projection=projection_parameters(request, self.table.resource_type),
            )
        return resource_response(body)

    @patch("/{resource_id:str}")
    async def patch_resource(
        self, request: AnyRequest, state: State, scim_tenant: Tenant, resource_id: FromPath[str]
    ) -> Response[bytes]:
        payload = await read_json(request)
        # RFC 7644 section 3.5.2 lets a PATCH answer 204. A group's answer would
        # carry every member (100,000 rows for the largest), so groups answer 204
        # unless the client asks for attributes; users, small, answer 200.
        quiet = self.table is GROUPS and not _asks_for_attributes(request)
        projection = (
            parse_projection(GROUPS.resource_type, None, "members")
            if quiet
            else projection_parameters(request, self.table.resource_type)
        )
        async with tenant_pool(state, scim_tenant) as pool:
            body = await provisioning.apply_patch(
                pool,
                self.table,
                scope_of(state, scim_tenant),
                resource_id,
                payload,
                if_match=request.headers.get("if-match"),
                projection=projection,
            )
        if quiet:
            return scim_response(None, 204, {"ETag": body["meta"]["version"]})
        return resource_response(body)

    @delete("/{resource_id:str}", status_code=204)
    async def delete_resource(
        self, request: AnyRequest, state: State, scim_tenant: Tenant, resource_id: FromPath[str]
    ) -> None:
        async with tenant_pool(state, scim_tenant) as pool:
            await provisioning.delete(
                pool,
                self.table,
                scope_of(state, scim_tenant),
                resource_id,
                if_match=request.headers.get("if-match"),
            )


class UsersController(ResourceController):
    path = "/scim/v2/{tenant:str}/Users"
    table = USERS


class GroupsController(ResourceController):
    path = "/scim/v2/{tenant:str}/Groups"
    table = GROUPS
