"""The event outbox and the events API: one event per committed change, none for a failed one."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import re
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
import msgspec
import pytest

from observability import instruments
from service import events, provisioning
from service.postgres import Pool, create_pool
from service.scim import resources
from service.scim.errors import ScimError
from service.scim.schemas import ENTERPRISE_USER
from service.settings import Settings
from service.store import groups, lifecycle, outbox
from service.store.resources import GROUPS, USERS, Table
from service.webhooks.worker import WebhookWorker
from tenants import notifications
from tenants.migrations import LATEST_VERSION, apply_pending
from tenants.schemas import quoted_schema
from tests.support.application import (
    Client,
    TenantHandle,
    admin_headers,
    make_tenant,
    schema_of,
    seen_by_the_service,
)
from tests.support.concurrency import finished, pause_first_call, paused_inside, still_waiting

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


async def all_events(client: Client, slug: str, after: str | None = None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = after
    while True:
        params = {"limit": "1000"} | ({"after": cursor} if cursor else {})
        response = await client.get(
            f"/admin/v1/tenants/{slug}/events", params=params, headers=admin_headers()
        )
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["events"]
        if not page["events"]:
            return found
        cursor = page["next"]


async def announced_scope(db: Pool, tenant: TenantHandle) -> provisioning.Scope:
    """The tenant's scope for calling `provisioning` on this loop's pool, as a request
    has it: its tenant id and an announcer."""
    tenant_id = await db.fetchval(
        "SELECT id FROM scim_control.tenants WHERE slug = $1", tenant.slug
    )
    return provisioning.Scope(
        schema=await schema_of(db, tenant.slug),
        base_url="http://x",
        tenant_id=tenant_id,
        announcer=outbox.Announcer(db),
    )


class Feed:
    """The tenant's events from where the last read stopped."""

    def __init__(self, client: Client, slug: str) -> None:
        self.client, self.slug = client, slug
        self.cursor: str | None = None

    async def new(self) -> list[dict[str, Any]]:
        found = await all_events(self.client, self.slug, self.cursor)
        if found:
            self.cursor = str(found[-1]["sequence"])
        return found

    async def role_changes(self) -> dict[str, tuple[list[str], list[str]]]:
        """userName -> (previous roles, roles) of each `user.roles_changed` since the last read."""
        changes = {}
        for event in await self.new():
            if event["type"] == "user.roles_changed":
                assert event["data"]["userName"] not in changes, "one event per user and change"
                changes[event["data"]["userName"]] = (
                    event["previous"]["roles"],
                    event["data"]["roles"],
                )
        return changes


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


async def test_create_records_one_event_with_the_resource(
    client: Client, tenant: TenantHandle
) -> None:
    user = await tenant.create_user("ada@example.com", displayName="Ada")
    [event] = await all_events(client, tenant.slug)
    assert event["type"] == "user.created"
    assert event["sequence"] == 1
    assert event["resource"] == {"type": "User", "id": user["id"]}
    assert event["tenant"]["slug"] == tenant.slug
    assert event["data"]["userName"] == "ada@example.com"
    assert event["data"]["id"] == user["id"]
    assert event["previous"] is None
    assert event["id"][14] == "7"  # a UUIDv7
    # Built before the row is stored (the two leave in one statement), it must
    # still show the row as stored: its timestamps, version and location.
    read = await client.get(f"{tenant.scim}/Users/{user['id']}", headers=tenant.auth())
    assert read.status_code == 200
    assert event["data"] == user == {k: v for k, v in read.json().items() if k != "groups"}
    assert user["meta"]["created"] == user["meta"]["lastModified"]
    assert read.headers["etag"] == user["meta"]["version"] == 'W/"1"'


async def test_a_group_created_without_members_records_it_as_stored(
    client: Client, tenant: TenantHandle
) -> None:
    created = await client.post(
        f"{tenant.scim}/Groups", json={"displayName": "Solo"}, headers=tenant.auth()
    )
    assert created.status_code == 201
    group = created.json()
    [event] = await all_events(client, tenant.slug)
    assert event["type"] == "group.created"
    read = await client.get(f"{tenant.scim}/Groups/{group['id']}", headers=tenant.auth())
    stored = {k: v for k, v in read.json().items() if k != "members"}
    assert event["data"] == {k: v for k, v in group.items() if k != "members"} == stored
    assert read.headers["etag"] == group["meta"]["version"] == 'W/"1"'


async def test_a_group_created_with_members_records_it_then_each_member(
    client: Client, tenant: TenantHandle
) -> None:
    """The group's `created` event as stored, then one `member_added` event per member,
    in member id order, each with the member's type and the group's name, numbered
    one after the other (the statement that stores them numbers them)."""
    ann = await tenant.create_user("ann@example.com")
    sub = await client.post(
        f"{tenant.scim}/Groups", json={"displayName": "Sub"}, headers=tenant.auth()
    )
    members = {ann["id"]: "User", sub.json()["id"]: "Group"}
    created = await client.post(
        f"{tenant.scim}/Groups",
        json={"displayName": "Both", "members": [{"value": m} for m in members]},
        headers=tenant.auth(),
    )
    assert created.status_code == 201, created.text
    group = created.json()
    made, *added = await all_events(client, tenant.slug, after="2")
    assert made["type"] == "group.created"
    assert made["data"] == {k: v for k, v in group.items() if k != "members"}
    assert [event["sequence"] for event in (made, *added)] == [3, 4, 5]
    ref = {"id": group["id"], "displayName": "Both"}
    assert [(event["type"], event["data"]) for event in added] == [
        ("group.member_added", {"group": ref, "member": {"value": m, "type": members[m]}})
        for m in sorted(members)
    ]


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 24, 5, 20, 9, 995983, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no fraction: none shown
        datetime(2026, 1, 2, 3, 4, 5, 1, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        datetime(999, 6, 1, 0, 0, 0, 10, tzinfo=UTC),
    ],
)
async def test_a_statement_stamps_a_representation_as_the_service_renders_its_time(
    db: Pool, moment: datetime
) -> None:
    """The common create's statement sets its event's times (`resources.stamped_sql`),
    which the service sets in its answer (`resources.stamped`): they must read
    the same, whatever the session's time zone."""
    shown = {"id": "x", "meta": {"created": "?", "lastModified": "?", "version": 'W/"1"'}}
    async with db.acquire() as conn:
        await conn.execute("SET TIME ZONE 'Asia/Kolkata'")
        try:
            stamped = await conn.fetchval(
                f"SELECT {resources.stamped_sql('$1::jsonb', '$2::timestamptz')}", shown, moment
            )
        finally:
            await conn.execute("RESET TIME ZONE")
    assert stamped == resources.stamped(shown, moment)
    assert stamped["meta"]["created"] == stamped["meta"]["lastModified"]
    assert datetime.fromisoformat(stamped["meta"]["created"]) == moment


async def test_failed_and_rolled_back_requests_record_nothing(
    client: Client, tenant: TenantHandle
) -> None:
    await tenant.create_user("taken@example.com")
    group = await client.post(
        f"{tenant.scim}/Groups", json={"displayName": "Staff"}, headers=tenant.auth()
    )
    assert group.status_code == 201
    before = await all_events(client, tenant.slug)

    duplicate = await client.post(
        f"{tenant.scim}/Users", json={"userName": "TAKEN@example.com"}, headers=tenant.auth()
    )
    assert duplicate.status_code == 409
    # The rename is written before the unknown member fails the request: it rolls back.
    rolled_back = await client.patch(
        f"{tenant.scim}/Groups/{group.json()['id']}",
        json=patch_body(
            {"op": "replace", "path": "displayName", "value": "Renamed"},
            {"op": "add", "path": "members", "value": [{"value": "not-a-user"}]},
        ),
        headers=tenant.auth(),
    )
    assert rolled_back.status_code == 400
    stale = await client.delete(
        f"{tenant.scim}/Groups/{group.json()['id']}",
        headers=tenant.auth() | {"If-Match": 'W/"99"'},
    )
    assert stale.status_code == 412

    assert await all_events(client, tenant.slug) == before


async def test_updates_carry_the_previous_values_of_what_changed(
    client: Client, tenant: TenantHandle
) -> None:
    user = await tenant.create_user("grace@example.com", displayName="Grace", title="Dev")
    url = f"{tenant.scim}/Users/{user['id']}"
    renamed = await client.patch(
        url,
        json=patch_body({"op": "replace", "path": "displayName", "value": "Grace H."}),
        headers=tenant.auth(),
    )
    assert renamed.status_code == 200
    unchanged = await client.patch(
        url,
        json=patch_body({"op": "replace", "path": "displayName", "value": "Grace H."}),
        headers=tenant.auth(),
    )
    assert unchanged.status_code == 200
    deactivated = await client.patch(
        url, json=patch_body({"op": "replace", "value": {"active": False}}), headers=tenant.auth()
    )
    assert deactivated.status_code == 200
    replaced = await client.put(
        url, json={"userName": "grace@example.com", "active": True}, headers=tenant.auth()
    )
    assert replaced.status_code == 200

    created, updated, deactivation, reactivation = await all_events(client, tenant.slug)
    assert created["type"] == "user.created"
    assert updated["type"] == "user.updated"
    assert updated["previous"] == {"displayName": "Grace"}
    assert updated["data"]["displayName"] == "Grace H."
    assert deactivation["type"] == "user.deactivated"
    assert deactivation["previous"] == {"active": True}
    assert reactivation["type"] == "user.reactivated"
    assert reactivation["previous"] == {
        "active": False,
        "displayName": "Grace H.",
        "title": "Dev",
    }
    assert [e["sequence"] for e in (created, updated, deactivation, reactivation)] == [1, 2, 3, 4]
    # Each event shows the user as its change stored it (the PATCH and the PUT
    # send their event with their update, in one statement).
    renamed_user, replaced_user = renamed.json(), replaced.json()
    assert updated["data"] == {k: v for k, v in renamed_user.items() if k != "groups"}
    assert reactivation["data"] == {k: v for k, v in replaced_user.items() if k != "groups"}
    assert renamed_user["meta"]["version"] == 'W/"2"'
    assert renamed_user["meta"]["lastModified"] > renamed_user["meta"]["created"]


