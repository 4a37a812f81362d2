"""The operator console's files: served as they are, with a policy that lets the page
run nothing but its own script and reach nothing but its own origin.

What the console does is driven in a real browser in `test_console_browser`."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from service.setup_guide import GUIDE_IDPS
from tenants.policies import DEPROVISION_MODES, LINK_MODES, MATCH_KEYS
from tenants.registry import IDP_TYPES
from tests.support.application import Client

_SCRIPT = resources.files("service.console").joinpath("app.js").read_text()


async def test_the_page_is_served_with_a_strict_content_security_policy(client: Client) -> None:
    response = await client.get("/console")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    # No inline script or style: the policy would block them.
    assert re.search(r"<script(?![^>]*\bsrc=)", response.text) is None
    assert "style=" not in response.text
    assert 'src="console/app.js"' in response.text


async def test_a_trailing_slash_is_sent_to_the_page_its_relative_links_are_made_for(
    client: Client,
) -> None:
    response = await client.get("/console/", follow_redirects=False)
    assert response.status_code in (301, 302, 307, 308)
    assert response.headers["location"] == "../console"


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
async def test_its_files_are_served_and_revalidated_by_etag(
    client: Client, name: str, media_type: str
) -> None:
    first = await client.get(f"/console/{name}")
    assert first.status_code == 200
    assert first.headers["content-type"] == media_type
    assert first.headers["cache-control"] == "no-cache"
    again = await client.get(f"/console/{name}", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


async def test_nothing_else_is_served_from_its_folder(client: Client) -> None:
    for name in ("__init__.py", "index.html", "../app.py", "secret"):
        response = await client.get(f"/console/{name}")
        assert response.status_code == 404, name


async def test_the_page_holds_no_secret_and_needs_none_to_load(client: Client) -> None:
    """The page is the same for everyone; what it shows comes from the admin API, which
    asks for the admin token on every call."""
    page = await client.get("/console")
    script = await client.get("/console/app.js")
    for body in (page.text, script.text):
        assert "scimadm_" not in body
        assert "scimsk_" not in body
    assert (await client.get("/admin/v1/tenants")).status_code == 401


def test_the_script_offers_the_choices_the_api_takes() -> None:
    """The lists of identity providers and policy choices in the script are the API's."""
    assert _listed("IDP_TYPES") == list(IDP_TYPES)
    assert _listed("GUIDE_IDPS") == list(GUIDE_IDPS)
    assert _listed("LINK_MODES") == list(LINK_MODES)
    assert _listed("MATCH_KEYS") == list(MATCH_KEYS)
    assert _listed("DEPROVISION_MODES") == list(DEPROVISION_MODES)


def _listed(name: str) -> list[str]:
    found = re.search(rf"const {name} = \[([^\]]*)\];", _SCRIPT)
    assert found is not None, name
    return re.findall(r'"([^"]+)"', found.group(1))
