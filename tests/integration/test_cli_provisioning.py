"""`scim-platform policy`, `mapping` and `purge`, run as an operator runs them."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.integration.test_cli import cli_env, run, run_json  # noqa: F401 - fixture

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def test_policy_mapping_and_purge_commands(cli_env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    slug = f"cli-{uuid.uuid4().hex[:8]}"
    run_json(cli_env, "tenants", "create", slug, "--name", "Policy Co")

    shown = run_json(cli_env, "policy", "show", slug)
    assert shown["deprovision_mode"] == "soft_delete"
    changed = run_json(
        cli_env,
        "policy",
        "set",
        slug,
        "--link-mode",
        "refuse",
        "--match-order",
        "userName,email",
        "--deprovision",
        "hard_delete",
        "--retention-days",
        "7",
    )
    assert changed | {"updated_at": None} == {
        "link_mode": "refuse",
        "match_order": ["userName", "email"],
        "deprovision_mode": "hard_delete",
        "retention_days": 7,
        "updated_at": None,
    }
    assert "link_mode:        refuse" in run(cli_env, "policy", "show", slug).stdout
    bad = run(cli_env, "policy", "set", slug, "--match-order", "phone", ok=False)
    assert bad.returncode == 1
    assert "match_order" in bad.stderr

    mapping_file = tmp_path / "mapping.json"
    mapping_file.write_text(f'{{"email": "userName", "department": "{ENTERPRISE}:department"}}')
    assert run_json(cli_env, "mapping", "set", slug, str(mapping_file)) == {
        "email": "userName",
        "department": f"{ENTERPRISE}:department",
    }
    mapping_file.write_text('{"email": "nosuch"}')
    assert run(cli_env, "mapping", "set", slug, str(mapping_file), ok=False).returncode == 1
    assert "department <- " in run(cli_env, "mapping", "show", slug).stdout

    assert run_json(cli_env, "purge", slug) == {slug: 0}
    run(cli_env, "tenants", "delete", slug, "--confirm", slug)
