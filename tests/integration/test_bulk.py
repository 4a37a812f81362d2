"""`POST /Bulk`: bulkId references in any order, per-operation results, failOnErrors, limits."""

from __future__ import annotations

from typing import Any

from tests.integration.test_scim_edge import assert_scim_error
from tests.support.application import TenantHandle

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


async def bulk(tenant: TenantHandle, operations: list[dict[str, Any]], **extra: Any) -> Any:
    return await tenant.client.post(
        f"{tenant.scim}/Bulk",
        json={"schemas": [BULK_REQUEST], "Operations": operations, **extra},
        headers=tenant.auth(),
    )


async def test_bulk_with_forward_references(tenant: TenantHandle) -> None:
    existing = await tenant.create_user("old@example.com")
    response = await bulk(
        tenant,
        [
            # Refers to a user created by a later operation: it waits for it.
            {
                "method": "POST",
                "path": "/Groups",
                "bulkId": "g1",
                "data": {"displayName": "Team", "members": [{"value": "bulkId:u1"}]},
            },
            {
                "method": "POST",
                "path": "/Users",
                "bulkId": "u1",
                "data": {"userName": "new@example.com"},
            },
            {
                "method": "PATCH",
                "path": "/Users/bulkId:u1",
                "data": {
                    "schemas": [PATCH_OP],
                    "Operations": [{"op": "replace", "path": "displayName", "value": "New"}],
                },
            },
            {"method": "DELETE", "path": f"/Users/{existing['id']}"},
        ],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["schemas"] == [BULK_RESPONSE]
    statuses = [(op["method"], op["status"]) for op in body["Operations"]]
    assert statuses == [("POST", "201"), ("POST", "201"), ("PATCH", "200"), ("DELETE", "204")]
    group_location = body["Operations"][0]["location"]
    user_id = body["Operations"][1]["location"].rsplit("/", 1)[1]
    group = await tenant.client.get(group_location.split("scim.test")[1], headers=tenant.auth())
    assert [m["value"] for m in group.json()["members"]] == [user_id]
    user = await tenant.client.get(f"{tenant.scim}/Users/{user_id}", headers=tenant.auth())
    assert user.json()["displayName"] == "New"
    gone = await tenant.client.get(f"{tenant.scim}/Users/{existing['id']}", headers=tenant.auth())
    assert gone.status_code == 404


async def test_failed_operations_change_nothing_and_others_go_on(tenant: TenantHandle) -> None:
    response = await bulk(
        tenant,
        [
            {"method": "POST", "path": "/Users", "bulkId": "a", "data": {"displayName": "x"}},
            {
                "method": "POST",
                "path": "/Users",
                "bulkId": "b",
                "data": {"userName": "b@x.example"},
            },
            {
                "method": "POST",
                "path": "/Users",
                "bulkId": "c",
                "data": {"userName": "B@X.example"},
            },
        ],
    )
    results = response.json()["Operations"]
    assert [op["status"] for op in results] == ["400", "201", "409"]
    assert results[0]["response"]["scimType"] == "invalidValue"
    assert results[2]["response"]["scimType"] == "uniqueness"
    users = await tenant.client.get(f"{tenant.scim}/Users", headers=tenant.auth())
    assert [u["userName"] for u in users.json()["Resources"]] == ["b@x.example"]


async def test_fail_on_errors_stops_processing(tenant: TenantHandle) -> None:
    response = await bulk(
        tenant,
        [
            {"method": "POST", "path": "/Users", "bulkId": "a", "data": {}},
            {
                "method": "POST",
                "path": "/Users",
                "bulkId": "b",
                "data": {"userName": "b@y.example"},
            },
        ],
        failOnErrors=1,
    )
    assert [op["status"] for op in response.json()["Operations"]] == ["400"]
    users = await tenant.client.get(f"{tenant.scim}/Users", headers=tenant.auth())
    assert users.json()["totalResults"] == 0


async def test_unresolvable_bulk_ids(tenant: TenantHandle) -> None:
    response = await bulk(
        tenant,
        [
            {
                "method": "POST",
                "path": "/Groups",
                "bulkId": "g",
                "data": {"displayName": "G", "members": [{"value": "bulkId:nobody"}]},
            },
        ],
    )
    [result] = response.json()["Operations"]
    assert result["status"] == "409"
    assert result["bulkId"] == "g"


async def test_bulk_request_errors(tenant: TenantHandle) -> None:
    too_many = [
        {"method": "POST", "path": "/Users", "bulkId": str(i), "data": {"userName": f"u{i}"}}
        for i in range(1001)
    ]
    assert_scim_error(await bulk(tenant, too_many), 413)
    assert_scim_error(await bulk(tenant, []), 400, "invalidSyntax")
    no_schema = await tenant.client.post(
        f"{tenant.scim}/Bulk", json={"Operations": []}, headers=tenant.auth()
    )
    assert_scim_error(no_schema, 400, "invalidSyntax")
    bad_path = await bulk(tenant, [{"method": "DELETE", "path": "/Widgets/1"}])
    assert bad_path.json()["Operations"][0]["status"] == "400"
    users = await tenant.client.get(f"{tenant.scim}/Users", headers=tenant.auth())
    assert users.json()["totalResults"] == 0