async def test_membership_changes_are_one_event_per_member(
    client: Client, tenant: TenantHandle
) -> None:
    alice = await tenant.create_user("alice@example.com")
    bob = await tenant.create_user("bob@example.com")
    carol = await tenant.create_user("carol@example.com")
    created = await client.post(
        f"{tenant.scim}/Groups",
        json={"displayName": "Ops", "members": [{"value": alice["id"]}, {"value": bob["id"]}]},
        headers=tenant.auth(),
    )
    assert created.status_code == 201
    group_url = f"{tenant.scim}/Groups/{created.json()['id']}"
    patched = await client.patch(
        group_url,
        json=patch_body(
            {"op": "remove", "path": f'members[value eq "{alice["id"]}"]'},
            {"op": "add", "path": "members", "value": [{"value": carol["id"]}]},
        ),
        headers=tenant.auth(),
    )
    assert patched.status_code == 204  # a group PATCH answers without a body
    # PUT keeps bob and carol and drops nobody else: the net change is empty.
    put = await client.put(
        group_url,
        json={"displayName": "Ops", "members": [{"value": bob["id"]}, {"value": carol["id"]}]},
        headers=tenant.auth(),
    )
    assert put.status_code == 200
    deleted = await client.delete(f"{tenant.scim}/Users/{bob['id']}", headers=tenant.auth())
    assert deleted.status_code == 204

    found = [
        (e["type"], e["data"].get("member", {}).get("value"))
        for e in await all_events(client, tenant.slug, after="3")
    ]
    assert sorted(found[1:3]) == sorted(
        [("group.member_added", alice["id"]), ("group.member_added", bob["id"])]
    )
    assert found[0] == ("group.created", None)
    assert found[3:] == [
        ("group.member_added", carol["id"]),
        ("group.member_removed", alice["id"]),
        ("user.deleted", None),
        ("group.member_removed", bob["id"]),
    ]


async def member_patches(client: Client, tenant: TenantHandle, *, locked: bool) -> list[Any]:
    """Single member additions and removals, as IdPs send them; ``locked``: each with
    the group's `If-Match`, which takes the locked way. The group's events, with names
    for ids, and the ETags the PATCHes answered."""
    names = {}
    for name in ("ann", "ben"):
        names[(await tenant.create_user(f"{name}@example.com"))["id"]] = name
    for name in ("Sub", "Ops"):
        created = await client.post(
            f"{tenant.scim}/Groups", json={"displayName": name}, headers=tenant.auth()
        )
        names[created.json()["id"]] = name
    ann, ben, sub, ops = names
    url = f"{tenant.scim}/Groups/{ops}"
    etags = []
    for operation in (
        {"op": "add", "path": "members", "value": [{"value": ann}, {"value": sub}]},
        {"op": "add", "path": "members", "value": [{"value": ann}]},  # already in: no change
        {"op": "remove", "path": f'members[value eq "{ben}"]'},  # not in: no change
        {"op": "remove", "path": f'members[value eq "{sub}"]'},
    ):
        headers = tenant.auth()
        if locked:
            current = await client.get(url, headers=headers)
            headers |= {"If-Match": current.json()["meta"]["version"]}
        response = await client.patch(url, json=patch_body(operation), headers=headers)
        assert response.status_code == 204, response.text
        etags.append(response.headers["etag"])
    found = await all_events(client, tenant.slug, after="4")
    named = msgspec.json.decode(
        re.sub("|".join(names), lambda m: names[m[0]], msgspec.json.encode(found).decode())
    )
    # In commit order, but the members one step adds in the order of their random ids.
    kept = [{k: event[k] for k in ("type", "resource", "data")} for event in named]
    return [etags, sorted(kept, key=lambda e: (e["type"], e["data"]["member"]["value"]))]


async def test_a_member_patch_stores_the_same_events_with_or_without_the_lock(
    client: Client, tenant: TenantHandle
) -> None:
    """A single member step runs as one statement (the group read without a lock,
    its events built before the statement knows what it changes); with `If-Match`
    it runs locked, in a transaction. Both store and answer the same."""
    unlocked = await member_patches(client, tenant, locked=False)
    assert await member_patches(client, await make_tenant(client), locked=True) == unlocked
    etags, found = unlocked
    assert etags == ['W/"2"', 'W/"2"', 'W/"2"', 'W/"3"']
    ops = {"id": "Ops", "displayName": "Ops"}
    assert [(event["type"], event["data"]) for event in found] == [
        ("group.member_added", {"group": ops, "member": {"value": "Sub", "type": "Group"}}),
        ("group.member_added", {"group": ops, "member": {"value": "ann", "type": "User"}}),
        ("group.member_removed", {"group": ops, "member": {"value": "Sub", "type": "Group"}}),
    ]


_TIMESTAMP: Final = r"\d{4}-\d\d-\d\dT[\d:.]+Z"


async def _set_up(client: Client, tenant: TenantHandle, way: str) -> list[str]:
    """A tenant for the random both-ways tests: ``way`` "mapped" maps roles (group Sub
    grants one), "tripped" has its deprovisioning guard tripped by the last of three
    deactivations among ten users (those three held); their ids when it has."""
    await tenant.unlimited()
    if way == "mapped":
        rules = {"groups": [{"match": "displayName", "value": "Sub", "roles": ["sub"]}]}
        saved = await client.put(
            f"/admin/v1/tenants/{tenant.slug}/roles",
            json=rules | {"default_roles": ["member"]},
            headers=admin_headers(),
        )
        assert saved.status_code == 200, saved.text
    if way != "tripped":
        return []
    guard = {"threshold_percent": 20, "min_users": 5}
    saved = await client.put(
        f"/admin/v1/tenants/{tenant.slug}/guard", json=guard, headers=admin_headers()
    )
    assert saved.status_code == 200, saved.text
    users = [(await tenant.create_user(f"g{n}@example.com"))["id"] for n in range(10)]
    deactivation = patch_body({"op": "replace", "path": "active", "value": False})
    for user in users[:3]:
        response = await client.patch(
            f"{tenant.scim}/Users/{user}", json=deactivation, headers=tenant.auth()
        )
        assert response.status_code == 200, response.text
    state = await client.get(f"/admin/v1/tenants/{tenant.slug}/guard", headers=admin_headers())
    assert state.json()["held_users"] == 1, state.text
    return users


async def _held(client: Client, tenant: TenantHandle, resource_id: str) -> list[dict[str, Any]]:
    """The events the tenant's guard holds about this resource, in release order."""
    response = await client.get(
        f"/admin/v1/tenants/{tenant.slug}/guard/held",
        params={"limit": "1000"},
        headers=admin_headers(),
    )
    assert response.status_code == 200, response.text
    return [
        {key: event[key] for key in ("type", "data", "previous")}
        for event in response.json()["events"]
        if event["resource"]["id"] == resource_id
    ]


def _always_locked(monkeypatch: pytest.MonkeyPatch, resource_id: str) -> None:
    """Every write of this one resource goes the locked way: each way without a lock
    answers, for it alone, that it cannot go (None, having written nothing)."""
    for name in ("_change_user_unlocked", "_change_group_unlocked", "_patch_members_in_one"):
        unlocked = getattr(provisioning, name)

        async def for_the_others(
            pool: Pool,
            scope: provisioning.Scope,
            raw_id: str,
            *args: Any,
            _way: Any = unlocked,
            **kwargs: Any,
        ) -> Any:
            return (
                None if raw_id == resource_id else await _way(pool, scope, raw_id, *args, **kwargs)
            )

        monkeypatch.setattr(provisioning, name, for_the_others)


def _random_member_patch(rng: random.Random, ids: list[str], step: int) -> dict[str, Any]:
    """One to three operations of every kind a member PATCH has (values given, by
    filter, all, replaced, a rename among them), some naming a member that does not
    exist."""

    def values() -> list[dict[str, str]]:
        chosen = rng.sample(ids, min(len(ids), rng.randrange(1, 4)))
        return [{"value": value} for value in dict.fromkeys(chosen)]

    kinds: list[Callable[[], dict[str, Any]]] = [
        lambda: {"op": "add", "path": "members", "value": values()},
        lambda: {"op": "add", "value": {"members": values()}},
        lambda: {"op": "remove", "path": "members", "value": values()},
        lambda: {"op": "remove", "path": f'members[value eq "{rng.choice(ids or [""])}"]'},
        lambda: {"op": "remove", "path": 'members[type eq "Group"]'},
        lambda: {"op": "replace", "path": "members", "value": values()},
        lambda: {"op": "remove", "path": "members"},
        lambda: {"op": "replace", "path": "displayName", "value": f"Renamed {step}"},
    ]
    return patch_body(*(rng.choice(kinds)() for _ in range(rng.choice([1, 1, 1, 2, 3]))))


