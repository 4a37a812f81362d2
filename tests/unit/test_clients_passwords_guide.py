"""Client detection, password hashing and the customer setup guide."""

from __future__ import annotations

import pytest

from service.passwords import hash_password, verify_password
from service.scim.clients import detect_client
from service.setup_guide import GUIDE_IDPS, render


@pytest.mark.parametrize(
    ("agent", "idp_type", "expected"),
    [
        ("Microsoft.Identity.Provisioning", "generic", "entra"),
        ("Azure-AD-SCIM-Provisioning/1.0", None, "entra"),
        ("Okta SCIM Client 1.0.0", "entra", "okta"),
        ("OneLogin SCIM", "generic", "onelogin"),
        ("Google-Workspace-Provisioning", "generic", "google"),
        ("JumpCloud SCIM", "generic", "jumpcloud"),
        ("curl/8.0", "okta", "okta"),
        (None, "jumpcloud", "jumpcloud"),
        ("", None, "generic"),
        ("python-httpx", "unknown-type", "generic"),
    ],
)
def test_detect_client(agent: str | None, idp_type: str | None, expected: str) -> None:
    assert detect_client(agent, idp_type) == expected


def test_password_hash_is_salted_and_verifies() -> None:
    first, second = hash_password("t1meMa$heen"), hash_password("t1meMa$heen")
    assert first != second
    assert "t1meMa$heen" not in first
    assert first.startswith("scrypt$")
    assert verify_password("t1meMa$heen", first)
    assert not verify_password("t1meMa$heeN", first)
    assert not verify_password("x", "not a hash")


@pytest.mark.parametrize("idp", GUIDE_IDPS)
def test_setup_guide_names_the_url_and_never_a_token(idp: str) -> None:
    text = render(idp, tenant_url="https://scim.example/scim/v2/contoso", product="Acme")
    assert "https://scim.example/scim/v2/contoso" in text
    assert "Acme" in text
    assert "scimsk_" in text  # only as the prefix to look for
    assert "Troubleshooting" in text


def test_entra_guide_has_the_documented_mappings() -> None:
    text = render("entra", tenant_url="https://x/scim/v2/c")
    for step in (
        "Enterprise applications",
        "Provisioning Mode to Automatic",
        "Test Connection",
        "userPrincipalName",
        'Switch([IsSoftDeleted], , "False", "True", "True", "False")',
        "objectId",
        "Provisioning Status to On",
        "aadOptscim062020",
    ):
        assert step in text


@pytest.mark.parametrize(
    ("idp", "steps"),
    [
        (
            "onelogin",
            (
                "SCIM Provisioner with SAML (SCIM v2 Enterprise)",
                "SCIM Base URL:        https://x/scim/v2/c",
                "API Connection select Enable",
                "Enable provisioning",
                "Delete or Suspend",
            ),
        ),
        (
            "jumpcloud",
            (
                "Identity Management",
                "SCIM Version:       SCIM 2.0",
                "Base URL:           https://x/scim/v2/c",
                "Test User Email",
                "Activate",
                "User Groups",
            ),
        ),
    ],
)
def test_onelogin_and_jumpcloud_guides_name_their_fields(idp: str, steps: tuple[str, ...]) -> None:
    text = render(idp, tenant_url="https://x/scim/v2/c")
    for step in steps:
        assert step in text, step
