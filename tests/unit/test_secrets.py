"""The Secret Token format: prefix, base62 random part and CRC32 checksum."""

from __future__ import annotations

import hashlib
import re
import string
import zlib

import pytest

from tenants.secrets import (
    ADMIN_TOKEN_PREFIX,
    TENANT_TOKEN_PREFIX,
    display_prefix,
    generate_secret,
    hash_secret,
    is_well_formed,
)

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 6


def _expected_checksum(random_part: str) -> str:
    """An independent base62 encoding of the CRC32, most significant digit first."""
    value = zlib.crc32(random_part.encode())
    digits = ""
    for _ in range(CHECKSUM_LENGTH):
        value, digit = divmod(value, 62)
        digits = BASE62[digit] + digits
    assert value == 0, "6 base62 digits must hold any CRC32"
    return digits


def _make(random_part: str, prefix: str = TENANT_TOKEN_PREFIX) -> str:
    return f"{prefix}{random_part}{_expected_checksum(random_part)}"


def test_prefixes() -> None:
    assert TENANT_TOKEN_PREFIX == "scimsk_"
    assert ADMIN_TOKEN_PREFIX == "scimadm_"


def test_generated_secret_has_the_documented_shape() -> None:
    secret = generate_secret()
    assert re.fullmatch(r"scimsk_[0-9A-Za-z]{38}", secret)
    assert len(secret) == len("scimsk_") + RANDOM_LENGTH + CHECKSUM_LENGTH


def test_generated_secret_checksum_is_base62_crc32_of_random_part() -> None:
    for _ in range(50):
        secret = generate_secret()
        body = secret.removeprefix(TENANT_TOKEN_PREFIX)
        random_part, checksum = body[:RANDOM_LENGTH], body[RANDOM_LENGTH:]
        assert checksum == _expected_checksum(random_part)


def test_generated_secrets_are_well_formed() -> None:
    for _ in range(100):
        assert is_well_formed(generate_secret())


def test_generated_secrets_are_unique() -> None:
    draws = [generate_secret() for _ in range(5000)]
    assert len(set(draws)) == len(draws)
    # And the random parts, not just the whole strings, differ.
    start = len(TENANT_TOKEN_PREFIX)
    assert len({d[start : start + RANDOM_LENGTH] for d in draws}) == len(draws)


def test_generated_secrets_use_the_whole_alphabet() -> None:
    start = len(TENANT_TOKEN_PREFIX)
    random_parts = (generate_secret()[start : start + RANDOM_LENGTH] for _ in range(500))
    assert set("".join(random_parts)) == set(BASE62)


def test_admin_secret() -> None:
    secret = generate_secret(ADMIN_TOKEN_PREFIX)
    assert re.fullmatch(r"scimadm_[0-9A-Za-z]{38}", secret)
    assert is_well_formed(secret, ADMIN_TOKEN_PREFIX)
    # A token of one kind is never accepted as the other.
    assert not is_well_formed(secret)
    assert not is_well_formed(generate_secret(), ADMIN_TOKEN_PREFIX)


def test_known_good_token_is_accepted() -> None:
    assert is_well_formed(_make("0" * 32))
    assert is_well_formed(_make("z" * 32))
    assert is_well_formed(_make("abcdefghijklmnopqrstuvwxyzABCDEF"))


@pytest.mark.parametrize(
    "prefix",
    ["scimadm_", "SCIMSK_", "scimsk", "scimsk-", "ghp_", "", "xscimsk_", "scim_sk_"],
)
def test_wrong_prefix_is_rejected(prefix: str) -> None:
    random_part = "A" * 32
    token = f"{prefix}{random_part}{_expected_checksum(random_part)}"
    assert not is_well_formed(token)


@pytest.mark.parametrize("random_length", [0, 1, 31, 33, 40])
def test_wrong_random_length_is_rejected(random_length: int) -> None:
    random_part = "Q" * random_length
    assert not is_well_formed(_make(random_part))


def test_wrong_total_length_is_rejected() -> None:
    secret = generate_secret()
    assert not is_well_formed(secret[:-1])
    assert not is_well_formed(secret + "0")
    assert not is_well_formed(secret[: len(TENANT_TOKEN_PREFIX) + 1] + secret[-6:])


@pytest.mark.parametrize("bad", ["-", "_", "+", "/", "=", " ", "é", "\u0660", "\x00"])
def test_non_base62_characters_are_rejected(bad: str) -> None:
    random_part = "a" * 31 + bad
    # Even with a checksum that matches those characters.
    assert not is_well_formed(_make(random_part))
    secret = generate_secret()
    assert not is_well_formed(secret[:-1] + bad)


def test_empty_and_whitespace_are_rejected() -> None:
    secret = generate_secret()
    assert not is_well_formed("")
    assert not is_well_formed(" " + secret)
    assert not is_well_formed(secret + " ")


def test_trailing_newline_is_rejected() -> None:
    assert not is_well_formed(generate_secret() + "\n")


def test_every_single_character_change_is_rejected() -> None:
    secret = generate_secret()
    start = len(TENANT_TOKEN_PREFIX)
    changed = 0
    for position in range(start, len(secret)):
        for replacement in BASE62:
            if replacement == secret[position]:
                continue
            mutated = secret[:position] + replacement + secret[position + 1 :]
            assert not is_well_formed(mutated), (position, replacement)
            changed += 1
    assert changed == (RANDOM_LENGTH + CHECKSUM_LENGTH) * 61


def test_swapping_random_and_checksum_halves_is_rejected() -> None:
    secret = generate_secret()
    body = secret.removeprefix(TENANT_TOKEN_PREFIX)
    assert not is_well_formed(TENANT_TOKEN_PREFIX + body[6:] + body[:6])


def test_hash_secret_is_sha256_hex() -> None:
    secret = generate_secret()
    digest = hash_secret(secret)
    assert digest == hashlib.sha256(secret.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert hash_secret("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_hash_secret_distinguishes_secrets() -> None:
    a, b = generate_secret(), generate_secret()
    assert hash_secret(a) != hash_secret(b)
    assert hash_secret(a) == hash_secret(a)


def test_display_prefix() -> None:
    secret = _make("abcdWXYZ" * 4)
    assert display_prefix(secret) == "scimsk_abcd"
    admin = _make("Zy12" * 8, ADMIN_TOKEN_PREFIX)
    assert display_prefix(admin) == "scimadm_Zy12"


def test_display_prefix_reveals_only_four_random_characters() -> None:
    for prefix in (TENANT_TOKEN_PREFIX, ADMIN_TOKEN_PREFIX):
        secret = generate_secret(prefix)
        shown = display_prefix(secret)
        assert secret.startswith(shown)
        assert len(shown) == len(prefix) + 4
