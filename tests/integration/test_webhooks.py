"""Webhooks end to end: registration, signed delivery in order, retries, dead letters, workers."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.app import create_app
from service.postgres import Pool, create_pool
from service.settings import Settings
from service.webhooks.signing import SecretBox
from service.webhooks.worker import SWEEP_CHORE, WebhookWorker
from tests.integration import receiver as receivers
from tests.support.application import (
    BASE_URL,
    Client,
    TenantHandle,
    admin_headers,
    make_tenant,
    schema_of,
)
from tests.support.claims import ClaimAsks


def fast(settings: Settings, **overrides: Any) -> Settings:
    """Short retry delays and polling, so retries and dead letters happen within a test."""
    defaults: dict[str, Any] = {
        "webhook_retry_schedule": (0.05, 0.05, 0.05),
        "worker_poll_seconds": 0.05,
        "webhook_timeout_seconds": 5.0,
    }
    return dataclasses.replace(settings, **(defaults | overrides))


pytestmark = pytest.mark.usefixtures("no_chore_claimed")


@pytest.fixture(autouse=True)
async def no_endpoints_left(db: Pool) -> AsyncIterator[None]:
    """Workers serve every endpoint in the database: each test starts and ends with none."""
    await db.execute("DELETE FROM scim_control.webhook_endpoints")
    yield
    await db.execute("DELETE FROM scim_control.webhook_endpoints")


@pytest.fixture
def make_tenants(client: Client) -> Callable[[int], Awaitable[list[TenantHandle]]]:
    async def make(count: int) -> list[TenantHandle]:
        return [await make_tenant(client) for _ in range(count)]

    return make


class CountingWorker(WebhookWorker):
    """A worker that counts the fan-outs it runs, per tenant, its sweeps and its reads of
    the receivers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fanned_out: Counter[uuid.UUID] = Counter()
        self.sweeps = 0
        self.receiver_asks = 0
        """Rounds that needed the receivers: rounds with notified tenants."""
        self.receiver_reads = 0

    async def _receivers(self) -> set[uuid.UUID | None]:
        self.receiver_asks += 1
        return await super()._receivers()

    async def _read_receivers(self) -> set[uuid.UUID | None]:
        self.receiver_reads += 1
        return await super()._read_receivers()

    async def asked_after(self, write: Awaitable[Any]) -> None:
        """Run ``write`` and wait for a round that asks for the receivers after it: the
        round its notification wakes (none is lost to a sweep once the first is past)."""
        asks = self.receiver_asks
        await write
        await _until(
            lambda: self.receiver_asks > asks, "no round asked for the receivers after the write"
        )

    async def past_first_sweep(self) -> None:
        """Wait until the worker's first round has swept (clearing notifications before it)."""
        await _until(lambda: self.sweeps > 0, "the worker never swept")

    async def fan_out(self, tenant_id: uuid.UUID, schema: str) -> bool:
        self.fanned_out[tenant_id] += 1
        return await super().fan_out(tenant_id, schema)

    async def _tenants_behind(self) -> list[tuple[uuid.UUID, str]]:
        self.sweeps += 1
        return await super()._tenants_behind()


async def _until(done: Callable[[], bool], why: str) -> None:
    """Wait up to 5 s, polling every 10 ms, for ``done``; fail with ``why``."""
    for _ in range(500):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(why)


@asynccontextmanager
async def worker(
    settings: Settings, dsn: str, kind: type[WebhookWorker] = WebhookWorker, **overrides: Any
) -> AsyncIterator[WebhookWorker]:
    configured = fast(settings, **overrides)
    assert configured.secret_key is not None
    pool = await create_pool(dsn, min_size=1, max_size=4)
    running = kind(pool, configured, SecretBox(configured.secret_key), dsn=dsn)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
        await pool.close()


async def register(
    client: Client, url: str, *, slug: str | None = None, events: list[str] | None = None
) -> dict[str, Any]:
    path = f"/admin/v1/tenants/{slug}/webhooks" if slug else "/admin/v1/webhooks"
    body: dict[str, Any] = {"url": url} | ({"events": events} if events else {})
    response = await client.post(path, json=body, headers=admin_headers())
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def verify(secret: str, received: receivers.Received) -> dict[str, Any]:
    """Checked by the independent `standardwebhooks` implementation, not by our code."""
    verified: dict[str, Any] = Webhook(secret).verify(received.body, received.headers)
    return verified


