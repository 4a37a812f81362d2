"""Role mappings: checking what an operator sends (the database matches them to groups:
`tests/integration/test_roles.py`)."""

from __future__ import annotations

import pytest

from tenants.errors import InvalidInput
from tenants.role_mappings import GroupRule, RoleMappingBody, checked


def rule(match: str, value: str, *roles: str) -> GroupRule:
    return GroupRule(match=match, value=value, roles=list(roles))


def test_default_roles_are_ordered_once_each() -> None:
    mapping = checked(RoleMappingBody(default_roles=["member", "b", "member", "A"]))
    assert mapping.default_roles == ["A", "b", "member"]


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (RoleMappingBody(groups=[rule("id", "x", "a")]), "match"),
        (RoleMappingBody(groups=[rule("displayName", "", "a")]), "value"),
        (RoleMappingBody(groups=[rule("externalId", "x")]), "at least one role"),
        (RoleMappingBody(default_roles=["", "a"]), "non-blank"),
        (RoleMappingBody(default_roles=["a" * 201]), "non-blank"),
        (
            RoleMappingBody(groups=[rule("displayName", "A", "a"), rule("displayName", "a", "b")]),
            "mapped twice",
        ),
    ],
)
def test_mistakes_are_named(body: RoleMappingBody, complaint: str) -> None:
    with pytest.raises(InvalidInput, match=complaint):
        checked(body)


def test_the_same_value_may_be_mapped_by_name_and_by_external_id() -> None:
    mapping = checked(
        RoleMappingBody(groups=[rule("displayName", "x", "a"), rule("externalId", "x", "b")])
    )
    assert [(r.match, r.roles) for r in mapping.rules] == [
        ("displayName", ["a"]),
        ("externalId", ["b"]),
    ]