@pytest.mark.parametrize("way", ["unmapped", "mapped", "tripped"])
async def test_random_member_patches_answer_and_store_the_same_with_or_without_the_lock(
    client: Client, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """Two groups alike take the same random PATCHes, one as IdPs send them (a single
    member step in one statement, a rename without a lock), the other always the
    locked way (in a transaction): each pair answers the same status and ETag, stores
    the same events (and, mapped, the same roles' events; tripped, holds the same of
    them) and leaves the same group; a refused one changes nothing."""
    guarded = await _set_up(client, tenant, way)
    users = [(await tenant.create_user(f"r{n}@example.com"))["id"] for n in range(5)]
    users += guarded[1:4]  # one of them held
    created = [
        await client.post(
            f"{tenant.scim}/Groups", json={"displayName": name}, headers=tenant.auth()
        )
        for name in ("Sub", "Twin", "Twin")
    ]
    sub, fast, locked = (response.json()["id"] for response in created)
    _always_locked(monkeypatch, locked)
    nobody = str(uuid.uuid4())
    ids = [*users, sub, nobody, nobody]
    rng = random.Random(5)  # noqa: S311 - test data, not a secret
    feed = Feed(client, tenant.slug)
    await feed.new()
    statuses: Counter[int] = Counter()
    last: dict[str, Any] = {}
    for step in range(150):
        body = _random_member_patch(rng, ids, step)
        answers = []
        for group in (fast, locked):
            response = await client.patch(
                f"{tenant.scim}/Groups/{group}", json=body, headers=tenant.auth()
            )
            found = await feed.new()
            stored = (
                await client.get(f"{tenant.scim}/Groups/{group}", headers=tenant.auth())
            ).json()
            if response.status_code >= 400:
                # A refused PATCH changes nothing, none of its operations.
                assert (found, stored) == ([], last.get(group, stored)), body
            last[group] = stored
            held = await _held(client, tenant, group)
            text = msgspec.json.encode([found, stored, held]).decode()
            answers.append(
                (
                    response.status_code,
                    response.headers.get("etag"),
                    msgspec.json.decode(re.sub(_TIMESTAMP, "<time>", text.replace(group, "<g>"))),
                )
            )
        statuses[answers[0][0]] += 1
        # Within one PATCH, the events of the members one step adds come in id order.
        for answer in answers:
            answer[2][0].sort(key=lambda e: (e["type"], json.dumps(e["data"], sort_keys=True)))
            for event in answer[2][0]:
                del event["id"], event["sequence"]
        assert answers[0] == answers[1], (body, answers)
    # Changes and refusals both (a member that does not exist), and nothing else.
    assert set(statuses) == {204, 400}, statuses
    assert statuses[204] > 100, statuses
    assert (way == "tripped") == bool(await _held(client, tenant, locked))


async def test_a_patch_taking_a_used_user_name_is_a_conflict_and_changes_nothing(
    client: Client, tenant: TenantHandle
) -> None:
    """Also when the change is tried in the statement that reads the user (this process
    has just seen it: `recent_users`), where the unique index refused it as a 500."""
    await tenant.create_user("taken@example.com")
    user = await tenant.create_user("me@example.com")
    feed = Feed(client, tenant.slug)
    await feed.new()
    url = f"{tenant.scim}/Users/{user['id']}"
    for _ in range(2):
        taking = patch_body({"op": "replace", "path": "userName", "value": "TAKEN@example.com"})
        response = await client.patch(url, json=taking, headers=tenant.auth())
        assert response.status_code == 409, response.text
        assert response.json()["scimType"] == "uniqueness"
    assert (await client.get(url, headers=tenant.auth())).json() == user
    assert await feed.new() == []


def _random_create(rng: random.Random, users: list[str], twin: str) -> tuple[str, dict[str, Any]]:
    """A user or a group to create (the endpoint and the body), named for ``twin``;
    some refused: a userName taken, a member that does not exist."""
    if rng.random() < 0.3:
        nobody = [str(uuid.UUID(int=rng.getrandbits(128)))] if rng.random() < 0.2 else []
        chosen = rng.sample(users, min(len(users), rng.randrange(4))) + nobody
        members = [{"value": member} for member in chosen]
        return "Groups", {"displayName": f"Team {twin}", "members": members}
    user: dict[str, Any] = {
        "userName": "taken@example.com" if rng.random() < 0.1 else f"{twin}{rng.random()}",
        "active": rng.choice([True, False]),
        "name": {"givenName": rng.choice(["Ada", "Bo"]), "familyName": twin},
        "emails": [{"value": f"{twin}@example.com", "type": "work", "primary": True}],
    }
    if rng.random() < 0.3:
        user["title"] = "Engineer"
    if rng.random() < 0.2:
        user["password"] = "correct-horse-battery"
    return "Users", user


@pytest.mark.parametrize("way", ["unmapped", "mapped", "tripped"])
async def test_random_creates_answer_and_store_the_same_with_or_without_the_lock(
    client: Client, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """Random users and groups (with members, some refused) created in pairs alike, one
    as IdPs create them (one statement where it can), the other always the locked
    way (a transaction): each pair answers the same and stores the same events; a
    refused create stores nothing."""
    held = (await _set_up(client, tenant, way))[2:3]  # a member whose events are held
    users = [(await tenant.create_user("taken@example.com"))["id"], *held]
    locking = [False]
    unlocked = provisioning._may_go_unlocked
    monkeypatch.setattr(
        provisioning, "_may_go_unlocked", lambda scope: not locking[0] and unlocked(scope)
    )
    rng = random.Random(3)  # noqa: S311 - test data, not a secret
    feed = Feed(client, tenant.slug)
    await feed.new()
    statuses: Counter[int] = Counter()
    for _ in range(80):
        state = rng.getstate()
        answers = []
        new_user = None
        for twin in ("fast", "locked"):
            rng.setstate(state)  # the same choices for both twins
            endpoint, body = _random_create(rng, users, twin)
            locking[0] = twin == "locked"
            response = await client.post(
                f"{tenant.scim}/{endpoint}", json=body, headers=tenant.auth()
            )
            locking[0] = False
            found = await feed.new()
            for event in found:
                del event["id"], event["sequence"]
            if response.status_code >= 400:
                assert found == [], body
            made = response.json().get("id") if response.status_code == 201 else None
            held_now = [] if made is None else await _held(client, tenant, made)
            text = msgspec.json.encode([response.json(), found, held_now]).decode()
            if response.status_code == 201:
                text = text.replace(response.json()["id"], "<id>")
                if endpoint == "Users" and twin == "fast":
                    new_user = response.json()["id"]
            # Members are the fast twin's users, whoever lists them.
            text = re.sub("fast|locked", "<twin>", re.sub(_TIMESTAMP, "<time>", text))
            answers.append((response.status_code, msgspec.json.decode(text)))
        statuses[answers[0][0]] += 1
        assert answers[0] == answers[1], answers
        if new_user is not None:
            users.append(new_user)  # a member for the groups to come
    assert set(statuses) == {201, 400, 409}, statuses
    assert statuses[201] > 50, statuses


def _random_user_put(rng: random.Random) -> dict[str, Any]:
    """A whole user as Okta PUTs it, without its userName, sometimes the one stored."""
    user: dict[str, Any] = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "name": {"givenName": rng.choice(["Ada", "Bo"]), "familyName": "Twin"},
        "emails": [{"value": "w@example.com", "type": "work", "primary": True}],
        "active": rng.choice([True, False]),
    }
    if rng.random() < 0.5:
        user["title"] = rng.choice(["CEO", "Engineer"])
    if rng.random() < 0.2:
        user["password"] = "correct-horse-battery"
    return user


def _random_user_patch(rng: random.Random) -> dict[str, Any]:
    """One to three operations on a user of the kinds IdPs send (Entra's deactivation,
    its `emails[type eq "work"].value`, replaces without a path, the extension by its
    URN), some repeating what is stored already, some refused."""
    email = f"u{rng.randrange(3)}@example.com"
    kinds: list[Callable[[], dict[str, Any]]] = [
        lambda: {"op": "replace", "path": "active", "value": rng.choice([True, False])},
        lambda: {"op": "replace", "value": {"active": rng.choice([True, False, "False"])}},
        lambda: {"op": "replace", "path": "displayName", "value": f"Name {rng.randrange(3)}"},
        lambda: {"op": "replace", "path": "name.givenName", "value": rng.choice(["Ada", "Bo"])},
        lambda: {"op": "replace", "path": 'emails[type eq "work"].value', "value": email},
        lambda: {"op": "add", "path": "emails", "value": [{"value": email, "type": "home"}]},
        lambda: {"op": "remove", "path": 'emails[type eq "home"]'},
        lambda: {"op": "remove", "path": "title"},
        lambda: {"op": "add", "path": "title", "value": rng.choice(["CEO", "Engineer"])},
        lambda: {
            "op": "replace",
            "path": f"{ENTERPRISE_USER}:department",
            "value": rng.choice(["R&D", "Sales"]),
        },
        lambda: {"op": "replace", "path": "userName", "value": "taken@example.com"},
        lambda: {"op": "remove", "path": "userName"},
    ]
    return patch_body(*(rng.choice(kinds)() for _ in range(rng.choice([1, 1, 1, 2, 3]))))


@pytest.mark.parametrize("way", ["unmapped", "mapped", "tripped"])
async def test_random_user_patches_answer_and_store_the_same_with_or_without_the_lock(
    client: Client, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """Two users alike take the same random PATCHes (and now and then a PUT of the whole
    user), one as IdPs send them (without a lock, in one statement when this process
    has just seen the user), the other always the locked way:
    each pair answers the same status and ETag, stores the same events and leaves
    the same user (the tenant's guard counting the deactivations of both, and
    holding the same events when tripped); a refused one changes nothing."""
    await _set_up(client, tenant, way)
    await tenant.create_user("taken@example.com")
    twins = [
        (await tenant.create_user(name, emails=[{"value": "w@example.com", "type": "work"}]))
        for name in ("fast@example.com", "locked@example.com")
    ]
    _always_locked(monkeypatch, twins[1]["id"])
    rng = random.Random(9)  # noqa: S311 - test data, not a secret
    feed = Feed(client, tenant.slug)
    await feed.new()
    statuses: Counter[int] = Counter()
    last: dict[str, Any] = {}
    for _ in range(150):
        # Now and then Okta's update: the whole user PUT, as the twin's own.
        put = _random_user_put(rng) if rng.random() < 0.2 else None
        body = _random_user_patch(rng)
        answers = []
        for twin in twins:
            url = f"{tenant.scim}/Users/{twin['id']}"
            headers = tenant.auth()
            response = await (
                client.patch(url, json=body, headers=headers)
                if put is None
                else client.put(url, json=put | {"userName": twin["userName"]}, headers=headers)
            )
            found = await feed.new()
            for event in found:
                del event["id"], event["sequence"]
            stored = (await client.get(url, headers=tenant.auth())).json()
            if response.status_code >= 400:
                # A refused write changes nothing, none of its operations.
                assert (found, stored) == ([], last.get(url, stored)), put or body
            last[url] = stored
            held = await _held(client, tenant, twin["id"])
            text = msgspec.json.encode([found, stored, held]).decode()
            for name, value in (("userName", twin["userName"]), ("id", twin["id"])):
                text = text.replace(value, f"<{name}>")
            answers.append(
                (
                    response.status_code,
                    response.headers.get("etag"),
                    msgspec.json.decode(re.sub(_TIMESTAMP, "<time>", text)),
                )
            )
        statuses[answers[0][0]] += 1
        assert answers[0] == answers[1], (put or body, answers)
    assert set(statuses) == {200, 400, 409}, statuses
    assert statuses[200] > 100, statuses
    assert (way == "tripped") == bool(await _held(client, tenant, twins[1]["id"]))


@pytest.mark.parametrize("mapped", [False, True])
async def test_a_member_patch_of_a_group_renamed_just_before_shows_the_new_name(
    client: Client, db: Pool, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch, mapped: bool
) -> None:
    """The events of a member change name the group. The common PATCH reads the group in
    the statement that changes it, and names it as it finds it, in a tenant that maps
    roles too (its statement in a transaction block with the roles that follow)."""
    if mapped:
        mapping = {"default_roles": ["member"], "groups": []}
        saved = await client.put(
            f"/admin/v1/tenants/{tenant.slug}/roles", json=mapping, headers=admin_headers()
        )
        assert saved.status_code == 200, saved.text
    user = await tenant.create_user("vi@example.com")
    created = await client.post(
        f"{tenant.scim}/Groups", json={"displayName": "Old"}, headers=tenant.auth()
    )
    group = created.json()["id"]
    interleaved = interleave(
        monkeypatch,
        groups,
        "change_if",
        f"UPDATE {quoted_schema(await schema_of(db, tenant.slug))}.groups SET version = "
        """version + 1, display_name = 'New', resource = '{"displayName": "New"}' """
        "WHERE id = $1",
        uuid.UUID(group),
    )
    response = await client.patch(
        f"{tenant.scim}/Groups/{group}",
        json=patch_body({"op": "add", "path": "members", "value": [{"value": user["id"]}]}),
        headers=tenant.auth(),
    )
    assert response.status_code == 204, response.text
    assert interleaved == [1]
    assert response.headers["etag"] == 'W/"3"'
    added = (await all_events(client, tenant.slug))[-1]
    assert added["type"] == "group.member_added"
    assert added["data"]["group"] == {"id": group, "displayName": "New"}


async def test_a_delete_of_a_member_a_change_of_its_group_adds_again_finishes_both(
    client: Client, db: Pool, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member PATCH the locked way holds the group, paused before it adds the user
    already in it, while the user is deleted: the delete waits for the group before it
    takes the user out of it, and both finish (removing the membership first, it
    waited for the group while the add waited for the removal: a deadlock)."""
    user = (await tenant.create_user("ada@example.com"))["id"]
    made = await client.post(
        f"{tenant.scim}/Groups",
        json={"displayName": "A", "members": [{"value": user}]},
        headers=tenant.auth(),
    )
    group = made.json()["id"]
    scope = await announced_scope(db, tenant)
    pause = pause_first_call(monkeypatch, groups, "add")
    add = patch_body({"op": "add", "path": "members", "value": [{"value": user}]})
    adding = provisioning.apply_patch(db, GROUPS, scope, group, add, if_match="*")
    async with paused_inside(pause, adding):
        deleting = asyncio.create_task(provisioning.delete(db, USERS, scope, user))
        await still_waiting(deleting, "the delete went ahead of the group's lock")
    await finished(deleting)
    removed = (await all_events(client, tenant.slug))[-1]
    assert (removed["type"], removed["data"]["member"]["value"]) == (
        "group.member_removed",
        user,
    )


async def test_a_member_added_while_it_is_deleted_leaves_the_group_with_it(
    client: Client, db: Pool, tenant: TenantHandle
) -> None:
    """A member PATCH whose statement has begun (it waits here for the group, held by
    another transaction) holds the user it adds: the user's delete waits for it, then
    takes the user out of the group. The statement read the user as not deleted;
    without the hold the delete went ahead, found the user in no group, and the
    group kept a deleted user."""
    user = (await tenant.create_user("ada@example.com"))["id"]
    made = await client.post(
        f"{tenant.scim}/Groups", json={"displayName": "G"}, headers=tenant.auth()
    )
    group = made.json()["id"]
    scope = await announced_scope(db, tenant)
    add = patch_body({"op": "add", "path": "members", "value": [{"value": user}]})
    async with db.acquire() as holder, holder.transaction():
        await holder.execute(
            f"SELECT FROM {quoted_schema(scope.schema)}.groups WHERE id = $1 FOR UPDATE", group
        )
        adding = asyncio.create_task(provisioning.apply_patch(db, GROUPS, scope, group, add))
        await still_waiting(adding, "the add went past the group held")
        deleting = asyncio.create_task(provisioning.delete(db, USERS, scope, user))
        await still_waiting(deleting, "the delete went ahead of the add holding the user")
    await finished(adding)
    await finished(deleting)
    read = await client.get(f"{tenant.scim}/Groups/{group}", headers=tenant.auth())
    assert read.json()["members"] == []
    found = [
        (e["type"], e["data"].get("member", {}).get("value"))
        for e in await all_events(client, tenant.slug)
    ]
    assert found[-3:] == [
        ("group.member_added", user),
        ("user.deleted", None),
        ("group.member_removed", user),
    ]


_ADDING_WAYS = {
    "PATCH in one statement": lambda db, scope, group, user: provisioning.apply_patch(
        db, GROUPS, scope, group, patch_body({"op": "add", "path": "members", "value": [user]})
    ),
    "PATCH the locked way": lambda db, scope, group, user: provisioning.apply_patch(
        db,
        GROUPS,
        scope,
        group,
        patch_body({"op": "add", "path": "members", "value": [user]}),
        if_match="*",
    ),
    "PUT": lambda db, scope, group, user: provisioning.replace(
        db, GROUPS, scope, group, {"displayName": "G", "members": [user]}
    ),
    "POST": lambda db, scope, group, user: provisioning.create(
        db, GROUPS, scope, {"displayName": "New", "members": [user]}
    ),
}


_DROPPING: dict[str, tuple[Any, str]] = {
    "User": (lifecycle, "soft_delete"),
    "Group": (provisioning, "delete_row"),
}
"""What a delete calls, holding what it deletes, to drop it and lock its groups (a user's
soft delete under the default policy)."""


async def _refused_while_deleted(
    monkeypatch: pytest.MonkeyPatch,
    db: Pool,
    scope: provisioning.Scope,
    deleted: tuple[Table, str],
    adding: Callable[[], Awaitable[Any]],
) -> None:
    """``adding``, started while the delete of ``deleted`` (its table and id) is paused
    holding it (before it locks the groups that contain it), waits for the delete,
    then is refused: 400."""
    table, deleted_id = deleted
    pause = pause_first_call(monkeypatch, *_DROPPING[table.resource_type.name])
    async with paused_inside(pause, provisioning.delete(db, table, scope, deleted_id)):
        added = asyncio.ensure_future(adding())
        await still_waiting(added, "the add went ahead of the delete holding its member")
    with pytest.raises(ScimError) as refused:
        await finished(added)
    assert (refused.value.status, refused.value.scim_type) == (400, "invalidValue")


@pytest.mark.parametrize("way", list(_ADDING_WAYS))
async def test_a_member_being_deleted_is_not_added(
    client: Client,
    db: Pool,
    tenant: TenantHandle,
    monkeypatch: pytest.MonkeyPatch,
    way: str,
) -> None:
    """A user's delete, paused once it holds the user, is waited for by every way of
    adding the user to a group (the locked ways hold the members before the group, as
    the delete takes the user before its groups), which then finds the user gone: 400,
    nothing stored. With the user already in the group, as a PUT of all members has it,
    both finish too: held after the group, the PUT and the delete waited for each other."""
    user = (await tenant.create_user("ada@example.com"))["id"]
    member = {"value": user}
    made = await client.post(
        f"{tenant.scim}/Groups",
        json={"displayName": "G", "members": [member] if way == "PUT" else []},
        headers=tenant.auth(),
    )
    group = made.json()["id"]
    scope = await announced_scope(db, tenant)
    await _refused_while_deleted(
        monkeypatch, db, scope, (USERS, user), lambda: _ADDING_WAYS[way](db, scope, group, member)
    )
    qualified = quoted_schema(scope.schema)
    assert await db.fetchval(f"SELECT count(*) FROM {qualified}.group_members") == 0
    assert await db.fetchval(f"SELECT count(*) FROM {qualified}.groups") == 1
    added = [
        event
        for event in await all_events(client, tenant.slug)
        if event["type"] == "group.member_added"
    ]
    assert len(added) == (1 if way == "PUT" else 0)


@pytest.mark.parametrize("way", ["PATCH in one statement", "POST"])
async def test_a_group_being_deleted_is_not_added_to_another(
    client: Client,
    db: Pool,
    tenant: TenantHandle,
    monkeypatch: pytest.MonkeyPatch,
    way: str,
) -> None:
    """As for a user: a group's delete, paused once it holds the group, is waited for
    by a write nesting it in another group, which then finds it gone."""
    made = [
        await client.post(
            f"{tenant.scim}/Groups", json={"displayName": name}, headers=tenant.auth()
        )
        for name in ("G", "Doomed")
    ]
    group, doomed = (response.json()["id"] for response in made)
    scope = await announced_scope(db, tenant)
    await _refused_while_deleted(
        monkeypatch,
        db,
        scope,
        (GROUPS, doomed),
        lambda: _ADDING_WAYS[way](db, scope, group, {"value": doomed}),
    )
    qualified = quoted_schema(scope.schema)
    assert await db.fetchval(f"SELECT count(*) FROM {qualified}.group_members") == 0


async def test_members_added_and_deleted_at_once_end_in_no_group_and_no_deadlock(
    client: Client, tenant: TenantHandle, migrated_database: str
) -> None:
    """Every way of adding members (a PATCH in one statement, a PATCH the locked way, a
    PUT repeating every member, a POST with members) run at once with the deletes of
    those users, their removal from a group (in one statement and the locked way),
    their password changes, a group's renames, and a group nested in two others while
    it is deleted, on enough connections for all of them: each write finishes or is
    refused as a client error (a member gone: 400; a user deleted twice: 404), none
    is ended as a deadlock, and no group is left with a user that is deleted. With the
    locked ways holding their members after the group instead, PostgreSQL ended
    several writes as deadlocks in every run."""
    users = [(await tenant.create_user(f"u{n}@example.com"))["id"] for n in range(8)]
    members = [{"value": user} for user in users]
    made = [
        await client.post(
            f"{tenant.scim}/Groups",
            json={"displayName": name, "members": members if name == "All" else []},
            headers=tenant.auth(),
        )
        for name in ("A", "B", "All", "Nested")
    ]
    a, b, everyone, nested = (response.json()["id"] for response in made)
    pool = await create_pool(migrated_database, min_size=1, max_size=24)
    try:
        scope = await announced_scope(pool, tenant)
        writes = [
            _ADDING_WAYS["PATCH in one statement"](pool, scope, a, {"value": nested}),
            _ADDING_WAYS["PATCH the locked way"](pool, scope, b, {"value": nested}),
            provisioning.delete(pool, GROUPS, scope, nested),
        ]
        for n, user in enumerate(users):
            member = {"value": user}
            writes += [
                _ADDING_WAYS["PATCH in one statement"](pool, scope, a, member),
                _ADDING_WAYS["PATCH the locked way"](pool, scope, b, member),
                provisioning.replace(
                    pool, GROUPS, scope, everyone, {"displayName": "All", "members": members}
                ),
                provisioning.create(
                    pool, GROUPS, scope, {"displayName": f"New {n}", "members": [member]}
                ),
                provisioning.delete(pool, USERS, scope, user),
                provisioning.apply_patch(
                    pool,
                    GROUPS,
                    scope,
                    a,
                    patch_body({"op": "remove", "path": f'members[value eq "{user}"]'}),
                    if_match="*" if n % 2 else None,
                ),
                provisioning.apply_patch(
                    pool,
                    USERS,
                    scope,
                    user,
                    patch_body({"op": "replace", "path": "password", "value": "s3cret-enough"}),
                ),
                provisioning.apply_patch(
                    pool,
                    GROUPS,
                    scope,
                    b,
                    patch_body({"op": "replace", "path": "displayName", "value": f"B{n}"}),
                ),
            ]
        outcomes = await asyncio.wait_for(asyncio.gather(*writes, return_exceptions=True), 60)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert all(isinstance(o, ScimError) and o.status in (400, 404) for o in failures), failures
        qualified = quoted_schema(scope.schema)
        kept = await pool.fetchval(
            f"SELECT count(*) FROM {qualified}.group_members m WHERE m.member_type = 'User' "
            f"AND NOT EXISTS (SELECT FROM {qualified}.users u WHERE u.id = m.member_id "
            "AND u.managed AND u.deleted_at IS NULL)"
        )
        assert kept == 0
        assert not await pool.fetchval(
            f"SELECT count(*) FROM {qualified}.group_members WHERE member_id = $1",
            uuid.UUID(nested),
        )
        assert (
            await pool.fetchval(f"SELECT count(*) FROM {qualified}.users WHERE deleted_at IS NULL")
            == 0
        )
    finally:
        await pool.close()


@pytest.mark.parametrize("locked", [False, True], ids=["in one statement", "the locked way"])
async def test_a_group_nested_while_its_members_change_ends_no_write_as_a_deadlock(
    tenant: TenantHandle,
    migrated_database: str,
    monkeypatch: pytest.MonkeyPatch,
    locked: bool,
) -> None:
    """Writers nesting group N in others and taking it out again while others change N's
    own members, all at once: no write is ended as a deadlock. With the member groups
    held `FOR KEY SHARE` (as users are), such a hold waited for a change of N while
    holding the lock of N's older row version, which the change could need before it
    finished: PostgreSQL ended writes as deadlocks in most runs."""
    users = [(await tenant.create_user(f"n{n}@example.com"))["id"] for n in range(6)]
    made = [
        await tenant.client.post(
            f"{tenant.scim}/Groups", json={"displayName": name}, headers=tenant.auth()
        )
        for name in ("N", "P1", "P2", "P3")
    ]
    nested, *parents = (response.json()["id"] for response in made)
    deadlocks: list[None] = []
    monkeypatch.setattr(instruments, "write_deadlocked", lambda: deadlocks.append(None))
    if_match = "*" if locked else None
    pool = await create_pool(migrated_database, min_size=1, max_size=12)
    try:
        scope = await announced_scope(pool, tenant)
        rng = random.Random(11)  # noqa: S311 - test data, not a secret

        async def writer(nesting: bool) -> None:
            for _ in range(20):
                op = rng.choice(["add", "remove"])
                group, member = (
                    (rng.choice(parents), nested) if nesting else (nested, rng.choice(users))
                )
                body = patch_body({"op": op, "path": "members", "value": [{"value": member}]})
                way = if_match if nesting else None
                await provisioning.apply_patch(pool, GROUPS, scope, group, body, if_match=way)

        await asyncio.wait_for(asyncio.gather(*(writer(n % 2 == 0) for n in range(10))), 120)
    finally:
        await pool.close()
    assert deadlocks == []


async def test_concurrent_member_changes_of_one_group_each_count_once(
    client: Client, db: Pool, tenant: TenantHandle
) -> None:
    """Member changes of one group lock it only within their statement: run at once
    (some adding the same member), each member is added once, with one event, and
    the version counts the changes. On this loop's pool, as above."""
    users = [(await tenant.create_user(f"m{n}@example.com"))["id"] for n in range(10)]
    created = await client.post(
        f"{tenant.scim}/Groups", json={"displayName": "All"}, headers=tenant.auth()
    )
    group = created.json()["id"]
    scope = await announced_scope(db, tenant)
    await asyncio.gather(
        *(
            provisioning.apply_patch(
                db,
                GROUPS,
                scope,
                group,
                patch_body({"op": "add", "path": "members", "value": [{"value": user}]}),
            )
            for user in [*users, *users[:3]]
        )
    )
    stored = (await client.get(f"{tenant.scim}/Groups/{group}", headers=tenant.auth())).json()
    assert sorted(member["value"] for member in stored["members"]) == sorted(users)
    assert stored["meta"]["version"] == 'W/"11"'
    added = [
        event["data"]["member"]["value"]
        for event in await all_events(client, tenant.slug)
        if event["type"] == "group.member_added"
    ]
    assert sorted(added) == sorted(users)


async def test_bulk_records_an_event_per_successful_operation(
    client: Client, tenant: TenantHandle
) -> None:
    await tenant.create_user("dup@example.com")
    body = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "a", "data": {"userName": "x1"}},
            {
                "method": "POST",
                "path": "/Users",
                "bulkId": "b",
                "data": {"userName": "dup@example.com"},
            },
            {"method": "POST", "path": "/Users", "bulkId": "c", "data": {"userName": "x2"}},
        ],
    }
    response = await client.post(f"{tenant.scim}/Bulk", json=body, headers=tenant.auth())
    assert response.status_code == 200
    found = await all_events(client, tenant.slug)
    assert [(e["type"], e["data"]["userName"]) for e in found] == [
        ("user.created", "dup@example.com"),
        ("user.created", "x1"),
        ("user.created", "x2"),
    ]


