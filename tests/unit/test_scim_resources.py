"""Rendering stored Users and Groups as SCIM resources."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from service.scim.errors import ScimError
from service.scim.resources import Member, etag, render_group, render_user
from service.scim.schemas import ENTERPRISE_USER, GROUP_SCHEMA, USER_SCHEMA

BASE_URL = "https://scim.example.com/scim/v2/acme"
CREATED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
MODIFIED = datetime(2024, 6, 7, 8, 9, 10, 123456, tzinfo=UTC)


def _scim_error(excinfo: pytest.ExceptionInfo[ScimError]) -> tuple[int, str | None]:
    return excinfo.value.status, excinfo.value.scim_type


# --- rendering -------------------------------------------------------------------------------


def test_etag() -> None:
    assert etag(1) == 'W/"1"'
    assert etag(42) == 'W/"42"'


def test_render_user() -> None:
    user_id = uuid.uuid4()
    attributes = {"userName": "alice", "active": True, "displayName": "Alice"}
    body = render_user(
        base_url=BASE_URL,
        user_id=user_id,
        attributes=attributes,
        created=CREATED,
        last_modified=MODIFIED,
        version=3,
    )
    assert body == {
        "schemas": [USER_SCHEMA],
        "id": str(user_id),
        "userName": "alice",
        "active": True,
        "displayName": "Alice",
        "meta": {
            "resourceType": "User",
            "created": "2024-01-02T03:04:05Z",
            "lastModified": "2024-06-07T08:09:10.123456Z",
            "location": f"{BASE_URL}/Users/{user_id}",
            "version": 'W/"3"',
        },
    }
    assert list(body)[:2] == ["schemas", "id"]


def test_render_user_lists_the_enterprise_schema_only_when_present() -> None:
    user_id = uuid.uuid4()
    common: dict[str, Any] = {
        "base_url": BASE_URL,
        "user_id": user_id,
        "created": CREATED,
        "last_modified": MODIFIED,
        "version": 1,
    }
    plain = render_user(attributes={"userName": "a"}, **common)
    assert plain["schemas"] == [USER_SCHEMA]
    extended = render_user(
        attributes={"userName": "a", ENTERPRISE_USER: {"department": "R&D"}}, **common
    )
    assert extended["schemas"] == [USER_SCHEMA, ENTERPRISE_USER]
    assert extended[ENTERPRISE_USER] == {"department": "R&D"}


def test_timestamps_end_in_z_for_utc() -> None:
    body = render_user(
        base_url=BASE_URL,
        user_id=uuid.uuid4(),
        attributes={"userName": "a"},
        created=datetime(2030, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(0))),
        last_modified=datetime(2031, 1, 1, tzinfo=UTC),
        version=1,
    )
    assert body["meta"]["created"] == "2030-12-31T23:59:59Z"
    assert body["meta"]["lastModified"] == "2031-01-01T00:00:00Z"
    for stamp in (body["meta"]["created"], body["meta"]["lastModified"]):
        assert datetime.fromisoformat(stamp).tzinfo is not None


def test_render_group() -> None:
    group_id, user_id, nested_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    body = render_group(
        base_url=BASE_URL,
        group_id=group_id,
        attributes={"displayName": "Engineering", "externalId": "g-7"},
        members=[
            Member(id=user_id, type="User", display="Alice"),
            Member(id=nested_id, type="Group", display=None),
        ],
        created=CREATED,
        last_modified=MODIFIED,
        version=12,
    )
    assert body == {
        "schemas": [GROUP_SCHEMA],
        "id": str(group_id),
        "displayName": "Engineering",
        "externalId": "g-7",
        "members": [
            {
                "value": str(user_id),
                "$ref": f"{BASE_URL}/Users/{user_id}",
                "type": "User",
                "display": "Alice",
            },
            {
                "value": str(nested_id),
                "$ref": f"{BASE_URL}/Groups/{nested_id}",
                "type": "Group",
            },
        ],
        "meta": {
            "resourceType": "Group",
            "created": "2024-01-02T03:04:05Z",
            "lastModified": "2024-06-07T08:09:10.123456Z",
            "location": f"{BASE_URL}/Groups/{group_id}",
            "version": 'W/"12"',
        },
    }


def test_render_group_without_members_has_an_empty_list() -> None:
    body = render_group(
        base_url=BASE_URL,
        group_id=uuid.uuid4(),
        attributes={"displayName": "Empty"},
        members=[],
        created=CREATED,
        last_modified=CREATED,
        version=1,
    )
    assert body["members"] == []
    assert body["schemas"] == [GROUP_SCHEMA]
