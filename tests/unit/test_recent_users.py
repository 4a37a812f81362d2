"""The users a process last read or wrote (`service.recent_users`)."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import pytest

from service import recent_users

AT = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recent_users, "_seen", OrderedDict())


def row(user_id: uuid.UUID, version: int = 1, **resource: Any) -> dict[str, Any]:
    return {
        "id": user_id,
        "resource": {"userName": "ada@example.com", **resource},
        "created": AT,
        "last_modified": AT,
        "version": version,
        "related": None,
    }


def test_a_user_is_taken_as_last_noted_and_only_once() -> None:
    user = uuid.uuid4()
    recent_users.note("t1", row(user, 1, title="Dev"))
    recent_users.note("t1", row(user, 2, title="Lead"))
    taken = recent_users.take("t1", user)
    assert taken == {
        "id": user,
        "resource": {"userName": "ada@example.com", "title": "Lead"},
        "created": AT,
        "last_modified": AT,
        "version": 2,
    }
    assert recent_users.take("t1", user) is None


def test_users_are_kept_per_tenant_schema() -> None:
    user = uuid.uuid4()
    recent_users.note("t1", row(user, 3))
    assert recent_users.take("t2", user) is None
    taken = recent_users.take("t1", user)
    assert taken is not None
    assert taken["version"] == 3


def test_a_noted_resource_is_a_copy_the_caller_cannot_change() -> None:
    user = uuid.uuid4()
    noted = row(user, emails=[{"value": "ada@example.com"}])
    recent_users.note("t1", noted)
    noted["resource"]["emails"].append({"value": "changed@example.com"})
    taken = recent_users.take("t1", user)
    assert taken is not None
    assert taken["resource"]["emails"] == [{"value": "ada@example.com"}]


def test_a_user_seen_too_long_ago_is_not_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    fresh, stale = uuid.uuid4(), uuid.uuid4()
    recent_users.note("t1", row(stale))
    now[0] += recent_users.MAX_AGE_SECONDS / 2
    recent_users.note("t1", row(fresh))
    now[0] += recent_users.MAX_AGE_SECONDS / 2 + 1
    assert recent_users.take("t1", stale) is None
    assert recent_users.take("t1", fresh) is not None


def test_the_least_recently_noted_user_goes_first_past_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recent_users, "LIMIT", 3)
    users = [uuid.uuid4() for _ in range(4)]
    for user in users[:3]:
        recent_users.note("t1", row(user))
    recent_users.note("t1", row(users[0], 2))  # noted again: now the most recent
    recent_users.note("t1", row(users[3]))
    assert recent_users.take("t1", users[1]) is None
    assert [recent_users.take("t1", user) is not None for user in (users[0], *users[2:])] == [
        True,
        True,
        True,
    ]