async def test_paging_resumes_exactly_where_it_left_off(
    client: Client, tenant: TenantHandle
) -> None:
    for n in range(7):
        await tenant.create_user(f"p{n}@example.com")
    url = f"/admin/v1/tenants/{tenant.slug}/events"
    seen: list[int] = []
    cursor = None
    for expected in (3, 3, 1, 0):
        params = {"limit": "3"} | ({"after": cursor} if cursor else {})
        page = (await client.get(url, params=params, headers=admin_headers())).json()
        assert len(page["events"]) == expected
        seen += [event["sequence"] for event in page["events"]]
        if expected == 0:
            # Nothing new: the cursor stays, so a poller keeps asking with it.
            assert page["next"] == cursor
        cursor = page["next"]
    assert seen == list(range(1, 8))
    # A consumer that crashed after storing the cursor "4" resumes with event 5.
    resumed = (await client.get(url, params={"after": "4"}, headers=admin_headers())).json()
    assert [event["sequence"] for event in resumed["events"]] == [5, 6, 7]


async def test_concurrent_writes_are_numbered_without_gaps_in_commit_order(
    client: Client, tenant: TenantHandle
) -> None:
    await asyncio.gather(*(tenant.create_user(f"c{n}@example.com") for n in range(20)))
    found = await all_events(client, tenant.slug)
    assert [event["sequence"] for event in found] == list(range(1, 21))


