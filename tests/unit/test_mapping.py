"""Attribute mapping: saving checks, and the mapped profile of a user."""

from __future__ import annotations

from typing import Any

import pytest

from service.scim.mapping import MappingError, check_mapping, mapped_profile

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CUSTOM = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"

USER: dict[str, Any] = {
    "userName": "ada@example.com",
    "name": {"givenName": "Ada", "familyName": "Lovelace"},
    "emails": [
        {"value": "ada@home.example", "type": "home"},
        {"value": "ada@example.com", "type": "work", "primary": True},
    ],
    "phoneNumbers": [{"value": "+1 555", "type": "mobile"}],
    "active": False,
    ENTERPRISE: {"department": "R&D", "manager": {"value": "m-1"}},
    CUSTOM: {"costCentre": "4130"},
}


def test_mapped_profile() -> None:
    mapping = check_mapping(
        {
            "email": "userName",
            "first_name": "name.givenName",
            "department": f"{ENTERPRISE}:department",
            "manager_id": f"{ENTERPRISE}:manager",
            "primary_email": "emails.value",
            "home_email": 'emails[type eq "home"].value',
            "phone": "phoneNumbers.value",
            "active": "active",
            "cost_centre": f"{CUSTOM}:costCentre",
            "nickname": "nickName",
            "office": f"{CUSTOM}:office",
        }
    )
    assert mapped_profile(mapping, USER) == {
        "email": "ada@example.com",
        "first_name": "Ada",
        "department": "R&D",
        "manager_id": "m-1",
        "primary_email": "ada@example.com",
        "home_email": "ada@home.example",
        "phone": "+1 555",
        "active": False,
        "cost_centre": "4130",
    }


def test_names_are_case_insensitive() -> None:
    assert mapped_profile({"d": f"{ENTERPRISE.upper()}:DEPARTMENT"}, USER) == {"d": "R&D"}


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ([], "must be an object"),
        ({"First": "userName"}, "lower-case"),
        ({"a": ""}, "SCIM attribute path"),
        ({"a": 3}, "SCIM attribute path"),
        ({"a": "nosuch"}, "not a readable User attribute"),
        ({"a": "password"}, "not a readable User attribute"),
        ({"a": "name.nosuch"}, "has no"),
        ({"a": 'emails[type eq "work"].nosuch'}, "has no"),
        ({"a": 'userName[value eq "x"]'}, "single-valued"),
        ({"a": "urn:example:other:1.0:User:x"}, "not a User schema"),
        ({"a": "emails[type eq"}, "field 'a'"),
    ],
)
def test_bad_mappings_are_refused(mapping: Any, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        check_mapping(mapping)


def test_sources_are_trimmed() -> None:
    assert check_mapping({"email": " userName "}) == {"email": "userName"}
