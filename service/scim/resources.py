"""Stored Users and Groups rendered as SCIM resources, with `meta` and members.

Input goes the other way through `service.scim.validation`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.scim.schemas import ENTERPRISE_USER, GROUP_SCHEMA, USER_SCHEMA


def etag(version: int) -> str:
    return f'W/"{version}"'


def _timestamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def timestamp_sql(moment: str) -> str:
    """SQL rendering the `timestamptz` ``moment`` as `_timestamp` does (in UTC, the
    fraction left out when it is zero): for a statement that stores a representation
    whose time only the database knows."""
    utc = f"({moment}) AT TIME ZONE 'UTC'"
    return (
        f"to_char({utc}, CASE WHEN date_part('microseconds', {utc})::bigint % 1000000 = 0 "
        """THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"' ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END)"""
    )


def stamped_sql(representation: str, moment: str) -> str:
    """SQL: the `jsonb` ``representation`` with `meta.created` and `meta.lastModified`
    the `timestamptz` ``moment`` (`stamped`)."""
    rendered = timestamp_sql(moment)
    return (
        f"jsonb_set({representation}, '{{meta}}', ({representation} -> 'meta') || "
        f"jsonb_build_object('created', {rendered}, 'lastModified', {rendered}))"
    )


def modified_sql(representation: str, moment: str) -> str:
    """SQL: the `jsonb` ``representation`` with `meta.lastModified` the `timestamptz`
    ``moment``, as `stamped_sql` sets it."""
    rendered = timestamp_sql(moment)
    return f"jsonb_set({representation}, '{{meta,lastModified}}', to_jsonb({rendered}))"


def stamped(representation: dict[str, Any], moment: datetime) -> dict[str, Any]:
    """A new resource's ``representation`` with `meta.created` and `meta.lastModified`
    ``moment``, as `stamped_sql` stores it."""
    rendered = _timestamp(moment)
    meta = {**representation["meta"], "created": rendered, "lastModified": rendered}
    return {**representation, "meta": meta}


def _meta(
    resource_type: str, location: str, created: datetime, modified: datetime, version: int
) -> dict[str, str]:
    return {
        "resourceType": resource_type,
        "created": _timestamp(created),
        "lastModified": _timestamp(modified),
        "location": location,
        "version": etag(version),
    }


def render_user(
    *,
    base_url: str,
    user_id: uuid.UUID,
    attributes: dict[str, Any],
    created: datetime,
    last_modified: datetime,
    version: int,
) -> dict[str, Any]:
    schemas = [USER_SCHEMA]
    if ENTERPRISE_USER in attributes:
        schemas.append(ENTERPRISE_USER)
    # Custom extensions an IdP sent are kept (see `validation`) and declared like ours.
    schemas += [
        key
        for key, value in attributes.items()
        if key != ENTERPRISE_USER and key.lower().startswith("urn:") and isinstance(value, dict)
    ]
    location = f"{base_url}/Users/{user_id}"
    return {
        "schemas": schemas,
        "id": str(user_id),
        **attributes,
        "meta": _meta("User", location, created, last_modified, version),
    }


@dataclass(frozen=True, slots=True)
class Member:
    id: uuid.UUID
    type: str
    """`User` or `Group`."""
    display: str | None


def render_group(
    *,
    base_url: str,
    group_id: uuid.UUID,
    attributes: dict[str, Any],
    members: list[Member],
    created: datetime,
    last_modified: datetime,
    version: int,
) -> dict[str, Any]:
    location = f"{base_url}/Groups/{group_id}"
    rendered = []
    for member in members:
        entry = {
            "value": str(member.id),
            "$ref": f"{base_url}/{member.type}s/{member.id}",
            "type": member.type,
        }
        if member.display is not None:
            entry["display"] = member.display
        rendered.append(entry)
    return {
        "schemas": [GROUP_SCHEMA],
        "id": str(group_id),
        **attributes,
        "members": rendered,
        "meta": _meta("Group", location, created, last_modified, version),
    }
