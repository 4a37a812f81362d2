"""`/admin/v1/tenants/{slug}/rate-limit`: read, set and reset a tenant's rate limits."""

from __future__ import annotations

from litestar import Controller, delete, get, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody

from service.routes.admin import admin_guard, forget_changed
from service.settings import Settings
from tenants.ratelimit import RateLimitChanges, RateLimitInfo
from tenants.ratelimit_store import RateLimitStore


def _store(state: State) -> RateLimitStore:
    settings: Settings = state.settings
    return RateLimitStore(state.registry, settings.rate_limit)


class RateLimitController(Controller):
    path = "/admin/v1/tenants/{slug:str}/rate-limit"
    guards = [admin_guard]  # noqa: RUF012
    tags = ["admin"]  # noqa: RUF012

    @get("/")
    async def get_rate_limit(self, state: State, slug: FromPath[str]) -> RateLimitInfo:
        """The limits in force, and which of them are the tenant's own."""
        return await _store(state).get(slug)

    @put("/")
    async def set_rate_limit(
        self, state: State, slug: FromPath[str], data: JSONBody[RateLimitChanges]
    ) -> RateLimitInfo:
        """Replace the tenant's own limits; absent or null fields use the service defaults.

        Every replica applies the change at once, without a restart.
        """
        limits = await _store(state).set(slug, data)
        forget_changed(state, slug)
        return limits

    @delete("/", status_code=204)
    async def reset_rate_limit(self, state: State, slug: FromPath[str]) -> None:
        """Back to the service defaults."""
        await _store(state).reset(slug)
        forget_changed(state, slug)
