"""Users and Groups: turning client payloads into what we store, and stored rows into SCIM.

Attribute names are case-insensitive in SCIM (RFC 7643 section 2.1), so
incoming keys are mapped to their canonical spelling before anything else
looks at them. Server-owned attributes (`id`, `meta`, the read-only `groups`
of a User) are ignored on input, as RFC 7644 section 3.3 asks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from service.scim.errors import invalid_syntax, invalid_value
from service.scim.schemas import ENTERPRISE_USER, GROUP_SCHEMA, USER_SCHEMA

_USER_ATTRIBUTES: Final = [
    "userName",
    "name",
    "displayName",
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "active",
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "entitlements",
    "roles",
    "x509Certificates",
    "externalId",
]
_GROUP_ATTRIBUTES: Final = ("displayName", "externalId")
_EXTENSIONS: Final = {ENTERPRISE_USER.lower(): ENTERPRISE_USER}


def _canonical_keys(
    payload: Any, known: tuple[str, ...] | list[str], extensions: dict[str, str]
) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise invalid_syntax("the request body must be a JSON object")
    by_lower = {name.lower(): name for name in known}
    result: dict[str, Any] = {}
    for key, value in payload.items():
        lower = key.lower()
        if lower in by_lower:
            result[by_lower[lower]] = value
        elif lower in extensions:
            if not isinstance(value, dict):
                raise invalid_syntax(f"{extensions[lower]} must be a JSON object")
            result[extensions[lower]] = value
        # Anything else is either server-owned (ignored by the RFC) or not in
        # our schemas; neither is stored.
    return result


def _optional_string(attributes: dict[str, Any], name: str) -> str | None:
    value = attributes.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid_value(f"{name} must be a string")
    return value


def _required_string(attributes: dict[str, Any], name: str) -> str:
    value = _optional_string(attributes, name)
    if value is None or not value.strip():
        raise invalid_value(f"{name} is required")
    return value


@dataclass(frozen=True, slots=True)
class UserDraft:
    """A User as a client asked for it, ready to store."""

    user_name: str
    external_id: str | None
    display_name: str | None
    active: bool
    attributes: dict[str, Any]
    """Every client-writable attribute, canonically named, as it will be returned."""


def parse_user(payload: Any) -> UserDraft:
    attributes = _canonical_keys(payload, _USER_ATTRIBUTES, _EXTENSIONS)
    active = attributes.get("active", True)
    if not isinstance(active, bool):
        raise invalid_value("active must be a boolean")
    attributes["active"] = active
    return UserDraft(
        user_name=_required_string(attributes, "userName"),
        external_id=_optional_string(attributes, "externalId"),
        display_name=_optional_string(attributes, "displayName"),
        active=active,
        attributes=attributes,
    )


@dataclass(frozen=True, slots=True)
class GroupDraft:
    display_name: str
    external_id: str | None
    attributes: dict[str, Any]
    member_ids: list[uuid.UUID]


def _member_ids(payload: dict[str, Any]) -> list[uuid.UUID]:
    members = next((v for k, v in payload.items() if k.lower() == "members"), None)
    if members is None:
        return []
    if not isinstance(members, list):
        raise invalid_value("members must be a list")
    ids: dict[uuid.UUID, None] = {}
    for member in members:
        value = member.get("value") if isinstance(member, dict) else None
        if not isinstance(value, str):
            raise invalid_value("each member needs a 'value' holding the member's id")
        try:
            ids[uuid.UUID(value)] = None
        except ValueError as exc:
            raise invalid_value(f"member {value!r} does not exist") from exc
    return list(ids)


def parse_group(payload: Any) -> GroupDraft:
    attributes = _canonical_keys(payload, _GROUP_ATTRIBUTES, {})
    return GroupDraft(
        display_name=_required_string(attributes, "displayName"),
        external_id=_optional_string(attributes, "externalId"),
        attributes=attributes,
        member_ids=_member_ids(payload),
    )


def etag(version: int) -> str:
    return f'W/"{version}"'


def _timestamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


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
