"""The write-only SCIM `password`, kept only as a salted, deliberately slow hash.

scrypt from the standard library (RFC 7914) is memory-hard, so no dependency
is needed; the parameters are stored with each hash so they can be raised
later without invalidating existing ones. The cleartext is never stored,
returned, logged or traced: it goes from the request straight into `hash_password`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

# n=2**14, r=8: 16 MiB and tens of milliseconds per hash, OWASP's scrypt baseline.
_N: Final = 2**14
_R: Final = 8
_P: Final = 1
_MAXMEM: Final = 64 * 1024 * 1024
_SCHEME: Final = "scrypt"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash``, with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=_MAXMEM)
    return f"{_SCHEME}${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` is the one `stored` was made from."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != _SCHEME:
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)