async def test_register_list_get_delete(client: Client, db: Pool, tenant: TenantHandle) -> None:
    created = await register(client, "https://example.com/hook", slug=tenant.slug)
    assert created["secret"].startswith("whsec_")
    assert created["tenant"] == tenant.slug
    assert created["events"] is None
    global_one = await register(client, "https://example.com/all", events=["user.created"])
    assert global_one["tenant"] is None
    assert global_one["events"] == ["user.created"]

    listed = await client.get(f"/admin/v1/tenants/{tenant.slug}/webhooks", headers=admin_headers())
    assert [e["id"] for e in listed.json()["webhooks"]] == [created["id"]]
    everything = await client.get("/admin/v1/webhooks", headers=admin_headers())
    assert {e["id"] for e in everything.json()["webhooks"]} == {created["id"], global_one["id"]}
    one = await client.get(f"/admin/v1/webhooks/{created['id']}", headers=admin_headers())
    assert one.status_code == 200
    assert "secret" not in one.json()
    assert all("secret" not in e for e in everything.json()["webhooks"])

    stored = await db.fetchval(
        "SELECT secret FROM scim_control.webhook_endpoints WHERE id = $1::uuid", created["id"]
    )
    assert created["secret"].removeprefix("whsec_").encode() not in stored
    assert created["secret"].encode() not in stored

    deleted = await client.delete(f"/admin/v1/webhooks/{created['id']}", headers=admin_headers())
    assert deleted.status_code == 204
    gone = await client.get(f"/admin/v1/webhooks/{created['id']}", headers=admin_headers())
    assert gone.status_code == 404
    assert gone.headers["content-type"].startswith("application/problem+json")


async def test_registration_errors(client: Client, tenant: TenantHandle) -> None:
    path = f"/admin/v1/tenants/{tenant.slug}/webhooks"
    for body in (
        {"url": "ftp://example.com"},
        {"url": "https://example.com", "events": ["user.exploded"]},
        {"url": "https://example.com", "events": []},
    ):
        response = await client.post(path, json=body, headers=admin_headers())
        assert response.status_code == 400, body
        assert response.headers["content-type"].startswith("application/problem+json")
    unknown = await client.post(
        "/admin/v1/tenants/nope/webhooks", json={"url": "https://x.test"}, headers=admin_headers()
    )
    assert unknown.status_code == 404
    anonymous = await client.post("/admin/v1/webhooks", json={"url": "https://x.test"})
    assert anonymous.status_code == 401


async def test_events_arrive_signed_and_in_order(
    client: Client, settings: Settings, migrated_database: str, tenant: TenantHandle
) -> None:
    async with receivers.running() as receiver:
        endpoint = await register(client, receiver.url, slug=tenant.slug)
        users = [await tenant.create_user(f"s{n}@example.com") for n in range(5)]
        async with worker(settings, migrated_database):
            await receiver.wait_for(5)
    verified = [verify(endpoint["secret"], received) for received in receiver.accepted]
    assert [event["sequence"] for event in verified] == [1, 2, 3, 4, 5]
    assert [event["resource"]["id"] for event in verified] == [user["id"] for user in users]
    assert {event["type"] for event in verified} == {"user.created"}
    assert receiver.accepted[0].headers["webhook-id"] == verified[0]["id"]
    with pytest.raises(WebhookVerificationError):
        verify("whsec_" + "A" * 43 + "=", receiver.accepted[0])


async def test_only_chosen_event_types_are_delivered(
    client: Client, settings: Settings, migrated_database: str, tenant: TenantHandle
) -> None:
    async with receivers.running() as receiver:
        await register(client, receiver.url, slug=tenant.slug, events=["user.deleted"])
        user = await tenant.create_user("short-lived@example.com")
        await client.delete(f"{tenant.scim}/Users/{user['id']}", headers=tenant.auth())
        async with worker(settings, migrated_database):
            await receiver.wait_for(1)
            await asyncio.sleep(0.3)
    assert [r.event["type"] for r in receiver.requests] == ["user.deleted"]


async def test_a_failing_receiver_gets_every_event_in_order_after_retries(
    client: Client, settings: Settings, migrated_database: str, tenant: TenantHandle
) -> None:
    def fails_three_times(index: int) -> tuple[int, float]:
        return (503 if index < 3 else 200), 0.0

    async with receivers.running(fails_three_times) as receiver:
        endpoint = await register(client, receiver.url, slug=tenant.slug)
        for n in range(4):
            await tenant.create_user(f"r{n}@example.com")
        async with worker(settings, migrated_database) as running:
            await receiver.wait_for(4)
            await running.idle()  # the last attempt is recorded after the receiver answered
    assert [r.event["sequence"] for r in receiver.accepted] == [1, 2, 3, 4]
    # The first event was retried; nothing overtook it.
    assert [r.event["sequence"] for r in receiver.requests] == [1, 1, 1, 1, 2, 3, 4]

    attempts = await client.get(
        f"/admin/v1/webhooks/{endpoint['id']}/attempts", headers=admin_headers()
    )
    recorded = list(reversed(attempts.json()["attempts"]))
    assert [a["status_code"] for a in recorded] == [503, 503, 503, 200, 200, 200, 200]
    assert recorded[0]["error"] == "HTTP 503"
    assert recorded[-1]["error"] is None
    assert all(a["latency_ms"] >= 0 for a in recorded)


