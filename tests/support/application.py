"""One running application over the test database, and helpers to drive it over HTTP."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service import recent_users
from service.app import create_app
from service.postgres import Pool, create_pool
from service.settings import Settings
from tenants.secrets import ADMIN_TOKEN_PREFIX, generate_secret

ADMIN_TOKEN = generate_secret(ADMIN_TOKEN_PREFIX)
BASE_URL = "http://scim.test"
SCIM_JSON = {"Content-Type": "application/scim+json"}

Client = AsyncTestClient[Litestar]


@pytest.fixture(scope="session")
def settings(migrated_database: str) -> Settings:
    return Settings(
        database_url=migrated_database,
        admin_token=ADMIN_TOKEN,
        public_url=BASE_URL,
        db_pool_max=8,
        # Long enough that a test would see a stale cache if invalidation failed.
        auth_cache_seconds=300,
        last_used_flush_seconds=3600,
        max_body_bytes=64 * 1024,
        # Generated for the run, as `serve --demo` does; production sets SCIM_SECRET_KEY.
        secret_key=secrets.token_urlsafe(32),
        # Webhook tests run their own workers, with short retry delays.
        worker_in_process=False,
        # The request log masks these as an operator would configure it (test_request_log).
        request_log_mask=("emails.value", "phoneNumbers.value", "name"),
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture(scope="session")
async def client(app: Litestar) -> AsyncIterator[Client]:
    async with AsyncTestClient(app, base_url=BASE_URL) as test_client:
        yield test_client


@pytest.fixture(scope="session")
async def db(migrated_database: str) -> AsyncIterator[Pool]:
    """The tests' own pool, for looking behind the API.

    The application runs in the test client's portal thread, on an event loop
    of its own, so its pool cannot be used from the tests' loop.
    """
    pool = await create_pool(migrated_database, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def no_chore_claimed(db: Pool) -> AsyncIterator[None]:
    """Every deployment-wide chore due (`service.chores`), as in a new deployment;
    a claim made by one test's workers would otherwise hold another's off."""
    await db.execute("DELETE FROM scim_control.chores")
    yield
    await db.execute("DELETE FROM scim_control.chores")


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class TenantHandle:
    """A tenant made for one test: its slug, a working Secret Token, its SCIM path."""

    slug: str
    token: str
    token_id: str
    client: Client

    @property
    def scim(self) -> str:
        return f"/scim/v2/{self.slug}"

    def auth(self, token: str | None = None) -> dict[str, str]:
        return bearer(token or self.token) | SCIM_JSON

    async def unlimited(self) -> None:
        """Lift the tenant's rate limit, as an operator would for a bulk load: for a test
        sending some hundreds of requests in a few seconds."""
        raised = await self.client.put(
            f"/admin/v1/tenants/{self.slug}/rate-limit",
            json={"per_second": 10_000, "burst": 10_000},
            headers=admin_headers(),
        )
        assert raised.status_code == 200, raised.text

    async def create_user(self, user_name: str, **attributes: Any) -> dict[str, Any]:
        response = await self.client.post(
            f"{self.scim}/Users", json={"userName": user_name, **attributes}, headers=self.auth()
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body


async def schema_of(db: Pool, slug: str) -> str:
    """The tenant's Postgres schema (its bare name: `quoted_schema` for SQL)."""
    schema: str = await db.fetchval(
        "SELECT schema_name FROM scim_control.tenants WHERE slug = $1", slug
    )
    return schema


def seen_by_the_service(tenant: TenantHandle, tenant_id: uuid.UUID) -> None:
    """What a test changed of a tenant behind the service's back (its schema version, a
    migration applied) seen by the application at once: the NOTIFY sent with it reaches
    the application a moment after the commit, and the test's next request may be
    sooner (a 500 in CI, the cached version's SQL on an older schema)."""
    authenticator = tenant.client.app.state.authenticator
    tenant.client.blocking_portal.call(authenticator.forget, "tenant", tenant_id)


async def make_tenant(client: Client, slug: str | None = None) -> TenantHandle:
    slug = slug or f"t-{uuid.uuid4().hex[:12]}"
    response = await client.post(
        "/admin/v1/tenants", json={"slug": slug, "name": slug.title()}, headers=admin_headers()
    )
    assert response.status_code == 201, response.text
    issued = await client.post(f"/admin/v1/tenants/{slug}/tokens", headers=admin_headers())
    assert issued.status_code == 201, issued.text
    return TenantHandle(slug, issued.json()["token"], issued.json()["id"], client)


@pytest.fixture
async def tenant(client: Client) -> TenantHandle:
    return await make_tenant(client)


@pytest.fixture
async def other_tenant(client: Client) -> TenantHandle:
    return await make_tenant(client)


@pytest.fixture
def unguessed(monkeypatch: pytest.MonkeyPatch) -> None:
    """User changes read the user before they change it, as they do a user this process
    has not just read or written (`service.recent_users`)."""
    monkeypatch.setattr(recent_users, "take", lambda schema, user_id: None)