async def test_events_numbered_in_their_statement_or_at_commit_share_one_gapless_sequence(
    client: Client, db: Pool, tenant: TenantHandle
) -> None:
    """The common writes number their events in their own statement, the others as they
    commit. At once, some failing, the tenant's events are numbered 1..N without a
    gap, and each resource's in the order its versions were stored.

    Run on this loop's pool: the test client hands the application one request at a
    time, so its writes would not overlap."""
    scope = await announced_scope(db, tenant)
    users = [
        await provisioning.create(db, USERS, scope, {"userName": f"b{n}@example.com"})
        for n in range(4)
    ]
    group = await provisioning.create(db, GROUPS, scope, {"displayName": "Staff"})

    def patched(resource: dict[str, Any], *operations: dict[str, Any]) -> Any:
        table = USERS if "userName" in resource else GROUPS
        return provisioning.apply_patch(db, table, scope, resource["id"], patch_body(*operations))

    async def attempt(write: Any) -> int:
        try:
            await write
        except ScimError as error:
            return error.status
        return 200

    writes = [
        # In their statement: creates, attribute and member PATCHes, deactivations.
        *(
            provisioning.create(db, USERS, scope, {"userName": f"n{n}@example.com"})
            for n in range(8)
        ),
        *(patched(user, {"op": "replace", "path": "title", "value": "T"}) for user in users),
        patched(
            group, {"op": "add", "path": "members", "value": [{"value": u["id"]} for u in users]}
        ),
        *(patched(user, {"op": "replace", "path": "active", "value": False}) for user in users[2:]),
        # At commit: PUTs, a password.
        *(
            provisioning.replace(
                db, USERS, scope, user["id"], {"userName": user["userName"], "nickName": "N"}
            )
            for user in users[:2]
        ),
        patched(users[3], {"op": "replace", "path": "password", "value": "Correct-horse-9"}),
        # Failing: nothing stored, no number taken.
        *(provisioning.create(db, USERS, scope, {"userName": "b0@example.com"}) for _ in range(3)),
    ]
    statuses = await asyncio.gather(*(attempt(write) for write in writes))
    assert statuses == [200] * (len(writes) - 3) + [409] * 3
    found = await all_events(client, tenant.slug)
    assert [event["sequence"] for event in found] == list(range(1, len(found) + 1))
    assert len(found) == 5 + 8 + 4 + 4 + 2 + 2
    versions: dict[str, list[int]] = {}
    for event in found:
        if "meta" in event["data"]:
            version = int(event["data"]["meta"]["version"].strip('W/"'))
            versions.setdefault(event["resource"]["id"], []).append(version)
    for seen in versions.values():
        assert seen == sorted(set(seen)), seen


