"""Tenant schema names: derived from the tenant id, and checked before reaching SQL."""

from __future__ import annotations

import uuid

import pytest

from tenants.schemas import InvalidSchemaName, quoted_schema, schema_name_for


def test_schema_name_for() -> None:
    tenant_id = uuid.UUID("0123456789abcdef0123456789ABCDEF")
    assert schema_name_for(tenant_id) == "t_0123456789abcdef0123456789abcdef"


def test_schema_names_are_distinct_per_tenant() -> None:
    ids = [uuid.uuid4() for _ in range(200)]
    assert len({schema_name_for(i) for i in ids}) == len(ids)


def test_generated_names_are_accepted_and_double_quoted() -> None:
    for _ in range(50):
        name = schema_name_for(uuid.uuid4())
        assert quoted_schema(name) == f'"{name}"'


def test_invalid_schema_name_is_a_value_error() -> None:
    assert issubclass(InvalidSchemaName, ValueError)


VALID = "t_" + "a" * 32


@pytest.mark.parametrize(
    "name",
    [
        "",
        "t_",
        "public",
        "scim_control",
        "pg_catalog",
        VALID[:-1],
        VALID + "a",
        "T_" + "a" * 32,
        "t_" + "A" * 32,
        "t_" + "g" * 32,
        "u_" + "a" * 32,
        "t-" + "a" * 32,
        "tt_" + "a" * 32,
        " " + VALID,
        VALID + " ",
        "t_" + str(uuid.UUID(int=1)),  # hyphenated form
        f'"{VALID}"',
        f"{VALID}.users",
        't_x"; DROP SCHEMA public; --',
        f'{VALID}"; DROP SCHEMA public CASCADE; --',
        f"{VALID}; DROP TABLE users",
        'public"."users',
        VALID[:20] + '"' + VALID[21:],
        VALID + "\x00",
        "t_" + "a" * 31 + "\u0430",  # Cyrillic 'a'
        "t_" + "\uff10" * 32,  # fullwidth digits
    ],
)
def test_anything_else_is_rejected(name: str) -> None:
    with pytest.raises(InvalidSchemaName, match="not a tenant schema name"):
        quoted_schema(name)


def test_trailing_newline_is_rejected() -> None:
    with pytest.raises(InvalidSchemaName):
        quoted_schema(VALID + "\n")
