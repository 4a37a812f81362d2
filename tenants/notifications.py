"""Cross-process cache invalidation over Postgres LISTEN/NOTIFY.

Every replica caches tenants and verified tokens for a few seconds. A change
that must take effect at once (disable, delete, revoke, rotate) sends a NOTIFY
in the same transaction as the change, so it is delivered exactly when the
change commits, and every replica drops the stale entry.
"""

from __future__ import annotations

import uuid

from service.postgres import Connection

CHANNEL = "scim_control"


async def notify_tenant_changed(conn: Connection, tenant_id: uuid.UUID) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, f"tenant:{tenant_id}")


async def notify_token_changed(conn: Connection, token_id: uuid.UUID) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, f"token:{token_id}")


def parse(payload: str) -> tuple[str, uuid.UUID] | None:
    kind, _, raw_id = payload.partition(":")
    try:
        return kind, uuid.UUID(raw_id)
    except ValueError:
        return None
