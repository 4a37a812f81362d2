"""`scim-platform worker` and `scim-platform webhooks ...`, run as an operator runs them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from service.postgres import Pool
from service.settings import Settings
from tests.integration import receiver as receivers
from tests.support.application import Client, TenantHandle, admin_headers

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def env(
    db: Pool, settings: Settings, migrated_database: str, tmp_path: Path
) -> AsyncIterator[dict[str, str]]:
    await db.execute("DELETE FROM scim_control.webhook_endpoints")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_")}
    assert settings.secret_key is not None
    environment.update(
        DATABASE_URL=migrated_database,
        SCIM_DATA_DIR=str(tmp_path),
        SCIM_SECRET_KEY=settings.secret_key,
        SCIM_WORKER_POLL_SECONDS="1",
    )
    yield environment
    await db.execute("DELETE FROM scim_control.webhook_endpoints")


async def cli(env: dict[str, str], *args: str) -> Any:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.cli",
        *args,
        "--json",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return json.loads(out)


async def test_list_deliveries_and_replay(
    client: Client, db: Pool, env: dict[str, str], tenant: TenantHandle
) -> None:
    created = await client.post(
        f"/admin/v1/tenants/{tenant.slug}/webhooks",
        json={"url": "https://example.com/hook"},
        headers=admin_headers(),
    )
    endpoint = created.json()
    tenant_id = await db.fetchval(
        "SELECT id FROM scim_control.tenants WHERE slug = $1", tenant.slug
    )
    await db.execute(
        "INSERT INTO scim_control.webhook_streams (id, endpoint, tenant, last_sequence) "
        "VALUES ($1, $2::uuid, $3, 1)",
        uuid.uuid4(),
        endpoint["id"],
        tenant_id,
    )
    delivery_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO scim_control.webhook_deliveries (id, endpoint, tenant, sequence, event_id, "
        "event_type, body, status, attempts, last_error, finished_at) VALUES "
        "($1, $2::uuid, $3, 1, $4, 'user.created', '{}', 'dead', 10, 'HTTP 500', now())",
        delivery_id,
        endpoint["id"],
        tenant_id,
        uuid.uuid4(),
    )

    listed = await cli(env, "webhooks", "list", "--tenant", tenant.slug)
    assert [e["id"] for e in listed] == [endpoint["id"]]
    assert "secret" not in listed[0]
    dead = await cli(env, "webhooks", "deliveries", endpoint["id"], "--status", "dead")
    assert [(d["id"], d["last_error"]) for d in dead] == [(str(delivery_id), "HTTP 500")]
    assert await cli(env, "webhooks", "replay", endpoint["id"]) == {"replayed": 1}
    status = await db.fetchval(
        "SELECT status FROM scim_control.webhook_deliveries WHERE id = $1", delivery_id
    )
    assert status == "pending"


async def test_the_worker_command_delivers_and_stops_on_sigterm(
    client: Client, env: dict[str, str], tenant: TenantHandle
) -> None:
    async with receivers.running() as receiver:
        created = await client.post(
            f"/admin/v1/tenants/{tenant.slug}/webhooks",
            json={"url": receiver.url},
            headers=admin_headers(),
        )
        assert created.status_code == 201
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service.cli",
            "worker",
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await tenant.create_user("from-cli-worker@example.com")
            await receiver.wait_for(1, within=30)
        finally:
            worker.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(worker.communicate(), 30)
    assert worker.returncode == 0, err.decode()
    assert receiver.accepted[0].event["data"]["userName"] == "from-cli-worker@example.com"
