"""Role mappings: checking what an operator sends, and computing roles from group keys."""

from __future__ import annotations

import pytest

from tenants.errors import InvalidInput
from tenants.role_mappings import GroupRule, RoleMappingBody, checked


def rule(match: str, value: str, *roles: str) -> GroupRule:
    return GroupRule(match=match, value=value, roles=list(roles))


def test_roles_are_the_defaults_plus_those_of_every_group() -> None:
    mapping = checked(
        RoleMappingBody(
            default_roles=["member", "member"],
            groups=[
                rule("displayName", "Engineering", "developer"),
                rule("externalId", "0f3c", "admin", "developer"),
            ],
        )
    )
    assert mapping.roles([]) == ["member"]
    # displayName matches case-insensitively, externalId exactly.
    assert mapping.roles([("ENGINEERING", None)]) == ["developer", "member"]
    assert mapping.roles([("Other", "0F3C")]) == ["member"]
    assert mapping.roles([("Other", "0f3c"), ("engineering", None)]) == [
        "admin",
        "developer",
        "member",
    ]
    assert mapping.grants([("x", "0f3c")])
    assert not mapping.grants([("x", None), ("Engineers", "0f3")])


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
    assert mapping.roles([("x", "x")]) == ["a", "b"]
