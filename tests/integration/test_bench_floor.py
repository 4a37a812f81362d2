"""The benchmark's floor does the database work of the service's lookups, no less."""

from __future__ import annotations

from service.postgres import Pool
from service.store import groups
from tests.bench import floor
from tests.support.application import TenantHandle, schema_of


async def test_the_floors_lookup_reads_what_the_services_lookup_returns(
    db: Pool, tenant: TenantHandle
) -> None:
    user = await tenant.create_user("ada@example.com")
    for name in ("Engineering", "Everyone"):
        created = await tenant.client.post(
            f"{tenant.scim}/Groups",
            json={"displayName": name, "members": [{"value": user["id"]}]},
            headers=tenant.auth(),
        )
        assert created.status_code == 201, created.text
    response = await tenant.client.get(
        f'{tenant.scim}/Users?filter=userName eq "ada@example.com"', headers=tenant.auth()
    )
    [served] = response.json()["Resources"]

    lookup = floor.lookup(await schema_of(db, tenant.slug))
    rows = await db.fetch(lookup.statement, *lookup.args("ada@example.com"))

    [row] = rows
    assert str(row["id"]) == served["id"]
    # The groups the response shows are read by the floor's statement too.
    assert sorted(display for _, display, _ in groups.groups_in_column(row["related"])) == sorted(
        group["display"] for group in served["groups"]
    )
    assert len(served["groups"]) == 2
