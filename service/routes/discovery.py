"""Discovery (RFC 7644 section 4): what each tenant's endpoint supports, per tenant URL."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from service.bulk import MAX_OPERATIONS
from service.routes.scim_http import provide_tenant, scim_response, scope_of
from service.scim import discovery
from service.scim.errors import not_found
from service.scim.schemas import list_response, service_provider_config
from service.settings import Settings
from tenants.context import TenantContext

Tenant = NamedDependency[TenantContext]


class DiscoveryController(Controller):
    path = "/scim/v2/{tenant:str}"
    dependencies = {"scim_tenant": Provide(provide_tenant)}  # noqa: RUF012

    @get("/ServiceProviderConfig")
    async def service_provider_config(self, state: State, scim_tenant: Tenant) -> Response[bytes]:
        settings: Settings = state.settings
        return scim_response(
            service_provider_config(
                base_url=scope_of(state, scim_tenant).base_url,
                max_results=settings.max_page_size,
                bulk_max_operations=MAX_OPERATIONS,
                bulk_max_payload=settings.max_body_bytes,
            )
        )

    @get("/Schemas")
    async def schemas(self, state: State, scim_tenant: Tenant) -> Response[bytes]:
        base_url = scope_of(state, scim_tenant).base_url
        documents = [discovery.schema_document(s, base_url) for s in discovery.all_schemas()]
        return scim_response(list_response(documents, total=len(documents), start_index=1))

    @get("/Schemas/{schema_id:str}")
    async def schema(
        self, state: State, scim_tenant: Tenant, schema_id: FromPath[str]
    ) -> Response[bytes]:
        schema = discovery.find_schema(schema_id)
        if schema is None:
            raise not_found(f"no schema {schema_id!r}")
        return scim_response(
            discovery.schema_document(schema, scope_of(state, scim_tenant).base_url)
        )

    @get("/ResourceTypes")
    async def resource_types(self, state: State, scim_tenant: Tenant) -> Response[bytes]:
        base_url = scope_of(state, scim_tenant).base_url
        documents = [
            discovery.resource_type_document(rt, base_url) for rt in discovery.all_resource_types()
        ]
        return scim_response(list_response(documents, total=len(documents), start_index=1))

    @get("/ResourceTypes/{type_id:str}")
    async def resource_type(
        self, state: State, scim_tenant: Tenant, type_id: FromPath[str]
    ) -> Response[bytes]:
        resource_type = discovery.find_resource_type(type_id)
        if resource_type is None:
            raise not_found(f"no resource type {type_id!r}")
        return scim_response(
            discovery.resource_type_document(resource_type, scope_of(state, scim_tenant).base_url)
        )
