"""Webhooks in the running service: the admin API's endpoint store and the in-process worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from service.settings import Settings
from service.webhooks.endpoints import WebhookStore
from service.webhooks.signing import SecretBox
from service.webhooks.worker import WebhookWorker


def secret_box(settings: Settings) -> SecretBox | None:
    return SecretBox(settings.secret_key) if settings.secret_key else None


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    """Runs after the app's own lifespan has opened the pool (`app.state.pool`)."""
    settings: Settings = app.state.settings
    assert settings.database_url is not None
    box = secret_box(settings)
    app.state.webhooks = WebhookStore(app.state.pool, box)
    worker = None
    if settings.worker_in_process:
        worker = WebhookWorker(app.state.pool, settings, box, dsn=settings.database_url)
        await worker.start()
    try:
        yield
    finally:
        if worker is not None:
            await worker.stop()