async def test_dead_letters_wait_for_a_replay(
    client: Client, settings: Settings, migrated_database: str, tenant: TenantHandle
) -> None:
    healthy = False

    def down_until_fixed(_: int) -> tuple[int, float]:
        return (200 if healthy else 500), 0.0

    async with receivers.running(down_until_fixed) as receiver:
        endpoint = await register(client, receiver.url, slug=tenant.slug)
        await tenant.create_user("d1@example.com")
        await tenant.create_user("d2@example.com")
        deliveries = f"/admin/v1/webhooks/{endpoint['id']}/deliveries"
        async with worker(settings, migrated_database):
            deadline = time.monotonic() + 20
            dead: list[dict[str, Any]] = []
            while len(dead) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                response = await client.get(
                    deliveries, params={"status": "dead"}, headers=admin_headers()
                )
                dead = response.json()["deliveries"]
            assert sorted(d["sequence"] for d in dead) == [1, 2]
            head = next(d for d in dead if d["sequence"] == 1)
            assert head["attempts"] == 4  # the first try and three retries
            assert head["last_error"] == "HTTP 500"
            # Only the head was tried: the backlog behind it waits with it.
            assert {r.event["sequence"] for r in receiver.requests} == {1}

            healthy = True
            replay = await client.post(
                f"/admin/v1/webhooks/{endpoint['id']}/replay", headers=admin_headers()
            )
            assert replay.status_code == 200
            assert replay.json() == {"replayed": 2}
            await receiver.wait_for(2)
    assert [r.event["sequence"] for r in receiver.accepted] == [1, 2]
    again = await client.post(
        f"/admin/v1/webhooks/{endpoint['id']}/replay",
        json={"delivery_id": head["id"]},
        headers=admin_headers(),
    )
    assert again.status_code == 404


async def test_rotation_signs_with_both_secrets_during_the_overlap(
    client: Client, settings: Settings, migrated_database: str, tenant: TenantHandle
) -> None:
    async with receivers.running() as receiver:
        endpoint = await register(client, receiver.url, slug=tenant.slug)
        rotated = await client.post(
            f"/admin/v1/webhooks/{endpoint['id']}/rotate",
            json={"overlap_seconds": 3600},
            headers=admin_headers(),
        )
        assert rotated.status_code == 201
        new_secret = rotated.json()["secret"]
        assert new_secret != endpoint["secret"]
        assert rotated.json()["previous_secret_expires_at"] is not None
        await tenant.create_user("rot@example.com")
        async with worker(settings, migrated_database):
            await receiver.wait_for(1)
            ended = await client.post(
                f"/admin/v1/webhooks/{endpoint['id']}/rotate",
                json={"overlap_seconds": 0},
                headers=admin_headers(),
            )
            await tenant.create_user("rot2@example.com")
            await receiver.wait_for(2)
    during, after = receiver.accepted
    assert len(during.headers["webhook-signature"].split()) == 2
    verify(endpoint["secret"], during)
    verify(new_secret, during)
    verify(ended.json()["secret"], after)
    with pytest.raises(WebhookVerificationError):
        verify(new_secret, after)


async def test_two_workers_never_deliver_the_same_event(
    client: Client,
    settings: Settings,
    migrated_database: str,
    make_tenants: Callable[[int], Awaitable[list[TenantHandle]]],
) -> None:
    tenants = await make_tenants(3)
    async with receivers.running(lambda _: (200, 0.01)) as receiver:
        for handle in tenants:
            await register(client, receiver.url, slug=handle.slug)
        for n in range(10):
            for handle in tenants:
                await handle.create_user(f"w{n}@example.com")
        async with (
            worker(settings, migrated_database, webhook_concurrency=2),
            worker(settings, migrated_database, webhook_concurrency=2),
        ):
            await receiver.wait_for(30)
            await asyncio.sleep(0.5)
    ids = Counter(r.headers["webhook-id"] for r in receiver.requests)
    assert len(ids) == 30
    assert set(ids.values()) == {1}
    for handle in tenants:
        sequences = [
            r.event["sequence"]
            for r in receiver.accepted
            if r.event["tenant"]["slug"] == handle.slug
        ]
        assert sequences == list(range(1, 11))


