"""The operator's view of a tenant's users: pre-loading, profiles, the link audit.

Pre-loaded users are the operator's existing members, entered before the
customer turns SCIM on. They stay invisible over SCIM until an IdP POSTs a
user that matches one (`provisioning._claim`), which links it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

import msgspec

from service.postgres import Pool
from service.scim import validation
from service.scim.attributes import USER_RESOURCE
from service.scim.errors import ScimError
from service.scim.mapping import mapped_profile
from service.store import lifecycle
from service.store.resources import Row
from tenants.errors import Conflict, InvalidInput, NotFound

MAX_PRELOAD: Final = 1000


class AdminUser(msgspec.Struct, kw_only=True):
    id: str
    state: str
    """``managed`` (the IdP's), ``preloaded`` (waiting to be linked) or ``deleted``
    (soft-deleted, kept until the purge)."""
    userName: str
    externalId: str | None
    active: bool
    profile: dict[str, Any]
    """The tenant's attribute mapping applied to the user."""
    attributes: dict[str, Any]
    """Everything stored for the user, as SCIM attributes (never the password)."""
    has_password: bool
    deleted_at: datetime | None
    deleted_from_groups: list[str]
    created: datetime
    last_modified: datetime
    version: int
    roles: list[str] | None = None
    """Effective roles (`service.roles`): default roles and those of its groups, nested
    ones too; null when the tenant has no role mapping, empty for users not provisioned."""


class Link(msgspec.Struct, kw_only=True):
    user_id: str
    kind: str
    """``linked`` (a pre-loaded user adopted) or ``restored`` (a soft-deleted one)."""
    matched_by: str
    matched_value: str
    client: str
    user_agent: str | None
    linked_at: datetime


class PreloadResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    index: int
    status: str
    """``created``, ``conflict`` (userName taken) or ``invalid``."""
    id: str | None = None
    detail: str | None = None


def admin_user(row: Row, mapping: dict[str, str]) -> AdminUser:
    resource: dict[str, Any] = row["resource"]
    state = "deleted" if row["deleted_at"] is not None else "managed"
    if not row["managed"]:
        state = "preloaded"
    return AdminUser(
        id=str(row["id"]),
        state=state,
        userName=resource["userName"],
        externalId=resource.get("externalId"),
        active=resource.get("active", True),
        profile=mapped_profile(mapping, resource),
        attributes=resource,
        has_password=row["has_password"],
        deleted_at=row["deleted_at"],
        deleted_from_groups=[str(g) for g in row["deleted_groups"] or []],
        created=row["created"],
        last_modified=row["last_modified"],
        version=row["version"],
    )


def link(row: Row) -> Link:
    return Link(
        user_id=str(row["user_id"]),
        kind=row["kind"],
        matched_by=row["matched_by"],
        matched_value=row["matched_value"],
        client=row["client"],
        user_agent=row["user_agent"],
        linked_at=row["linked_at"],
    )


def _resource(payload: Any) -> dict[str, Any]:
    """A pre-loaded user, checked like a SCIM POST body; InvalidInput if it is not one."""
    try:
        resource = validation.normalise(USER_RESOURCE, payload)
        validation.check_required(USER_RESOURCE, resource)
    except ScimError as exc:
        raise InvalidInput(exc.detail) from exc
    resource.setdefault("active", True)
    return resource


async def preload(pool: Pool, schema: str, payload: Any, mapping: dict[str, str]) -> AdminUser:
    resource = _resource(payload)
    row = await lifecycle.preload(pool, schema, resource)
    if row is None:
        raise Conflict(f"a user with userName {resource['userName']!r} already exists")
    return await get(pool, schema, row["id"], mapping)


async def preload_many(pool: Pool, schema: str, payloads: Any) -> list[PreloadResult]:
    """Pre-load each user on its own: one bad or taken user does not stop the others."""
    if not isinstance(payloads, list) or not 1 <= len(payloads) <= MAX_PRELOAD:
        raise InvalidInput(f"users must be a list of 1 to {MAX_PRELOAD} users")
    results = []
    for index, payload in enumerate(payloads):
        try:
            resource = _resource(payload)
        except InvalidInput as exc:
            results.append(PreloadResult(index=index, status="invalid", detail=str(exc)))
            continue
        row = await lifecycle.preload(pool, schema, resource)
        if row is None:
            detail = f"userName {resource['userName']!r} already exists"
            results.append(PreloadResult(index=index, status="conflict", detail=detail))
        else:
            results.append(PreloadResult(index=index, status="created", id=str(row["id"])))
    return results


async def get(
    pool: Pool, schema: str, raw_id: str | uuid.UUID, mapping: dict[str, str]
) -> AdminUser:
    try:
        user_id = raw_id if isinstance(raw_id, uuid.UUID) else uuid.UUID(raw_id)
    except ValueError as exc:
        raise NotFound(f"no user {raw_id!r}") from exc
    row = await lifecycle.user(pool, schema, user_id)
    if row is None:
        raise NotFound(f"no user {raw_id!r}")
    return admin_user(row, mapping)
