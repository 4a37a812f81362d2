"""Operations at a tenant's root that span resource types: `/.search` and `/Bulk`."""

from __future__ import annotations

from litestar import Controller, Response, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from service import provisioning
from service.bulk import run_bulk
from service.provisioning import SearchSpec
from service.routes.scim_http import (
    AnyRequest,
    list_parameters,
    provide_tenant,
    read_json,
    scim_response,
    scope_of,
    search_body,
    tenant_pool,
)
from service.scim.schemas import list_response
from service.settings import Settings
from service.store.resources import GROUPS, USERS
from tenants.context import TenantContext

Tenant = NamedDependency[TenantContext]


class TenantRootController(Controller):
    path = "/scim/v2/{tenant:str}"
    dependencies = {"scim_tenant": Provide(provide_tenant)}  # noqa: RUF012

    @post("/.search", status_code=200)
    async def search_everywhere(
        self, request: AnyRequest, state: State, scim_tenant: Tenant
    ) -> Response[bytes]:
        settings: Settings = state.settings
        body = search_body(await read_json(request))
        searches: list[SearchSpec] = []
        start_index = 1
        for table in (USERS, GROUPS):
            query, projection, start_index = list_parameters(
                body, table.resource_type, settings.max_page_size, in_uri=False
            )
            searches.append((table, query, projection))
        async with tenant_pool(state, scim_tenant) as pool:
            total, bodies = await provisioning.search_everywhere(
                pool, scope_of(state, scim_tenant), searches
            )
        return scim_response(list_response(bodies, total=total, start_index=start_index))

    @post("/Bulk", status_code=200)
    async def bulk(self, request: AnyRequest, state: State, scim_tenant: Tenant) -> Response[bytes]:
        body = await read_json(request)
        scope = scope_of(state, scim_tenant, request.headers.get("user-agent"))
        async with tenant_pool(state, scim_tenant) as pool:
            return scim_response(await run_bulk(pool, scope, body))
