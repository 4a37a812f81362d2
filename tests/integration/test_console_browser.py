"""The operator console in a real browser (headless Chromium) against a real `serve`:
an operator signs in, onboards a tenant, hands its URL and Secret Token to an IdP
that connects with them, reads its requests, and rotates, revokes, disables and
deletes, each checked against what the service then does.

Chromium is Debian's, or `CHROMIUM_PATH` (`tests/support/ensure_chromium.sh`, run
by `make test`), driven by Playwright."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Page,
    Route,
    async_playwright,
    expect,
)
from standardwebhooks.webhooks import Webhook

from tenants.secrets import display_prefix
from tests.integration import receiver
from tests.integration.test_rate_limits_served import serve_env
from tests.support.application import ADMIN_TOKEN
from tests.support.ports import free_port
from tests.support.serving import served

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
# As the machine's notes say: without these, Chromium dials Google's hosts at every
# start, and a closed network refuses it many times over.
_QUIET = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_REFUSED = re.compile(r"status of (400|401|409|429) ")
_PROBE = 'userName eq "73ab4fd1-5c3b-4aea-9bb2-0b8e3c9cb1f5"'


@pytest.fixture(scope="module")
def server(migrated_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("console")
    # A key seals webhook secrets, without which no endpoint can be registered.
    env = serve_env(migrated_database, tmp, SCIM_SECRET_KEY=secrets.token_urlsafe(32))
    with served(env, free_port(), tmp / "serve.log") as url:
        yield url


@pytest.fixture(scope="module")
def chromium() -> Path:
    assert CHROMIUM.exists(), f"no {CHROMIUM}: run tests/support/ensure_chromium.sh"
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=_QUIET)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A new tab; any error the page logs (a script error, a blocked resource, a
    Content-Security-Policy violation) fails the test."""
    context = await browser.new_context()
    opened = await context.new_page()
    errors: list[str] = []

    def on_console(entry: ConsoleMessage) -> None:
        # The browser logs each API refusal too: those a test makes on purpose (a
        # wrong admin token, a URL the API refuses) are the console's to show, and
        # the tests check it does; a missing file (404) or a 5xx is not.
        if entry.type == "error" and not _REFUSED.search(entry.text):
            errors.append(entry.text)

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    await context.close()
    assert not errors, errors


async def _accept(dialog: Dialog) -> None:
    """Says yes to the console's "are you sure?"."""
    await dialog.accept()


async def _sign_in(page: Page, server: str) -> None:
    await page.goto(f"{server}/console")
    await page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Tenants")).to_be_visible()


async def _open_tenant(page: Page, server: str, slug: str) -> None:
    """Signs in and opens the tenant's page, saying yes to every "are you sure?"."""
    page.on("dialog", _accept)
    await _sign_in(page, server)
    await page.goto(f"{server}/console#/tenants/{slug}")


def _scim(server: str, slug: str) -> httpx.AsyncClient:
    """A client of the tenant's SCIM endpoint (its IdP's headers are the test's)."""
    return httpx.AsyncClient(base_url=f"{server}/scim/v2/{slug}", timeout=30)


async def _reload(page: Page) -> None:
    """Loads the page again, which forgets the admin token, and signs in on it: the
    console draws the page the address names."""
    await page.reload()
    await page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()


async def _onboard(page: Page, slug: str, name: str) -> tuple[str, str]:
    """Creates the tenant through the console: its Tenant URL and Secret Token as shown."""
    await page.get_by_role("link", name="New tenant").click()
    await page.get_by_label("Slug").fill(slug)
    await page.get_by_label("Name").fill(name)
    await page.get_by_label("Identity provider").select_option("entra")
    await page.get_by_role("button", name="Create tenant").click()
    shown = page.get_by_role("region", name="Secret Token", exact=True)
    await expect(shown).to_be_visible()
    url = await shown.locator("input[name=tenant-url]").input_value()
    token = await shown.locator("input[name=secret-token]").input_value()
    return url, token


def _admin(server: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"{server}/admin/v1",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )


async def _tenant(server: str) -> tuple[str, dict[str, str]]:
    """A tenant made through the admin API: its slug and its IdP's headers."""
    slug = f"console-{uuid.uuid4().hex[:8]}"
    async with _admin(server) as admin:
        assert (await admin.post("/tenants", json={"slug": slug, "name": slug})).status_code == 201
        token = (await admin.post(f"/tenants/{slug}/tokens")).json()["token"]
    return slug, {"Authorization": f"Bearer {token}"}


