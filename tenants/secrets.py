"""The format of the secrets we hand out, as pure functions.

A secret looks like ``scimsk_`` + 32 random base62 characters + a 6-character
base62 CRC32 of those random characters (the scheme GitHub uses for its
tokens). The prefix lets secret scanners recognise a leaked token; the
checksum lets them, and us, reject a mistyped or made-up token without a
database lookup. 32 base62 characters carry 190 bits of entropy.

Only ``hash_secret`` of a secret is ever stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib

TENANT_TOKEN_PREFIX = "scimsk_"  # noqa: S105 - a public prefix, not a secret
ADMIN_TOKEN_PREFIX = "scimadm_"  # noqa: S105 - a public prefix, not a secret

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_LENGTH = 32
_CHECKSUM_LENGTH = 6
_DISPLAY_RANDOM_CHARS = 4
_SHAPE = re.compile(
    rf"(?P<prefix>[a-z]+_)(?P<random>[0-9A-Za-z]{{{_RANDOM_LENGTH}}})"
    rf"(?P<checksum>[0-9A-Za-z]{{{_CHECKSUM_LENGTH}}})"
)


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode()), _CHECKSUM_LENGTH)


def generate_secret(prefix: str = TENANT_TOKEN_PREFIX) -> str:
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LENGTH))
    return f"{prefix}{random_part}{_checksum(random_part)}"


def is_well_formed(secret: str, prefix: str = TENANT_TOKEN_PREFIX) -> bool:
    """True when ``secret`` has our prefix, length, alphabet and a valid checksum."""
    match = _SHAPE.fullmatch(secret)
    if match is None or match["prefix"] != prefix:
        return False
    return hmac.compare_digest(match["checksum"], _checksum(match["random"]))


def hash_secret(secret: str) -> str:
    """SHA-256, hex: the only form in which a secret is stored or compared.

    A plain hash (no salt, no slow KDF) is right here: the secret already has
    190 bits of entropy, and the hash must be an index key for the lookup.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    """The part of a secret that may be shown later, to tell tokens apart."""
    prefix = secret.split("_", 1)[0] + "_"
    return secret[: len(prefix) + _DISPLAY_RANDOM_CHARS]
