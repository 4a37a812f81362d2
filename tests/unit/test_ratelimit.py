"""Rate-limit policy rules and the in-process limiter, without a database."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid

import pytest

from service.ratelimit import RateLimited, RateLimiter, policy_header
from service.settings import Settings, SettingsError
from tenants.context import TenantContext
from tenants.ratelimit import RateLimitOverride, RateLimitPolicy, policy_problem
from tests.support.ports import free_port

DEFAULTS = RateLimitPolicy(per_second=50, burst=100, concurrency=10)


def tenant(**limits: int) -> TenantContext:
    tenant_id = uuid.uuid4()
    return TenantContext(
        id=tenant_id,
        slug="acme",
        schema=f"t_{tenant_id.hex}",
        enabled=True,
        idp_type="generic",
        rate_limit=RateLimitOverride(**limits) if limits else None,
    )


def limiter(**settings: object) -> RateLimiter:
    return RateLimiter(dataclasses.replace(Settings(), **settings))  # type: ignore[arg-type]


def header(admission_headers: list[tuple[str, str]], name: str) -> str:
    return dict(admission_headers)[name]


def test_override_replaces_only_the_fields_it_sets() -> None:
    assert DEFAULTS.with_override(None) == DEFAULTS
    assert DEFAULTS.with_override(RateLimitOverride(concurrency=3)) == RateLimitPolicy(50, 100, 3)
    assert DEFAULTS.with_override(RateLimitOverride(per_second=5, burst=20)).window_seconds == 4


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        (RateLimitPolicy(50, 100, 10), None),
        (RateLimitPolicy(7, 7, 1), None),
        (RateLimitPolicy(30, 100, 10), "whole multiple"),
        (RateLimitPolicy(0, 100, 10), "per_second"),
        (RateLimitPolicy(50, 20_000, 10), "burst"),
        (RateLimitPolicy(50, 100, 0), "concurrency"),
    ],
)
def test_policy_problems(policy: RateLimitPolicy, problem: str | None) -> None:
    found = policy_problem(policy)
    assert found is None if problem is None else problem in (found or "")


def test_settings_read_and_check_the_defaults() -> None:
    settings = Settings.from_env(
        {
            "SCIM_RATE_LIMIT_PER_SECOND": "10",
            "SCIM_RATE_LIMIT_BURST": "30",
            "SCIM_RATE_LIMIT_CONCURRENCY": "4",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "SCIM_RATE_LIMIT_REDIS_FAILURE": "CLOSED",
            "SCIM_POOL_WAIT_SECONDS": "0.5",
        }
    )
    assert settings.rate_limit == RateLimitPolicy(10, 30, 4)
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.rate_limit_redis_failure == "closed"
    assert settings.pool_wait_seconds == 0.5
    defaults = Settings.from_env({})
    assert (defaults.rate_limit, defaults.redis_url) == (DEFAULTS, None)
    assert (defaults.rate_limit_redis_failure, defaults.pool_wait_seconds) == ("open", 2.0)
    for env in (
        {"SCIM_RATE_LIMIT_BURST": "75"},
        {"SCIM_RATE_LIMIT_REDIS_FAILURE": "sometimes"},
        {"SCIM_POOL_WAIT_SECONDS": "0"},
        {"SCIM_POOL_WAIT_SECONDS": "soon"},
    ):
        with pytest.raises(SettingsError):
            Settings.from_env(env)


def test_policy_header_is_a_structured_field_list() -> None:
    assert policy_header(DEFAULTS) == (
        '"requests";q=100;w=2, "concurrency";q=10;qu="concurrent-requests"'
    )


async def test_burst_then_429_with_retry_after_until_the_window_moves() -> None:
    limits = limiter()
    acme = tenant(per_second=1, burst=3)
    seen = []
    for _ in range(3):
        admission = await limits.admit(acme)
        seen.append(header(admission.headers, "RateLimit"))
        admission.release()
    assert seen == [
        '"requests";r=2;t=3, "concurrency";r=9',
        '"requests";r=1;t=3, "concurrency";r=9',
        '"requests";r=0;t=3, "concurrency";r=9',
    ]
    with pytest.raises(RateLimited) as refused:
        await limits.admit(acme)
    assert refused.value.status == 429
    retry_after = int(header(refused.value.headers, "Retry-After"))
    assert 1 <= retry_after <= 3
    assert header(refused.value.headers, "RateLimit") == f'"requests";r=0;t={retry_after}'
    # Another tenant has a window of its own.
    (await limits.admit(tenant(per_second=1, burst=3))).release()


async def test_concurrency_cap_and_release() -> None:
    limits = limiter()
    acme = tenant(concurrency=2)
    first = await limits.admit(acme)
    second = await limits.admit(acme)
    assert header(second.headers, "RateLimit").endswith('"concurrency";r=0')
    with pytest.raises(RateLimited) as refused:
        await limits.admit(acme)
    assert (refused.value.status, header(refused.value.headers, "Retry-After")) == (429, "1")
    first.release()
    first.release()  # a second release gives nothing back twice
    third = await limits.admit(acme)
    with pytest.raises(RateLimited):
        await limits.admit(acme)
    second.release()
    third.release()


async def test_capacity_gate_waits_briefly_then_503() -> None:
    # A pool of 3 leaves 2 slots for SCIM requests (one connection is kept back).
    limits = limiter(db_pool_max=3, pool_wait_seconds=0.2)
    held = [await limits.admit(tenant()) for _ in range(2)]
    with pytest.raises(RateLimited) as refused:
        await limits.admit(tenant())
    assert (refused.value.status, header(refused.value.headers, "Retry-After")) == (503, "1")
    # A slot given back within the wait is taken by the waiting request.
    waiting = asyncio.create_task(limits.admit(tenant()))
    await asyncio.sleep(0.05)
    held[0].release()
    (await waiting).release()
    held[1].release()


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_unreachable_redis_fails_as_configured(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    limits = limiter(redis_url=nobody, rate_limit_redis_failure=mode)
    try:
        with caplog.at_level(logging.WARNING, logger="service.ratelimit"):
            if mode == "open":
                admission = await limits.admit(tenant())
                # The rate is unknown, the concurrency cap still holds.
                assert header(admission.headers, "RateLimit") == '"concurrency";r=9'
                admission.release()
            else:
                with pytest.raises(RateLimited) as refused:
                    await limits.admit(tenant())
                assert refused.value.status == 503
        assert limits.storage_failures == 1
        assert "cannot reach Redis" in caplog.text
    finally:
        await limits.close()
