"""Statements the service runs again and again run on PostgreSQL's cached plans.

A prepared statement is planned for its parameters on its first five
executions; from then on PostgreSQL keeps one generic plan unless that plan's
estimated cost is higher than the custom plans' (plus the cost of planning).
A misestimate that only the generic plan carries (a join against the events
counter, a never-analyzed one-row table estimated at 2,200 rows, times the
events of a statement whose array PostgreSQL cannot see) made every write
planned afresh on each execution: 0.1-0.65 ms of PostgreSQL CPU each.
"""

from __future__ import annotations

from typing import Any

import pytest

from service import provisioning
from service.postgres import create_pool
from service.store.resources import GROUPS, USERS
from tests.integration.test_events import announced_scope, patch_body
from tests.integration.test_guard import configure
from tests.support.application import Client, TenantHandle, admin_headers

ROUNDS = 8
CUSTOM_PLANS_BEFORE_CHOOSING = 5


def _replace(path: str, value: Any) -> dict[str, Any]:
    return patch_body({"op": "replace", "path": path, "value": value})


@pytest.mark.parametrize("users", [0, 1000])
@pytest.mark.parametrize("mapped", [False, True])
async def test_repeated_writes_run_on_cached_plans(
    client: Client, migrated_database: str, tenant: TenantHandle, mapped: bool, users: int
) -> None:
    """The IdPs' writes, in a tenant without a role mapping and in one whose groups
    grant roles (where a member change also computes and stores its users' roles);
    in a new tenant, and in one of 1,000 users analyzed, whose estimates are the
    statistics' rather than an empty table's."""
    # Deactivations are counted by the guard in their own statement, never held.
    await configure(client, tenant.slug, min_users=1_000_000)
    if mapped:
        rules = [
            {"match": "displayName", "value": f"g{n}", "roles": [f"r{n}"]} for n in range(ROUNDS)
        ]
        saved = await client.put(
            f"/admin/v1/tenants/{tenant.slug}/roles",
            json={"default_roles": ["member"], "groups": rules},
            headers=admin_headers(),
        )
        assert saved.status_code == 200, saved.text
    # One connection, so that every statement below is prepared on it and its
    # plan choices can be read from its `pg_prepared_statements`.
    one = await create_pool(migrated_database, min_size=1, max_size=1)
    try:
        scope = await announced_scope(one, tenant)
        if users:
            table = f'"{scope.schema}".users'
            await one.execute(
                f"INSERT INTO {table} (id, resource, user_name) SELECT gen_random_uuid(), "
                f"'{{}}', 'bulk' || n || '@example.com' FROM generate_series(1, {users}) n"
            )
            await one.execute(f"ANALYZE {table}")
        for n in range(ROUNDS):
            user = await provisioning.create(one, USERS, scope, {"userName": f"u{n}@example.com"})
            group = await provisioning.create(one, GROUPS, scope, {"displayName": f"g{n}"})
            for change in (
                _replace("displayName", f"User {n}"),
                _replace("active", False),
                _replace("active", True),
            ):
                await provisioning.apply_patch(one, USERS, scope, user["id"], change)
            for change in (
                patch_body({"op": "add", "path": "members", "value": [{"value": user["id"]}]}),
                patch_body({"op": "remove", "path": f'members[value eq "{user["id"]}"]'}),
            ):
                await provisioning.apply_patch(one, GROUPS, scope, group["id"], change)
        plans = await one.fetch(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
        )
    finally:
        await one.close()
    executed = [
        (" ".join(row["statement"].split())[:120], row["generic_plans"], row["custom_plans"])
        for row in plans
        if row["generic_plans"] + row["custom_plans"] >= ROUNDS
    ]
    ours: tuple[str, ...] = ("WITH written", "WITH current", "WITH state")
    ours += ("WITH RECURSIVE state",) if mapped else ("WITH new_events",)
    writes = [
        statement
        for statement, generic, _ in executed
        if generic > 0 and statement.startswith(ours)
    ]
    # The user PATCH, deactivation and reactivation, the member changes (mapped, with
    # their users' roles computed and stored: `WITH RECURSIVE`), and the creates.
    assert len(writes) >= 5, executed
    assert [row for row in executed if row[2] > CUSTOM_PLANS_BEFORE_CHOOSING] == []
