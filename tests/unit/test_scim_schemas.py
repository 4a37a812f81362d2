"""Discovery documents and list responses."""

from __future__ import annotations

from typing import Any

from service.scim.schemas import (
    ENTERPRISE_USER,
    GROUP_SCHEMA,
    LIST_RESPONSE,
    SERVICE_PROVIDER_CONFIG,
    USER_SCHEMA,
    list_response,
    service_provider_config,
)

BASE_URL = "https://scim.example.com/scim/v2/acme"


def test_schema_urns() -> None:
    assert USER_SCHEMA == "urn:ietf:params:scim:schemas:core:2.0:User"
    assert GROUP_SCHEMA == "urn:ietf:params:scim:schemas:core:2.0:Group"
    assert ENTERPRISE_USER == "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    assert LIST_RESPONSE == "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    assert SERVICE_PROVIDER_CONFIG == "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"


def test_service_provider_config_reports_what_is_supported() -> None:
    config = service_provider_config(
        base_url=BASE_URL, max_results=250, bulk_max_operations=1000, bulk_max_payload=4096
    )
    assert config == {
        "schemas": [SERVICE_PROVIDER_CONFIG],
        "patch": {"supported": True},
        "bulk": {"supported": True, "maxOperations": 1000, "maxPayloadSize": 4096},
        "filter": {"supported": True, "maxResults": 250},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "The tenant's Secret Token, as 'Authorization: Bearer <token>'.",
                "primary": True,
            }
        ],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": f"{BASE_URL}/ServiceProviderConfig",
        },
    }


def test_service_provider_config_has_every_rfc7643_capability() -> None:
    config = service_provider_config(
        base_url=BASE_URL, max_results=1, bulk_max_operations=1, bulk_max_payload=1
    )
    required = {"patch", "bulk", "filter", "changePassword", "sort", "etag"}
    assert required <= set(config)
    for capability in required:
        assert isinstance(config[capability]["supported"], bool), capability
    assert config["authenticationSchemes"]


def test_service_provider_config_follows_its_arguments() -> None:
    config = service_provider_config(
        base_url="http://127.0.0.1:8000/scim/v2/t",
        max_results=7,
        bulk_max_operations=3,
        bulk_max_payload=2048,
    )
    assert config["filter"]["maxResults"] == 7
    assert config["bulk"]["maxOperations"] == 3
    assert config["bulk"]["maxPayloadSize"] == 2048
    assert config["meta"]["location"] == "http://127.0.0.1:8000/scim/v2/t/ServiceProviderConfig"


def test_list_response() -> None:
    resources: list[dict[str, Any]] = [{"id": "1"}, {"id": "2"}]
    assert list_response(resources, total=10, start_index=3) == {
        "schemas": [LIST_RESPONSE],
        "totalResults": 10,
        "startIndex": 3,
        "itemsPerPage": 2,
        "Resources": [{"id": "1"}, {"id": "2"}],
    }


def test_empty_list_response() -> None:
    assert list_response([], total=0, start_index=1) == {
        "schemas": [LIST_RESPONSE],
        "totalResults": 0,
        "startIndex": 1,
        "itemsPerPage": 0,
        "Resources": [],
    }


def test_items_per_page_counts_the_page_not_the_total() -> None:
    page = list_response([{"id": str(i)} for i in range(5)], total=1000, start_index=996)
    assert page["itemsPerPage"] == 5
    assert page["totalResults"] == 1000
    assert page["startIndex"] == 996
