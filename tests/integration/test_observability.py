"""Traces, metrics and logs of real requests, read back from in-memory exporters and /metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import msgspec
import pytest
import yaml
from litestar import Litestar
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from observability import request_context
from observability.database import TracedConnection
from observability.logging import JsonFormatter
from observability.setup import Telemetry
from service import recent_users, write_state
from service.app import create_app
from service.postgres import Pool
from service.settings import Settings
from service.store import groups
from tenants.schemas import quoted_schema
from tests.integration.test_events import all_events, patch_body
from tests.integration.test_guard import configure as configure_guard
from tests.integration.test_guard import deactivate, guard_of
from tests.integration.test_roles import roles_of
from tests.support.application import (
    BASE_URL,
    TenantHandle,
    admin_headers,
    make_tenant,
    schema_of,
)

Client = AsyncTestClient[Litestar]
PASSWORD = "Tr0ub4dor&3-not-in-any-span"
OKTA = {"User-Agent": "Okta SCIM Client 1.0.0"}
_T = TypeVar("_T")


class Recorded:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.metrics = InMemoryMetricReader()


@pytest.fixture(scope="module")
def recorded() -> Recorded:
    return Recorded()


@pytest.fixture(scope="module")
async def client(settings: Settings, recorded: Recorded) -> AsyncIterator[Client]:
    telemetry = Telemetry(
        span_exporter=recorded.spans,
        metric_readers=[recorded.metrics],
        tenant_labels="all",
        batch_spans=False,
    )
    app = create_app(settings, telemetry)
    async with AsyncTestClient(app, base_url=BASE_URL) as test_client:
        yield test_client


@pytest.fixture
async def tenant(client: Client, recorded: Recorded) -> TenantHandle:
    handle = await make_tenant(client)
    recorded.spans.clear()
    return handle


async def finished_spans(recorded: Recorded, server_spans: int) -> Sequence[ReadableSpan]:
    """The spans so far, once ``server_spans`` requests have ended theirs.

    A server span ends after the response went out, so the client may be a step ahead.
    """
    for _ in range(200):
        spans = recorded.spans.get_finished_spans()
        if sum(1 for span in spans if span.kind == SpanKind.SERVER) >= server_spans:
            return spans
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {server_spans} server spans, got {spans}")


def server_span(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    matching = [span for span in spans if span.kind == SpanKind.SERVER and span.name == name]
    assert len(matching) == 1, [span.name for span in spans]
    return matching[0]


def ids(span: ReadableSpan) -> tuple[str, str]:
    """(trace id, span id) in W3C hex."""
    context = span.get_span_context()
    assert context is not None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    parent_id = int(ids(parent)[1], 16)
    return [span for span in spans if span.parent is not None and span.parent.span_id == parent_id]


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


USERS_ROUTE = "/scim/v2/{tenant}/Users"
USER_ROUTE = "/scim/v2/{tenant}/Users/{resource_id}"


async def test_create_is_one_server_span_with_http_and_scim_attributes(
    client: Client, tenant: TenantHandle, recorded: Recorded
) -> None:
    response = await client.post(
        f"{tenant.scim}/Users",
        json={"userName": "ada@example.com", "password": PASSWORD},
        headers=tenant.auth() | OKTA,
    )
    assert response.status_code == 201, response.text
    spans = await finished_spans(recorded, 1)
    span = server_span(spans, f"POST {USERS_ROUTE}")
    found = attributes(span)
    tenant_id = found["scim.tenant.id"]
    assert found == {
        "http.request.method": "POST",
        "url.path": f"{tenant.scim}/Users",
        "url.scheme": "http",
        "server.address": "scim.test",
        "user_agent.original": OKTA["User-Agent"],
        "http.route": USERS_ROUTE,
        "http.response.status_code": 201,
        "scim.tenant.id": tenant_id,
        "scim.tenant.slug": tenant.slug,
        "scim.resource_type": "User",
        "scim.operation": "create",
        "scim.client": "okta",
    }
    assert span.status.status_code == StatusCode.UNSET

    statements = [child for child in children(spans, span) if "db.system.name" in attributes(child)]
    assert statements, "the create ran SQL: it has database spans"
    insert = next(s for s in statements if attributes(s)["db.query.summary"] == "INSERT users")
    assert attributes(insert) == {
        "db.system.name": "postgresql",
        "db.namespace": f"t_{uuid.UUID(tenant_id).hex}",
        "db.operation.name": "INSERT",
        "db.query.summary": "INSERT users",
    }
    assert insert.kind == SpanKind.CLIENT
    assert insert.name == "INSERT users"
    # The in-memory rate limit check does no I/O: no span of its own.
    assert not [child for child in children(spans, span) if child.name == "scim.rate_limit"]


def statements_of(spans: Sequence[ReadableSpan], server: ReadableSpan) -> list[str]:
    """What a request's statements did, in the order they ran (`db.query.summary` each)."""
    found = [child for child in children(spans, server) if "db.system.name" in attributes(child)]
    return [attributes(child)["db.query.summary"] for child in sorted(found, key=start_time)]


async def statements_run(
    recorded: Recorded, route: str, request: Awaitable[_T]
) -> tuple[_T, list[str]]:
    """One request's answer and what its statements did (`statements_of`), the spans
    recorded before it cleared; ``route`` names its server span (`server_span`)."""
    recorded.spans.clear()
    answer = await request
    spans = await finished_spans(recorded, 1)
    return answer, statements_of(spans, server_span(spans, route))


async def user_patch_run(
    client: Client, tenant: TenantHandle, recorded: Recorded, url: str, *operations: Any
) -> tuple[Any, list[str]]:
    """A user PATCH's answer and what its statements did (`statements_run`)."""
    patching = client.patch(url, json=patch_body(*operations), headers=tenant.auth())
    return await statements_run(recorded, f"PATCH {USERS_ROUTE}/{{resource_id}}", patching)


def start_time(span: ReadableSpan) -> int:
    assert span.start_time is not None
    return span.start_time


async def test_a_create_claims_only_when_a_hidden_user_may_match(
    client: Client, tenant: TenantHandle, recorded: Recorded
) -> None:
    """The claim statement runs on every IdP create unless the state read says
    no hidden user matches; a deleted user's comeback still finds it. The
    common create is one statement: the state, with the probe (does a hidden
    user match?), and the user with its event if nothing stands in the way."""
    await tenant.create_user("warm@example.com")  # the token is checked and cached
    route = f"POST {USERS_ROUTE}"
    created, statements = await statements_run(
        recorded, route, tenant.create_user("lin@example.com", externalId="e-lin")
    )
    # The state, with the probe, then the user and its event, numbered.
    state_and_insert = "INSERT users event_sequence events"
    outbox = "INSERT events"  # numbered by the commit (`service.store.outbox`)
    assert statements == [state_and_insert]
    deleted = await client.delete(f"{tenant.scim}/Users/{created['id']}", headers=tenant.auth())
    assert deleted.status_code == 204

    restored, statements = await statements_run(
        recorded, route, tenant.create_user("lin@example.com", externalId="e-lin")
    )
    assert restored["id"] == created["id"], "the soft-deleted user is restored, not recreated"
    assert statements == [
        state_and_insert,  # which inserted nothing: the probe found the hidden user
        "SELECT users",
        "UPDATE users",
        "INSERT user_links",
        outbox,
    ]