async def _backlog(db: Pool) -> set[str]:
    """The slugs of the tenants the worker's sweep would fan out now."""
    rows = await db.fetch(
        "SELECT t.slug FROM scim_control.webhook_backlog(3) b "
        "JOIN scim_control.tenants t ON t.id = b.tenant"
    )
    return {row["slug"] for row in rows}


async def _streams(db: Pool, slug: str) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM scim_control.webhook_streams s "
        "JOIN scim_control.tenants t ON t.id = s.tenant WHERE t.slug = $1",
        slug,
    )
    return count


async def test_the_sweep_fans_out_only_the_tenants_with_events_to_copy(
    client: Client,
    db: Pool,
    settings: Settings,
    migrated_database: str,
    make_tenants: Callable[[int], Awaitable[list[TenantHandle]]],
) -> None:
    busy, quiet, dropped = await make_tenants(3)
    async with receivers.running() as receiver:
        await register(client, receiver.url)  # every tenant's events
        # Written while no worker listens: their NOTIFY is lost, only a sweep finds them.
        created = await busy.create_user("swept@example.com")
        await dropped.create_user("dropped@example.com")
        schema = await schema_of(db, dropped.slug)
        # A tenant deleted while the sweep's loop runs: its row still listed, its schema gone.
        await db.execute(f'DROP SCHEMA "{schema}" CASCADE')
        behind = await _backlog(db)
        assert busy.slug in behind
        assert quiet.slug not in behind
        assert dropped.slug not in behind
        deleted = await client.delete(
            f"/admin/v1/tenants/{dropped.slug}?confirm={dropped.slug}", headers=admin_headers()
        )
        assert deleted.status_code == 204, deleted.text

        async with worker(settings, migrated_database):
            await receiver.wait_for(1)
        [event] = [r.event for r in receiver.accepted if r.event["tenant"]["slug"] == busy.slug]
        assert event["resource"]["id"] == created["id"]
        # Caught up, so the next sweep passes it by; the quiet tenant was never fanned
        # out at all (fanning it out would have opened its stream).
        assert busy.slug not in await _backlog(db)
        assert await _streams(db, busy.slug) == 1
        assert await _streams(db, quiet.slug) == 0


async def test_an_event_whose_notify_was_lost_waits_at_most_one_sweep_period(
    client: Client, db: Pool, settings: Settings, migrated_database: str, tenant: TenantHandle
) -> None:
    schema = await schema_of(db, tenant.slug)
    async with receivers.running() as receiver:
        await register(client, receiver.url, slug=tenant.slug)
        async with worker(settings, migrated_database, webhook_sweep_seconds=1.0):
            await tenant.create_user("notified@example.com")
            await receiver.wait_for(1)  # the worker is past its first sweep
            # Committed with no NOTIFY, as when a process dies between the two.
            await db.execute(
                f'INSERT INTO "{schema}".events (id, type, resource_type, resource_id, data) '
                "VALUES (gen_random_uuid(), 'user.updated', 'User', gen_random_uuid(), '{}')"
            )
            # Found by the next sweep; the default period (a minute) would miss this.
            await receiver.wait_for(2, within=10.0)
    assert [r.event["sequence"] for r in receiver.accepted] == [1, 2]


