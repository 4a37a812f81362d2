"""`scim-platform roles` and `guard`, run as an operator runs them, against a live tenant."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_cli import cli_env, run, run_json  # noqa: F401 - fixture
from tests.integration.test_events import Feed
from tests.integration.test_guard import deactivate
from tests.integration.test_roles import MAPPING, create_group
from tests.support.application import Client, TenantHandle


async def test_roles_commands(
    client: Client,
    tenant: TenantHandle,
    cli_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    ada = (await tenant.create_user("ada@example.com"))["id"]
    await create_group(tenant, "Engineering", ada)
    mapping_file = tmp_path / "roles.json"
    mapping_file.write_text(json.dumps(MAPPING))
    saved = run_json(cli_env, "roles", "set", tenant.slug, str(mapping_file))
    assert saved["roles_changed"] == 1
    assert saved["mapping"]["default_roles"] == ["member"]
    shown = run(cli_env, "roles", "show", tenant.slug).stdout
    assert "displayName 'engineering' -> developer" in shown
    assert run_json(cli_env, "roles", "user", tenant.slug, ada)["roles"] == ["developer", "member"]
    assert run(cli_env, "roles", "user", tenant.slug, ada).stdout.strip() == "developer, member"

    mapping_file.write_text('{"groups": [{"match": "id", "value": "x", "roles": ["a"]}]}')
    bad = run(cli_env, "roles", "set", tenant.slug, str(mapping_file), ok=False)
    assert (bad.returncode, "match" in bad.stderr) == (1, True)

    assert run_json(cli_env, "roles", "clear", tenant.slug)["roles_changed"] == 1
    assert run_json(cli_env, "roles", "user", tenant.slug, ada)["roles"] is None


async def test_guard_commands(
    client: Client,
    tenant: TenantHandle,
    cli_env: dict[str, str],  # noqa: F811
) -> None:
    configured = run_json(
        cli_env, "guard", "set", tenant.slug, "--threshold-percent", "25", "--min-users", "4"
    )
    assert configured["settings"]["threshold_percent"] == 25
    assert configured["override"]["window_seconds"] is None
    users = [(await tenant.create_user(f"u{n}@example.com"))["id"] for n in range(4)]
    feed = Feed(client, tenant.slug)
    await feed.new()
    for user in users[:3]:
        await deactivate(tenant, user)
    assert len(await feed.new()) == 1

    shown = run_json(cli_env, "guard", "show", tenant.slug)
    assert (shown["holding"], shown["held_events"]) == (True, 2)
    assert "held:        2 events of 2 users" in run(cli_env, "guard", "show", tenant.slug).stdout
    assert run_json(cli_env, "guard", "release", tenant.slug) == {"released": 2}
    assert [e["resource"]["id"] for e in await feed.new()] == users[1:3]

    await deactivate(tenant, users[3])
    assert run(cli_env, "guard", "discard", tenant.slug).stdout.strip() == "0 held events discarded"
    assert len(await feed.new()) == 1