async def test_the_common_create_answers_what_it_stored_without_reading_it_back(
    client: Client, tenant: TenantHandle, recorded: Recorded
) -> None:
    """A group created without members is one statement, as a user is: nothing can
    have joined it before its id is answered, so its members are not queried. The
    answer is what a read returns, for either type, projected as asked."""
    await tenant.create_user("warm@example.com")
    made, statements = await statements_run(
        recorded,
        "POST /scim/v2/{tenant}/Groups",
        client.post(
            f"{tenant.scim}/Groups",
            json={"displayName": "Pilots", "externalId": "g-pilots"},
            headers=tenant.auth(),
        ),
    )
    assert made.status_code == 201, made.text
    assert statements == [
        "INSERT groups event_sequence events"  # with the state
    ]
    user = await tenant.create_user("ada@example.com", name={"givenName": "Ada"})
    for kind, created in (("Groups", made.json()), ("Users", user)):
        read = await client.get(f"{tenant.scim}/{kind}/{created['id']}", headers=tenant.auth())
        assert created == read.json()
        assert made.headers["content-type"] == read.headers["content-type"]
    narrow = await client.post(
        f"{tenant.scim}/Users?attributes=userName",
        json={"userName": "bo@example.com", "title": "Pilot"},
        headers=tenant.auth(),
    )
    assert narrow.status_code == 201, narrow.text
    read = await client.get(
        f"{tenant.scim}/Users/{narrow.json()['id']}?attributes=userName", headers=tenant.auth()
    )
    assert narrow.json() == read.json()
    assert "title" not in narrow.json()


async def test_a_user_delete_counts_and_stores_its_events_in_one_statement(
    client: Client, tenant: TenantHandle, recorded: Recorded
) -> None:
    """A user's DELETE in a guarded tenant runs in a transaction: the user locked with
    the state read, the groups it leaves locked and the soft delete in one statement,
    then one statement that counts the deprovision on the guard row it locks and
    stores the events unless the guard holds them."""
    users = [(await tenant.create_user(f"d{n}@example.com"))["id"] for n in range(3)]
    members = [{"value": user} for user in users]
    made = await client.post(
        f"{tenant.scim}/Groups",
        json={"displayName": "D", "members": members},
        headers=tenant.auth(),
    )
    assert made.status_code == 201, made.text
    route = f"DELETE {USERS_ROUTE}/{{resource_id}}"
    for user in users[:2]:  # the first creates the tenant's guard row
        url = f"{tenant.scim}/Users/{user}"
        deleted, statements = await statements_run(
            recorded, route, client.delete(url, headers=tenant.auth())
        )
        assert deleted.status_code == 204
    assert statements == [
        "SELECT tenants role_mappings deprovision_guards",
        "DELETE group_members groups users",
        "UPDATE deprovision_guards events users",
    ]


async def test_a_group_delete_is_its_lock_then_one_statement_then_its_events(
    client: Client, tenant: TenantHandle, recorded: Recorded
) -> None:
    """A group's DELETE runs in a transaction: the group locked with the state read, the
    groups it is in locked, it taken out of them and deleted in one statement, then its
    events; its parent lists it no more, and its events name the parent it left."""
    child = await client.post(
        f"{tenant.scim}/Groups", json={"displayName": "Child"}, headers=tenant.auth()
    )
    child_id = child.json()["id"]
    parent = await client.post(
        f"{tenant.scim}/Groups",
        json={"displayName": "Parent", "members": [{"value": child_id}]},
        headers=tenant.auth(),
    )
    parent_id = parent.json()["id"]
    deleted, statements = await statements_run(
        recorded,
        f"DELETE {GROUPS_ROUTE}/{{resource_id}}",
        client.delete(f"{tenant.scim}/Groups/{child_id}", headers=tenant.auth()),
    )
    assert deleted.status_code == 204, deleted.text
    assert statements == [
        "SELECT tenants role_mappings deprovision_guards",
        "DELETE group_members groups containing",
        "INSERT events",
    ]
    read = await client.get(f"{tenant.scim}/Groups/{parent_id}", headers=tenant.auth())
    assert (read.json()["members"], read.headers["etag"]) == ([], 'W/"2"')
    found = [
        (event["type"], event["data"].get("group", {}).get("displayName"))
        for event in await all_events(client, tenant.slug)
    ][-2:]
    assert found == [("group.deleted", None), ("group.member_removed", "Parent")]