async def _drawn_cleanly(page: Page) -> None:
    """Nothing on the page reads as a value the script failed to turn into text."""
    text = await page.locator("main").inner_text()
    for leaked in ("null", "undefined", "[object", "NaN"):
        assert leaked not in text, (leaked, text)


async def _test_connection(url: str, token: str) -> int:
    async with httpx.AsyncClient(timeout=30) as idp:
        response = await idp.get(
            f"{url}/Users", params={"filter": _PROBE}, headers={"Authorization": f"Bearer {token}"}
        )
    return response.status_code


async def test_an_operator_onboards_a_tenant_whose_idp_then_connects(
    page: Page, server: str
) -> None:
    slug = f"console-{uuid.uuid4().hex[:8]}"
    await _sign_in(page, server)
    url, token = await _onboard(page, slug, "Contoso")
    assert url == f"{server}/scim/v2/{slug}"
    assert token.startswith("scimsk_")
    assert await _test_connection(url, token) == 200

    # The IdP's requests, as the request log recorded them (written every 0.5 s).
    async with httpx.AsyncClient(timeout=30) as idp:
        refused = await idp.post(
            f"{url}/Users", json={"userName": ""}, headers={"Authorization": f"Bearer {token}"}
        )
    assert refused.status_code == 400
    logged = page.get_by_role("region", name="Provisioning requests")
    requests = logged.get_by_role("table", name="Requests")
    for _ in range(40):
        await logged.get_by_role("button", name="Refresh").click()
        if await requests.get_by_role("row").count() >= 3:  # the header and two requests
            break
        await asyncio.sleep(0.25)
    await expect(requests.get_by_role("row").nth(1)).to_contain_text("400")
    await expect(requests.get_by_role("row").nth(2)).to_contain_text("200")
    # What the IdP sent, opened from the request's method (never its token: below).
    await requests.get_by_role("button", name="POST").click()
    await expect(requests).to_contain_text('"userName": ""')
    await expect(requests).to_contain_text('"operation": "create"')
    await logged.get_by_label("Errors only").check()
    await expect(requests.get_by_role("row")).to_have_count(2)

    # The Secret Token is shown once: the tenant's page, drawn again, has only its prefix.
    await _reload(page)
    await expect(page.get_by_role("region", name="Connection", exact=True)).to_be_visible()
    assert await page.get_by_role("region", name="Secret Token", exact=True).count() == 0
    assert token not in await page.content()
    tokens = page.get_by_role("table", name="Tokens")
    await expect(tokens.get_by_role("row")).to_have_count(2)
    await expect(tokens).to_contain_text(display_prefix(token))
    await expect(page.get_by_role("region", name="Mass-deprovisioning guard")).to_contain_text(
        "Not holding anything"
    )
    await _drawn_cleanly(page)

    # The customer's setup guide, with the Tenant URL.
    guide = page.get_by_role("region", name="Setup guide")
    await guide.get_by_role("button", name="Show the guide").click()
    await expect(guide.locator("pre")).to_contain_text(url)


async def test_rotating_revoking_disabling_and_deleting_act_on_the_service(
    page: Page, server: str
) -> None:
    slug = f"console-{uuid.uuid4().hex[:8]}"
    page.on("dialog", _accept)
    await _sign_in(page, server)
    url, first = await _onboard(page, slug, "Fabrikam")

    await page.get_by_role("button", name="Rotate").click()
    rotated = page.get_by_role("region", name="Secret Token", exact=True)
    await expect(rotated.get_by_role("heading")).to_have_text("New Secret Token")
    second = await rotated.locator("input[name=secret-token]").input_value()
    assert second != first
    assert await _test_connection(url, second) == 200

    # Revoking the new one stops it at once; the old one is still in its grace period.
    tokens = page.get_by_role("table", name="Tokens")
    row = tokens.get_by_role("row").filter(has_text=display_prefix(second))
    await row.get_by_role("button", name="Revoke").click()
    await expect(row).to_contain_text("revoked")
    assert await _test_connection(url, second) == 401

    await page.get_by_role("button", name="Disable tenant").click()
    await expect(page.get_by_role("button", name="Enable tenant")).to_be_visible()
    assert await _test_connection(url, first) == 403
    await page.get_by_role("button", name="Enable tenant").click()
    await expect(page.get_by_role("button", name="Disable tenant")).to_be_visible()
    assert await _test_connection(url, first) == 200

    delete = page.get_by_role("button", name="Delete tenant")
    await expect(delete).to_be_disabled()
    await page.get_by_label("Type the slug to confirm").fill(slug)
    await delete.click()
    await expect(page.get_by_role("heading", name="Tenants")).to_be_visible()
    await expect(page.get_by_role("link", name=slug)).to_have_count(0)
    assert await _test_connection(url, first) == 401


