"""The `scim-platform` command, run as an operator runs it, and `serve --demo` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.ports import free_port

CLI = [sys.executable, "-m", "service.cli"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cli_env(migrated_database: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_")}
    env.update(
        DATABASE_URL=migrated_database,
        SCIM_PUBLIC_URL="https://scim.example.com",
        # Never the developer's own embedded database.
        SCIM_DATA_DIR=str(tmp_path_factory.mktemp("unused-data")),
    )
    return env


def run(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def run_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(run(env, *args, "--json").stdout)


def test_tenant_and_token_commands(cli_env: dict[str, str]) -> None:
    slug = f"cli-{uuid.uuid4().hex[:8]}"
    created = run_json(cli_env, "tenants", "create", slug, "--name", "CLI Co", "--idp", "entra")
    assert created["scim_url"] == f"https://scim.example.com/scim/v2/{slug}"
    assert created["idp_type"] == "entra"

    human = run(cli_env, "tenants", "list").stdout
    assert human.splitlines()[0].split() == ["SLUG", "NAME", "STATUS", "IDP", "TENANT", "URL"]
    assert slug in human
    found = run_json(cli_env, "tenants", "list", "--search", "cli co")
    assert slug in [t["slug"] for t in found]
    assert run_json(cli_env, "tenants", "list", "--search", f"{slug}-not") == []

    issued = run_json(cli_env, "tokens", "issue", slug, "--name", "entra")
    assert issued["token"].startswith("scimsk_")
    listed = run_json(cli_env, "tokens", "list", slug)
    assert [t["id"] for t in listed] == [issued["id"]]
    assert "token" not in listed[0]
    assert issued["token"] not in run(cli_env, "tokens", "list", slug).stdout

    rotated = run_json(cli_env, "tokens", "rotate", slug, issued["id"], "--grace", "0")
    assert rotated["token"] != issued["token"]
    statuses = {t["id"]: t["status"] for t in run_json(cli_env, "tokens", "list", slug)}
    assert statuses == {issued["id"]: "expired", rotated["id"]: "active"}
    revoked = run_json(cli_env, "tokens", "revoke", slug, rotated["id"])
    assert revoked["status"] == "revoked"

    assert run_json(cli_env, "tenants", "disable", slug)["status"] == "disabled"
    assert run_json(cli_env, "tenants", "enable", slug)["status"] == "enabled"
    updated = run_json(cli_env, "tenants", "update", slug, "--token-grace", "60")
    assert updated["token_rotation_grace_seconds"] == 60
    assert run_json(cli_env, "tenants", "show", slug)["name"] == "CLI Co"

    # Without a terminal to ask on, deletion needs --confirm and refuses otherwise.
    refused = run(cli_env, "tenants", "delete", slug, ok=False)
    assert refused.returncode == 1
    assert "confirm" in refused.stderr
    wrong = run(cli_env, "tenants", "delete", slug, "--confirm", "other", ok=False)
    assert wrong.returncode == 1
    assert run_json(cli_env, "tenants", "delete", slug, "--confirm", slug) == {"deleted": slug}
    missing = run(cli_env, "tenants", "show", slug, ok=False)
    assert missing.returncode == 1
    assert "no tenant" in missing.stderr


def test_bad_input_is_an_error_not_a_traceback(cli_env: dict[str, str]) -> None:
    result = run(cli_env, "tenants", "create", "Not A Slug", ok=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: slug must be")
    bad_env = cli_env | {"SCIM_DB_POOL_MAX": "lots"}
    config = run(bad_env, "tenants", "list", ok=False)
    assert config.returncode == 2
    assert "SCIM_DB_POOL_MAX" in config.stderr


def test_migrate_reports_nothing_to_do(cli_env: dict[str, str]) -> None:
    report = run_json(cli_env, "migrate")
    assert report["failed"] == {}
    assert report["tenants"] == 0
    assert report["latest_version"] >= 1


@pytest.fixture
def served(cli_env: dict[str, str]) -> Iterator[tuple[str, dict[str, str]]]:
    """`scim-platform serve --demo` on a free port: its base URL and printed secrets."""
    port = free_port()
    env = cli_env | {"SCIM_PORT": str(port), "SCIM_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [*CLI, "serve", "--demo"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    printed: dict[str, str] = {}
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        for line in process.stdout:
            for label in ("Tenant URL:", "Secret Token:", "Admin token:", "Console:"):
                if line.strip().startswith(label):
                    printed[label] = line.split(label, 1)[1].split()[0]
            if "Application startup complete" in line or time.monotonic() > deadline:
                break
        yield f"http://127.0.0.1:{port}", printed
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_serve_demo_prints_a_working_tenant_url_and_token(
    served: tuple[str, dict[str, str]],
) -> None:
    base_url, printed = served
    assert printed["Tenant URL:"] == f"{base_url}/scim/v2/demo"
    token = printed["Secret Token:"]
    with httpx.Client(timeout=10) as http:
        users = http.get(
            f"{printed['Tenant URL:']}/Users", headers={"Authorization": f"Bearer {token}"}
        )
        assert users.status_code == 200
        assert users.headers["content-type"] == "application/scim+json"
        assert users.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
        admin = http.get(
            f"{base_url}/admin/v1/tenants/demo",
            headers={"Authorization": f"Bearer {printed['Admin token:']}"},
        )
        assert admin.status_code == 200
        assert admin.json()["scim_url"] == printed["Tenant URL:"]
        assert http.get(f"{base_url}/readyz").json() == {"status": "ok"}
        assert printed["Console:"] == f"{base_url}/console"
        assert http.get(printed["Console:"]).headers["content-type"].startswith("text/html")
