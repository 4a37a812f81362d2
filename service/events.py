"""Events: what the operator's product learns about each committed change.

A write in `service.provisioning` builds its events with the functions here
and appends them to the tenant's outbox (`service.store.outbox`) as the last
step of its transaction: an event exists exactly when its change committed.

One change, one event: a user update that flips `active` is reported as
`user.deactivated` or `user.reactivated` (with every other attribute that
changed in `previous`), otherwise as `user.updated`. Membership is reported
only by `group.member_added` / `group.member_removed`, one event per member,
so resource payloads never carry member lists (a group may have 100,000).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

from service.postgres import Connection
from service.store import outbox
from service.store.outbox import NewEvent, StoredEvent

USER_CREATED: Final = "user.created"
USER_UPDATED: Final = "user.updated"
USER_DEACTIVATED: Final = "user.deactivated"
USER_REACTIVATED: Final = "user.reactivated"
USER_DELETED: Final = "user.deleted"
USER_LINKED: Final = "user.linked"
GROUP_CREATED: Final = "group.created"
GROUP_UPDATED: Final = "group.updated"
GROUP_DELETED: Final = "group.deleted"
GROUP_MEMBER_ADDED: Final = "group.member_added"
GROUP_MEMBER_REMOVED: Final = "group.member_removed"
USER_ROLES_CHANGED: Final = "user.roles_changed"

EVENT_TYPES: Final = (
    USER_CREATED,
    USER_UPDATED,
    USER_DEACTIVATED,
    USER_REACTIVATED,
    USER_DELETED,
    USER_LINKED,
    GROUP_CREATED,
    GROUP_UPDATED,
    GROUP_DELETED,
    GROUP_MEMBER_ADDED,
    GROUP_MEMBER_REMOVED,
    USER_ROLES_CHANGED,
)

_UNCOMPARED: Final = frozenset({"meta", "schemas", "id", "members", "groups"})

Member = tuple[uuid.UUID, str]
"""A member's id and type (`User` or `Group`)."""


_VERSION_7: Final = 0x7 << 76
_VARIANT: Final = 0x2 << 62
_RANDOM_BITS: Final = (2**80 - 1) & ~(0xF << 76) & ~(0x3 << 62)
"""The 80 bits after the timestamp, less those the version and the variant take."""


