"""`?aadOptscim062020` on the Tenant URL: accepted on every SCIM route, changing nothing."""

from __future__ import annotations

from typing import Any

from tests.support.application import TenantHandle

FLAG = "aadOptscim062020"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


async def test_flag_on_every_route(tenant: TenantHandle) -> None:
    async def call(method: str, path: str, body: Any = None, status: int = 200) -> Any:
        url = f"{tenant.scim}{path}{'&' if '?' in path else '?'}{FLAG}"
        response = await tenant.client.request(method, url, json=body, headers=tenant.auth())
        assert response.status_code == status, f"{method} {url}: {response.text}"
        return response.json() if response.content else None

    user = await call("POST", "/Users", {"userName": "flag@example.com"}, 201)
    other = await call("POST", "/Users", {"userName": "flag2@example.com"}, 201)
    group = await call("POST", "/Groups", {"displayName": "Flagged"}, 201)
    await call("GET", "/Users")
    await call("GET", "/Users?filter=userName+eq+%22flag%40example.com%22")
    await call("GET", f"/Users/{user['id']}")
    await call("GET", "/Groups")
    await call("GET", f"/Groups/{group['id']}")
    await call("PUT", f"/Users/{user['id']}", {"userName": "flag@example.com", "title": "x"})
    await call("PUT", f"/Groups/{group['id']}", {"displayName": "Flagged"})
    patch = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": user["id"]}]}],
    }
    await call("PATCH", f"/Groups/{group['id']}", patch, 204)
    await call(
        "PATCH",
        f"/Users/{user['id']}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": True}]},
    )
    search = {"schemas": [SEARCH], "filter": 'userName sw "flag"'}
    assert (await call("POST", "/Users/.search", search))["totalResults"] == 2
    await call("POST", "/Groups/.search", {"schemas": [SEARCH]})
    await call("POST", "/.search", search)
    bulk = {
        "schemas": [BULK],
        "Operations": [
            {
                "method": "POST",
                "path": "/Users",
                "bulkId": "b",
                "data": {"userName": "bulk@example.com"},
            }
        ],
    }
    await call("POST", "/Bulk", bulk)
    await call("GET", "/ServiceProviderConfig")
    await call("GET", "/ResourceTypes")
    await call("GET", "/ResourceTypes/User")
    await call("GET", "/Schemas")
    await call("GET", f"/Schemas/{ENTERPRISE}")
    await call("DELETE", f"/Users/{other['id']}", status=204)
    await call("DELETE", f"/Groups/{group['id']}", status=204)