async def test_a_wrong_token_is_refused_and_the_right_one_is_kept_by_the_page_alone(
    page: Page, server: str
) -> None:
    await page.goto(f"{server}/console")
    await page.get_by_label("Admin token").fill("scimadm_not-the-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text(
        "not accepted: a valid admin bearer token is required"
    )

    await page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Tenants")).to_be_visible()
    # The token is in no storage another page of this origin could read.
    stored = "() => [localStorage.length, sessionStorage.length, document.cookie]"
    assert await page.evaluate(stored) == [0, 0, ""]
    # Another tab starts signed out; so does this one once reloaded.
    other = await page.context.new_page()
    await other.goto(f"{server}/console")
    await expect(other.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.reload()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await _sign_in(page, server)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(page.get_by_role("status")).to_contain_text("Signed out")


async def test_names_from_the_api_are_shown_as_text_never_run(page: Page, server: str) -> None:
    slug = f"console-{uuid.uuid4().hex[:8]}"
    name = "<img src=x onerror=\"document.title='owned'\">Tailspin"
    async with _admin(server) as admin:
        created = await admin.post("/tenants", json={"slug": slug, "name": name})
        assert created.status_code == 201, created.text
    await _open_tenant(page, server, slug)
    await expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    assert await page.locator("main img").count() == 0
    assert await page.title() != "owned"


async def test_a_guard_set_in_the_console_trips_and_its_held_events_are_released(
    page: Page, server: str
) -> None:
    slug, idp = await _tenant(server)
    await _open_tenant(page, server, slug)
    guard = page.get_by_role("region", name="Mass-deprovisioning guard")
    await guard.get_by_role("combobox").select_option("true")
    await guard.get_by_label("Threshold (%)").fill("10")
    await guard.get_by_label("Smallest tenant guarded (users)").fill("1")
    await guard.get_by_role("button", name="Save the guard's settings").click()
    await expect(guard).to_contain_text(
        "exceed 10% of the active users (tenants of at least 1 user)"
    )
    async with _admin(server) as admin:
        override = (await admin.get(f"/tenants/{slug}/guard")).json()["override"]
    assert override == {
        "enabled": True,
        "threshold_percent": 10,
        "window_seconds": None,
        "min_users": 1,
    }

    async with _scim(server, slug) as scim:
        ids = []
        for n in range(3):
            made = await scim.post("/Users", json={"userName": f"u{n}@example.com"}, headers=idp)
            ids.append(made.json()["id"])
        deactivation = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": False}],
        }
        patched = await scim.patch(f"/Users/{ids[0]}", json=deactivation, headers=idp)
        assert patched.status_code in (200, 204), patched.text

    await guard.get_by_role("button", name="Refresh").click()
    await expect(guard).to_contain_text("holding 1 event about 1 user")
    await expect(guard).to_contain_text("user.deactivated: 1")
    await _drawn_cleanly(page)
    # The tenants list says so too, in the tenant's row.
    listed = page.get_by_role("table", name="Tenants").get_by_role("row", name=slug)
    await page.goto(f"{server}/console#/?search={slug}")
    await expect(listed).to_contain_text("guard holding")
    await listed.get_by_role("link", name=slug).click()
    await guard.get_by_role("button", name="Release 1 event").click()
    await expect(guard).to_contain_text("1 held event released")
    await expect(guard).to_contain_text("Not holding anything")
    async with _admin(server) as admin:
        delivered = (await admin.get(f"/tenants/{slug}/events")).json()["events"]
    assert [event["type"] for event in delivered][-1] == "user.deactivated"
    await page.goto(f"{server}/console#/?search={slug}")
    await expect(listed).to_contain_text("enabled")
    await expect(listed).not_to_contain_text("guard holding")


