"""The tenant registry: creating, reading, changing and deleting tenants.

A tenant is a row in `scim_control.tenants` plus a Postgres schema of its
own, named from its id. Creating one creates both in one transaction, so a
tenant never exists without its schema or the other way round.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
import msgspec

from service.settings import Settings
from tenants import notifications, spares
from tenants.control import engine
from tenants.errors import Conflict, InvalidInput, NotFound
from tenants.migrations import LATEST_VERSION, new_schema_script
from tenants.models import Tenant
from tenants.schemas import quoted_schema, schema_name_for

SLUG_PATTERN: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
IDP_TYPES: Final = ("generic", "entra", "okta", "onelogin", "google", "jumpcloud")
STATUSES: Final = ("enabled", "disabled")
_MAX_NAME = 200


class TenantInfo(msgspec.Struct, kw_only=True):
    id: str
    slug: str
    name: str
    status: str
    idp_type: str
    scim_url: str
    schema_version: int
    token_rotation_grace_seconds: int | None
    created_at: datetime
    updated_at: datetime
    last_request_at: datetime | None = None
    """When one of its tokens was last used: its IdP's latest request, as of the last
    write of last-used times (`SCIM_LAST_USED_FLUSH_SECONDS`)."""
    guard_tripped_at: datetime | None = None
    """When its mass-deprovisioning guard tripped, while it is holding events."""


class TenantChanges(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What an operator may change on a tenant; unset fields stay as they are."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    status: str | msgspec.UnsetType = msgspec.UNSET
    idp_type: str | msgspec.UnsetType = msgspec.UNSET
    token_rotation_grace_seconds: int | msgspec.UnsetType | None = msgspec.UNSET


def _like_literal(text: str) -> str:
    """``text`` matched as it is inside a LIKE pattern: its `%`, `_` and `\\` escaped."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def validate_slug(slug: str) -> str:
    if not SLUG_PATTERN.fullmatch(slug):
        raise InvalidInput(
            "slug must be 1-63 characters of lower-case letters, digits and inner hyphens"
        )
    return slug


def _validate_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= _MAX_NAME:
        raise InvalidInput(f"name must be 1-{_MAX_NAME} characters")
    return name


