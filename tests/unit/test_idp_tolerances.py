"""The IdP tolerances of the PATCH engine and validation added for Entra and Okta."""

from __future__ import annotations

from typing import Any

import pytest

from service.scim.attributes import USER_RESOURCE
from service.scim.errors import ScimError
from service.scim.patch import PATCH_OP_URN, apply_patch, parse_patch_request
from service.scim.resources import render_user
from service.scim.validation import normalise

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MANAGER = f"{ENTERPRISE}:manager"
CUSTOM = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"


def _patch(resource: dict[str, Any], *operations: dict[str, Any]) -> dict[str, Any]:
    ops = parse_patch_request({"schemas": [PATCH_OP_URN], "Operations": list(operations)})
    return apply_patch(USER_RESOURCE, resource, ops).resource


def _with_manager(manager_id: str) -> dict[str, Any]:
    return {"userName": "u", ENTERPRISE: {"manager": {"value": manager_id}}}


@pytest.mark.parametrize("path", [MANAGER, "manager"])
def test_manager_removed_by_a_matching_filter(path: str) -> None:
    assert _patch(_with_manager("m1"), {"op": "remove", "path": f'{path}[value eq "m1"]'}) == {
        "userName": "u"
    }


def test_manager_kept_when_the_filter_does_not_match() -> None:
    user = _with_manager("m1")
    assert _patch(user, {"op": "Remove", "path": f'{MANAGER}[value eq "m2"]'}) == user


def test_manager_filter_only_on_remove() -> None:
    with pytest.raises(ScimError) as excinfo:
        _patch(_with_manager("m1"), {"op": "add", "path": f'{MANAGER}[value eq "m1"]', "value": 1})
    assert excinfo.value.scim_type == "invalidPath"


@pytest.mark.parametrize(
    "value",
    ["m2", {"value": "m2"}, [{"$ref": None, "value": "m2"}], [{"value": "m2"}]],
)
@pytest.mark.parametrize("path", [MANAGER, "manager"])
def test_manager_shapes(path: str, value: Any) -> None:
    assert _patch(_with_manager("m1"), {"op": "Replace", "path": path, "value": value}) == (
        _with_manager("m2")
    )


def test_manager_as_an_empty_list_clears_it() -> None:
    assert _patch(_with_manager("m1"), {"op": "Replace", "path": MANAGER, "value": []}) == {
        "userName": "u"
    }


def test_manager_list_of_two_is_refused() -> None:
    with pytest.raises(ScimError) as excinfo:
        _patch(_with_manager("m1"), {"op": "replace", "path": MANAGER, "value": ["a", "b"]})
    assert excinfo.value.scim_type == "invalidValue"


def test_custom_extension_attributes_by_path_are_kept() -> None:
    user = _patch(
        {"userName": "u"},
        {"op": "add", "path": f"{CUSTOM}:costCentre", "value": "42"},
        {"op": "Add", "path": f"{CUSTOM}:badge.number", "value": 7},
    )
    assert user == {"userName": "u", CUSTOM: {"costCentre": "42", "badge": {"number": 7}}}
    user = _patch(user, {"op": "replace", "path": f"{CUSTOM.lower()}:COSTCENTRE", "value": "43"})
    assert user[CUSTOM]["costCentre"] == "43"
    assert _patch(
        user,
        {"op": "remove", "path": f"{CUSTOM}:costCentre"},
        {"op": "remove", "path": f"{CUSTOM}:badge.number"},
    ) == {"userName": "u"}


def test_custom_extension_in_a_pathless_value_is_kept() -> None:
    user = _patch(
        {"userName": "u"},
        {"op": "replace", "value": {CUSTOM: {"costCentre": "42"}, f"{CUSTOM}:site": "Oslo"}},
    )
    assert user == {"userName": "u", CUSTOM: {"costCentre": "42", "site": "Oslo"}}


def test_custom_extension_as_the_path() -> None:
    user = {"userName": "u", CUSTOM: {"costCentre": "42", "site": "Oslo"}}
    assert _patch(user, {"op": "replace", "path": CUSTOM, "value": {"site": "Rome"}}) == {
        "userName": "u",
        CUSTOM: {"site": "Rome"},
    }
    assert _patch(user, {"op": "remove", "path": CUSTOM}) == {"userName": "u"}


def test_unknown_core_attribute_in_a_patch_is_still_an_error() -> None:
    with pytest.raises(ScimError) as excinfo:
        _patch({"userName": "u"}, {"op": "add", "path": "costCentre", "value": "1"})
    assert excinfo.value.scim_type == "invalidPath"


def test_posted_manager_list_and_custom_extension() -> None:
    body = {
        "userName": "u",
        ENTERPRISE: {"manager": [{"$ref": None, "value": "m1"}]},
        CUSTOM: {"costCentre": "42"},
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", CUSTOM],
    }
    assert normalise(USER_RESOURCE, body) == {
        "userName": "u",
        ENTERPRISE: {"manager": {"value": "m1"}},
        CUSTOM: {"costCentre": "42"},
    }


def test_kept_custom_extension_is_declared_in_schemas() -> None:
    import uuid
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    body = render_user(
        base_url="https://x",
        user_id=uuid.uuid4(),
        attributes={"userName": "u", CUSTOM: {"costCentre": "42"}},
        created=now,
        last_modified=now,
        version=1,
    )
    assert CUSTOM in body["schemas"]
