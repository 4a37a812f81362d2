"""Admin API: a tenant's role mapping, users' effective roles, the mass-deprovisioning guard."""

from __future__ import annotations

import msgspec
from litestar import Controller, delete, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody

from service import guard, roles
from service.guard import GuardChanges, GuardView, HeldEvent
from service.routes.admin import admin_guard
from service.settings import Settings
from tenants.errors import InvalidInput
from tenants.role_mappings import RoleMappingBody, RoleMappingView

MAX_HELD_PAGE = 1000


class RoleMappingSaved(msgspec.Struct):
    mapping: RoleMappingView
    roles_changed: int
    """How many users' effective roles changed (each got a `user.roles_changed` event)."""


class UserRoles(msgspec.Struct):
    user_id: str
    roles: list[str] | None
    """Null when the tenant has no role mapping; empty for a user not provisioned."""


class HeldList(msgspec.Struct):
    events: list[HeldEvent]


class Settled(msgspec.Struct, omit_defaults=True):
    released: int | None = None
    discarded: int | None = None


def _events_on(state: State) -> bool:
    settings: Settings = state.settings
    return settings.events_enabled


class RolesGuardController(Controller):
    path = "/admin/v1/tenants/{slug:str}"
    guards = [admin_guard]  # noqa: RUF012
    tags = ["roles and guard"]  # noqa: RUF012

    @get("/roles")
    async def get_roles(self, state: State, slug: FromPath[str]) -> RoleMappingView:
        """Default roles and group-to-role rules; empty when the tenant has none."""
        return await roles.show(state.pool, slug)

    @put("/roles")
    async def put_roles(
        self, state: State, slug: FromPath[str], data: JSONBody[RoleMappingBody]
    ) -> RoleMappingSaved:
        """Replace the mapping: `{"default_roles": [...], "groups": [{"match": "displayName"
        or "externalId", "value", "roles": [...]}]}`. Every user's roles are recomputed at
        once, each change a `user.roles_changed` event."""
        saved, changed = await roles.set_mapping(
            state.pool, slug, data, record_events=_events_on(state)
        )
        return RoleMappingSaved(saved, changed)

    @delete("/roles", status_code=200)
    async def delete_roles(self, state: State, slug: FromPath[str]) -> RoleMappingSaved:
        """Remove the mapping: every user's roles become empty."""
        saved, changed = await roles.set_mapping(
            state.pool, slug, None, record_events=_events_on(state)
        )
        return RoleMappingSaved(saved, changed)

    @get("/users/{user_id:str}/roles")
    async def user_roles(
        self, state: State, slug: FromPath[str], user_id: FromPath[str]
    ) -> UserRoles:
        """A user's effective roles now, through its groups (nested ones too)."""
        key, found = await roles.of_user(state.pool, slug, user_id)
        return UserRoles(user_id=str(key), roles=found)

    @get("/guard")
    async def get_guard(self, state: State, slug: FromPath[str]) -> GuardView:
        """The mass-deprovisioning guard: its settings, window and held events."""
        return await guard.show(state.pool, slug)

    @put("/guard")
    async def put_guard(
        self, state: State, slug: FromPath[str], data: JSONBody[GuardChanges]
    ) -> GuardView:
        """`{"enabled", "threshold_percent", "window_seconds", "min_users"}`; a field left
        out or null goes back to its default."""
        return await guard.configure(state.pool, slug, data)

    @get("/guard/held")
    async def held(
        self, state: State, slug: FromPath[str], limit: FromQuery[int] = 100
    ) -> HeldList:
        """The held events, in the order a release would deliver them."""
        if not 1 <= limit <= MAX_HELD_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_HELD_PAGE}")
        return HeldList(await guard.held_events(state.pool, slug, limit=limit))

    @post("/guard/release", status_code=200)
    async def release(self, state: State, slug: FromPath[str]) -> Settled:
        """Deliver the held events, in order, after everything delivered so far; re-arm."""
        return Settled(released=await guard.release(state.pool, slug))

    @post("/guard/discard", status_code=200)
    async def discard(self, state: State, slug: FromPath[str]) -> Settled:
        """Drop the held events (the tenant's data keeps the changes); re-arm."""
        return Settled(discarded=await guard.discard(state.pool, slug))
