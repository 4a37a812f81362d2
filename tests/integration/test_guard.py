"""The mass-deprovisioning guard: holds, releases in order, discards; SCIM never notices."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest

from service import guard, provisioning, write_state
from service.postgres import Pool, create_pool
from service.settings import Settings
from service.store.resources import GROUPS, USERS
from tenants.schemas import quoted_schema
from tests.integration import receiver as receivers
from tests.integration.test_events import Feed, announced_scope, interleave, patch_body
from tests.integration.test_roles import create_group, patch_group
from tests.integration.test_webhooks import register, verify, worker
from tests.support.application import Client, TenantHandle, admin_headers, schema_of
from tests.support.concurrency import (
    Pause,
    finished,
    pause_first_call,
    paused_inside,
    still_waiting,
)
from tests.support.scans import read_whole


async def guard_of(client: Client, slug: str) -> dict[str, Any]:
    response = await client.get(f"/admin/v1/tenants/{slug}/guard", headers=admin_headers())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def configure(client: Client, slug: str, **settings: Any) -> None:
    response = await client.put(
        f"/admin/v1/tenants/{slug}/guard", json=settings, headers=admin_headers()
    )
    assert response.status_code == 200, response.text


async def deactivate(tenant: TenantHandle, user_id: str) -> None:
    response = await tenant.client.patch(
        f"{tenant.scim}/Users/{user_id}",
        json=patch_body({"op": "replace", "path": "active", "value": False}),
        headers=tenant.auth(),
    )
    assert response.status_code == 200, response.text
    assert response.json()["active"] is False


async def replace(tenant: TenantHandle, user_id: str, path: str, value: Any) -> None:
    response = await tenant.client.patch(
        f"{tenant.scim}/Users/{user_id}",
        json=patch_body({"op": "replace", "path": path, "value": value}),
        headers=tenant.auth(),
    )
    assert response.status_code == 200, response.text


async def rename(tenant: TenantHandle, user_id: str, name: str) -> None:
    await replace(tenant, user_id, "displayName", name)


async def trip_the_guard(client: Client, tenant: TenantHandle) -> tuple[list[str], Feed]:
    """Ten users, the guard tripped by the third deactivation (users 0 to 2 deactivated,
    user 2's event held); the events feed, read to its end."""
    await configure(client, tenant.slug, threshold_percent=20, min_users=5)
    users = [(await tenant.create_user(f"u{n}@example.com"))["id"] for n in range(10)]
    for user in users[:3]:
        await deactivate(tenant, user)
    feed = Feed(client, tenant.slug)
    await feed.new()
    return users, feed


def keep_the_guard_row_locked(monkeypatch: pytest.MonkeyPatch, by: str = "_locked_row") -> Pause:
    """Whoever next locks a guard row `FOR UPDATE` (`guard._locked_row`: a release, a
    discard; ``by`` `_count`: a deprovision the locked way, which locks it as it counts)
    holds it, paused once it has the lock."""
    return pause_first_call(monkeypatch, guard, by, after=True)


async def test_a_create_while_the_guard_holds_is_stored_and_delivered(
    client: Client, tenant: TenantHandle
) -> None:
    """While the guard holds, a create is answered and stored as ever (its one
    statement finds the guard tripped and leaves it to a transaction with the state
    it read), and its event, about a user nobody holds, is delivered as stored."""
    await configure(client, tenant.slug, threshold_percent=20, min_users=5)
    users = [(await tenant.create_user(f"u{n}@example.com"))["id"] for n in range(5)]
    feed = Feed(client, tenant.slug)
    await feed.new()
    await deactivate(tenant, users[0])
    await deactivate(tenant, users[1])  # 2 of 5: trips the guard, held
    newcomer = await tenant.create_user("new@example.com", externalId="e-new")
    assert (await guard_of(client, tenant.slug))["holding"] is True
    delivered = await feed.new()
    assert [(e["type"], e["resource"]["id"]) for e in delivered] == [
        ("user.deactivated", users[0]),
        ("user.created", newcomer["id"]),
    ]
    assert delivered[1]["data"] == newcomer


async def test_the_guard_holds_past_the_threshold_and_releases_in_order(
    client: Client, tenant: TenantHandle
) -> None:
    await configure(client, tenant.slug, threshold_percent=20, min_users=5)
    users = [(await tenant.create_user(f"u{n}@example.com"))["id"] for n in range(10)]
    group = await create_group(tenant, "Staff", users[3])
    feed = Feed(client, tenant.slug)
    await feed.new()

    # 2 of 10 is not more than 20 %: delivered.
    await deactivate(tenant, users[0])
    await deactivate(tenant, users[1])
    assert [e["type"] for e in await feed.new()] == ["user.deactivated"] * 2
    # The third trips the guard: held, and so is whatever follows about held users.
    await deactivate(tenant, users[2])
    deleted = await client.delete(f"{tenant.scim}/Users/{users[3]}", headers=tenant.auth())
    assert deleted.status_code == 204
    await rename(tenant, users[2], "Still here")
    await rename(tenant, users[9], "Unrelated")
    [delivered] = await feed.new()
    assert (delivered["type"], delivered["resource"]["id"]) == ("user.updated", users[9])

    # SCIM answers as ever: the changes are in the tenant's data.
    read = await client.get(f"{tenant.scim}/Users/{users[2]}", headers=tenant.auth())
    assert (read.json()["active"], read.json()["displayName"]) == (False, "Still here")
    gone = await client.get(f"{tenant.scim}/Users/{users[3]}", headers=tenant.auth())
    assert gone.status_code == 404

    state = await guard_of(client, tenant.slug)
    assert state["holding"] is True
    assert (state["window_users"], state["window_deprovisions"]) == (10, 4)
    assert (state["held_events"], state["held_users"]) == (4, 2)
    assert state["held_by_type"] == {
        "user.deactivated": 1,
        "user.deleted": 1,
        "group.member_removed": 1,
        "user.updated": 1,
    }
    held = await client.get(f"/admin/v1/tenants/{tenant.slug}/guard/held", headers=admin_headers())
    held_events = held.json()["events"]
    expected = [
        ("user.deactivated", users[2]),
        ("user.deleted", users[3]),
        ("group.member_removed", group),
        ("user.updated", users[2]),
    ]
    assert [(e["type"], e["resource"]["id"]) for e in held_events] == expected

    released = await client.post(
        f"/admin/v1/tenants/{tenant.slug}/guard/release", headers=admin_headers()
    )
    assert released.json() == {"released": 4}
    after = await feed.new()
    assert [(e["type"], e["resource"]["id"]) for e in after] == expected
    assert [e["id"] for e in after] == [e["id"] for e in held_events]
    assert [e["sequence"] for e in after] == list(
        range(after[0]["sequence"], after[0]["sequence"] + 4)
    )
    assert after[0]["sequence"] > delivered["sequence"]
    state = await guard_of(client, tenant.slug)
    assert (state["holding"], state["held_events"], state["window_deprovisions"]) == (False, 0, 0)

    # Re-armed: events flow again.
    await rename(tenant, users[2], "Back")
    assert [e["type"] for e in await feed.new()] == ["user.updated"]


async def test_discarded_events_are_never_delivered(
    client: Client, tenant: TenantHandle, db: Pool
) -> None:
    await configure(client, tenant.slug, threshold_percent=50, min_users=4)
    users = [(await tenant.create_user(f"u{n}@example.com"))["id"] for n in range(4)]
    feed = Feed(client, tenant.slug)
    await feed.new()
    for user in users:
        await deactivate(tenant, user)
    assert len(await feed.new()) == 2
    discarded = await client.post(
        f"/admin/v1/tenants/{tenant.slug}/guard/discard", headers=admin_headers()
    )
    assert discarded.json() == {"discarded": 2}
    assert await feed.new() == []
    assert (await guard_of(client, tenant.slug))["holding"] is False
    schema = await schema_of(db, tenant.slug)
    inactive = await db.fetchval(f'SELECT count(*) FROM "{schema}".users WHERE NOT active')
    assert inactive == 4
    # A reactivation afterwards is delivered: nothing about the user is held any more.
    response = await client.patch(
        f"{tenant.scim}/Users/{users[3]}",
        json=patch_body({"op": "replace", "path": "active", "value": True}),
        headers=tenant.auth(),
    )
    assert response.status_code == 200
    assert [e["type"] for e in await feed.new()] == ["user.reactivated"]


async def test_small_tenants_and_disabled_guards_hold_nothing(
    client: Client, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    # Below the default minimum of 50 users.
    for handle in (tenant, other_tenant):
        users = [(await handle.create_user(f"u{n}@example.com"))["id"] for n in range(6)]
        if handle is other_tenant:
            await configure(client, handle.slug, enabled=False, min_users=1)
        for user in users:
            await deactivate(handle, user)
        state = await guard_of(client, handle.slug)
        assert (state["holding"], state["held_events"]) == (False, 0)
        deactivated = [
            e for e in await Feed(client, handle.slug).new() if "deactivated" in e["type"]
        ]
        assert len(deactivated) == 6
    defaults = (await guard_of(client, tenant.slug))["settings"]
    assert defaults == {
        "enabled": True,
        "threshold_percent": 20,
        "window_seconds": 3600,
        "min_users": 50,
    }


async def test_guard_settings_are_checked(client: Client, tenant: TenantHandle) -> None:
    url = f"/admin/v1/tenants/{tenant.slug}/guard"
    for body in ({"threshold_percent": 0}, {"window_seconds": 0}, {"min_users": -1}, {"x": 1}):
        response = await client.put(url, json=body, headers=admin_headers())
        assert response.status_code == 400, body
    missing = await client.post("/admin/v1/tenants/nope/guard/release", headers=admin_headers())
    assert missing.status_code == 404


async def test_webhooks_get_held_events_only_once_released_and_in_order(
    client: Client, settings: Settings, migrated_database: str, tenant: TenantHandle
) -> None:
    await configure(client, tenant.slug, threshold_percent=20, min_users=5)
    users = [(await tenant.create_user(f"u{n}@example.com"))["id"] for n in range(5)]
    async with receivers.running() as receiver:
        endpoint = await register(
            client, receiver.url, slug=tenant.slug, events=["user.deactivated"]
        )
        try:
            async with worker(settings, migrated_database):
                for user in users[:3]:
                    await deactivate(tenant, user)
                await receiver.wait_for(1)
                await asyncio.sleep(0.5)
                assert len(receiver.accepted) == 1
                released = await client.post(
                    f"/admin/v1/tenants/{tenant.slug}/guard/release", headers=admin_headers()
                )
                assert released.json() == {"released": 2}
                await receiver.wait_for(3)
        finally:
            await client.delete(f"/admin/v1/webhooks/{endpoint['id']}", headers=admin_headers())
    delivered = [verify(endpoint["secret"], received) for received in receiver.accepted]
    assert [event["resource"]["id"] for event in delivered] == users[:3]
    sequences = [event["sequence"] for event in delivered]
    assert sequences == sorted(sequences)


async def test_concurrent_deactivations_are_each_counted_once(
    client: Client, db: Pool, tenant: TenantHandle, caplog: pytest.LogCaptureFixture
) -> None:
    """Each deactivation counts and stores (or holds) its event in its own statement,
    on the guard row it locks: at once, none is lost and the guard trips once.

    Run on this loop's pool: the test client hands the application one request at a
    time, so its PATCHes would not overlap."""
    await configure(client, tenant.slug, threshold_percent=20, min_users=5)
    users = [(await tenant.create_user(f"u{n}@example.com"))["id"] for n in range(10)]
    feed = Feed(client, tenant.slug)
    await feed.new()
    scope = await announced_scope(db, tenant)
    with caplog.at_level(logging.WARNING, logger="service.guard"):
        await asyncio.gather(
            *(
                provisioning.apply_patch(
                    db,
                    USERS,
                    scope,
                    user,
                    patch_body({"op": "replace", "path": "active", "value": False}),
                )
                for user in users
            )
        )
    assert [record.getMessage().split(":")[0] for record in caplog.records] == [
        f"deprovisioning guard tripped for tenant {scope.tenant_id}"
    ]
    state = await guard_of(client, tenant.slug)
    assert (state["window_users"], state["window_deprovisions"]) == (10, 10)
    assert (state["held_events"], state["held_users"]) == (8, 8)
    delivered = await feed.new()
    assert [event["type"] for event in delivered] == ["user.deactivated"] * 2
    held = await client.get(f"/admin/v1/tenants/{tenant.slug}/guard/held", headers=admin_headers())
    outcomes = {event["resource"]["id"] for event in delivered + held.json()["events"]}
    assert outcomes == set(users)


async def test_a_new_window_counts_the_tenants_users_once(
    client: Client, db: Pool, migrated_database: str, tenant: TenantHandle
) -> None:
    """A window's base is the tenant's active users, counted as the window opens, on the
    guard row every deprovision of the tenant waits for: once, not once per use of it
    in the statement (it was four times, every user of the tenant read each time)."""
    await configure(client, tenant.slug, min_users=1_000_000)
    schema = await schema_of(db, tenant.slug)
    users = f"{quoted_schema(schema)}.users"
    # Every statement on the tenant's users runs on this connection, which publishes
    # its counts when asked: another one (the application's, creating a user in a
    # table too small for an index) publishes its own up to seconds later, into
    # the figures measured.
    one = await create_pool(migrated_database, min_size=1, max_size=1)
    try:
        scope = await announced_scope(one, tenant)
        leaving = {"userName": "leaving@example.com"}
        user = (await provisioning.create(one, USERS, scope, leaving))["id"]
        await one.execute(
            f"INSERT INTO {users} (id, resource, user_name) SELECT gen_random_uuid(), '{{}}', "
            "'bulk' || n || '@example.com' FROM generate_series(1, 3000) n"
        )
        await one.execute(f"ANALYZE {users}")
        before = await read_whole(one, schema, "users")
        await provisioning.apply_patch(
            one, USERS, scope, user, patch_body({"op": "replace", "path": "active", "value": False})
        )
        after = await read_whole(one, schema, "users")
    finally:
        await one.close()
    assert after["users"] - before["users"] == 1
    state = await guard_of(client, tenant.slug)
    assert (state["window_users"], state["window_deprovisions"]) == (3001, 1)


async def test_writes_about_held_users_hold_side_by_side_and_a_release_waits_for_them(
    client: Client, db: Pool, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the guard is tripped, a write about a held user that deprovisions no one
    and takes the locked way (it sets a password) locks the guard row only FOR SHARE:
    another such write (in one statement, `guard._sharing_decision`) stores its held event
    meanwhile (they went one at a time when it was FOR UPDATE), while a release waits
    for the first one's commit and then releases its event too, each user's events in
    their order. Run on this loop's pool, so that the writes overlap."""
    await configure(client, tenant.slug, threshold_percent=20, min_users=5)
    users = [(await tenant.create_user(f"u{n}@example.com"))["id"] for n in range(10)]
    for user in users[:4]:
        await deactivate(tenant, user)  # the third trips the guard: users 2 and 3 held
    feed = Feed(client, tenant.slug)
    await feed.new()
    scope = await announced_scope(db, tenant)
    pause = pause_first_call(monkeypatch, guard, "_hold")

    async def rename_on_pool(user: str, name: str, *more: dict[str, Any]) -> None:
        change = patch_body({"op": "replace", "path": "displayName", "value": name}, *more)
        await provisioning.apply_patch(db, USERS, scope, user, change)

    password = {"op": "replace", "path": "password", "value": "correct horse battery"}
    async with paused_inside(pause, rename_on_pool(users[2], "First", password)):
        await finished(rename_on_pool(users[3], "Second"))
        releasing = asyncio.create_task(guard.release(db, tenant.slug))
        await still_waiting(releasing, "the release went ahead of a write still holding")
    assert await finished(releasing) == 4
    assert [(e["type"], e["resource"]["id"]) for e in await feed.new()] == [
        ("user.deactivated", users[2]),
        ("user.deactivated", users[3]),
        ("user.updated", users[3]),
        ("user.updated", users[2]),
    ]
    assert (await guard_of(client, tenant.slug))["holding"] is False


async def test_member_changes_while_the_guard_holds_hold_the_held_members_events_only(
    client: Client, tenant: TenantHandle
) -> None:
    """A member PATCH while the guard is tripped: the events naming a held user are
    held, the others' delivered, from the one statement that changes the members
    (`guard.appending_members`); a release delivers the held ones in
    their order, member types included."""
    await configure(client, tenant.slug, threshold_percent=20, min_users=5)
    users = [(await tenant.create_user(f"u{n}@example.com"))["id"] for n in range(10)]
    group = await create_group(tenant, "Staff")
    for user in users[:3]:
        await deactivate(tenant, user)  # the third trips the guard: user 2 held
    feed = Feed(client, tenant.slug)
    await feed.new()

    def members(event: dict[str, Any]) -> tuple[str, str, str]:
        member = event["data"]["member"]
        return event["type"], member["value"], member["type"]

    for op in ("add", "remove"):
        await patch_group(
            tenant,
            group,
            {"op": op, "path": "members", "value": [{"value": users[2]}, {"value": users[5]}]},
        )
        assert [members(e) for e in await feed.new()] == [
            (f"group.member_{op}{'ed' if op == 'add' else 'd'}", users[5], "User")
        ]
    read = await client.get(f"{tenant.scim}/Groups/{group}", headers=tenant.auth())
    assert read.json()["meta"]["version"] == 'W/"3"'
    state = await guard_of(client, tenant.slug)
    assert state["held_by_type"] == {
        "user.deactivated": 1,
        "group.member_added": 1,
        "group.member_removed": 1,
    }
    released = await client.post(
        f"/admin/v1/tenants/{tenant.slug}/guard/release", headers=admin_headers()
    )
    assert released.json() == {"released": 3}
    after = await feed.new()
    assert after[0]["type"] == "user.deactivated"
    assert [members(e) for e in after[1:]] == [
        ("group.member_added", users[2], "User"),
        ("group.member_removed", users[2], "User"),
    ]


async def test_a_member_change_while_held_waits_for_a_delete_of_a_member_without_deadlock(
    client: Client, db: Pool, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's DELETE bumps the groups it leaves, then counts on the guard row `FOR
    UPDATE`; a member change while the guard holds locks the group before it shares the
    guard row, so it waits for the DELETE and both finish (the other order deadlocks).
    Run on this loop's pool, so that they overlap."""
    await configure(client, tenant.slug, threshold_percent=20, min_users=5)
    users = [(await tenant.create_user(f"u{n}@example.com"))["id"] for n in range(10)]
    group = await create_group(tenant, "Staff", users[6])
    for user in users[:3]:
        await deactivate(tenant, user)  # the third trips the guard
    feed = Feed(client, tenant.slug)
    await feed.new()
    scope = await announced_scope(db, tenant)
    pause = pause_first_call(monkeypatch, guard, "_count")
    add = patch_body({"op": "add", "path": "members", "value": [{"value": users[7]}]})
    async with paused_inside(pause, provisioning.delete(db, USERS, scope, users[6])):
        adding = asyncio.create_task(provisioning.apply_patch(db, GROUPS, scope, group, add))
        await still_waiting(adding, "the member change went ahead of the group's lock")
    await finished(adding)
    delivered = [(e["type"], e["data"].get("member", {}).get("value")) for e in await feed.new()]
    assert delivered == [("group.member_added", users[7])]
    state = await guard_of(client, tenant.slug)
    assert state["held_by_type"] == {
        "user.deactivated": 1,
        "user.deleted": 1,
        "group.member_removed": 1,
    }


async def test_a_tenants_first_deprovision_the_locked_way_creates_the_guard_row_and_counts(
    client: Client, tenant: TenantHandle
) -> None:
    """A DELETE counts on the guard row it locks as it counts; a tenant's first finds
    none, creates it and counts again, so it is counted like every later one."""
    users = [(await tenant.create_user(f"f{n}@example.com"))["id"] for n in range(4)]
    for n, user in enumerate(users[:2], start=1):
        deleted = await client.delete(f"{tenant.scim}/Users/{user}", headers=tenant.auth())
        assert deleted.status_code == 204
        state = await guard_of(client, tenant.slug)
        # The window's users: the active ones when it opened, the first deleted included.
        assert (state["window_users"], state["window_deprovisions"]) == (4, n)


@pytest.mark.usefixtures("unguessed")
async def test_a_deactivation_of_a_user_changed_after_it_was_read_counts_once(
    client: Client, db: Pool, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer commits between the deactivation's read and its statement: the
    statement writes nothing and counts nothing; the PATCH is applied again the locked
    way, which counts it."""
    await configure(client, tenant.slug, threshold_percent=50, min_users=1)
    user = await tenant.create_user("lu@example.com")
    await tenant.create_user("kai@example.com")
    interleaved = interleave(
        monkeypatch,
        provisioning,
        "update_unless_changed",
        f"UPDATE {quoted_schema(await schema_of(db, tenant.slug))}.users SET "
        "version = version + 1 WHERE id = $1",
        uuid.UUID(user["id"]),
    )
    await deactivate(tenant, user["id"])
    assert interleaved == [1]
    state = await guard_of(client, tenant.slug)
    assert (state["window_users"], state["window_deprovisions"]) == (2, 1)
    assert (state["holding"], state["held_events"]) == (False, 0)
    assert [e["type"] for e in await Feed(client, tenant.slug).new()] == [
        "user.created",
        "user.created",
        "user.deactivated",
    ]


async def test_deactivations_while_the_guard_holds_are_held_behind_their_users_events(
    client: Client, tenant: TenantHandle
) -> None:
    """Once tripped, each deactivation is counted and held by its own statement
    (`guard._counting_decision`), a user deactivated again after its held reactivation
    included: its events stay in their order, behind the ones held before."""
    users, feed = await trip_the_guard(client, tenant)
    await replace(tenant, users[2], "active", True)
    await deactivate(tenant, users[2])
    await deactivate(tenant, users[4])
    await rename(tenant, users[5], "Unrelated")
    assert [(e["type"], e["resource"]["id"]) for e in await feed.new()] == [
        ("user.updated", users[5])
    ]
    state = await guard_of(client, tenant.slug)
    assert (state["window_deprovisions"], state["held_events"], state["held_users"]) == (5, 4, 2)
    expected = [
        ("user.deactivated", users[2]),
        ("user.reactivated", users[2]),
        ("user.deactivated", users[2]),
        ("user.deactivated", users[4]),
    ]
    released = await client.post(
        f"/admin/v1/tenants/{tenant.slug}/guard/release", headers=admin_headers()
    )
    assert released.json() == {"released": 4}
    assert [(e["type"], e["resource"]["id"]) for e in await feed.new()] == expected


async def test_a_deactivation_waiting_for_a_release_is_delivered_after_the_released_events(
    client: Client, db: Pool, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deactivation read the guard tripped, then its statement waits for the guard
    row a release holds: it counts on the row as the release left it (a fresh
    window, not tripped), so its event is delivered, after the released ones, and
    nothing is held. Run on this loop's pool, so that they overlap."""
    users, feed = await trip_the_guard(client, tenant)
    scope = await announced_scope(db, tenant)
    pause = keep_the_guard_row_locked(monkeypatch)
    off = patch_body({"op": "replace", "path": "active", "value": False})
    async with paused_inside(pause, guard.release(db, tenant.slug)):
        deactivating = asyncio.create_task(
            provisioning.apply_patch(db, USERS, scope, users[6], off)
        )
        await still_waiting(deactivating, "the deactivation went ahead of the release")
    await finished(deactivating)
    assert [(e["type"], e["resource"]["id"]) for e in await feed.new()] == [
        ("user.deactivated", users[2]),
        ("user.deactivated", users[6]),
    ]
    state = await guard_of(client, tenant.slug)
    assert (state["holding"], state["held_events"]) == (False, 0)
    assert (state["window_users"], state["window_deprovisions"]) == (7, 1)


async def test_a_write_about_a_held_user_reads_who_is_held_once_it_shares_the_guard_row(
    client: Client, db: Pool, tenant: TenantHandle
) -> None:
    """A rename of a held user decides in its own statement
    (`guard._sharing_decision`), whose snapshot says the user is held. Meanwhile a
    transaction holding the guard row drops the held events and trips the guard
    anew (a discard, then new deprovisions): the statement waits for it, then reads
    who is held afresh (`guard.HELD_USERS`) and stores the event, as the user has no
    held events any more; its own snapshot would hold it. Run on this loop's pool,
    so that they overlap."""
    users, feed = await trip_the_guard(client, tenant)
    scope = await announced_scope(db, tenant)
    schema = quoted_schema(scope.schema)
    rename = patch_body({"op": "replace", "path": "displayName", "value": "After"})
    async with db.acquire() as other:
        transaction = other.transaction()
        await transaction.start()
        try:
            await other.execute(
                "SELECT FROM scim_control.deprovision_guards WHERE tenant = $1 FOR UPDATE",
                scope.tenant_id,
            )
            renaming = asyncio.create_task(
                provisioning.apply_patch(db, USERS, scope, users[2], rename)
            )
            await asyncio.sleep(0.3)
            assert not renaming.done(), "the rename went ahead of the guard row's lock"
            await other.execute(f"DELETE FROM {schema}.held_events")
            await other.execute(
                "UPDATE scim_control.deprovision_guards SET tripped_at = clock_timestamp() "
                "WHERE tenant = $1",
                scope.tenant_id,
            )
        finally:
            await transaction.commit()
    await asyncio.wait_for(renaming, 5)
    assert [(e["type"], e["resource"]["id"]) for e in await feed.new()] == [
        ("user.updated", users[2])
    ]
    state = await guard_of(client, tenant.slug)
    assert (state["holding"], state["held_events"]) == (True, 0)


async def test_a_release_waits_for_a_write_deciding_in_its_own_statement(
    client: Client, db: Pool, tenant: TenantHandle
) -> None:
    """A rename of a held user holds its event from its own statement, the guard row
    shared until it ends: a release that comes meanwhile waits, then
    releases that event too, in its order. The statement is held up inside the
    insert of its held event, by a trigger this test adds that waits for an advisory
    lock the test holds. Run on this loop's pool, so that they overlap."""
    users, feed = await trip_the_guard(client, tenant)
    scope = await announced_scope(db, tenant)
    schema = quoted_schema(scope.schema)
    key = 7_300_001
    await db.execute(
        f"CREATE FUNCTION {schema}.test_wait() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN PERFORM pg_advisory_xact_lock_shared({key}); RETURN NEW; END $$; "
        f"CREATE TRIGGER test_wait BEFORE INSERT ON {schema}.held_events "
        f"FOR EACH ROW EXECUTE FUNCTION {schema}.test_wait()"
    )
    rename = patch_body({"op": "replace", "path": "displayName", "value": "Held"})
    try:
        async with db.acquire() as other:
            await other.execute("SELECT pg_advisory_lock($1)", key)
            try:
                renaming = asyncio.create_task(
                    provisioning.apply_patch(db, USERS, scope, users[2], rename)
                )
                await asyncio.sleep(0.3)
                releasing = asyncio.create_task(guard.release(db, tenant.slug))
                await asyncio.sleep(0.3)
                assert not renaming.done(), "the rename did not wait inside its held insert"
                assert not releasing.done(), "the release went ahead of the rename"
            finally:
                await other.execute("SELECT pg_advisory_unlock($1)", key)
        await asyncio.wait_for(renaming, 5)
        assert await asyncio.wait_for(releasing, 5) == 2
    finally:
        await db.execute(f"DROP FUNCTION {schema}.test_wait() CASCADE")
    assert [(e["type"], e["resource"]["id"]) for e in await feed.new()] == [
        ("user.deactivated", users[2]),
        ("user.updated", users[2]),
    ]


async def test_a_member_change_waiting_for_a_deprovision_of_a_member_holds_its_event(
    client: Client, db: Pool, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member PATCH while the guard is tripped shares the guard row within its one
    statement, after changing the members; a deactivation of one of them holds the
    row meanwhile (the locked way: it sets a password too). The PATCH waits, then
    reads who is held afresh (`guard.HELD_USERS`): the member deactivated meanwhile
    is held, so is its membership event, the other member's is delivered; the
    statement's own snapshot would have missed it. Run on this loop's pool, so that
    they overlap."""
    users, feed = await trip_the_guard(client, tenant)
    group = await create_group(tenant, "Staff")
    await feed.new()
    scope = await announced_scope(db, tenant)
    pause = keep_the_guard_row_locked(monkeypatch, by="_count")
    off = patch_body(
        {"op": "replace", "path": "active", "value": False},
        {"op": "replace", "path": "password", "value": "correct horse battery"},
    )
    add = patch_body(
        {"op": "add", "path": "members", "value": [{"value": users[5]}, {"value": users[6]}]}
    )
    async with paused_inside(pause, provisioning.apply_patch(db, USERS, scope, users[5], off)):
        adding = asyncio.create_task(provisioning.apply_patch(db, GROUPS, scope, group, add))
        await still_waiting(adding, "the member change went ahead of the guard row's lock")
    await finished(adding)
    delivered = [(e["type"], e["data"].get("member", {}).get("value")) for e in await feed.new()]
    assert delivered == [("group.member_added", users[6])]
    held = await client.get(f"/admin/v1/tenants/{tenant.slug}/guard/held", headers=admin_headers())
    assert [(e["type"], e["user_id"]) for e in held.json()["events"]] == [
        ("user.deactivated", users[2]),
        ("user.deactivated", users[5]),
        ("group.member_added", users[5]),
    ]


async def test_a_user_change_tried_where_the_process_saw_the_guard_at_rest_is_held(
    client: Client, tenant: TenantHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change of a user this process just saw is tried in the statement that reads it
    (`service.recent_users`) only where the process last saw the guard at rest; where
    it has not seen it trip, that statement finds it tripped and writes nothing, and
    the change of a held user is held behind its deactivation."""
    users, feed = await trip_the_guard(client, tenant)
    monkeypatch.setattr(write_state, "_TRIPPED", set())
    rename = patch_body({"op": "replace", "path": "displayName", "value": "U2"})
    response = await client.patch(
        f"{tenant.scim}/Users/{users[2]}", json=rename, headers=tenant.auth()
    )
    assert response.status_code == 200, response.text
    assert await feed.new() == []
    held = await client.get(f"/admin/v1/tenants/{tenant.slug}/guard/held", headers=admin_headers())
    assert [(e["type"], e["resource"]["id"]) for e in held.json()["events"]] == [
        ("user.deactivated", users[2]),
        ("user.updated", users[2]),
    ]


async def test_in_a_tenant_mapping_roles_deactivations_carry_roles_held_or_not(
    client: Client, tenant: TenantHandle
) -> None:
    """A deactivation in a tenant that maps roles is decided by the guard in the update's
    own statement, which reads the user's roles: the events it delivers and the ones
    it holds (and releases) carry the roles the user has."""
    mapping = {
        "default_roles": ["member"],
        "groups": [{"match": "displayName", "value": "Staff", "roles": ["staff"]}],
    }
    saved = await client.put(
        f"/admin/v1/tenants/{tenant.slug}/roles", json=mapping, headers=admin_headers()
    )
    assert saved.status_code == 200, saved.text
    await configure(client, tenant.slug, threshold_percent=20, min_users=5)
    users = [(await tenant.create_user(f"u{n}@example.com"))["id"] for n in range(10)]
    await create_group(tenant, "Staff", users[2])
    feed = Feed(client, tenant.slug)
    await feed.new()
    for user in users[:3]:
        await deactivate(tenant, user)  # the third trips the guard
    await rename(tenant, users[2], "Still here")
    delivered = await feed.new()
    assert [(e["type"], e["data"]["roles"]) for e in delivered] == [
        ("user.deactivated", ["member"]),
        ("user.deactivated", ["member"]),
    ]
    state = await guard_of(client, tenant.slug)
    assert (state["holding"], state["held_events"]) == (True, 2)
    released = await client.post(
        f"/admin/v1/tenants/{tenant.slug}/guard/release", headers=admin_headers()
    )
    assert released.json() == {"released": 2}
    assert [(e["type"], e["data"]["roles"]) for e in await feed.new()] == [
        ("user.deactivated", ["member", "staff"]),
        ("user.updated", ["member", "staff"]),
    ]
