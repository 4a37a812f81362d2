"""Each tenant's provisioning policy: linking existing users, deprovisioning, attribute mapping.

One row per tenant in `scim_control.provisioning_policies`; a tenant without
a row has `Policy()`, the defaults. The SCIM write path reads the policy in
its own transaction, so a change applies from the next request on.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

import msgspec

from service.postgres import Connection, Pool
from service.scim.mapping import MappingError, check_mapping
from tenants.errors import InvalidInput, NotFound

LINK_MODES: Final = ("link", "refuse")
MATCH_KEYS: Final = ("externalId", "userName", "email")
DEPROVISION_MODES: Final = ("deactivate", "soft_delete", "hard_delete")
MAX_RETENTION_DAYS: Final = 3650


class Policy(msgspec.Struct, kw_only=True, frozen=True):
    link_mode: str = "link"
    """``link``: a POSTed user matching a pre-loaded one adopts it; ``refuse``: 409."""
    match_order: tuple[str, ...] = MATCH_KEYS
    """Which attributes identify a pre-loaded user, tried in this order."""
    deprovision_mode: str = "soft_delete"
    """What DELETE does: ``deactivate`` (hide, keep forever), ``soft_delete``
    (hide, purge after `retention_days`) or ``hard_delete`` (at once)."""
    retention_days: int = 30
    attribute_mapping: dict[str, str] = msgspec.field(default_factory=dict)


class PolicyView(msgspec.Struct, kw_only=True):
    """A policy as the admin API shows it."""

    link_mode: str
    match_order: list[str]
    deprovision_mode: str
    retention_days: int
    updated_at: datetime | None


class PolicyChanges(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What `PUT .../provisioning-policy` accepts; unset fields keep their value."""

    link_mode: str | msgspec.UnsetType = msgspec.UNSET
    match_order: list[str] | msgspec.UnsetType = msgspec.UNSET
    deprovision_mode: str | msgspec.UnsetType = msgspec.UNSET
    retention_days: int | msgspec.UnsetType = msgspec.UNSET


FIELDS: Final = (
    "link_mode",
    "match_order",
    "deprovision_mode",
    "retention_days",
    "attribute_mapping",
)
COLUMNS: Final = ", ".join(FIELDS)


def from_columns(row: Any) -> Policy:
    """The policy in a row holding `COLUMNS` (NULL or absent: the defaults)."""
    if row is None or row["link_mode"] is None:
        return Policy()
    return Policy(
        link_mode=row["link_mode"],
        match_order=tuple(row["match_order"]),
        deprovision_mode=row["deprovision_mode"],
        retention_days=row["retention_days"],
        attribute_mapping=dict(row["attribute_mapping"]),
    )


async def load(conn: Connection | Pool, tenant_id: uuid.UUID) -> Policy:
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM scim_control.provisioning_policies WHERE tenant = $1", tenant_id
    )
    return from_columns(row)


def checked(policy: Policy, changes: PolicyChanges) -> Policy:
    """`policy` with `changes` applied; InvalidInput names what is wrong."""
    updates: dict[str, Any] = {}
    if changes.link_mode is not msgspec.UNSET:
        updates["link_mode"] = _choice(changes.link_mode, "link_mode", LINK_MODES)
    if changes.match_order is not msgspec.UNSET:
        order = changes.match_order
        if not order or len(set(order)) != len(order) or not set(order) <= set(MATCH_KEYS):
            raise InvalidInput(
                f"match_order must list some of {', '.join(MATCH_KEYS)}, each at most once"
            )
        updates["match_order"] = tuple(order)
    if changes.deprovision_mode is not msgspec.UNSET:
        updates["deprovision_mode"] = _choice(
            changes.deprovision_mode, "deprovision_mode", DEPROVISION_MODES
        )
    if changes.retention_days is not msgspec.UNSET:
        if not 0 <= changes.retention_days <= MAX_RETENTION_DAYS:
            raise InvalidInput(f"retention_days must be 0 to {MAX_RETENTION_DAYS}")
        updates["retention_days"] = changes.retention_days
    return msgspec.structs.replace(policy, **updates)


def _choice(value: str, field: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidInput(f"{field} must be one of: {', '.join(choices)}")
    return value


class PolicyStore:
    """The policies of tenants named by slug, for the admin API and the CLI."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def tenant(self, slug: str) -> tuple[uuid.UUID, str]:
        """The tenant's id and schema; NotFound if there is no such tenant."""
        row = await self._pool.fetchrow(
            "SELECT id, schema_name FROM scim_control.tenants WHERE slug = $1", slug
        )
        if row is None:
            raise NotFound(f"no tenant {slug!r}")
        return row["id"], row["schema_name"]

    async def get(self, slug: str) -> Policy:
        tenant_id, _ = await self.tenant(slug)
        return await load(self._pool, tenant_id)

    async def view(self, slug: str) -> PolicyView:
        tenant_id, _ = await self.tenant(slug)
        row = await self._pool.fetchrow(
            "SELECT updated_at FROM scim_control.provisioning_policies WHERE tenant = $1",
            tenant_id,
        )
        return _view(await load(self._pool, tenant_id), None if row is None else row[0])

    async def update(self, slug: str, changes: PolicyChanges) -> PolicyView:
        tenant_id, _ = await self.tenant(slug)
        async with self._pool.acquire() as conn, conn.transaction():
            await _lock(conn, tenant_id)
            policy = checked(await load(conn, tenant_id), changes)
            updated = await _save(conn, tenant_id, policy)
        return _view(policy, updated)

    async def mapping(self, slug: str) -> dict[str, str]:
        return (await self.get(slug)).attribute_mapping

    async def set_mapping(self, slug: str, mapping: Any) -> dict[str, str]:
        try:
            clean = check_mapping(mapping)
        except MappingError as exc:
            raise InvalidInput(str(exc)) from exc
        tenant_id, _ = await self.tenant(slug)
        async with self._pool.acquire() as conn, conn.transaction():
            await _lock(conn, tenant_id)
            policy = await load(conn, tenant_id)
            await _save(conn, tenant_id, msgspec.structs.replace(policy, attribute_mapping=clean))
        return clean


def _view(policy: Policy, updated_at: datetime | None) -> PolicyView:
    return PolicyView(
        link_mode=policy.link_mode,
        match_order=list(policy.match_order),
        deprovision_mode=policy.deprovision_mode,
        retention_days=policy.retention_days,
        updated_at=updated_at,
    )


async def _lock(conn: Connection, tenant_id: uuid.UUID) -> None:
    # Two concurrent saves must not each write back the other's older fields.
    await conn.execute(
        "INSERT INTO scim_control.provisioning_policies (tenant) VALUES ($1) "
        "ON CONFLICT (tenant) DO NOTHING",
        tenant_id,
    )
    await conn.execute(
        "SELECT 1 FROM scim_control.provisioning_policies WHERE tenant = $1 FOR UPDATE", tenant_id
    )


async def _save(conn: Connection, tenant_id: uuid.UUID, policy: Policy) -> datetime:
    updated: datetime = await conn.fetchval(
        "UPDATE scim_control.provisioning_policies SET link_mode = $2, match_order = $3, "
        "deprovision_mode = $4, retention_days = $5, attribute_mapping = $6, updated_at = now() "
        "WHERE tenant = $1 RETURNING updated_at",
        tenant_id,
        policy.link_mode,
        list(policy.match_order),
        policy.deprovision_mode,
        policy.retention_days,
        policy.attribute_mapping,
    )
    return updated