async def test_of_the_deployments_workers_one_sweeps_per_period(
    settings: Settings, migrated_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both workers ask for the sweep every 0.5 s. Which one keeps it is `test_purges`'
    # held chore.
    asks = ClaimAsks(monkeypatch, lambda _, chore: chore == SWEEP_CHORE, askers=2, times=3)
    async with (
        worker(settings, migrated_database, kind=CountingWorker, webhook_sweep_seconds=0.5) as a,
        worker(settings, migrated_database, kind=CountingWorker, webhook_sweep_seconds=0.5) as b,
    ):
        await asyncio.wait_for(asks.enough.wait(), 30)
    assert isinstance(a, CountingWorker)
    assert isinstance(b, CountingWorker)
    # Each also sweeps at its start, unasked: it may have missed notifications before.
    most, every = asks.bounds()
    assert 1 <= a.sweeps + b.sweeps - 2 <= most < every


async def test_notified_tenants_no_endpoint_receives_are_not_fanned_out(
    client: Client,
    db: Pool,
    settings: Settings,
    migrated_database: str,
    make_tenants: Callable[[int], Awaitable[list[TenantHandle]]],
) -> None:
    received, ignored = await make_tenants(2)
    ids = {
        row["slug"]: row["id"]
        for row in await db.fetch(
            "SELECT slug, id FROM scim_control.tenants WHERE slug = ANY($1::text[])",
            [received.slug, ignored.slug],
        )
    }
    async with receivers.running() as receiver:
        await register(client, receiver.url, slug=received.slug)
        async with worker(settings, migrated_database, kind=CountingWorker) as running:
            assert isinstance(running, CountingWorker)
            await received.create_user("first@example.com")
            # Delivered: the worker is past its first sweep, and what follows is notified.
            await receiver.wait_for(1)
            for n in range(3):
                await ignored.create_user(f"ignored{n}@example.com")
                await received.create_user(f"received{n}@example.com")
            await receiver.wait_for(4)
    assert {r.event["tenant"]["slug"] for r in receiver.accepted} == {received.slug}
    assert running.fanned_out[ids[received.slug]] >= 2
    assert running.fanned_out[ids[ignored.slug]] == 0


async def test_a_worker_reads_the_receivers_again_only_once_an_endpoint_is_added_or_deleted(
    client: Client, settings: Settings, migrated_database: str, tenant: TenantHandle
) -> None:
    """Rounds with notified tenants and no endpoint read the receivers once; an endpoint
    registered meanwhile is heard of at once (its tenant's next event is delivered
    without waiting for a sweep, an hour away here), and so is its deletion."""
    async with (
        receivers.running() as receiver,
        worker(
            settings, migrated_database, kind=CountingWorker, webhook_sweep_seconds=3600.0
        ) as running,
    ):
        assert isinstance(running, CountingWorker)
        await running.past_first_sweep()
        for n in range(3):
            await running.asked_after(tenant.create_user(f"unheard{n}@example.com"))
        assert running.receiver_reads == 1
        endpoint = await register(client, receiver.url, slug=tenant.slug)
        # Its NOTIFY committed before the next write's: the listener hears it first.
        await tenant.create_user("heard@example.com")
        await receiver.wait_for(1)
        assert [r.event["data"]["userName"] for r in receiver.accepted] == ["heard@example.com"]
        assert running.receiver_reads == 2
        deleted = await client.delete(
            f"/admin/v1/webhooks/{endpoint['id']}", headers=admin_headers()
        )
        assert deleted.status_code == 204, deleted.text
        await running.asked_after(tenant.create_user("gone@example.com"))
        assert running.receiver_reads == 3
    assert len(receiver.accepted) == 1


async def test_a_slow_receiver_does_not_slow_scim_down(
    client: Client, settings: Settings, migrated_database: str, tenant: TenantHandle
) -> None:
    async def median_create_seconds(prefix: str) -> float:
        timings = []
        for n in range(15):
            started = time.perf_counter()
            await tenant.create_user(f"{prefix}{n}@example.com")
            timings.append(time.perf_counter() - started)
        return statistics.median(timings)

    async with (
        receivers.running(lambda _: (200, 2.0)) as receiver,
        worker(settings, migrated_database, webhook_timeout_seconds=10.0),
    ):
        baseline = await median_create_seconds("before")
        await register(client, receiver.url, slug=tenant.slug)
        with_slow_receiver = await median_create_seconds("after")
        # The worker is indeed stuck on the slow receiver meanwhile.
        await receiver.wait_for_request()
        assert receiver.in_flight == 1
    # Coupled delivery would add the receiver's 2 s to every create: a ratio in the hundreds.
    assert with_slow_receiver / baseline < 5, (baseline, with_slow_receiver)


async def test_serve_runs_the_worker_in_its_lifespan(
    settings: Settings, tenant: TenantHandle
) -> None:
    configured = fast(settings, worker_in_process=True)
    async with (
        receivers.running() as receiver,
        AsyncTestClient(create_app(configured), base_url=BASE_URL) as own_client,
    ):
        endpoint = await register(own_client, receiver.url, slug=tenant.slug)
        response = await own_client.post(
            f"{tenant.scim}/Users", json={"userName": "life@example.com"}, headers=tenant.auth()
        )
        assert response.status_code == 201
        await receiver.wait_for(1)
    assert verify(endpoint["secret"], receiver.accepted[0])["type"] == "user.created"


async def test_without_a_secret_key_webhooks_cannot_be_registered(settings: Settings) -> None:
    configured = dataclasses.replace(settings, secret_key=None)
    async with AsyncTestClient(create_app(configured), base_url=BASE_URL) as own_client:
        response = await own_client.post(
            "/admin/v1/webhooks", json={"url": "https://example.com"}, headers=admin_headers()
        )
    assert response.status_code == 503
    assert "SCIM_SECRET_KEY" in response.json()["detail"]