def interleave(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, statement: str, *args: Any
) -> list[int]:
    """Have another writer run ``statement`` and commit just before the next call of
    ``module.name``, a write's statement that takes effect only if what the write read
    still holds; the list returned gets an item when it has."""
    write = getattr(module, name)
    done: list[int] = []

    async def after_another_write(conn: Any, *rest: Any, **options: Any) -> Any:
        if not done:
            done.append(1)
            await conn.execute(statement, *args)
        return await write(conn, *rest, **options)

    monkeypatch.setattr(module, name, after_another_write)
    return done


async def test_concurrent_patches_of_one_user_lose_no_change(
    client: Client, db: Pool, tenant: TenantHandle
) -> None:
    """A user PATCH reads without a lock and writes only if the user is still as read;
    one that finds it changed is applied again, locked, to what is stored then.

    Run on this loop's pool: the test client hands the application one request at a
    time, so its PATCHes would not overlap."""
    user = await tenant.create_user("mo@example.com")
    scope = await announced_scope(db, tenant)
    addresses = [f"mo{n}@example.net" for n in range(12)]
    await asyncio.gather(
        *(
            provisioning.apply_patch(
                db,
                USERS,
                scope,
                user["id"],
                patch_body({"op": "add", "path": "emails", "value": [{"value": address}]}),
            )
            for address in addresses
        )
    )
    url = f"{tenant.scim}/Users/{user['id']}"
    stored = (await client.get(url, headers=tenant.auth())).json()
    assert sorted(email["value"] for email in stored["emails"]) == sorted(addresses)
    assert stored["meta"]["version"] == f'W/"{1 + len(addresses)}"'
    found = await all_events(client, tenant.slug)
    assert [event["type"] for event in found] == ["user.created"] + ["user.updated"] * 12
    assert sorted(len(event["data"]["emails"]) for event in found[1:]) == list(range(1, 13))


