"""Wiring of the request log into the application: `plugins=[RequestLogPlugin(settings)]`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.plugins import InitPlugin

from service.request_log.middleware import RequestLogMiddleware
from service.request_log.recorder import RequestLog
from service.routes.request_log import RequestLogController
from service.settings import Settings


class RequestLogPlugin(InitPlugin):
    """Adds the admin search route, the recording middleware (unless
    `SCIM_REQUEST_LOG_ENABLED=false`) and the writer's lifespan, which starts
    after the application's own (the pool exists) and stops before it (the
    last flush still has the pool). The log is `app.state.request_log`."""

    def __init__(self, settings: Settings) -> None:
        self.request_log = RequestLog.from_settings(settings)

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.append(RequestLogController)
        if self.request_log.enabled:
            # Outermost, so requests other middleware refuses (rate limits) are recorded too.
            app_config.middleware.insert(0, RequestLogMiddleware(self.request_log))
        app_config.lifespan.append(self._lifespan)
        return app_config

    @asynccontextmanager
    async def _lifespan(self, app: Litestar) -> AsyncIterator[None]:
        await self.request_log.start(app.state.pool)
        app.state.request_log = self.request_log
        try:
            yield
        finally:
            await self.request_log.stop()