async def test_a_webhook_added_in_the_console_receives_signed_events(
    page: Page, server: str
) -> None:
    slug, idp = await _tenant(server)
    await _open_tenant(page, server, slug)
    hooks = page.get_by_role("region", name="Webhooks")
    # What the API refuses is said in the panel, and goes once a request succeeds.
    await hooks.get_by_label("URL").fill("ftp://product.example.com/hook")
    await hooks.get_by_role("button", name="Add endpoint").click()
    await expect(hooks.get_by_role("alert")).to_contain_text("http:// or https://")
    async with receiver.running() as product:
        await hooks.get_by_label("URL").fill(product.url)
        await hooks.get_by_label("Event types").fill("user.created")
        await hooks.get_by_role("button", name="Add endpoint").click()
        shown = page.get_by_role("region", name="Signing secret")
        signing_secret = await shown.locator("input[name=webhook-secret]").input_value()
        assert signing_secret.startswith("whsec_")
        await expect(hooks.get_by_role("table", name="Webhooks")).to_contain_text(product.url)
        await expect(hooks.get_by_role("alert")).to_have_count(0)

        async with _scim(server, slug) as scim:
            made = await scim.post("/Users", json={"userName": "hooked@example.com"}, headers=idp)
            assert made.status_code == 201, made.text
        await product.wait_for(1)
        # The secret the page showed is the one the deliveries are signed with.
        first = product.accepted[0]
        assert Webhook(signing_secret).verify(first.body, first.headers)["type"] == "user.created"

        await hooks.get_by_role("button", name="Deliveries").click()
        await expect(hooks.get_by_role("table", name="Deliveries")).to_contain_text("delivered")
        await _drawn_cleanly(page)
        await hooks.get_by_role("button", name="Remove").click()
        await expect(hooks).to_contain_text("No endpoint receives this tenant's events yet")
    async with _admin(server) as admin:
        assert (await admin.get(f"/tenants/{slug}/webhooks")).json()["webhooks"] == []


async def test_a_webhook_for_every_tenant_is_added_rotated_and_removed_in_the_console(
    page: Page, server: str
) -> None:
    slugs_idps = [await _tenant(server) for _ in range(2)]
    page.on("dialog", _accept)
    await _sign_in(page, server)
    await page.get_by_role("link", name="Webhooks").click()
    hooks = page.get_by_role("region", name="Webhooks")
    async with receiver.running() as product:
        await hooks.get_by_label("URL").fill(product.url)
        await hooks.get_by_label("Event types").fill("user.created")
        await hooks.get_by_role("button", name="Add endpoint").click()
        secret = page.get_by_role("region", name="Signing secret").locator(
            "input[name=webhook-secret]"
        )
        first_secret = await secret.input_value()
        row = hooks.get_by_role("row").filter(has_text=product.url)
        await expect(row).to_contain_text("every tenant")

        # Each tenant's creation reaches it, signed with the secret the page showed.
        for n, (slug, idp) in enumerate(slugs_idps):
            async with _scim(server, slug) as scim:
                made = await scim.post(
                    "/Users", json={"userName": f"everyone{n}@example.com"}, headers=idp
                )
                assert made.status_code == 201, made.text
        await product.wait_for(2)
        for delivery in product.accepted[:2]:
            assert (
                Webhook(first_secret).verify(delivery.body, delivery.headers)["type"]
                == "user.created"
            )
        await row.get_by_role("button", name="Deliveries").click()
        deliveries = hooks.get_by_role("table", name="Deliveries")
        for slug, _ in slugs_idps:
            await expect(deliveries).to_contain_text(slug)

        await row.get_by_role("button", name="Rotate secret").click()
        await expect(page.get_by_role("region", name="Signing secret")).to_contain_text(
            "the old one signs too until"
        )
        await expect(secret).not_to_have_value(first_secret)
        second_secret = await secret.input_value()
        slug, idp = slugs_idps[0]
        async with _scim(server, slug) as scim:
            made = await scim.post("/Users", json={"userName": "after@example.com"}, headers=idp)
            assert made.status_code == 201, made.text
        await product.wait_for(3)
        last = product.accepted[2]
        assert (
            Webhook(second_secret).verify(last.body, last.headers)["data"]["userName"]
            == "after@example.com"
        )
        await _drawn_cleanly(page)

        await row.get_by_role("button", name="Remove").click()
        await expect(hooks.get_by_role("row").filter(has_text=product.url)).to_have_count(0)
    async with _admin(server) as admin:
        left = (await admin.get("/webhooks")).json()["webhooks"]
    assert product.url not in [endpoint["url"] for endpoint in left]


