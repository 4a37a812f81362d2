"""Parsing the payload of a cache-invalidation NOTIFY."""

from __future__ import annotations

import uuid

import pytest

from tenants.notifications import CHANNEL, parse


def test_channel() -> None:
    assert CHANNEL == "scim_control"


@pytest.mark.parametrize("kind", ["tenant", "token"])
def test_parse_kind_and_id(kind: str) -> None:
    object_id = uuid.uuid4()
    assert parse(f"{kind}:{object_id}") == (kind, object_id)


def test_parse_round_trips_the_sent_format() -> None:
    # notify_tenant_changed / notify_token_changed send f"{kind}:{uuid}".
    object_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    result = parse(f"tenant:{object_id}")
    assert result is not None
    kind, parsed_id = result
    assert kind == "tenant"
    assert parsed_id == object_id
    assert isinstance(parsed_id, uuid.UUID)


def test_unknown_kind_is_passed_through() -> None:
    # The receiver (Authenticator.forget) ignores kinds it does not know.
    object_id = uuid.uuid4()
    assert parse(f"future:{object_id}") == ("future", object_id)


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "tenant",
        "tenant:",
        ":",
        "tenant:not-a-uuid",
        "tenant:12345678-1234-5678-1234-56781234567",
        "tenant:12345678-1234-5678-1234-567812345678:extra",
        "12345678-1234-5678-1234-567812345678",
    ],
)
def test_malformed_payloads_give_none(payload: str) -> None:
    assert parse(payload) is None
