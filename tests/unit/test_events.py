"""Events as pure code: types, previous values, net membership changes, ids."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from service import events
from service.store import outbox


def user(**attributes: Any) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "2b0f7c44-5d8e-4a36-9d8e-1f2a3b4c5d6e",
        "userName": "ada@example.com",
        **attributes,
        "meta": {"resourceType": "User", "version": 'W/"1"'},
    }


def test_created_carries_the_resource_without_member_lists() -> None:
    event = events.created(user(groups=[{"value": "g"}]))
    assert event.type == "user.created"
    assert event.resource_type == "User"
    assert event.resource_id == uuid.UUID("2b0f7c44-5d8e-4a36-9d8e-1f2a3b4c5d6e")
    assert "groups" not in event.data
    assert event.data["userName"] == "ada@example.com"
    assert event.previous is None


def test_previous_values_name_what_changed_with_null_for_absent() -> None:
    before = user(displayName="Ada", title="Dev")
    after = user(displayName="Ada L.", nickName="al")
    after["meta"] = {"resourceType": "User", "version": 'W/"2"'}
    assert events.previous_values(before, after) == {
        "displayName": "Ada",
        "nickName": None,
        "title": "Dev",
    }


def test_no_change_no_event() -> None:
    assert events.changed(user(active=True), user(active=True)) is None


def test_active_flips_are_deactivations_and_reactivations() -> None:
    off = events.changed(user(active=True), user(active=False, title="x"))
    assert off is not None
    assert off.type == "user.deactivated"
    assert off.previous == {"active": True, "title": None}
    on = events.changed(user(active=False), user(active=True))
    assert on is not None
    assert on.type == "user.reactivated"
    # `active` absent means active: stating it is not a change of state.
    stated = events.changed(user(), user(active=True))
    assert stated is not None
    assert stated.type == "user.updated"


def test_group_updates() -> None:
    group = {"id": str(uuid.uuid4()), "displayName": "Ops", "meta": {"resourceType": "Group"}}
    renamed = events.changed(group, group | {"displayName": "SRE"})
    assert renamed is not None
    assert renamed.type == "group.updated"
    assert renamed.previous == {"displayName": "Ops"}


def test_membership_changes_are_net() -> None:
    a, b, c = (uuid.UUID(int=n) for n in (1, 2, 3))
    changes = events.MembershipChanges()
    changes.removed([(a, "User"), (b, "User")])
    changes.added([(b, "User"), (c, "Group")])
    group = {"id": str(uuid.uuid4()), "displayName": "Ops"}
    found = [(e.type, e.data["member"]["value"]) for e in changes.events(group)]
    assert found == [("group.member_added", str(c)), ("group.member_removed", str(a))]
    assert changes.events(group)[0].data["group"] == group


def test_event_ids_are_uuid7_in_time_order() -> None:
    first = events.new_event_id()
    time.sleep(0.002)
    second = events.new_event_id()
    assert first.version == 7
    assert first.variant == uuid.RFC_4122
    assert str(first) < str(second)
    assert len({events.new_event_id() for _ in range(1000)}) == 1000


def test_every_type_is_listed_once() -> None:
    assert len(set(events.EVENT_TYPES)) == len(events.EVENT_TYPES) == 12


async def test_announcements_made_while_a_notify_is_in_flight_share_the_next_one() -> None:
    """Under load one NOTIFY statement carries many writes' schemas; at rest each goes at once."""
    sent: list[list[str]] = []
    release = asyncio.Event()

    class SlowPool:
        async def execute(self, _sql: str, _channel: str, schemas: list[str]) -> None:
            sent.append(schemas)
            await release.wait()

    announcer = outbox.Announcer(SlowPool())  # type: ignore[arg-type]
    announcer.announce({"t_a"})
    await asyncio.sleep(0)
    announcer.announce({"t_b"})
    announcer.announce({"t_c", "t_b"})
    announcer.announce(set())
    release.set()
    await announcer.stop()
    assert sent == [["t_a"], ["t_b", "t_c"]]
