"""Which IdP is calling: for logs, traces and the link audit, never for behaviour.

Every tolerance in `patch` and `validation` applies to every client, so a
misdetected or unknown client loses nothing; detection only labels requests.
The User-Agent wins when it names a known IdP (an operator may have set the
wrong IdP type on the tenant); otherwise the tenant's configured type is used.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

CLIENTS: Final = ("entra", "okta", "onelogin", "google", "jumpcloud", "generic")

# Substrings of the User-Agent each IdP's provisioning service sends, lower case.
# Entra: "Microsoft.Identity.Provisioning" (older jobs: "Azure-AD-SCIM"); Okta:
# "Okta SCIM Client" / "Okta-SCIM"; the others name themselves.
_SIGNATURES: Final = (
    ("entra", ("microsoft.identity.provisioning", "azure-ad", "azuread", "microsoft")),
    ("okta", ("okta",)),
    ("onelogin", ("onelogin",)),
    ("google", ("google",)),
    ("jumpcloud", ("jumpcloud",)),
)


# Asked up to three times per request (the write's link audit, the metrics, the
# request log) about the handful of User-Agents a deployment sees.
@lru_cache(maxsize=1024)
def detect_client(user_agent: str | None, idp_type: str | None) -> str:
    """One of `CLIENTS`: from the User-Agent if it names an IdP, else the tenant's IdP type."""
    agent = (user_agent or "").lower()
    for client, needles in _SIGNATURES:
        if any(needle in agent for needle in needles):
            return client
    return idp_type if idp_type in CLIENTS else "generic"