def _validate_choice(value: str, field: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidInput(f"{field} must be one of: {', '.join(choices)}")
    return value


def _validate_grace(value: int | None) -> int | None:
    if value is not None and value < 0:
        raise InvalidInput("token_rotation_grace_seconds must be 0 or more")
    return value


_SELECT = (
    Tenant.id,
    Tenant.slug,
    Tenant.name,
    Tenant.status,
    Tenant.idp_type,
    Tenant.schema_version,
    Tenant.created_at,
    Tenant.updated_at,
)


async def tenant_schema_at(conn: Any, slug: str, version: int) -> tuple[uuid.UUID, str]:
    """A tenant's id and schema, for a feature that needs its schema at ``version``."""
    row = await conn.fetchrow(
        "SELECT id, schema_name, schema_version FROM scim_control.tenants WHERE slug = $1", slug
    )
    if row is None:
        raise NotFound(f"no tenant {slug!r}")
    if row["schema_version"] < version:
        raise InvalidInput(f"tenant {slug!r} needs `scim-platform migrate` first")
    return row["id"], row["schema_name"]


class TenantRegistry:
    def __init__(
        self, settings: Settings, *, onboarded: Callable[[bool], None] | None = None
    ) -> None:
        """``onboarded``: told after each onboarding whether it took a spare schema
        (`tenants.spares`)."""
        self._settings = settings
        self._onboarded = onboarded

    def _info(self, row: dict[str, Any], facts: dict[str, Any] | None) -> TenantInfo:
        facts = facts or {}
        return TenantInfo(
            id=str(row["id"]),
            slug=row["slug"],
            name=row["name"],
            status=row["status"],
            idp_type=row["idp_type"],
            scim_url=self._settings.tenant_scim_url(row["slug"]),
            schema_version=row["schema_version"],
            token_rotation_grace_seconds=facts.get("grace"),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            last_request_at=facts.get("last_request_at"),
            guard_tripped_at=facts.get("guard_tripped_at"),
        )

    async def _facts(self, tenant_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        """What the tenants' other control-plane rows say: each one's own rotation grace,
        latest request and tripped guard (each None when there is none)."""
        if not tenant_ids:
            return {}
        rows = await Tenant.raw(
            "SELECT t.id,"
            " (SELECT s.token_rotation_grace_seconds FROM scim_control.tenant_settings s"
            "  WHERE s.tenant = t.id) AS grace,"
            " (SELECT max(k.last_used_at) FROM scim_control.tokens k"
            "  WHERE k.tenant = t.id) AS last_request_at,"
            " (SELECT g.tripped_at FROM scim_control.deprovision_guards g"
            "  WHERE g.tenant = t.id) AS guard_tripped_at"
            " FROM unnest({}::uuid[]) AS t(id)",
            tenant_ids,
        )
        return {row["id"]: row for row in rows}

    async def create(self, slug: str, name: str, idp_type: str = "generic") -> TenantInfo:
        validate_slug(slug)
        name = _validate_name(name)
        _validate_choice(idp_type, "idp_type", IDP_TYPES)
        try:
            async with engine().transaction() as transaction:
                conn = transaction.connection
                spare = await spares.take(conn)
                tenant_id = spare or uuid.uuid4()
                schema = schema_name_for(tenant_id)
                [row] = await Tenant.insert(
                    Tenant(
                        id=tenant_id,
                        slug=slug,
                        name=name,
                        idp_type=idp_type,
                        schema_name=schema,
                        schema_version=LATEST_VERSION,
                    )
                ).returning(*_SELECT)
                if spare is None:
                    await conn.execute(new_schema_script(schema))
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"a tenant with slug {slug!r} already exists") from exc
        if self._onboarded is not None:
            self._onboarded(spare is not None)
        # A new tenant has no settings, tokens or guard of its own yet.
        return self._info(row, None)

    async def page(
        self, *, limit: int | None = None, after: str | None = None, search: str | None = None
    ) -> tuple[list[TenantInfo], str | None]:
        """Tenants in slug order, those after the slug ``after``, at most ``limit`` (all
        when None), and the slug the next page follows (None: there is no more); with
        ``search``, only those whose slug starts with it or whose name contains it,
        either without case.

        By slug, not by creation: the unique index on slugs serves each page, and a
        tenant created meanwhile shows up where it belongs instead of shifting pages."""
        query = Tenant.select(*_SELECT).order_by(Tenant.slug)
        if after is not None:
            query = query.where(Tenant.slug > after)
        if search:
            pattern = _like_literal(search)
            query = query.where(
                Tenant.slug.ilike(f"{pattern}%") | Tenant.name.ilike(f"%{pattern}%")
            )
        if limit is not None:
            query = query.limit(limit + 1)
        rows = await query
        more = limit is not None and len(rows) > limit
        if more:
            rows = rows[:limit]
        facts = await self._facts([row["id"] for row in rows])
        tenants = [self._info(row, facts.get(row["id"])) for row in rows]
        return tenants, tenants[-1].slug if more else None

    async def _row(self, slug: str) -> dict[str, Any]:
        row: dict[str, Any] | None = (
            await Tenant.select(*_SELECT).where(Tenant.slug == slug).first()
        )
        if row is None:
            raise NotFound(f"no tenant with slug {slug!r}")
        return row

    async def get(self, slug: str) -> TenantInfo:
        row = await self._row(slug)
        facts = await self._facts([row["id"]])
        return self._info(row, facts.get(row["id"]))

    async def tenant_id(self, slug: str) -> uuid.UUID:
        tenant_id: uuid.UUID = (await self._row(slug))["id"]
        return tenant_id

    async def update(self, slug: str, changes: TenantChanges) -> TenantInfo:
        values: dict[Any, Any] = {}
        if changes.name is not msgspec.UNSET:
            values[Tenant.name] = _validate_name(changes.name)
        if changes.status is not msgspec.UNSET:
            values[Tenant.status] = _validate_choice(changes.status, "status", STATUSES)
        if changes.idp_type is not msgspec.UNSET:
            values[Tenant.idp_type] = _validate_choice(changes.idp_type, "idp_type", IDP_TYPES)
        tenant_id = await self.tenant_id(slug)
        async with engine().transaction() as transaction:
            if values:
                values[Tenant.updated_at] = datetime.now(UTC)
                await Tenant.update(values).where(Tenant.id == tenant_id)
            if changes.token_rotation_grace_seconds is not msgspec.UNSET:
                await transaction.connection.execute(
                    "INSERT INTO scim_control.tenant_settings "
                    "(id, tenant, token_rotation_grace_seconds) VALUES ($1, $2, $3) "
                    "ON CONFLICT (tenant) DO UPDATE SET "
                    "token_rotation_grace_seconds = EXCLUDED.token_rotation_grace_seconds, "
                    "updated_at = now()",
                    uuid.uuid4(),
                    tenant_id,
                    _validate_grace(changes.token_rotation_grace_seconds),
                )
            await notifications.notify_tenant_changed(transaction.connection, tenant_id)
        return await self.get(slug)

    async def set_status(self, slug: str, status: str) -> TenantInfo:
        return await self.update(slug, TenantChanges(status=status))

    async def delete(self, slug: str, *, confirm: str | None) -> None:
        """Drop the tenant and all its data. ``confirm`` must repeat the slug."""
        if confirm != slug:
            raise InvalidInput(
                f"deleting a tenant drops all its users and groups; confirm with the slug {slug!r}"
            )
        async with engine().transaction() as transaction:
            conn = transaction.connection
            row = await conn.fetchrow(
                "DELETE FROM scim_control.tenants WHERE slug = $1 RETURNING id, schema_name",
                slug,
            )
            if row is None:
                raise NotFound(f"no tenant with slug {slug!r}")
            await conn.execute(f"DROP SCHEMA IF EXISTS {quoted_schema(row['schema_name'])} CASCADE")
            await notifications.notify_tenant_changed(conn, row["id"])

    async def rotation_grace_seconds(self, tenant_id: uuid.UUID) -> int:
        grace = (await self._facts([tenant_id])).get(tenant_id, {}).get("grace")
        return self._settings.token_rotation_grace_seconds if grace is None else grace