def new_event_ids(count: int) -> list[uuid.UUID]:
    """``count`` UUIDv7s (RFC 9562): unique across tenants, and sortable by creation
    time (to the millisecond). A member PATCH makes one per member: one read of the
    clock and of the system's randomness for them all."""
    stamp = (time.time_ns() // 1_000_000 & (2**48 - 1)) << 80 | _VERSION_7 | _VARIANT
    randomness = os.urandom(10 * count)
    return [
        uuid.UUID(int=stamp | int.from_bytes(randomness[i : i + 10]) & _RANDOM_BITS)
        for i in range(0, 10 * count, 10)
    ]


def new_event_id() -> uuid.UUID:
    """One of `new_event_ids`."""
    return new_event_ids(1)[0]


def profile(resource: dict[str, Any]) -> dict[str, Any]:
    """The event payload for a resource: what the operator's product sees of it.

    For now the SCIM representation, without the member and group lists
    (those changes have events of their own). This is the one place to swap
    for a per-tenant attribute mapping.
    """
    return {key: value for key, value in resource.items() if key not in ("members", "groups")}


Roles = list[str] | None
"""A user's effective roles (`service.roles`); None when the tenant has no role mapping,
and then user events carry no `roles` at all."""


def _event(
    kind: str,
    resource: dict[str, Any],
    previous: dict[str, Any] | None = None,
    roles: Roles = None,
) -> NewEvent:
    resource_type = resource["meta"]["resourceType"]
    data = profile(resource)
    if roles is not None:
        data["roles"] = roles
    return NewEvent(
        id=new_event_id(),
        type=f"{resource_type.lower()}.{kind}",
        resource_type=resource_type,
        resource_id=uuid.UUID(resource["id"]),
        data=data,
        previous=previous,
    )


def created(resource: dict[str, Any], roles: Roles = None) -> NewEvent:
    """``resource`` is the new resource's SCIM representation."""
    return _event("created", resource, roles=roles)


def deleted(resource: dict[str, Any], roles: Roles = None) -> NewEvent:
    """``resource`` is the representation the resource had before it was deleted;
    ``roles`` the roles the user had until then."""
    return _event("deleted", resource, roles=roles)


def previous_values(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Each top-level attribute that changed, with the value it had (null: it was absent)."""
    keys = (before.keys() | after.keys()) - _UNCOMPARED
    return {key: before.get(key) for key in sorted(keys) if before.get(key) != after.get(key)}


def changed(before: dict[str, Any], after: dict[str, Any], roles: Roles = None) -> NewEvent | None:
    """The event of an update from ``before`` to ``after``; None when no attribute changed."""
    previous = previous_values(before, after)
    if not previous:
        return None
    kind = "updated"
    if after["meta"]["resourceType"] == "User" and "active" in previous:
        was_active, is_active = before.get("active", True), after.get("active", True)
        if was_active != is_active:
            kind = "reactivated" if is_active else "deactivated"
    return _event(kind, after, previous, roles)


def linked(user: dict[str, Any], how: dict[str, Any], roles: Roles = None) -> NewEvent:
    """An existing user claimed by the IdP; ``how`` says how it was matched."""
    return _event("linked", user, {"link": how}, roles)


class MembershipChanges:
    """The net membership change of one write: a member removed then re-added is no change."""

    def __init__(self) -> None:
        self._added: dict[uuid.UUID, str] = {}
        self._removed: dict[uuid.UUID, str] = {}

    def added(self, members: Iterable[Member]) -> None:
        for member_id, member_type in members:
            if self._removed.pop(member_id, None) is None:
                self._added[member_id] = member_type

    def removed(self, members: Iterable[Member]) -> None:
        for member_id, member_type in members:
            if self._added.pop(member_id, None) is None:
                self._removed[member_id] = member_type

    def touched(self) -> list[Member]:
        """Every member whose membership changed, added or removed."""
        return [*self._added.items(), *self._removed.items()]

    def events(self, group: dict[str, Any]) -> list[NewEvent]:
        """One event per member added or removed, in a stable order."""
        ref = {"id": group["id"], "displayName": group.get("displayName")}
        group_id = uuid.UUID(group["id"])
        changes = [
            (kind, member_id, member_type)
            for kind, members in (
                (GROUP_MEMBER_ADDED, self._added),
                (GROUP_MEMBER_REMOVED, self._removed),
            )
            for member_id, member_type in sorted(members.items())
        ]
        return [
            NewEvent(
                id=event_id,
                type=kind,
                resource_type="Group",
                resource_id=group_id,
                data={"group": ref, "member": {"value": str(member_id), "type": member_type}},
            )
            for event_id, (kind, member_id, member_type) in zip(
                new_event_ids(len(changes)), changes, strict=True
            )
        ]


def removed_from_groups(member: Member, groups: Sequence[tuple[uuid.UUID, str]]) -> list[NewEvent]:
    """A deleted user or group leaves every group it was in: (group id, displayName) each."""
    events: list[NewEvent] = []
    for group_id, display_name in groups:
        changes = MembershipChanges()
        changes.removed([member])
        events += changes.events({"id": str(group_id), "displayName": display_name})
    return events


async def record(
    conn: Connection, schema: str, events: Iterable[NewEvent | None], *, at_commit: bool = False
) -> None:
    """Append events to the tenant's outbox in the caller's transaction, as its last step.

    Other modules (the IdP linking flow's `user.linked`) use this too. ``at_commit``:
    as for `outbox.append`.
    """
    found = [event for event in events if event is not None]
    await outbox.append(conn, schema, found, at_commit=at_commit)


def envelope(event: StoredEvent, tenant_id: uuid.UUID, tenant_slug: str) -> dict[str, Any]:
    """An event as the events API returns it and a webhook delivers it."""
    return {
        "id": str(event.id),
        "type": event.type,
        "sequence": event.sequence,
        "occurred_at": _timestamp(event.occurred_at),
        "tenant": {"id": str(tenant_id), "slug": tenant_slug},
        "resource": {"type": event.resource_type, "id": str(event.resource_id)},
        "data": event.data,
        "previous": event.previous,
    }


def _timestamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