async def test_a_tenants_rate_limit_is_changed_and_reset_from_the_console(
    page: Page, server: str
) -> None:
    slug, idp = await _tenant(server)
    await _open_tenant(page, server, slug)
    limit = page.get_by_role("region", name="Rate limit")
    await expect(limit).to_contain_text("the service's defaults")
    await limit.get_by_label("Requests a second").fill("1")
    await limit.get_by_label("Burst").fill("2")
    await limit.get_by_role("button", name="Save").click()
    await expect(limit).to_contain_text("1 request a second, bursts of 2")
    await expect(limit).to_contain_text("the tenant's own limits")
    await _drawn_cleanly(page)

    # The service applies it: a third request within the window is refused.
    async with _scim(server, slug) as scim:
        answers = [(await scim.get("/Users", headers=idp)).status_code for _ in range(3)]
    assert answers == [200, 200, 429]

    await limit.get_by_role("button", name="Back to the defaults").click()
    await expect(limit).to_contain_text("the service's defaults")
    async with _admin(server) as admin:
        override = (await admin.get(f"/tenants/{slug}/rate-limit")).json()["override"]
    assert override == {"per_second": None, "burst": None, "concurrency": None}


async def test_tenants_are_found_by_the_start_of_their_slug_or_a_part_of_their_name(
    page: Page, server: str
) -> None:
    mark = uuid.uuid4().hex[:8]
    async with _admin(server) as admin:
        for slug, name in (
            (f"find-{mark}-a", "Northwind"),
            (f"find-{mark}-b", f"Woodgrove {mark}"),
        ):
            assert (
                await admin.post("/tenants", json={"slug": slug, "name": name})
            ).status_code == 201
    await _sign_in(page, server)
    find = page.get_by_label("Find a tenant")
    tenants = page.get_by_role("table", name="Tenants")

    await find.fill(f"FIND-{mark}")
    await find.press("Enter")
    await expect(tenants.get_by_role("row")).to_have_count(3)
    await find.fill(f"grove {mark}")
    await find.press("Enter")
    await expect(tenants.get_by_role("row")).to_have_count(2)
    await expect(tenants).to_contain_text(f"find-{mark}-b")
    await find.fill(f"nothing-{mark}")
    await find.press("Enter")
    nothing = f'No tenant\'s slug starts with "nothing-{mark}"'
    await expect(page.locator("main")).to_contain_text(nothing)


async def test_a_role_mapping_set_in_the_console_gives_users_their_roles(
    page: Page, server: str
) -> None:
    slug, idp = await _tenant(server)
    async with _scim(server, slug) as scim:
        user = (await scim.post("/Users", json={"userName": "ada@example.com"}, headers=idp)).json()
        group = {"displayName": "Engineering", "members": [{"value": user["id"]}]}
        assert (await scim.post("/Groups", json=group, headers=idp)).status_code == 201

    async def roles_of_the_user() -> list[str] | None:
        async with _admin(server) as admin:
            answer = await admin.get(f"/tenants/{slug}/users/{user['id']}/roles")
        roles: list[str] | None = answer.json()["roles"]
        return roles

    await _open_tenant(page, server, slug)
    mapping = page.get_by_role("region", name="Roles")
    await expect(mapping).to_contain_text("No mapping")
    await mapping.get_by_label("Default roles").fill("member")
    await mapping.get_by_role("button", name="Add a rule").click()
    await mapping.get_by_label("Group", exact=True).fill("engineering")
    await mapping.get_by_label("Roles", exact=True).fill("developer, reviewer")
    await mapping.get_by_role("button", name="Save the mapping").click()
    await expect(mapping).to_contain_text("Saved: 1 user's roles changed")
    assert await roles_of_the_user() == ["developer", "member", "reviewer"]
    await _drawn_cleanly(page)

    # Drawn again from what was stored.
    await _reload(page)
    await expect(mapping.get_by_label("Roles", exact=True)).to_have_value("developer, reviewer")
    await mapping.get_by_role("button", name="Remove the mapping").click()
    await expect(mapping).to_contain_text("Removed: 1 user's roles changed")
    await expect(mapping).to_contain_text("No mapping")
    assert await roles_of_the_user() is None