@pytest.mark.usefixtures("unguessed")
async def test_a_patch_of_a_user_changed_after_it_was_read_is_applied_to_the_change(
    client: Client, db: Pool, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer commits between the PATCH's read and its statement (the user not
    one this process has just seen): the statement does nothing, stores no event, and
    the PATCH is applied again to the user as stored."""
    user = await tenant.create_user("lu@example.com", displayName="Lu")
    interleaved = interleave(
        monkeypatch,
        provisioning,
        "update_unless_changed",
        f"UPDATE {quoted_schema(await schema_of(db, tenant.slug))}.users SET version = "
        """version + 1, resource = resource || '{"title": "Lead"}' WHERE id = $1""",
        uuid.UUID(user["id"]),
    )
    response = await client.patch(
        f"{tenant.scim}/Users/{user['id']}",
        json=patch_body({"op": "replace", "path": "displayName", "value": "Lu B."}),
        headers=tenant.auth(),
    )
    assert response.status_code == 200, response.text
    assert interleaved == [1]
    patched = response.json()
    assert (patched["displayName"], patched["title"]) == ("Lu B.", "Lead")
    assert patched["meta"]["version"] == 'W/"3"'
    created, updated = await all_events(client, tenant.slug)
    assert (created["type"], updated["type"]) == ("user.created", "user.updated")
    assert updated["previous"] == {"displayName": "Lu"}
    assert updated["data"] == {k: v for k, v in patched.items() if k != "groups"}


async def test_a_patch_of_a_user_changed_since_this_process_saw_it_applies_to_it_as_stored(
    client: Client, db: Pool, tenant: TenantHandle
) -> None:
    """The process saw the user without a home address (it created it); another writer
    added one since. A PATCH replacing the home address fails against the user as
    seen (`noTarget`), but the user as stored has one: the statement tried nothing,
    read the user, and the PATCH applies to it."""
    user = await tenant.create_user(
        "nia@example.com", emails=[{"value": "nia@work.example", "type": "work"}]
    )
    await db.execute(
        f"UPDATE {quoted_schema(await schema_of(db, tenant.slug))}.users SET version = "
        "version + 1, resource = jsonb_set(resource, '{emails}', resource->'emails' || "
        """'[{"value": "nia@home.example", "type": "home"}]') WHERE id = $1::uuid""",
        user["id"],
    )
    response = await client.patch(
        f"{tenant.scim}/Users/{user['id']}",
        json=patch_body(
            {
                "op": "replace",
                "path": 'emails[type eq "home"]',
                "value": {"value": "nia@new.example", "type": "home"},
            }
        ),
        headers=tenant.auth(),
    )
    assert response.status_code == 200, response.text
    assert [email["value"] for email in response.json()["emails"]] == [
        "nia@work.example",
        "nia@new.example",
    ]
    assert response.json()["meta"]["version"] == 'W/"3"'
    [*_, updated] = await all_events(client, tenant.slug)
    assert updated["data"]["emails"] == response.json()["emails"]


async def test_events_api_errors(client: Client, tenant: TenantHandle) -> None:
    url = f"/admin/v1/tenants/{tenant.slug}/events"
    bad_cursor = await client.get(url, params={"after": "abc"}, headers=admin_headers())
    assert bad_cursor.status_code == 400
    assert bad_cursor.headers["content-type"].startswith("application/problem+json")
    too_many = await client.get(url, params={"limit": "5000"}, headers=admin_headers())
    assert too_many.status_code == 400
    unknown = await client.get("/admin/v1/tenants/nope/events", headers=admin_headers())
    assert unknown.status_code == 404
    anonymous = await client.get(url)
    assert anonymous.status_code == 401


async def test_recent_events_are_read_back_newest_first(
    client: Client, tenant: TenantHandle
) -> None:
    for n in range(5):
        await tenant.create_user(f"recent{n}@example.com")
    forward = await all_events(client, tenant.slug)
    url = f"/admin/v1/tenants/{tenant.slug}/events/recent"

    async def recent(**params: Any) -> Any:
        response = await client.get(url, params=params, headers=admin_headers())
        assert response.status_code == 200, response.text
        return response.json()

    latest = await recent(limit=3)
    assert latest["events"] == forward[::-1][:3]
    older = await recent(limit=3, before=latest["next"])
    assert older == {"events": forward[::-1][3:], "next": None}
    assert (await recent())["events"] == forward[::-1]
    for bad in ({"before": "abc"}, {"limit": 0}, {"limit": 5000}):
        refused = await client.get(url, params=bad, headers=admin_headers())
        assert refused.status_code == 400, bad
    missing = await client.get("/admin/v1/tenants/nope/events/recent", headers=admin_headers())
    assert missing.status_code == 404
    assert (await client.get(url)).status_code == 401


async def test_events_can_be_turned_off(db: Pool, tenant: TenantHandle) -> None:
    schema = await schema_of(db, tenant.slug)
    scope = provisioning.Scope(schema=schema, base_url="http://x", events=False)
    await provisioning.create(db, USERS, scope, {"userName": "quiet@example.com"})
    assert await outbox.read(db, schema, after=0, limit=10) == []


async def test_other_features_record_user_linked(
    client: Client, db: Pool, tenant: TenantHandle
) -> None:
    user = await tenant.create_user("linked@example.com")
    schema = await schema_of(db, tenant.slug)
    async with db.acquire() as conn, conn.transaction():
        await events.record(conn, schema, [events.linked(user, {"matched_by": "userName"})])
    last = (await all_events(client, tenant.slug))[-1]
    assert last["type"] == "user.linked"
    assert last["resource"]["id"] == user["id"]
    assert last["previous"] == {"link": {"matched_by": "userName"}}


async def test_retention_purges_old_events(
    client: Client, db: Pool, settings: Settings, tenant: TenantHandle, migrated_database: str
) -> None:
    await tenant.create_user("old@example.com")
    await tenant.create_user("new@example.com")
    schema = await schema_of(db, tenant.slug)
    await db.execute(
        f'UPDATE "{schema}".events SET occurred_at = $1 WHERE sequence = 1',
        datetime.now(UTC) - timedelta(days=settings.event_retention_days + 1),
    )
    worker = WebhookWorker(
        db, dataclasses.replace(settings, event_retention_days=30), None, dsn=migrated_database
    )
    await worker.purge()
    assert [e["sequence"] for e in await all_events(client, tenant.slug)] == [2]


async def test_a_write_is_announced_after_it_commits_and_a_failed_one_never(
    client: Client, tenant: TenantHandle, db: Pool, migrated_database: str
) -> None:
    """SCIM writes do not NOTIFY in their own transaction (PostgreSQL would serialise
    every notifying commit); their schema is announced once they committed."""
    schema = await schema_of(db, tenant.slug)
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(migrated_database)
    await listener.add_listener(
        outbox.CHANNEL, lambda _c, _p, _ch, payload: heard.put_nowait(str(payload))
    )
    try:
        created = await client.post(
            f"{tenant.scim}/Users",
            json={"userName": "announced@example.com"},
            headers=tenant.auth(),
        )
        assert created.status_code == 201
        assert await asyncio.wait_for(heard.get(), 5) == schema
        # By then the event is there to read: the announcement followed the commit.
        assert await db.fetchval(f"SELECT count(*) FROM {quoted_schema(schema)}.events") >= 1
        refused = await client.post(
            f"{tenant.scim}/Users",
            json={"userName": "announced@example.com"},
            headers=tenant.auth(),
        )
        assert refused.status_code == 409
        await asyncio.sleep(0.3)
        assert heard.empty()
    finally:
        await listener.close()


def event_for(user: str) -> outbox.NewEvent:
    return outbox.NewEvent(
        id=uuid.uuid4(),
        type="user.updated",
        resource_type="User",
        resource_id=uuid.uuid4(),
        data={"userName": user},
    )


async def numbers_of(db: Pool, schema: str) -> dict[str, int]:
    rows = await db.fetch(f"SELECT data, sequence FROM {quoted_schema(schema)}.events")
    return {row["data"]["userName"]: row["sequence"] for row in rows}


async def test_a_write_holds_its_tenants_counter_only_while_it_commits(
    tenant: TenantHandle, db: Pool
) -> None:
    """Events inserted unnumbered are numbered by their commit: a write that has appended
    its events but not committed holds up no other write of the tenant."""
    schema = await schema_of(db, tenant.slug)
    async with db.acquire() as slow, db.acquire() as quick:
        first = slow.transaction()
        await first.start()
        await outbox.append(slow, schema, [event_for("slow")], at_commit=True)

        async def quick_write() -> None:
            async with quick.transaction():
                two = [event_for("quick-1"), event_for("quick-2")]
                await outbox.append(quick, schema, two, at_commit=True)

        await asyncio.wait_for(quick_write(), 5)
        # Committed while `slow` is still open: with numbers taken at the insert it would
        # have waited for `slow` to finish.
        assert await numbers_of(db, schema) == {"quick-1": 1, "quick-2": 2}
        await first.commit()
    assert await numbers_of(db, schema) == {"quick-1": 1, "quick-2": 2, "slow": 3}


async def test_numbers_taken_at_the_insert_and_at_commit_keep_commit_order(
    tenant: TenantHandle, db: Pool
) -> None:
    """Operator actions (and tenants not yet at schema version 8) number in the insert;
    both ways queue on the same counter row, so the sequence stays gapless."""
    schema = await schema_of(db, tenant.slug)
    async with db.acquire() as early, db.acquire() as late:
        holding = early.transaction()
        await holding.start()
        await outbox.append(early, schema, [event_for("early")])  # holds the counter
        waiting = late.transaction()
        await waiting.start()
        await outbox.append(late, schema, [event_for("late")], at_commit=True)
        committing = asyncio.create_task(waiting.commit())
        await asyncio.sleep(0.3)
        assert not committing.done(), "its numbering waits for the counter"
        await holding.commit()
        await asyncio.wait_for(committing, 5)
    assert await numbers_of(db, schema) == {"early": 1, "late": 2}


async def test_a_tenant_below_version_8_numbers_events_in_the_insert(
    client: Client, tenant: TenantHandle, db: Pool
) -> None:
    """Served before `migrate` reaches it, its events table needs the numbers in the
    insert; once migrated, its writes go on from the same counter."""
    schema = await schema_of(db, tenant.slug)
    qualified = quoted_schema(schema)
    async with db.acquire() as conn, conn.transaction():
        # Back to version 7: what migrations 11, 10, 9 and 8 changed, undone.
        await conn.execute(
            f"DROP INDEX {qualified}.users_email_values_idx; "
            f"ALTER TABLE {qualified}.users DROP COLUMN email_values; "
            f"DROP INDEX {qualified}.users_hidden_idx; "
            f"DROP TRIGGER events_number_at_commit ON {qualified}.events; "
            f"DROP FUNCTION {qualified}.number_event_{schema}(); "
            f"DROP INDEX {qualified}.events_sequence_key; "
            f"ALTER TABLE {qualified}.events ADD PRIMARY KEY (sequence)"
        )
        tenant_id = await conn.fetchval(
            "UPDATE scim_control.tenants SET schema_version = $2 WHERE slug = $1 RETURNING id",
            tenant.slug,
            outbox.NUMBERED_AT_COMMIT_VERSION - 1,
        )
        await notifications.notify_tenant_changed(conn, tenant_id)
    seen_by_the_service(tenant, tenant_id)
    await tenant.create_user("old@example.com")
    await tenant.create_user("older@example.com")
    async with db.acquire() as conn:
        assert await apply_pending(conn, tenant_id) == LATEST_VERSION - 7
    seen_by_the_service(tenant, tenant_id)
    await tenant.create_user("migrated@example.com")
    found = await all_events(client, tenant.slug)
    assert [event["sequence"] for event in found] == [1, 2, 3]


async def _random_write(
    client: Client, tenant: TenantHandle, rng: random.Random, users: list[str], teams: list[str]
) -> None:
    """One write of any kind IdPs make, on users and groups picked at random; what it
    creates joins ``users`` or ``teams``, what it deletes leaves them. Refusals are
    the client's (4xx: a member deleted meanwhile, say), never the service's."""
    scim, auth = tenant.scim, tenant.auth()
    pick = rng.random()
    joins: list[str] | None = None
    if pick < 0.2 or not users:
        user = {"userName": f"w{rng.getrandbits(32)}@example.com", "active": True}
        response = await client.post(f"{scim}/Users", json=user, headers=auth)
        joins = users
    elif pick < 0.45:
        body = _random_user_patch(rng)
        response = await client.patch(f"{scim}/Users/{rng.choice(users)}", json=body, headers=auth)
    elif pick < 0.5:
        user_id = rng.choice(users)
        put = _random_user_put(rng) | {"userName": f"w{rng.getrandbits(32)}@example.com"}
        response = await client.put(f"{scim}/Users/{user_id}", json=put, headers=auth)
    elif pick < 0.55:
        user_id = users.pop(rng.randrange(len(users)))
        response = await client.delete(f"{scim}/Users/{user_id}", headers=auth)
    elif pick < 0.65 or not teams:
        members = [{"value": member} for member in rng.sample(users, min(3, len(users)))]
        group = {"displayName": f"Team {len(teams)}", "members": members}
        response = await client.post(f"{scim}/Groups", json=group, headers=auth)
        joins = teams
    elif pick < 0.95:
        body = _random_member_patch(rng, users + teams, rng.randrange(9))
        response = await client.patch(f"{scim}/Groups/{rng.choice(teams)}", json=body, headers=auth)
    else:
        team = teams.pop(rng.randrange(len(teams)))
        response = await client.delete(f"{scim}/Groups/{team}", headers=auth)
    assert response.status_code < 500, response.text
    if joins is not None and response.status_code == 201:
        joins.append(response.json()["id"])


def _replayed(
    found: list[dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, set[tuple[str, str]]]]:
    """Users, groups and memberships as a consumer of the events rebuilds them, checking
    on the way that each update's `previous` is what the one before left."""
    users: dict[str, Any] = {}
    groups: dict[str, Any] = {}
    members: dict[str, set[tuple[str, str]]] = {}
    deleted: set[str] = set()
    for event in found:
        kind, resource_id = event["type"], event["resource"]["id"]
        held = users if event["resource"]["type"] == "User" else groups
        if kind.endswith(".deleted"):
            del held[resource_id]
            members.pop(resource_id, None)
            deleted.add(resource_id)
        elif kind == "user.roles_changed":
            assert users[resource_id]["roles"] == event["previous"]["roles"], event
            users[resource_id] = users[resource_id] | {"roles": event["data"]["roles"]}
        elif kind in ("group.member_added", "group.member_removed"):
            # Held events come when released: a group's may follow its deletion.
            if resource_id not in deleted:
                member = (event["data"]["member"]["value"], event["data"]["member"]["type"])
                changed = members.setdefault(resource_id, set())
                (changed.add if kind.endswith("added") else changed.remove)(member)
        else:
            before = held.get(resource_id, {})
            for key, value in (event.get("previous") or {}).items():
                assert before.get(key) == value, (event, before)
            held[resource_id] = event["data"]
    return users, groups, members


