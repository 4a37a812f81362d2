"""Which filters the store pages as lookups (`filters.names_few`): a choice of plan, by shape."""

from __future__ import annotations

import uuid

import pytest

from service.scim.filter import parse_filter
from service.store.filters import names_few
from service.store.resources import GROUPS, USERS
from tenants.schemas import schema_name_for

SCHEMA = schema_name_for(uuid.UUID(int=1))

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@pytest.mark.parametrize(
    "text",
    [
        'userName eq "ada@example.com"',
        'USERNAME eq "ada@example.com"',
        f'{USER}:userName eq "ada@example.com"',
        'externalId eq "e-1"',
        'id eq "2819c223-7f76-453a-919d-413861904646"',
        'displayName eq "Ada"',
        'emails.value eq "ada@example.com"',
        'emails eq "ada@example.com"',
        'emails[type eq "work" and value eq "ada@example.com"]',
        'userName eq "ada@example.com" and active eq true',
        'active eq true and externalId eq "e-1"',
        'userName eq "a@example.com" or externalId eq "e-2"',
    ],
)
def test_a_users_lookup_names_few(text: str) -> None:
    assert names_few(USERS.target(SCHEMA), parse_filter(text))


@pytest.mark.parametrize(
    "text",
    [
        "active eq true",
        'userName sw "a"',
        'userName co "example"',
        'userName ne "ada@example.com"',
        "userName eq null",
        "userName pr",
        'title eq "Engineer"',
        'meta.lastModified gt "2026-01-01T00:00:00Z"',
        'emails[type eq "work"]',
        'emails.type eq "work"',
        'not (userName eq "ada@example.com")',
        'userName eq "ada@example.com" or active eq false',
        f'{ENTERPRISE}:employeeNumber eq "701984"',
        'unknownAttribute eq "x"',
    ],
)
def test_a_filter_that_may_match_most_users_does_not(text: str) -> None:
    assert not names_few(USERS.target(SCHEMA), parse_filter(text))


def test_a_groups_lookup_names_few_and_its_members_do_not() -> None:
    assert names_few(GROUPS.target(SCHEMA), parse_filter('displayName eq "Sales"'))
    member = 'members[value eq "2819c223-7f76-453a-919d-413861904646"]'
    assert not names_few(GROUPS.target(SCHEMA), parse_filter(member))