async def test_a_tenants_users_are_listed_found_and_opened(page: Page, server: str) -> None:
    slug, idp = await _tenant(server)
    async with _scim(server, slug) as scim:
        for n in range(25):
            user = {"userName": f"user{n:02}@example.com", "active": n % 2 == 0}
            assert (await scim.post("/Users", json=user, headers=idp)).status_code == 201
        grace = {"userName": "grace@example.com", "displayName": "Grace Hopper", "title": "RADM"}
        assert (await scim.post("/Users", json=grace, headers=idp)).status_code == 201

    await _open_tenant(page, server, slug)
    users = page.get_by_role("region", name="Users", exact=True)
    listed = users.get_by_role("table", name="Users")
    await expect(users).to_contain_text("26 users")
    await expect(users).to_contain_text("25 shown")
    await users.get_by_role("button", name="More").click()
    await expect(users).to_contain_text("26 shown")
    await expect(users.get_by_role("button", name="More")).to_be_hidden()

    await users.get_by_label("Find a user").fill("hopper")
    await users.get_by_role("button", name="Find").click()
    await expect(users).to_contain_text("1 user found")
    await listed.get_by_role("button", name="grace@example.com").click()
    await expect(listed).to_contain_text('"title": "RADM"')
    await _drawn_cleanly(page)

    # What the product heard, newest first: Grace's creation, then the 25 before it.
    events = page.get_by_role("region", name="Events").get_by_role("table", name="Events")
    await expect(events.get_by_role("row")).to_have_count(21)
    newest = events.get_by_role("row").nth(1)
    await expect(newest).to_contain_text("26")
    await newest.get_by_role("button", name="user.created").click()
    await expect(events).to_contain_text('"userName": "grace@example.com"')
    await page.get_by_role("region", name="Events").get_by_role("button", name="Older").click()
    await expect(events.get_by_role("row").filter(has_text="user.created")).to_have_count(26)


