"""Extracting the credential from an Authorization header."""

from __future__ import annotations

import pytest

from tenants.auth import bearer_token

TOKEN = "scimsk_0123456789abcdefghijABCDEFGHIJKL012345"


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TOKEN}",
        f"bearer {TOKEN}",
        f"BEARER {TOKEN}",
        f"BeArEr {TOKEN}",
        f"Bearer   {TOKEN}",
        f"  Bearer {TOKEN}  ",
        f"Bearer {TOKEN}\r\n",
        f"Bearer {TOKEN}\t",
    ],
)
def test_bearer_credentials_are_extracted(header: str) -> None:
    assert bearer_token(header) == TOKEN


@pytest.mark.parametrize("header", [None, "", " ", "   "])
def test_missing_header_gives_none(header: str | None) -> None:
    assert bearer_token(header) is None


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "  bearer  ",
    ],
)
def test_scheme_without_credentials_gives_none(header: str) -> None:
    assert bearer_token(header) is None


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNzd29yZA==",
        f"Token {TOKEN}",
        f"Digest {TOKEN}",
        f"Bearer: {TOKEN}",
        f"Bearer-{TOKEN}",
        f"Bearerx {TOKEN}",
        f"xBearer {TOKEN}",
        TOKEN,
        f"{TOKEN} Bearer",
    ],
)
def test_other_schemes_give_none(header: str) -> None:
    assert bearer_token(header) is None


def test_credentials_are_returned_verbatim_apart_from_outer_whitespace() -> None:
    # A token is case-sensitive: only the scheme is matched case-insensitively.
    assert bearer_token("BEARER AbC") == "AbC"
    # Anything after the first space is the credential; the format check rejects junk later.
    assert bearer_token("Bearer a b") == "a b"
