"""Admin API for IdP provisioning: policies, attribute mapping, users, links, purge, setup guide."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import Controller, MediaType, Request, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody

from service import deprovisioning, roles, setup_guide, user_admin
from service.postgres import Pool
from service.routes.admin import admin_guard
from service.settings import Settings
from service.store import lifecycle
from service.user_admin import AdminUser, Link, PreloadResult
from tenants.errors import InvalidInput
from tenants.policies import PolicyChanges, PolicyStore, PolicyView

MAX_PAGE = 1000


class AttributeMapping(msgspec.Struct):
    mapping: dict[str, str]
    """Profile field -> SCIM attribute path."""


class UserList(msgspec.Struct):
    total: int
    users: list[AdminUser]


class Preload(msgspec.Struct, forbid_unknown_fields=True):
    users: list[dict[str, Any]]


class PreloadReport(msgspec.Struct):
    created: int
    results: list[PreloadResult]


async def _with_roles(
    pool: Pool, tenant_id: uuid.UUID, schema: str, users: list[AdminUser]
) -> list[AdminUser]:
    found = await roles.effective(pool, schema, tenant_id, [uuid.UUID(user.id) for user in users])
    if found is not None:
        for user in users:
            user.roles = found.get(uuid.UUID(user.id), [])
    return users


class LinkList(msgspec.Struct):
    links: list[Link]


class PurgeReport(msgspec.Struct):
    purged: int


async def _json(request: Request[Any, Any, State]) -> Any:
    try:
        return msgspec.json.decode(await request.body())
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"invalid request body: {exc}") from exc


class ProvisioningAdminController(Controller):
    path = "/admin/v1/tenants/{slug:str}"
    guards = [admin_guard]  # noqa: RUF012
    tags = ["provisioning"]  # noqa: RUF012

    @get("/provisioning-policy")
    async def get_policy(self, state: State, slug: FromPath[str]) -> PolicyView:
        return await PolicyStore(state.pool).view(slug)

    @put("/provisioning-policy")
    async def put_policy(
        self, state: State, slug: FromPath[str], data: JSONBody[PolicyChanges]
    ) -> PolicyView:
        """Linking (`link_mode`, `match_order`) and deprovisioning (`deprovision_mode`,
        `retention_days`); fields left out keep their value."""
        return await PolicyStore(state.pool).update(slug, data)

    @get("/attribute-mapping")
    async def get_mapping(self, state: State, slug: FromPath[str]) -> AttributeMapping:
        return AttributeMapping(await PolicyStore(state.pool).mapping(slug))

    @put("/attribute-mapping")
    async def put_mapping(
        self, request: Request[Any, Any, State], state: State, slug: FromPath[str]
    ) -> AttributeMapping:
        """`{"mapping": {"first_name": "name.givenName", ...}}`, checked before it is saved."""
        body = await _json(request)
        if not isinstance(body, dict) or set(body) != {"mapping"}:
            raise InvalidInput('the body must be {"mapping": {field: SCIM attribute path}}')
        return AttributeMapping(await PolicyStore(state.pool).set_mapping(slug, body["mapping"]))

    @post("/users")
    async def preload_user(
        self, request: Request[Any, Any, State], state: State, slug: FromPath[str]
    ) -> AdminUser:
        """Pre-load one existing member (a SCIM User body); hidden from SCIM until linked."""
        policies = PolicyStore(state.pool)
        _, schema = await policies.tenant(slug)
        mapping = await policies.mapping(slug)
        return await user_admin.preload(state.pool, schema, await _json(request), mapping)

    @post("/users/bulk", status_code=200)
    async def preload_users(
        self, state: State, slug: FromPath[str], data: JSONBody[Preload]
    ) -> PreloadReport:
        """Pre-load up to 1,000 members; each is created, a conflict, or invalid on its own."""
        _, schema = await PolicyStore(state.pool).tenant(slug)
        results = await user_admin.preload_many(state.pool, schema, data.users)
        return PreloadReport(sum(r.status == "created" for r in results), results)

    @get("/users")
    async def list_users(
        self,
        state: State,
        slug: FromPath[str],
        offset: FromQuery[int] = 0,
        limit: FromQuery[int] = 100,
        search: FromQuery[str | None] = None,
    ) -> UserList:
        """Every user (managed, pre-loaded, soft-deleted) with its mapped profile; with
        `search`, those whose userName or displayName contains it (any case) or whose
        externalId it is."""
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"offset must be 0 or more and limit 1 to {MAX_PAGE}")
        policies = PolicyStore(state.pool)
        tenant_id, schema = await policies.tenant(slug)
        mapping = await policies.mapping(slug)
        total, rows = await lifecycle.users(
            state.pool, schema, offset=offset, limit=limit, search=search
        )
        users = [user_admin.admin_user(row, mapping) for row in rows]
        return UserList(total, await _with_roles(state.pool, tenant_id, schema, users))

    @get("/users/{user_id:str}")
    async def get_user(
        self, state: State, slug: FromPath[str], user_id: FromPath[str]
    ) -> AdminUser:
        policies = PolicyStore(state.pool)
        tenant_id, schema = await policies.tenant(slug)
        user = await user_admin.get(state.pool, schema, user_id, await policies.mapping(slug))
        [user] = await _with_roles(state.pool, tenant_id, schema, [user])
        return user

    @get("/links")
    async def list_links(self, state: State, slug: FromPath[str]) -> LinkList:
        """The audit of users the IdP adopted or restored, newest first."""
        _, schema = await PolicyStore(state.pool).tenant(slug)
        return LinkList([user_admin.link(row) for row in await lifecycle.links(state.pool, schema)])

    @post("/purge", status_code=200)
    async def purge(self, state: State, slug: FromPath[str]) -> PurgeReport:
        """Run the deprovisioning policy's purge for this tenant now."""
        tenant_id, schema = await PolicyStore(state.pool).tenant(slug)
        return PurgeReport(await deprovisioning.purge_tenant(state.pool, tenant_id, schema))

    @get("/setup-guide", media_type=MediaType.TEXT)
    async def guide(
        self,
        state: State,
        slug: FromPath[str],
        idp: FromQuery[str] = "entra",
        product: FromQuery[str] = setup_guide.DEFAULT_PRODUCT,
    ) -> str:
        """Step-by-step IdP setup for the customer, with this tenant's URL; never the token."""
        if idp not in setup_guide.GUIDE_IDPS:
            raise InvalidInput(f"idp must be one of: {', '.join(setup_guide.GUIDE_IDPS)}")
        await PolicyStore(state.pool).tenant(slug)
        settings: Settings = state.settings
        return setup_guide.render(idp, tenant_url=settings.tenant_scim_url(slug), product=product)