async def test_a_delete_finding_a_role_mapping_runs_again_taking_the_roles_lock_first(
    client: Client, tenant: TenantHandle, recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's delete in a tenant whose role mapping the process has not seen locks the
    user with the state, finds the mapping, undoes that and runs again taking the roles
    lock before the user (the order every mapped write takes them in); the next delete
    goes that way at once. Each user is deleted once, its event with its last roles."""
    warm, *users = [(await tenant.create_user(f"m{n}@example.com"))["id"] for n in range(3)]
    mapping = {"default_roles": ["member"], "groups": []}
    saved = await client.put(
        f"/admin/v1/tenants/{tenant.slug}/roles", json=mapping, headers=admin_headers()
    )
    assert saved.status_code == 200, saved.text
    # The first deprovision creates the tenant's guard row.
    assert (await client.delete(f"{tenant.scim}/Users/{warm}", headers=tenant.auth())).is_success
    monkeypatch.setattr(write_state, "_MAPPED", set())
    route = f"DELETE {USERS_ROUTE}/{{resource_id}}"
    found = []
    for user in users:
        url = f"{tenant.scim}/Users/{user}"
        deleted, statements = await statements_run(
            recorded, route, client.delete(url, headers=tenant.auth())
        )
        assert deleted.status_code == 204, deleted.text
        found.append(statements)
    locked_way = [
        "SELECT tenants role_mappings deprovision_guards",
        "SELECT users",
        "DELETE group_members groups users",
        "DELETE user_roles",
        "UPDATE deprovision_guards events users",
    ]
    assert found == [["SELECT tenants role_mappings deprovision_guards", *locked_way], locked_way]
    deletes = [
        (event["resource"]["id"], event["data"]["roles"])
        for event in await all_events(client, tenant.slug)
        if event["type"] == "user.deleted"
    ]
    assert deletes == [(user, ["member"]) for user in [warm, *users]]


async def test_a_mapped_tenants_writes_know_it_before_they_read_it(
    client: Client, tenant: TenantHandle, recorded: Recorded
) -> None:
    """Once a write found the tenant's role mapping, the next ones do not first read
    without a lock to learn they need one: a create is one statement, the state
    (taking the roles lock shared), the new user, its roles (the default ones: a new
    user is in no group) and its event, or a new group without members (in no one's
    roles, whatever its name) and its event; a member change of a group that grants roles
    reads the state under the roles lock, locks the group and the member's stored
    roles, changes the members, computes, stores and reports the member's new roles
    and stores the events in one statement; an update
    of that user, which this process just created, reads the state without a lock,
    takes the roles lock, updates the user, reads its stored roles and stores its
    event in one statement, as in a tenant without a mapping."""
    rules = [{"match": "displayName", "value": "A", "roles": ["a"]}]
    mapping = {"default_roles": ["member"], "groups": rules}
    saved = await client.put(
        f"/admin/v1/tenants/{tenant.slug}/roles", json=mapping, headers=admin_headers()
    )
    assert saved.status_code == 200, saved.text
    await tenant.create_user("warm@example.com")  # finds the mapping
    made, statements = await statements_run(
        recorded,
        "POST /scim/v2/{tenant}/Groups",
        client.post(f"{tenant.scim}/Groups", json={"displayName": "A"}, headers=tenant.auth()),
    )
    assert made.status_code == 201, made.text
    assert statements == ["INSERT groups event_sequence events"]
    recorded.spans.clear()
    ada = await tenant.create_user("ada@example.com")
    add = patch_body({"op": "add", "path": "members", "value": [{"value": ada["id"]}]})
    changed = await client.patch(
        f"{tenant.scim}/Groups/{made.json()['id']}", json=add, headers=tenant.auth()
    )
    assert changed.status_code in (200, 204), changed.text
    spans = await finished_spans(recorded, 2)
    assert statements_of(spans, server_span(spans, "POST /scim/v2/{tenant}/Users")) == [
        "INSERT users user_roles event_sequence",
    ]
    patched = server_span(spans, "PATCH /scim/v2/{tenant}/Groups/{resource_id}")
    assert statements_of(spans, patched) == ["INSERT group_members groups user_roles"]
    renamed, statements = await user_patch_run(
        client,
        tenant,
        recorded,
        f"{tenant.scim}/Users/{ada['id']}",
        {"op": "replace", "path": "displayName", "value": "Ada L."},
    )
    assert renamed.status_code == 200, renamed.text
    assert statements == ["UPDATE users event_sequence events"]
    [created, *_, updated] = [
        e
        for e in await all_events(client, tenant.slug)
        if e["data"].get("userName") == "ada@example.com"
    ]
    assert created["data"]["roles"] == ["member"]
    assert (updated["type"], updated["data"]["roles"]) == ("user.updated", ["a", "member"])
    assert await roles_of(client, tenant.slug, ada["id"]) == ["a", "member"]
    rename = patch_body({"op": "replace", "path": "displayName", "value": "B"})
    moved, done = await statements_run(
        recorded,
        f"PATCH {GROUPS_ROUTE}/{{resource_id}}",
        client.patch(
            f"{tenant.scim}/Groups/{made.json()['id']}", json=rename, headers=tenant.auth()
        ),
    )
    assert moved.status_code == 204, moved.text
    # The locked way at once (a rename may move roles): the state, then the group's lock,
    # with no read without a lock first.
    assert done[:2] == ["SELECT tenants role_mappings deprovision_guards", "SELECT groups"]
    assert await roles_of(client, tenant.slug, ada["id"]) == ["member"]


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each transaction block a request opens, as it opens it."""
    found: list[str] = []
    original = TracedConnection.transaction

    def watched(self: TracedConnection, **options: Any) -> Any:
        if request_context.current() is not None:  # not the webhook worker's
            found.append("transaction")
        return original(self, **options)

    monkeypatch.setattr(TracedConnection, "transaction", watched)
    return found


async def test_the_common_create_opens_no_transaction_block(
    client: Client, tenant: TenantHandle, opened: list[str]
) -> None:
    """Its one writing statement is atomic alone: BEGIN and COMMIT would be two more
    round trips. A user with a password hash to store is one transaction; a group's
    members go with it."""
    await tenant.create_user("solo@example.com")
    assert opened == []
    user = await tenant.create_user("pat@example.com", password="correct horse battery")
    assert opened == ["transaction"]
    for body in (
        {"displayName": "Solo"},
        {"displayName": "Duo", "members": [{"value": user["id"]}]},
    ):
        created = await client.post(f"{tenant.scim}/Groups", json=body, headers=tenant.auth())
        assert created.status_code == 201, created.text
    assert opened == ["transaction"]


GROUPS_ROUTE = "/scim/v2/{tenant}/Groups"


async def test_a_group_created_with_its_members_is_one_statement(
    client: Client, tenant: TenantHandle, recorded: Recorded, opened: list[str]
) -> None:
    """Google Workspace pushes a group with its members: one statement reads the state,
    finds the members, stores the group, its memberships and their events. The answer
    shows the members as a read does (a user by displayName, else userName; a group
    by its name) without reading them back. A member that is not found stores nothing."""
    ada = await tenant.create_user("ada@example.com", displayName="Ada L.")
    bo = await tenant.create_user("bo@example.com")
    sub = await client.post(
        f"{tenant.scim}/Groups", json={"displayName": "Sub"}, headers=tenant.auth()
    )
    members = [{"value": ada["id"]}, {"value": bo["id"]}, {"value": sub.json()["id"]}]
    made, statements = await statements_run(
        recorded,
        f"POST {GROUPS_ROUTE}",
        client.post(
            f"{tenant.scim}/Groups",
            json={"displayName": "Sales", "members": members},
            headers=tenant.auth(),
        ),
    )
    assert made.status_code == 201, made.text
    assert statements == [
        "INSERT groups group_members event_sequence"  # with the state
    ]
    assert opened == []
    read = await client.get(f"{tenant.scim}/Groups/{made.json()['id']}", headers=tenant.auth())
    assert made.json() == read.json()
    assert sorted(member["display"] for member in made.json()["members"]) == [
        "Ada L.",
        "Sub",
        "bo@example.com",
    ]

    before = await all_events(client, tenant.slug)
    lost = await client.post(
        f"{tenant.scim}/Groups",
        json={"displayName": "Lost", "members": [*members, {"value": str(uuid.uuid4())}]},
        headers=tenant.auth(),
    )
    assert lost.status_code == 400, lost.text
    assert lost.json()["scimType"] == "invalidValue"
    assert await all_events(client, tenant.slug) == before
    found = await client.get(
        f'{tenant.scim}/Groups?filter=displayName eq "Lost"', headers=tenant.auth()
    )
    assert found.json()["totalResults"] == 0


async def test_a_group_with_members_takes_the_locked_way_where_they_move_roles(
    client: Client, tenant: TenantHandle, recorded: Recorded
) -> None:
    """In a tenant that maps roles a group's members may gain some: its create takes
    the locked way, which computes them. Before a write of this process has read the
    mapping, the one statement tries first, finds it, and stores nothing."""
    ada = await tenant.create_user("ada@example.com")  # the process learns: no mapping
    rules = [{"match": "displayName", "value": "A", "roles": ["a"]}]
    mapping = {"default_roles": ["member"], "groups": rules}
    saved = await client.put(
        f"/admin/v1/tenants/{tenant.slug}/roles", json=mapping, headers=admin_headers()
    )
    assert saved.status_code == 200, saved.text
    for name, tried_first in (("A", True), ("B", False)):
        made, done = await statements_run(
            recorded,
            f"POST {GROUPS_ROUTE}",
            client.post(
                f"{tenant.scim}/Groups",
                json={"displayName": name, "members": [{"value": ada["id"]}]},
                headers=tenant.auth(),
            ),
        )
        assert made.status_code == 201, made.text
        assert (done[0] == "INSERT groups group_members event_sequence") is tried_first
    assert await roles_of(client, tenant.slug, ada["id"]) == ["a", "member"]


@pytest.mark.usefixtures("unguessed")
async def test_a_user_patch_is_its_change_and_event_in_one_statement_without_a_lock(
    client: Client, tenant: TenantHandle, recorded: Recorded, opened: list[str]
) -> None:
    """The user (one this process has not just seen) and the write's state are read in
    one statement, then the change and its event are one statement that takes effect
    only if the user is still at the version read: no transaction block, no lock
    held across round trips. So is a
    deactivation, which the deprovisioning guard counts in that statement, once the
    tenant's guard row exists; the first deactivation creates it in a transaction."""
    user = await tenant.create_user("noor@example.com", displayName="Noor")
    other = await tenant.create_user("sam@example.com", displayName="Sam")
    url = f"{tenant.scim}/Users/{user['id']}"
    response, statements = await user_patch_run(
        client, tenant, recorded, url, {"op": "replace", "path": "displayName", "value": "Noor A."}
    )
    assert response.status_code == 200, response.text
    assert statements == [
        # The write's state with the user and its groups, not locked, in one statement.
        "SELECT tenants role_mappings deprovision_guards",
        "UPDATE users event_sequence events",
    ]
    assert opened == []
    for number, deactivated in enumerate((user, other), 2):
        response = await client.patch(
            f"{tenant.scim}/Users/{deactivated['id']}",
            json=patch_body({"op": "replace", "path": "active", "value": False}),
            headers=tenant.auth(),
        )
        assert response.status_code == 200, response.text
        assert response.json()["active"] is False
        spans = await finished_spans(recorded, number)
        patches = [span for span in spans if span.name == f"PATCH {USERS_ROUTE}/{{resource_id}}"]
        statements = statements_of(spans, patches[-1])
        if number == 2:
            assert opened == ["transaction"]
            assert "INSERT deprovision_guards" in statements
        else:
            assert opened == ["transaction"], "the second deactivation opened a transaction"
            assert statements == [
                "SELECT tenants role_mappings deprovision_guards",
                "UPDATE users deprovision_guards event_sequence",
            ]


async def test_a_change_of_a_user_this_process_just_saw_is_one_statement(
    client: Client, tenant: TenantHandle, recorded: Recorded, opened: list[str], db: Pool
) -> None:
    """A user this process has just created, looked up or changed (`service.recent_users`)
    is changed by the statement that reads it with the write's state, at the version
    seen, with its event: Entra ID's lookup then PATCH, Okta's read then PUT. The
    answer and the event are the user as stored. A user changed elsewhere since it
    was seen costs what any change does: that statement reads it as it is, writing
    nothing, and the change follows in a second."""
    user = await tenant.create_user("kai@example.com", displayName="Kai")
    team = await client.post(
        f"{tenant.scim}/Groups",
        json={"displayName": "Team", "members": [{"value": user["id"]}]},
        headers=tenant.auth(),
    )
    assert team.status_code == 201, team.text
    url = f"{tenant.scim}/Users/{user['id']}"
    response, statements = await user_patch_run(
        client, tenant, recorded, url, {"op": "replace", "path": "displayName", "value": "Kai B."}
    )
    assert response.status_code == 200, response.text
    assert statements == ["UPDATE users event_sequence events"]
    patched = response.json()
    assert (patched["displayName"], patched["meta"]["version"]) == ("Kai B.", 'W/"2"')
    assert [group["value"] for group in patched["groups"]] == [team.json()["id"]]
    stored = await client.get(url, headers=tenant.auth())
    assert stored.json() == patched
    [*_, updated] = await all_events(client, tenant.slug)
    assert (updated["type"], updated["previous"]) == ("user.updated", {"displayName": "Kai"})
    assert updated["data"] == {k: v for k, v in patched.items() if k != "groups"}

    found = await client.get(
        f"{tenant.scim}/Users",
        params={"filter": 'userName eq "kai@example.com"'},
        headers=OKTA | tenant.auth(),
    )
    assert found.json()["totalResults"] == 1
    whole = {k: v for k, v in patched.items() if k not in ("id", "meta", "groups")}
    response, statements = await statements_run(
        recorded,
        f"PUT {USERS_ROUTE}/{{resource_id}}",
        client.put(url, json={**whole, "title": "Lead"}, headers=OKTA | tenant.auth()),
    )
    assert response.status_code == 200, response.text
    assert statements == ["UPDATE users event_sequence events"]
    assert (response.json()["title"], response.json()["meta"]["version"]) == ("Lead", 'W/"3"')

    schema = quoted_schema(await schema_of(db, tenant.slug))
    await db.execute(
        f"UPDATE {schema}.users SET version = version + 1, "
        """resource = resource || '{"nickName": "K"}' WHERE id = $1::uuid""",
        user["id"],
    )
    response, statements = await user_patch_run(
        client, tenant, recorded, url, {"op": "replace", "path": "displayName", "value": "Kai C."}
    )
    assert response.status_code == 200, response.text
    # Tried at the version seen, reading the user; then at the version read.
    assert statements == ["UPDATE users event_sequence events"] * 2
    changed = response.json()
    assert (changed["displayName"], changed["nickName"], changed["title"]) == (
        "Kai C.",
        "K",
        "Lead",
    )
    assert changed["meta"]["version"] == 'W/"5"'
    [*_, updated] = await all_events(client, tenant.slug)
    assert updated["previous"] == {"displayName": "Kai B."}
    assert opened == []


async def test_a_change_of_a_user_created_the_locked_way_is_one_statement(
    client: Client, tenant: TenantHandle, recorded: Recorded
) -> None:
    """A create that takes the locked way (a password to hash: Okta's, with password
    sync on) notes its user too, so the IdP's next change of it is one statement."""
    created = await client.post(
        f"{tenant.scim}/Users",
        json={"userName": "pat@example.com", "password": "correct horse battery"},
        headers=OKTA | tenant.auth(),
    )
    assert created.status_code == 201, created.text
    url = f"{tenant.scim}/Users/{created.json()['id']}"
    response, statements = await user_patch_run(
        client, tenant, recorded, url, {"op": "replace", "path": "displayName", "value": "Pat"}
    )
    assert response.status_code == 200, response.text
    assert statements == ["UPDATE users event_sequence events"]
    assert (await client.get(url, headers=tenant.auth())).json() == response.json()


async def test_a_change_of_a_user_just_seen_where_roles_are_mapped_is_one_statement(
    client: Client, tenant: TenantHandle, recorded: Recorded, db: Pool
) -> None:
    """In a tenant that maps roles, a change of a user this process just saw is one
    statement too: it takes the roles lock, and its event shows the user's stored
    roles, as a change read first does. Where the process wrongly expects a
    mapping (the hint is per process), the statement writes nothing and the change
    goes on from what it read, its event without roles."""
    mapping = {"default_roles": ["member"]}
    saved = await client.put(
        f"/admin/v1/tenants/{tenant.slug}/roles", json=mapping, headers=admin_headers()
    )
    assert saved.status_code == 200, saved.text
    user = await tenant.create_user("rio@example.com")
    url = f"{tenant.scim}/Users/{user['id']}"
    assert (await client.get(url, headers=tenant.auth())).status_code == 200
    response, statements = await user_patch_run(
        client, tenant, recorded, url, {"op": "replace", "path": "displayName", "value": "Rio"}
    )
    assert response.status_code == 200, response.text
    assert statements == ["UPDATE users event_sequence events"]
    [*_, updated] = await all_events(client, tenant.slug)
    assert updated["data"] == {
        **{k: v for k, v in response.json().items() if k != "groups"},
        "roles": ["member"],
    }

    removed = await client.delete(f"/admin/v1/tenants/{tenant.slug}/roles", headers=admin_headers())
    assert removed.status_code == 200, removed.text
    tenant_id = await db.fetchval(
        "SELECT id FROM scim_control.tenants WHERE slug = $1", tenant.slug
    )
    assert write_state.maps_roles(tenant_id)  # no write has read the state since
    response, statements = await user_patch_run(
        client, tenant, recorded, url, {"op": "replace", "path": "displayName", "value": "Rio B."}
    )
    assert response.status_code == 200, response.text
    assert len(statements) == 2
    [*_, updated] = await all_events(client, tenant.slug)
    assert "roles" not in updated["data"]
    assert updated["data"]["displayName"] == "Rio B."


@pytest.mark.parametrize("mapped", [False, True], ids=["unmapped", "mapped"])
async def test_a_deactivation_of_a_user_just_seen_is_one_statement_the_guard_counts(
    client: Client, tenant: TenantHandle, recorded: Recorded, opened: list[str], mapped: bool
) -> None:
    """A deactivation of a user this process just read is tried by the statement that
    reads it again too: the guard counts it there and stores its event, or holds it
    when that count trips the guard, as the deactivation's second statement does.
    Once the process has seen the trip, a deactivation is read first, as any write
    while the guard holds."""
    if mapping := {"default_roles": ["member"]} if mapped else None:
        saved = await client.put(
            f"/admin/v1/tenants/{tenant.slug}/roles", json=mapping, headers=admin_headers()
        )
        assert saved.status_code == 200, saved.text
    await configure_guard(client, tenant.slug, threshold_percent=30, min_users=1)
    users = [(await tenant.create_user(f"g{n}@example.com"))["id"] for n in range(4)]
    opened.clear()
    for n, user in enumerate(users[:2], start=1):
        url = f"{tenant.scim}/Users/{user}"
        assert (await client.get(url, headers=tenant.auth())).status_code == 200
        response, statements = await user_patch_run(
            client, tenant, recorded, url, {"op": "replace", "path": "active", "value": False}
        )
        assert response.status_code == 200, response.text
        assert statements == ["UPDATE users deprovision_guards event_sequence"]
        assert response.json()["active"] is False
        assert (await client.get(url, headers=tenant.auth())).json() == response.json()
        state = await guard_of(client, tenant.slug)
        assert (state["window_users"], state["window_deprovisions"]) == (4, n)
    assert state["tripped_at"] is not None  # by the second: 2 of 4 users
    [*_, stored] = await all_events(client, tenant.slug)
    assert (stored["type"], stored["resource"]["id"]) == ("user.deactivated", users[0])
    assert stored["data"].get("roles") == (["member"] if mapped else None)
    held = await client.get(f"/admin/v1/tenants/{tenant.slug}/guard/held", headers=admin_headers())
    assert [(e["type"], e["resource"]["id"]) for e in held.json()["events"]] == [
        ("user.deactivated", users[1])
    ]
    assert opened == []
    for user in users[2:]:  # this process counted the trip
        url = f"{tenant.scim}/Users/{user}"
        assert (await client.get(url, headers=tenant.auth())).status_code == 200
        response, statements = await user_patch_run(
            client, tenant, recorded, url, {"op": "replace", "path": "active", "value": False}
        )
        assert response.status_code == 200, response.text
        assert len(statements) == 2
    assert opened == []


async def test_a_user_patch_that_changes_nothing_is_answered_from_its_read(
    client: Client, tenant: TenantHandle, recorded: Recorded, opened: list[str]
) -> None:
    """IdPs resend what a user already has (a deactivation of an inactive user, a
    rename to the same name): one statement reads the user and the state, nothing
    is written, no lock is taken, no event stored, and the version stays. It took
    the locked way: BEGIN, the user locked across four more round trips, COMMIT."""
    user = await tenant.create_user("ola@example.com", displayName="Ola", active=False)
    url = f"{tenant.scim}/Users/{user['id']}"
    events_before = await all_events(client, tenant.slug)
    recorded.spans.clear()
    changes: tuple[dict[str, Any], ...] = (
        {"op": "replace", "path": "active", "value": False},
        {"op": "replace", "value": {"displayName": "Ola", "active": False}},
    )
    for number, change in enumerate(changes, 1):
        response = await client.patch(url, json=patch_body(change), headers=tenant.auth())
        assert response.status_code == 200, response.text
        assert response.json() == user
        assert response.headers["etag"] == user["meta"]["version"]
        spans = await finished_spans(recorded, number)
        patches = [span for span in spans if span.name == f"PATCH {USERS_ROUTE}/{{resource_id}}"]
        assert statements_of(spans, patches[-1]) == [
            "SELECT tenants role_mappings deprovision_guards"
        ]
    assert opened == []
    assert await all_events(client, tenant.slug) == events_before
    stale = await client.patch(
        url,
        json=patch_body({"op": "replace", "path": "active", "value": False}),
        headers=tenant.auth() | {"If-Match": 'W/"7"'},
    )
    assert stale.status_code == 412, stale.text


@pytest.mark.usefixtures("unguessed")
async def test_a_user_put_is_its_change_and_event_in_one_statement_without_a_lock(
    client: Client, tenant: TenantHandle, recorded: Recorded, opened: list[str]
) -> None:
    """Okta updates a user with a PUT of the whole user, on every profile push: as a
    PATCH of a user this process has not just seen, it is read with the state, then
    one statement stores the change and its
    event if the user is still at the version read; a PUT repeating what is stored
    writes nothing. One that sets a password goes the locked way (its hash is
    stored apart)."""
    user = await tenant.create_user("ines@example.com", displayName="Ines")
    url = f"{tenant.scim}/Users/{user['id']}"
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "ines@example.com",
        "displayName": "Ines B.",
        "active": True,
    }
    route = f"PUT {USERS_ROUTE}/{{resource_id}}"
    response, statements = await statements_run(
        recorded, route, client.put(url, json=body, headers=tenant.auth())
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["displayName"] == "Ines B."
    assert updated["meta"]["version"] == 'W/"2"'
    assert statements == [
        "SELECT tenants role_mappings deprovision_guards",
        "UPDATE users event_sequence events",
    ]
    events = await all_events(client, tenant.slug)
    assert [event["type"] for event in events[-2:]] == ["user.created", "user.updated"]

    again, statements = await statements_run(
        recorded, route, client.put(url, json=body, headers=tenant.auth())
    )
    assert again.status_code == 200, again.text
    assert again.json() == updated
    assert statements == ["SELECT tenants role_mappings deprovision_guards"]
    assert await all_events(client, tenant.slug) == events
    assert opened == []

    with_password = await client.put(
        url, json=body | {"password": "correct horse battery"}, headers=tenant.auth()
    )
    assert with_password.status_code == 200, with_password.text
    assert opened == ["transaction"]
    stale = await client.put(url, json=body, headers=tenant.auth() | {"If-Match": 'W/"1"'})
    assert stale.status_code == 412, stale.text


async def test_a_group_rename_is_its_change_and_event_in_one_statement_without_a_lock(
    client: Client, tenant: TenantHandle, recorded: Recorded, opened: list[str]
) -> None:
    """Entra and JumpCloud rename a group with a PATCH of its displayName: read with the
    state without a lock, then one statement stores the change and its event if the
    group is still at the version read (its If-Match checked against that version).
    One that also changes members goes the locked way."""
    made = await client.post(
        f"{tenant.scim}/Groups", json={"displayName": "Ops"}, headers=tenant.auth()
    )
    url = f"{tenant.scim}/Groups/{made.json()['id']}"
    rename = patch_body({"op": "replace", "path": "displayName", "value": "Operations"})
    response, statements = await statements_run(
        recorded,
        f"PATCH {GROUPS_ROUTE}/{{resource_id}}",
        client.patch(url, json=rename, headers=tenant.auth() | {"If-Match": 'W/"1"'}),
    )
    assert response.status_code == 204, response.text
    assert response.headers["etag"] == 'W/"2"'
    assert statements == [
        "SELECT tenants role_mappings deprovision_guards",
        "UPDATE groups event_sequence events",
    ]
    assert opened == []
    read = await client.get(url, headers=tenant.auth())
    assert (read.json()["displayName"], read.headers["etag"]) == ("Operations", 'W/"2"')
    [*_, renamed] = await all_events(client, tenant.slug)
    assert (renamed["type"], renamed["previous"]) == ("group.updated", {"displayName": "Ops"})
    assert renamed["data"] == {k: v for k, v in read.json().items() if k != "members"}

    stale = await client.patch(url, json=rename, headers=tenant.auth() | {"If-Match": 'W/"1"'})
    assert stale.status_code == 412, stale.text
    user = await tenant.create_user("lee@example.com")
    both = patch_body(
        {"op": "replace", "path": "displayName", "value": "Ops"},
        {"op": "add", "path": "members", "value": [{"value": user["id"]}]},
    )
    changed = await client.patch(url, json=both, headers=tenant.auth())
    assert changed.status_code == 204, changed.text
    assert opened == ["transaction"]


async def test_a_member_patch_is_one_statement_without_a_transaction_block(
    client: Client, tenant: TenantHandle, recorded: Recorded, opened: list[str]
) -> None:
    """While a group is locked, each round trip is one other changes of its members
    wait for: one statement reads the state, locks the group, adds the members, bumps
    its version and stores the events, from the lock to its commit. It read the group
    and the state in a statement of their own first."""
    user = await tenant.create_user("kim@example.com")
    created = await client.post(
        f"{tenant.scim}/Groups", json={"displayName": "Ops"}, headers=tenant.auth()
    )
    group = created.json()["id"]
    route = "PATCH /scim/v2/{tenant}/Groups/{resource_id}"
    url = f"{tenant.scim}/Groups/{group}"
    add = patch_body({"op": "add", "path": "members", "value": [{"value": user["id"]}]})
    response, statements = await statements_run(
        recorded, route, client.patch(url, json=add, headers=tenant.auth())
    )
    assert response.status_code == 204, response.text
    assert response.headers["etag"] == 'W/"2"'
    assert statements == ["INSERT group_members groups event_sequence"]
    remove = patch_body({"op": "remove", "path": f'members[value eq "{user["id"]}"]'})
    response, statements = await statements_run(
        recorded, route, client.patch(url, json=remove, headers=tenant.auth())
    )
    assert response.status_code == 204, response.text
    assert statements == ["DELETE group_members groups event_sequence"]
    assert opened == []


async def test_a_member_patch_while_the_guard_holds_is_one_statement(
    client: Client,
    tenant: TenantHandle,
    recorded: Recorded,
    opened: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the guard is tripped, one statement locks the group, changes the members,
    shares the guard row and stores their events, holding those of held members; it
    took a read of the group with the state first, before that a transaction block
    (the group's lock, the guard's, the change: four round trips with the commit),
    and the locked way before that, the group held across eight. The process whose
    count tripped the guard knows it; in another, the first PATCH after the trip
    learns of it from the common statement, which writes nothing."""
    await configure_guard(client, tenant.slug, threshold_percent=20, min_users=5)
    users = [(await tenant.create_user(f"h{n}@example.com"))["id"] for n in range(6)]
    created = await client.post(
        f"{tenant.scim}/Groups", json={"displayName": "Held"}, headers=tenant.auth()
    )
    group = created.json()["id"]
    for user in users[:2]:
        await deactivate(tenant, user)  # the second trips the guard
    opened.clear()
    change = "INSERT group_members groups event_sequence"
    first = [
        change,  # the common statement, which finds the guard tripped and does nothing
        change,  # the guard row shared, events held or not
    ]
    route = "PATCH /scim/v2/{tenant}/Groups/{resource_id}"
    steps = [([users[3]], first[1:]), ([users[5]], first), ([users[1], users[4]], first[1:])]
    for n, (added, statements) in enumerate(steps):
        if n == 1:  # as in a process that did not count the trip
            monkeypatch.setattr(write_state, "_TRIPPED", set())
        response, ran = await statements_run(
            recorded,
            route,
            client.patch(
                f"{tenant.scim}/Groups/{group}",
                json=patch_body(
                    {"op": "add", "path": "members", "value": [{"value": u} for u in added]}
                ),
                headers=tenant.auth(),
            ),
        )
        assert response.status_code == 204, response.text
        assert ran == statements
    assert opened == []


@pytest.mark.usefixtures("unguessed")
async def test_a_user_write_while_the_guard_holds_is_held_or_not_in_one_statement(
    client: Client, tenant: TenantHandle, recorded: Recorded, opened: list[str]
) -> None:
    """Once the guard is tripped, a deactivation of a user this process has not just seen
    is still read with the state, then counted and held by the statement that
    changes the user, and any other change of
    a user is held, or not, by its own statement too. Both took the locked way, the
    tenant's guard row locked across three or four round trips, for which every
    other deprovision and every write about a held user waited."""
    await configure_guard(client, tenant.slug, threshold_percent=20, min_users=5)
    users = [(await tenant.create_user(f"d{n}@example.com"))["id"] for n in range(6)]
    for user in users[:2]:
        await deactivate(tenant, user)  # the second trips the guard
    opened.clear()
    route = f"PATCH {USERS_ROUTE}/{{resource_id}}"
    _, statements = await statements_run(recorded, route, deactivate(tenant, users[3]))
    assert statements == [
        "SELECT tenants role_mappings deprovision_guards",
        "UPDATE users deprovision_guards event_sequence",  # counted, and held
    ]
    assert opened == []
    for user in (users[3], users[4]):  # held, then not held
        response, statements = await user_patch_run(
            client,
            tenant,
            recorded,
            f"{tenant.scim}/Users/{user}",
            {"op": "replace", "path": "displayName", "value": "Renamed"},
        )
        assert response.status_code == 200, response.text
        assert statements == [
            "SELECT tenants role_mappings deprovision_guards",
            "UPDATE users event_sequence events",  # the guard row shared: read, not written
        ]
    assert opened == []
    held = await client.get(f"/admin/v1/tenants/{tenant.slug}/guard/held", headers=admin_headers())
    assert [(e["type"], e["resource"]["id"]) for e in held.json()["events"]] == [
        ("user.deactivated", users[1]),
        ("user.deactivated", users[3]),
        ("user.updated", users[3]),
    ]


async def test_patch_counts_its_operations(
    client: Client, tenant: TenantHandle, recorded: Recorded
) -> None:
    user = await tenant.create_user("grace@example.com")
    recorded.spans.clear()
    response = await client.patch(
        f"{tenant.scim}/Users/{user['id']}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "replace", "path": "displayName", "value": "Grace"},
                {"op": "replace", "path": "active", "value": False},
            ],
        },
        headers=tenant.auth() | {"User-Agent": "Microsoft.Identity.Provisioning"},
    )
    assert response.status_code == 200, response.text
    span = server_span(await finished_spans(recorded, 1), f"PATCH {USER_ROUTE}")
    found = attributes(span)
    assert found["scim.operation"] == "patch"
    assert found["scim.patch.operations"] == 2
    assert found["scim.client"] == "entra"
    assert found["http.route"] == USER_ROUTE


async def test_list_reports_its_result_count(
    client: Client, tenant: TenantHandle, recorded: Recorded
) -> None:
    for name in ("a@example.com", "b@example.com", "c@example.com"):
        await tenant.create_user(name)
    recorded.spans.clear()
    response = await client.get(f"{tenant.scim}/Users?count=2", headers=tenant.auth())
    assert response.status_code == 200
    span = server_span(await finished_spans(recorded, 1), f"GET {USERS_ROUTE}")
    found = attributes(span)
    assert found["scim.operation"] == "list"
    assert found["scim.list.result_count"] == 2
    assert found["scim.list.total_results"] == 3
    # No User-Agent an IdP sends, so the tenant's configured IdP type names the client.
    assert found["scim.client"] == "generic"


async def test_conflict_carries_the_scim_type(
    client: Client, tenant: TenantHandle, recorded: Recorded
) -> None:
    await tenant.create_user("taken@example.com")
    recorded.spans.clear()
    response = await client.post(
        f"{tenant.scim}/Users", json={"userName": "taken@example.com"}, headers=tenant.auth()
    )
    assert response.status_code == 409
    span = server_span(await finished_spans(recorded, 1), f"POST {USERS_ROUTE}")
    assert attributes(span)["scim.error.type"] == "uniqueness"
    assert attributes(span)["http.response.status_code"] == 409
    assert "error.type" not in attributes(span), "a 4xx is the client's error, not the span's"
    assert span.status.status_code == StatusCode.UNSET


async def test_unauthenticated_request_has_no_tenant_id(
    client: Client, tenant: TenantHandle, recorded: Recorded
) -> None:
    response = await client.get(
        f"{tenant.scim}/Users", headers={"Authorization": "Bearer scimsk_wrong"}
    )
    assert response.status_code == 401
    span = server_span(await finished_spans(recorded, 1), f"GET {USERS_ROUTE}")
    found = attributes(span)
    assert found["http.response.status_code"] == 401
    assert found["scim.tenant.slug"] == tenant.slug
    assert "scim.tenant.id" not in found
    assert not children(recorded.spans.get_finished_spans(), span), (
        "a malformed token is refused before any SQL"
    )


async def test_rate_limited_request(
    client: Client, tenant: TenantHandle, recorded: Recorded
) -> None:
    limited = await client.put(
        f"/admin/v1/tenants/{tenant.slug}/rate-limit",
        json={"per_second": 1, "burst": 1},
        headers=admin_headers(),
    )
    assert limited.status_code == 200, limited.text
    recorded.spans.clear()
    statuses = [
        (await client.get(f"{tenant.scim}/Users", headers=tenant.auth())).status_code
        for _ in range(3)
    ]
    assert 429 in statuses, statuses
    spans = await finished_spans(recorded, 3)
    refused = [
        span
        for span in spans
        if span.kind == SpanKind.SERVER and attributes(span)["http.response.status_code"] == 429
    ]
    assert refused
    found = attributes(refused[0])
    assert found["scim.tenant.slug"] == tenant.slug
    assert "scim.tenant.id" in found


async def test_unknown_route_is_traced_without_a_route(client: Client, recorded: Recorded) -> None:
    recorded.spans.clear()
    response = await client.get("/no/such/thing")
    assert response.status_code == 404
    [span] = [s for s in await finished_spans(recorded, 1) if s.kind == SpanKind.SERVER]
    assert span.name == "GET"
    assert "http.route" not in attributes(span)


async def test_caller_traceparent_makes_the_server_span_a_child(
    client: Client, tenant: TenantHandle, recorded: Recorded
) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    response = await client.get(
        f"{tenant.scim}/Users",
        headers=tenant.auth() | {"traceparent": f"00-{trace_id}-{parent_id}-01"},
    )
    assert response.status_code == 200
    span = server_span(await finished_spans(recorded, 1), f"GET {USERS_ROUTE}")
    assert ids(span)[0] == trace_id
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == parent_id


async def test_no_secret_in_any_span_or_log_line(
    client: Client, tenant: TenantHandle, recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    issued = await client.post(f"/admin/v1/tenants/{tenant.slug}/tokens", headers=admin_headers())
    token = issued.json()["token"]
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    created = await client.post(
        f"{tenant.scim}/Users",
        json={"userName": "secretive@example.com", "password": PASSWORD},
        headers=auth,
    )
    assert created.status_code == 201
    await client.patch(
        f"{tenant.scim}/Users/{created.json()['id']}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "password", "value": PASSWORD}],
        },
        headers=auth,
    )
    await client.get(f'{tenant.scim}/Users?filter=password eq "{PASSWORD}"', headers=auth)
    await finished_spans(recorded, 4)

    exported: list[str] = []
    for span in recorded.spans.get_finished_spans():
        exported.append(span.name)
        exported.extend(f"{key}={value!r}" for key, value in attributes(span).items())
        for event in span.events:
            exported.append(event.name)
            exported.extend(f"{key}={value!r}" for key, value in (event.attributes or {}).items())
        exported.extend(str(value) for value in span.resource.attributes.values())
    formatter = JsonFormatter()
    # httpx is the test's client, which logs the URLs it sends: not the service's log.
    lines = [formatter.format(record) for record in caplog.records if record.name != "httpx"]
    access = [line for line in lines if '"logger":"scim.access"' in line]
    assert len(access) >= 4, lines
    for text in exported + lines:
        assert token not in text
        assert PASSWORD not in text
        assert token[:20] not in text


async def test_access_log_line_per_request(
    client: Client, tenant: TenantHandle, recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="scim.access")
    response = await client.post(
        f"{tenant.scim}/Users", json={"userName": 7}, headers=tenant.auth() | OKTA
    )
    assert response.status_code == 400
    span = server_span(await finished_spans(recorded, 1), f"POST {USERS_ROUTE}")
    [record] = [r for r in caplog.records if r.name == "scim.access"]
    assert record.levelno == logging.INFO
    line = msgspec.json.decode(JsonFormatter().format(record))
    assert (line["trace_id"], line["span_id"]) == ids(span)
    assert line["tenant"] == tenant.slug
    assert line["method"] == "POST"
    assert line["route"] == USERS_ROUTE
    assert line["status"] == 400
    assert line["scimType"] == response.json()["scimType"]
    assert line["client"] == "okta"
    assert line["duration_ms"] > 0


def metric_points(recorded: Recorded, name: str) -> list[tuple[dict[str, Any], Any]]:
    data = recorded.metrics.get_metrics_data()
    assert data is not None
    return [
        (dict(point.attributes or {}), point)
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


async def test_metrics_by_tenant_operation_and_status(
    client: Client, tenant: TenantHandle, recorded: Recorded
) -> None:
    user = await tenant.create_user("metered@example.com")
    await client.post(
        f"{tenant.scim}/Users", json={"userName": "metered@example.com"}, headers=tenant.auth()
    )
    await client.patch(
        f"{tenant.scim}/Users/{user['id']}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": False}],
        },
        headers=tenant.auth(),
    )
    await client.delete(f"{tenant.scim}/Users/{user['id']}", headers=tenant.auth())
    await finished_spans(recorded, 4)

    requests = {
        (labels["operation"], labels["status_code"]): point.value
        for labels, point in metric_points(recorded, "scim.requests")
        if labels["tenant"] == tenant.slug
    }
    expected = {("create", "201"), ("create", "409"), ("patch", "200"), ("delete", "204")}
    assert requests == dict.fromkeys(expected, 1)
    durations = [
        (labels, point)
        for labels, point in metric_points(recorded, "scim.request.duration")
        if labels["tenant"] == tenant.slug
    ]
    assert {labels["status_class"] for labels, _ in durations} == {"2xx", "4xx"}
    assert sum(point.count for _, point in durations) == 4
    provisioned = {
        labels["action"]: point.value
        for labels, point in metric_points(recorded, "scim.provisioning.operations")
        if labels["tenant"] == tenant.slug
    }
    assert provisioned == {"created": 1, "updated": 1, "deactivated": 1, "deleted": 1}
    pool = {
        labels["db.client.connection.state"]: point.value
        for labels, point in metric_points(recorded, "db.client.connection.count")
    }
    assert set(pool) == {"idle", "used"}
    assert sum(pool.values()) >= 1
    [(_, active)] = metric_points(recorded, "scim.tenants.active")
    assert active.value >= 1


async def test_user_changes_are_counted_by_how_they_found_the_user(
    client: Client,
    tenant: TenantHandle,
    recorded: Recorded,
    db: Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """How often IdP writes find their user in this process's memory, per tenant: what
    tells an operator whether the one-statement change serves them (`recent_users`)."""
    user = await tenant.create_user("counted@example.com")
    url = f"{tenant.scim}/Users/{user['id']}"

    async def rename(to: str) -> None:
        response = await client.patch(
            url,
            json=patch_body({"op": "replace", "path": "displayName", "value": to}),
            headers=tenant.auth(),
        )
        assert response.status_code == 200, response.text

    await rename("Seen")
    schema = quoted_schema(await schema_of(db, tenant.slug))
    await db.execute(
        f"UPDATE {schema}.users SET version = version + 1 WHERE id = $1::uuid", user["id"]
    )
    await rename("Stale")
    await rename("Seen again")
    monkeypatch.setattr(recent_users, "take", lambda schema, user_id: None)
    await rename("Read")
    found = {
        labels["found"]: point.value
        for labels, point in metric_points(recorded, "scim.user_changes")
        if labels["tenant"] == tenant.slug
    }
    assert found == {"seen": 2, "stale": 1, "read": 1}


async def scrape(client: Client) -> dict[str, Any]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


async def test_prometheus_endpoint_serves_the_same_metrics(
    client: Client, tenant: TenantHandle
) -> None:
    await tenant.create_user("scraped@example.com")
    await client.get(f"{tenant.scim}/Users", headers=tenant.auth())
    families = await scrape(client)

    requests = [
        sample
        for sample in families["scim_requests"].samples
        if sample.labels.get("tenant") == tenant.slug
    ]
    assert {(s.labels["operation"], s.labels["status_code"], s.value) for s in requests} == {
        ("create", "201", 1.0),
        ("list", "200", 1.0),
    }
    assert all(s.name == "scim_requests_total" for s in requests)
    buckets = [
        sample
        for sample in families["scim_request_duration_seconds"].samples
        if sample.name.endswith("_bucket") and sample.labels.get("tenant") == tenant.slug
    ]
    assert {sample.labels["le"] for sample in buckets} >= {"0.005", "1.0", "+Inf"}
    http = families["http_server_request_duration_seconds"].samples
    assert any(sample.labels.get("http_route") == USERS_ROUTE for sample in http)
    assert "db_client_connection_count" in families
    assert "scim_tenants_active" in families


DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# Series Prometheus makes itself rather than scraping them from the service.
PROMETHEUS_OWN = frozenset({"up"})
_PROMQL_WORDS = frozenset(
    {"by", "without", "and", "or", "unless", "on", "ignoring", "bool", "offset"}
    | {"group_left", "group_right", "inf", "nan"}
)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (a PromQL reader just good enough for ours)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values and strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([A-Za-z_:][\w:]*)\b(?!\s*\()", text):
        if match[1].lower() not in _PROMQL_WORDS:
            names.add(match[1])
    return names


def dashboard_and_rule_queries() -> dict[str, str]:
    queries = {}
    for path in sorted((DEPLOY / "grafana").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                queries[f"{path.name}: {panel['title']}"] = target["expr"]
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                inner = re.fullmatch(r"label_values\((\w+),\s*\w+\)", variable["query"])
                assert inner, variable["query"]
                queries[f"{path.name}: ${variable['name']}"] = inner[1]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            queries[f"alerts.yml: {rule['alert']}"] = rule["expr"]
    return queries


def test_promql_reader() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, operation) (rate(a_bucket{x="y",z=~"1|2"}[5m])))'
        " / on(instance) b_total and c > 0.4 offset 5m"
    )
    assert promql_metric_names(expr) == {"a_bucket", "b_total", "c"}


async def test_dashboards_and_alerts_query_only_exported_metrics(
    client: Client, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await tenant.create_user("dashboarded@example.com")
    await client.get(f"{tenant.scim}/Users", headers=tenant.auth())
    renamed = await client.patch(
        f"{tenant.scim}/Users/{user['id']}",
        json=patch_body({"op": "replace", "path": "displayName", "value": "Dashboarded"}),
        headers=tenant.auth(),
    )
    assert renamed.status_code == 200, renamed.text
    # A member change PostgreSQL ends once as a deadlock's victim, then made.
    group = await client.post(
        f"{tenant.scim}/Groups", json={"displayName": "Dashboarded"}, headers=tenant.auth()
    )
    change_if = groups.change_if
    ended: list[object] = []

    async def deadlocked_once(*args: Any, **kwargs: Any) -> Any:
        if not ended:
            ended.append(args)
            raise asyncpg.DeadlockDetectedError("deadlock detected")
        return await change_if(*args, **kwargs)

    monkeypatch.setattr(groups, "change_if", deadlocked_once)
    added = await client.patch(
        f"{tenant.scim}/Groups/{group.json()['id']}",
        json=patch_body({"op": "add", "path": "members", "value": [{"value": user["id"]}]}),
        headers=tenant.auth(),
    )
    assert added.status_code in (200, 204), added.text
    assert ended
    assert (await client.get("/readyz")).status_code == 200
    families = await scrape(client)
    exported = {sample.name for family in families.values() for sample in family.samples}
    queries = dashboard_and_rule_queries()
    assert len(queries) > 20
    for where, expr in queries.items():
        names = promql_metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        unknown = names - exported - PROMETHEUS_OWN
        assert not unknown, f"{where} queries {sorted(unknown)}, which /metrics does not export"


def test_collector_and_scrape_configs_are_complete() -> None:
    collector = yaml.safe_load((DEPLOY / "otel-collector" / "config.yaml").read_text())
    pipelines = collector["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics"}
    for pipeline in pipelines.values():
        assert pipeline["receivers"] == ["otlp"]
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline[kind]) <= set(collector[kind])
    scrape_config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert scrape_config["rule_files"] == ["alerts.yml"]
    assert {job["metrics_path"] for job in scrape_config["scrape_configs"]} == {"/metrics"}
