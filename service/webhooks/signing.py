"""Webhook signing secrets: their format, encryption at rest, and Standard Webhooks signatures.

A signing secret is `whsec_` + base64 of 32 random bytes, as Standard
Webhooks specifies. HMAC signing needs the secret itself, so it cannot be
stored as a hash like our tokens: it is stored sealed with AES-256-GCM under
a key derived (HKDF-SHA256) from `SCIM_SECRET_KEY`, with the endpoint's id as
associated data so a sealed secret cannot be moved to another endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SECRET_PREFIX = "whsec_"  # noqa: S105 - the public Standard Webhooks prefix, not a secret
_SECRET_BYTES = 32
_NONCE_BYTES = 12
_HKDF_INFO = b"scim-platform webhook signing secrets v1"


class SecretUnreadable(Exception):
    """A sealed secret does not open: `SCIM_SECRET_KEY` is not the one it was sealed with."""


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(_SECRET_BYTES)).decode()


def signature_header(secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> str:
    """`webhook-signature`: `v1,<base64 HMAC-SHA256>` for each secret, space-separated.

    Several signatures let a receiver keep verifying with the old secret while
    a rotation overlaps.
    """
    signed = f"{message_id}.{timestamp}.".encode() + body
    signatures = []
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
        digest = hmac.new(key, signed, hashlib.sha256).digest()
        signatures.append("v1," + base64.b64encode(digest).decode())
    return " ".join(signatures)


class SecretBox:
    """Seals and opens signing secrets with a key derived from `SCIM_SECRET_KEY`."""

    def __init__(self, master_key: str) -> None:
        key = HKDF(algorithm=SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
            master_key.encode()
        )
        self._aead = AESGCM(key)

    def seal(self, secret: str, endpoint_id: uuid.UUID) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret.encode(), endpoint_id.bytes)

    def open(self, sealed: bytes, endpoint_id: uuid.UUID) -> str:
        try:
            plain = self._aead.decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], endpoint_id.bytes
            )
        except InvalidTag as exc:
            raise SecretUnreadable(
                "the signing secret cannot be decrypted: SCIM_SECRET_KEY has changed"
            ) from exc
        return plain.decode()