@pytest.mark.parametrize("way", ["unmapped", "mapped", "tripped", "concurrent"])
async def test_the_events_replayed_rebuild_every_user_group_and_membership(
    client: Client, tenant: TenantHandle, way: str
) -> None:
    """After 300 random writes of every kind (creates, PATCHes, PUTs, deletes, nesting,
    refusals among them), a consumer that applies the tenant's events in order holds
    every user and group as SCIM returns them, and every membership: the product
    learns of each change, as the events promise; also when six write at once.
    Mapped, it holds each user's
    roles too (group Sub grants one, through nesting as well). Tripped, the guard
    holds some events until they are released; the feed is then complete as well."""
    users = await _set_up(client, tenant, way)
    teams: list[str] = []
    sub_id = ""
    if way == "mapped":
        sub = {"displayName": "Sub"}
        made = await client.post(f"{tenant.scim}/Groups", json=sub, headers=tenant.auth())
        sub_id = made.json()["id"]
        teams.append(sub_id)
    rng = random.Random(17)  # noqa: S311 - test data, not a secret
    if way == "concurrent":
        # Six writers at once, meeting on the same users and groups: the feed, in its
        # order of commits, still rebuilds what they left.
        async def writer(seed: int) -> None:
            mine = random.Random(seed)  # noqa: S311 - test data, not a secret
            for _ in range(50):
                await _random_write(client, tenant, mine, users, teams)

        await asyncio.gather(*(writer(seed) for seed in range(6)))
    for step in range(300 if way != "concurrent" else 0):
        await _random_write(client, tenant, rng, users, teams)
        if way == "mapped" and step % 10 == 0 and users:
            # Into Sub (unless renamed or deleted since), to move some roles.
            add = {"op": "add", "path": "members", "value": [{"value": rng.choice(users)}]}
            await client.patch(
                f"{tenant.scim}/Groups/{sub_id}", json=patch_body(add), headers=tenant.auth()
            )
    if way == "tripped":
        released = await client.post(
            f"/admin/v1/tenants/{tenant.slug}/guard/release", headers=admin_headers()
        )
        assert released.status_code == 200, released.text
    found = await all_events(client, tenant.slug)
    replayed_users, replayed_groups, replayed_members = _replayed(found)
    listed = await client.get(
        f"{tenant.scim}/Users", params={"count": "1000"}, headers=tenant.auth()
    )
    stored = {user["id"]: user for user in listed.json()["Resources"]}
    for user_id, user in stored.items():
        user.pop("groups", None)
        if way == "mapped":
            # Not a SCIM attribute: the roles the admin API serves.
            roles = await client.get(
                f"/admin/v1/tenants/{tenant.slug}/users/{user_id}/roles", headers=admin_headers()
            )
            user["roles"] = roles.json()["roles"]
    assert replayed_users == stored
    if way == "mapped":
        granted = [e for e in found if e["type"] == "user.roles_changed"]
        assert any("sub" in event["data"]["roles"] for event in granted)
    listed = await client.get(
        f"{tenant.scim}/Groups", params={"count": "1000"}, headers=tenant.auth()
    )
    stored_groups = listed.json()["Resources"]
    memberships = {
        group["id"]: {(m["value"], m["type"]) for m in group.pop("members", [])}
        for group in stored_groups
    }
    # A member change moves its group's version, which its event does not carry.
    for group in [*replayed_groups.values(), *stored_groups]:
        del group["meta"]["version"], group["meta"]["lastModified"]
    assert replayed_groups == {group["id"]: group for group in stored_groups}
    assert {g: m for g, m in replayed_members.items() if m} == {
        g: m for g, m in memberships.items() if m
    }
    assert len(stored) > 20
    assert len(stored_groups) > 2


async def test_members_set_again_are_left_as_they_are(
    client: Client, db: Pool, tenant: TenantHandle
) -> None:
    """A group PUT or a `replace` of its members writes only the memberships that change:
    those it repeats keep their rows, and setting the same members again changes
    nothing, not even the version."""
    ada, bob, cy = [
        (await tenant.create_user(f"{name}@example.com"))["id"] for name in ("ada", "bob", "cy")
    ]
    url = f"{tenant.scim}/Groups"
    made = await client.post(
        url,
        json={"displayName": "G", "members": [{"value": ada}, {"value": bob}]},
        headers=tenant.auth(),
    )
    group = made.json()["id"]
    qualified = quoted_schema(await schema_of(db, tenant.slug))
    rows = f"SELECT member_id::text, xmin::text FROM {qualified}.group_members ORDER BY 1"
    before = {row[0]: row[1] for row in await db.fetch(rows)}
    put = {"displayName": "G", "members": [{"value": ada}, {"value": cy}]}
    response = await client.put(f"{url}/{group}", json=put, headers=tenant.auth())
    assert response.status_code == 200, response.text
    after = {row[0]: row[1] for row in await db.fetch(rows)}
    assert set(after) == {ada, cy}
    assert after[ada] == before[ada]  # kept, not deleted and inserted again
    replace = {"op": "replace", "path": "members", "value": [{"value": ada}, {"value": cy}]}
    again = await client.patch(f"{url}/{group}", json=patch_body(replace), headers=tenant.auth())
    assert again.status_code == 204, again.text
    assert again.headers["etag"] == response.headers["etag"]
    assert {row[0]: row[1] for row in await db.fetch(rows)} == after
