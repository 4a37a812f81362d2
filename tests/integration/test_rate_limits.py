"""Per-tenant rate limits over HTTP through the application: 429s, headers, overrides."""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.test_cli import run, run_json
from tests.support.application import Client, TenantHandle, admin_headers

SCIM_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
# draft-ietf-httpapi-ratelimit-headers-11: structured-field lists of named items.
REQUESTS_ITEM = re.compile(r'"requests";r=(\d+);t=(\d+)')
DEFAULT_POLICY = '"requests";q=100;w=2, "concurrency";q=10;qu="concurrent-requests"'


@pytest.fixture(scope="module")
def cli_env(migrated_database: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment the operator's `scim-platform` runs in: same database, defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_")}
    env.update(
        DATABASE_URL=migrated_database,
        SCIM_DATA_DIR=str(tmp_path_factory.mktemp("unused-data")),
    )
    return env


async def set_limits(client: Client, slug: str, **limits: int) -> httpx.Response:
    return await client.put(
        f"/admin/v1/tenants/{slug}/rate-limit", json=limits, headers=admin_headers()
    )


async def list_users(tenant: TenantHandle) -> httpx.Response:
    return await tenant.client.get(f"{tenant.scim}/Users", headers=tenant.auth())


async def wait_for_policy(tenant: TenantHandle, policy: str) -> httpx.Response:
    """The first response showing ``policy``: a change reaches the cache through NOTIFY."""
    for _ in range(100):
        response = await list_users(tenant)
        if response.headers.get("ratelimit-policy") == policy:
            return response
        await asyncio.sleep(0.02)
    raise AssertionError(f"policy never became {policy!r}: {response.headers}")


def assert_too_many(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/scim+json"
    body: dict[str, Any] = response.json()
    assert body["schemas"] == [SCIM_ERROR]
    assert body["status"] == "429"
    assert "limit" in body["detail"].lower() or "concurrent" in body["detail"].lower()
    retry_after = int(response.headers["retry-after"])
    assert retry_after >= 1
    return retry_after


async def test_every_tenant_response_carries_the_ratelimit_fields(tenant: TenantHandle) -> None:
    listed = await list_users(tenant)
    assert listed.status_code == 200
    assert listed.headers["ratelimit-policy"] == DEFAULT_POLICY
    match = REQUESTS_ITEM.match(listed.headers["ratelimit"])
    assert match is not None, listed.headers["ratelimit"]
    assert 0 <= int(match[1]) < 100
    assert 1 <= int(match[2]) <= 2
    assert listed.headers["ratelimit"].endswith('"concurrency";r=9')

    # Errors of an authenticated tenant carry them too.
    missing = await tenant.client.get(f"{tenant.scim}/Users/{uuid.uuid4()}", headers=tenant.auth())
    assert missing.status_code == 404
    assert missing.headers["ratelimit-policy"] == DEFAULT_POLICY
    second = REQUESTS_ITEM.match(missing.headers["ratelimit"])
    assert second is not None
    assert int(second[1]) < int(match[1])  # the 404 was counted as well


async def test_unauthenticated_requests_are_not_counted(tenant: TenantHandle) -> None:
    await set_limits(tenant.client, tenant.slug, per_second=1, burst=2)
    for _ in range(10):
        refused = await tenant.client.get(
            f"{tenant.scim}/Users", headers={"Authorization": "Bearer scimsk_not-a-real-token"}
        )
        assert refused.status_code == 401
        assert "ratelimit" not in refused.headers
    # The flood cost the tenant nothing: its own two requests still pass.
    first = await wait_for_policy(tenant, '"requests";q=2;w=2, ' + DEFAULT_POLICY.split(", ")[1])
    assert first.status_code == 200


async def test_flooded_tenant_is_limited_and_the_other_is_not(
    tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    changed = await set_limits(tenant.client, tenant.slug, per_second=2, burst=4)
    assert changed.status_code == 200, changed.text
    policy = '"requests";q=4;w=2, "concurrency";q=10;qu="concurrent-requests"'
    await wait_for_policy(tenant, policy)

    statuses: list[int] = []
    other_statuses: list[int] = []
    started = time.monotonic()
    for i in range(40):
        response = await list_users(tenant)
        statuses.append(response.status_code)
        assert response.headers["ratelimit-policy"] == policy
        if response.status_code == 429:
            retry_after = assert_too_many(response)
            assert retry_after <= 2  # never past the end of the 2 s window
            assert response.headers["ratelimit"] == f'"requests";r=0;t={retry_after}'
        else:
            assert response.status_code == 200
        if i % 5 == 0:
            other_statuses.append((await list_users(other_tenant)).status_code)
    elapsed = time.monotonic() - started

    assert other_statuses == [200] * 8
    assert 429 in statuses
    # At most 4 in any 2 s window, whatever the speed of this machine.
    assert statuses.count(200) <= 4 * (math.ceil(elapsed / 2) + 1)


async def test_override_through_the_admin_api_applies_without_restart(
    tenant: TenantHandle,
) -> None:
    client = tenant.client
    path = f"/admin/v1/tenants/{tenant.slug}/rate-limit"
    shown = await client.get(path, headers=admin_headers())
    assert shown.status_code == 200
    assert shown.json() == {
        "slug": tenant.slug,
        "per_second": 50,
        "burst": 100,
        "concurrency": 10,
        "window_seconds": 2,
        "override": {"per_second": None, "burst": None, "concurrency": None},
    }
    assert (await list_users(tenant)).headers["ratelimit-policy"] == DEFAULT_POLICY

    changed = await set_limits(client, tenant.slug, per_second=1, burst=3, concurrency=4)
    assert changed.json()["window_seconds"] == 3
    assert changed.json()["override"] == {"per_second": 1, "burst": 3, "concurrency": 4}
    # The tenant is cached for 300 s in these tests: only the NOTIFY can make this pass.
    await wait_for_policy(tenant, '"requests";q=3;w=3, "concurrency";q=4;qu="concurrent-requests"')
    responses = [await list_users(tenant) for _ in range(4)]
    assert 429 in [r.status_code for r in responses]

    reset = await client.delete(path, headers=admin_headers())
    assert reset.status_code == 204
    back = await wait_for_policy(tenant, DEFAULT_POLICY)
    assert back.status_code == 200  # a new window: the old policy's count does not carry over
    assert (await client.get(path, headers=admin_headers())).json()["override"]["burst"] is None


async def test_invalid_overrides_are_refused(tenant: TenantHandle) -> None:
    client = tenant.client
    for body, words in [
        ({"per_second": 30}, "whole multiple"),  # 100 (the default burst) is not a multiple of 30
        ({"per_second": 0}, "per_second"),
        ({"burst": 100_000}, "burst"),
        ({"concurrency": 0}, "concurrency"),
    ]:
        refused = await set_limits(client, tenant.slug, **body)
        assert refused.status_code == 400, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert words in refused.json()["detail"]
    unknown_field = await client.put(
        f"/admin/v1/tenants/{tenant.slug}/rate-limit",
        json={"rate": 5},
        headers=admin_headers(),
    )
    assert unknown_field.status_code == 400
    missing = await set_limits(client, "no-such-tenant", per_second=5, burst=10)
    assert missing.status_code == 404
    unauthorised = await client.get(f"/admin/v1/tenants/{tenant.slug}/rate-limit")
    assert unauthorised.status_code == 401


async def test_override_through_the_cli_applies_without_restart(
    tenant: TenantHandle, cli_env: dict[str, str]
) -> None:
    await list_users(tenant)  # the tenant (and its policy) is now cached by the service
    shown = run_json(cli_env, "tenants", "rate-limit", tenant.slug)
    assert (shown["per_second"], shown["burst"], shown["concurrency"]) == (50, 100, 10)

    changed = run_json(
        cli_env,
        "tenants",
        "rate-limit",
        tenant.slug,
        "--per-second",
        "5",
        "--burst",
        "20",
        "--concurrency",
        "3",
    )
    assert changed["window_seconds"] == 4
    await wait_for_policy(tenant, '"requests";q=20;w=4, "concurrency";q=3;qu="concurrent-requests"')

    human = run(cli_env, "tenants", "rate-limit", tenant.slug).stdout
    assert "5 per second" in human
    assert "burst:       20 (own)" in human

    refused = run(cli_env, "tenants", "rate-limit", tenant.slug, "--per-second", "7", ok=False)
    assert refused.returncode == 1
    assert "whole multiple" in refused.stderr

    reset = run_json(cli_env, "tenants", "rate-limit", tenant.slug, "--reset")
    assert reset["override"] == {"per_second": None, "burst": None, "concurrency": None}
    await wait_for_policy(tenant, DEFAULT_POLICY)
