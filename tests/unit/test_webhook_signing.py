"""Signing secrets: format, encryption at rest, and signatures an independent library accepts."""

from __future__ import annotations

import base64
import time
import uuid

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.webhooks.signing import SecretBox, SecretUnreadable, generate_secret, signature_header


def test_secrets_are_whsec_base64_of_32_random_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert generate_secret() != secret


def test_signatures_verify_with_the_standard_webhooks_library() -> None:
    old, new = generate_secret(), generate_secret()
    body = b'{"type":"user.created"}'
    timestamp = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header([new, old], "msg_1", timestamp, body),
    }
    assert Webhook(new).verify(body, headers) == {"type": "user.created"}
    assert Webhook(old).verify(body, headers) == {"type": "user.created"}
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body + b" ", headers)


def test_sealed_secrets_open_only_with_the_same_key_and_endpoint() -> None:
    box = SecretBox("k" * 32)
    endpoint = uuid.uuid4()
    secret = generate_secret()
    sealed = box.seal(secret, endpoint)
    assert secret.encode() not in sealed
    assert box.open(sealed, endpoint) == secret
    assert box.seal(secret, endpoint) != sealed  # a fresh nonce each time
    with pytest.raises(SecretUnreadable):
        SecretBox("x" * 32).open(sealed, endpoint)
    with pytest.raises(SecretUnreadable):
        box.open(sealed, uuid.uuid4())
