"""The SCIM error body (RFC 7644 section 3.12)."""

from __future__ import annotations

import pytest

from service.scim.errors import (
    ERROR_SCHEMA,
    ScimError,
    invalid_syntax,
    invalid_value,
    not_found,
)


def test_error_schema_urn() -> None:
    assert ERROR_SCHEMA == "urn:ietf:params:scim:api:messages:2.0:Error"


def test_body_with_scim_type() -> None:
    error = ScimError(409, "userName 'alice' is taken", "uniqueness")
    assert error.body() == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": "409",
        "detail": "userName 'alice' is taken",
        "scimType": "uniqueness",
    }


@pytest.mark.parametrize("scim_type", [None, ""])
def test_body_without_scim_type_has_no_scim_type_key(scim_type: str | None) -> None:
    body = ScimError(404, "User 'x' not found", scim_type).body()
    assert body == {
        "schemas": [ERROR_SCHEMA],
        "status": "404",
        "detail": "User 'x' not found",
    }
    assert "scimType" not in body


def test_status_is_a_string_in_the_body_and_an_int_on_the_error() -> None:
    error = ScimError(401, "no")
    assert error.status == 401
    assert isinstance(error.body()["status"], str)


def test_error_is_an_exception_carrying_its_detail() -> None:
    error = ScimError(400, "bad thing", "invalidValue")
    assert isinstance(error, Exception)
    assert str(error) == "bad thing"
    assert error.detail == "bad thing"
    assert error.scim_type == "invalidValue"
    with pytest.raises(ScimError, match="bad thing"):
        raise error


def test_body_is_a_fresh_dict_each_time() -> None:
    error = ScimError(400, "x")
    first = error.body()
    first["schemas"].append("mutated")
    first["detail"] = "mutated"
    assert error.body() == {"schemas": [ERROR_SCHEMA], "status": "400", "detail": "x"}


def test_helpers() -> None:
    assert invalid_value("v").body() == {
        "schemas": [ERROR_SCHEMA],
        "status": "400",
        "detail": "v",
        "scimType": "invalidValue",
    }
    assert invalid_syntax("s").body() == {
        "schemas": [ERROR_SCHEMA],
        "status": "400",
        "detail": "s",
        "scimType": "invalidSyntax",
    }
    assert not_found("n").body() == {"schemas": [ERROR_SCHEMA], "status": "404", "detail": "n"}