async def test_users_pre_loaded_in_the_console_are_linked_by_its_policy_and_mapped(
    page: Page, server: str
) -> None:
    slug, idp = await _tenant(server)
    await _open_tenant(page, server, slug)
    policy = page.get_by_role("region", name="Provisioning policy")
    await expect(policy).to_contain_text("The service's defaults.")
    await expect(policy.get_by_label("Matched by")).to_have_value("externalId, userName, email")
    await policy.get_by_label("Matched by").fill("phone")
    await policy.get_by_role("button", name="Save the policy").click()
    await expect(policy).to_contain_text(
        "match_order must list some of externalId, userName, email"
    )
    await policy.get_by_label("Matched by").fill("email, userName")
    await policy.get_by_label("A DELETE from the IdP").select_option("deactivate")
    await policy.get_by_label("Retention (days)").fill("7")
    await policy.get_by_role("button", name="Save the policy").click()
    await expect(policy).to_contain_text("Saved.")
    await expect(policy).to_contain_text("Set ")

    mapping = page.get_by_role("region", name="Attribute mapping")
    for field, attribute in (("first_name", "name.givenName"), ("first_name", "name.familyName")):
        await mapping.get_by_role("button", name="Add a field").click()
        await mapping.get_by_label("Field").last.fill(field)
        await mapping.get_by_label("SCIM attribute").last.fill(attribute)
    await mapping.get_by_role("button", name="Save the mapping").click()
    await expect(mapping).to_contain_text("The field first_name is mapped twice.")
    await mapping.get_by_label("Field").last.fill("nickname")
    await mapping.get_by_label("SCIM attribute").last.fill("name.nickname")
    await mapping.get_by_role("button", name="Save the mapping").click()
    await expect(mapping).to_contain_text("field 'nickname': name has no 'nickname'")
    await expect(mapping).not_to_contain_text("Saved")
    await mapping.get_by_label("SCIM attribute").last.fill("nickName")
    await mapping.get_by_role("button", name="Save the mapping").click()
    await expect(mapping).to_contain_text("Saved")

    preload = page.get_by_role("region", name="Pre-load users")
    users = preload.get_by_label("Users (a JSON list of SCIM User bodies)")
    await users.fill('{"userName": "not a list"}')
    await preload.get_by_role("button", name="Pre-load").click()
    await expect(preload).to_contain_text("A JSON list of SCIM User bodies, please")
    ada = {
        "userName": "ada.l@example.com",
        "name": {"givenName": "Ada"},
        "nickName": "Countess",
        "emails": [{"value": "ada@example.com", "primary": True}],
    }
    await users.fill(json.dumps([ada, {"displayName": "no userName"}]))
    await preload.get_by_role("button", name="Pre-load").click()
    await expect(preload).to_contain_text("1 user pre-loaded; 1 not (below)")
    refused = preload.get_by_role("table", name="Pre-load results")
    await expect(refused).to_contain_text("invalid")
    await expect(refused).to_contain_text("userName")

    async with _scim(server, slug) as scim:
        # The IdP's own user, found by the address first, as the policy now says.
        sent = {"userName": "ada@corp.example", "emails": [{"value": "ADA@example.com"}]}
        created = await scim.post("/Users", json=sent, headers=idp)
    assert created.status_code == 201, created.text
    links = page.get_by_role("region", name="Link audit")
    await expect(links).to_contain_text("No user has been linked")
    await links.get_by_role("button", name="Refresh").click()
    linked = links.get_by_role("table", name="Links")
    await expect(linked).to_contain_text("linked")
    await expect(linked).to_contain_text(created.json()["id"])
    await expect(linked).to_contain_text("email: ada@example.com")

    async with _admin(server) as admin:
        stored = (await admin.get(f"/tenants/{slug}/provisioning-policy")).json()
        user = (await admin.get(f"/tenants/{slug}/users/{created.json()['id']}")).json()
    assert (stored["match_order"], stored["deprovision_mode"], stored["retention_days"]) == (
        ["email", "userName"],
        "deactivate",
        7,
    )
    assert user["profile"] == {"first_name": "Ada", "nickname": "Countess"}
    await _drawn_cleanly(page)

    # Drawn again from what was stored.
    await _reload(page)
    await expect(policy.get_by_label("A DELETE from the IdP")).to_have_value("deactivate")
    attributes = mapping.get_by_label("SCIM attribute")
    await expect(attributes).to_have_count(2)
    shown = await attributes.evaluate_all("(inputs) => inputs.map((input) => input.value)")
    assert sorted(shown) == ["name.givenName", "nickName"]
    await policy.get_by_role("button", name="Purge now").click()
    await expect(policy).to_contain_text("Purged 0 users.")


async def test_a_panels_fields_are_disabled_until_its_settings_have_loaded(
    page: Page, server: str
) -> None:
    """What an operator typed before a panel's settings arrived would be overwritten by them."""
    slug, _ = await _tenant(server)
    async with _admin(server) as admin:
        limited = {"per_second": 7, "burst": 14}
        assert (await admin.put(f"/tenants/{slug}/rate-limit", json=limited)).status_code == 200
    held: asyncio.Queue[Route] = asyncio.Queue()
    await page.route(re.compile(r".*/rate-limit$"), held.put_nowait)
    await _open_tenant(page, server, slug)
    limit = page.get_by_role("region", name="Rate limit")
    route = await asyncio.wait_for(held.get(), 30)
    await expect(limit.get_by_label("Requests a second")).to_be_disabled()
    await expect(limit.get_by_role("button", name="Save")).to_be_disabled()
    await route.continue_()
    await expect(limit.get_by_label("Requests a second")).to_be_enabled()
    await expect(limit.get_by_label("Requests a second")).to_have_value("7")


async def test_the_console_works_under_a_proxys_path_prefix(page: Page, server: str) -> None:
    """Served by a proxy as `<host>/behind-proxy/...`, the prefix stripped on the way in
    (here Playwright's routing plays the proxy): every file and API call the page asks
    for stays under the prefix."""
    prefix = f"{server}/behind-proxy"
    asked: list[str] = []

    async def proxy(route: Route) -> None:
        asked.append(route.request.url)
        forwarded = await route.fetch(url=server + route.request.url.removeprefix(prefix))
        await route.fulfill(response=forwarded)

    await page.route(f"{prefix}/**", proxy)
    await page.goto(f"{prefix}/console")
    await page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Tenants")).to_be_visible()
    paths = {url.removeprefix(prefix).split("?")[0] for url in asked}
    assert {"/console", "/console/app.js", "/console/app.css", "/admin/v1/tenants"} <= paths
