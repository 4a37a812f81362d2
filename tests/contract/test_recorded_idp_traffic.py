"""Each IdP's documented traffic, replayed request by request in provisioning-cycle order."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract.replay import load, recordings, replay
from tests.support.application import TenantHandle, admin_headers


@pytest.mark.parametrize("path", recordings(), ids=lambda path: path.stem)
async def test_full_provisioning_cycle(tenant: TenantHandle, path: Path) -> None:
    recording = load(path)
    assert recording["sources"], "every recording names where its traffic comes from"
    names = await replay(tenant, recording)

    # Beyond each step's own checks: what the operator's product sees at the end.
    listed = await tenant.client.get(
        f"/admin/v1/tenants/{tenant.slug}/users", headers=admin_headers()
    )
    users = {user["id"]: user for user in listed.json()["users"]}
    created = {name: names[name] for name in names if names[name] in users}
    assert len(created) == len(users), "no user was created twice"
    for user in users.values():
        assert user["has_password"] is (user["userName"] == "erin@example.com")


def test_recordings_exist() -> None:
    assert {path.stem for path in recordings()} >= {
        "entra_default",
        "entra_aadoptscim062020",
        "okta",
        "onelogin",
        "jumpcloud",
        "google_workspace",
    }
