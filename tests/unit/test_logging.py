"""Secrets never reach a log line; every log record is one JSON object."""

from __future__ import annotations

import io
import json
import logging
import random
import sys
from collections.abc import Iterator

import pytest

from observability.logging import _SECRET, JsonFormatter, configure_logging, redact
from tenants.secrets import ADMIN_TOKEN_PREFIX, generate_secret


def test_tenant_token_is_redacted() -> None:
    secret = generate_secret()
    text = redact(f"issued token {secret} for acme")
    assert secret not in text
    assert secret[len("scimsk_") :] not in text
    assert text == "issued token [REDACTED] for acme"


def test_admin_token_is_redacted() -> None:
    secret = generate_secret(ADMIN_TOKEN_PREFIX)
    assert redact(f"admin={secret}") == "admin=[REDACTED]"


def test_every_token_in_a_line_is_redacted() -> None:
    a, b = generate_secret(), generate_secret(ADMIN_TOKEN_PREFIX)
    text = redact(f"{a},{b};{a}")
    assert text == "[REDACTED],[REDACTED];[REDACTED]"


def test_token_shape_is_redacted_even_with_a_bad_checksum() -> None:
    # Redaction is by shape: a mistyped token is still most of a real one.
    fake = "scimsk_" + "A" * 38
    assert redact(f"got {fake}") == "got [REDACTED]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def.ghi", "Authorization: Bearer [REDACTED]"),
        ("authorization: bearer abc", "authorization: bearer [REDACTED]"),
        ("BEARER abc", "BEARER [REDACTED]"),
        ("Bearer   spaced-out", "Bearer   [REDACTED]"),
        ("{'authorization': 'Bearer xyz'}", "{'authorization': 'Bearer [REDACTED]'}"),
        ('{"authorization": "Bearer xyz"}', '{"authorization": "Bearer [REDACTED]"}'),
        ("Bearer a then Bearer b", "Bearer [REDACTED] then Bearer [REDACTED]"),
    ],
)
def test_bearer_credentials_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_bearer_with_a_real_token_is_redacted() -> None:
    secret = generate_secret()
    text = redact(f"header was 'Bearer {secret}'")
    assert secret not in text
    assert text == "header was 'Bearer [REDACTED]'"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain message",
        "tenant acme created with schema t_0123456789abcdef0123456789abcdef",
        "scimsk_ too short",
        "scimsk_abc",
        "display prefix scimsk_abcd…",
    ],
)
def test_harmless_text_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_the_marker_shortcut_skips_no_text_the_pattern_would_redact() -> None:
    # `redact` runs the pattern only on text holding a marker; on any text it must
    # answer what the pattern alone would. Random text built from the markers in
    # random case, credential-like runs, separators and non-ASCII letters.
    rng = random.Random(7)  # noqa: S311 - test data, not a secret
    # Letters Unicode case-folds to ASCII ones: long s, dotted capital I, dotless i, Kelvin.
    long_s, dotted_i, dotless_i, kelvin = "\u017f", "\u0130", "\u0131", "\u212a"
    pieces = [
        "scimsk_", "SCIMSK_", "scimadm_", "ScimAdm_", "bearer", "BeArEr", "basic", "BASIC",
        "A" * 38, "x9" * 19, " ", "\t", "'", '"', "\u00e9", "Bearer\u00a0", "/scim/v2/",
        long_s, dotted_i, dotless_i, kelvin,
        f"ba{long_s}ic", f"bas{dotless_i}c", f"BAS{dotted_i}C",
    ]  # fmt: skip
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert redact(text) == _SECRET.sub(lambda m: f"{m.group(2) or ''}[REDACTED]", text), text


def _record(msg: str, *args: object, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(
        name="scim.test",
        level=level,
        pathname=__file__,
        lineno=1,
        msg=msg,
        args=args,
        exc_info=None,
    )


def test_json_formatter_emits_one_json_object() -> None:
    line = JsonFormatter().format(_record("hello %s", "world", level=logging.WARNING))
    assert "\n" not in line
    entry = json.loads(line)
    assert set(entry) == {"time", "level", "logger", "message"}
    assert entry["message"] == "hello world"
    assert entry["level"] == "warning"
    assert entry["logger"] == "scim.test"
    assert entry["time"].endswith("+00:00")


def test_json_formatter_redacts_the_formatted_message() -> None:
    secret = generate_secret()
    line = JsonFormatter().format(_record("token %s, header %s", secret, "Bearer hunter2"))
    assert secret not in line
    assert "hunter2" not in line
    assert json.loads(line)["message"] == "token [REDACTED], header Bearer [REDACTED]"


def test_json_formatter_keeps_multiline_messages_on_one_line() -> None:
    line = JsonFormatter().format(_record('first\nsecond "quoted"\n'))
    assert "\n" not in line
    assert json.loads(line)["message"] == 'first\nsecond "quoted"\n'


def test_json_formatter_redacts_exceptions() -> None:
    secret = generate_secret()
    try:
        raise RuntimeError(f"bad token {secret}")
    except RuntimeError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert secret not in line
    entry = json.loads(line)
    assert "RuntimeError: bad token [REDACTED]" in entry["exception"]
    assert entry["message"] == "failed"


@pytest.fixture
def restored_root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_logger_output_is_one_json_object_per_line(restored_root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("scim.unit.json")
    log.addHandler(handler)
    log.propagate = False
    try:
        secret = generate_secret()
        log.warning("first with %s", secret)
        log.warning("second\nspans lines")
        log.error("third: Authorization: Bearer %s", secret)
    finally:
        log.removeHandler(handler)
        log.propagate = True
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    entries = [json.loads(line) for line in lines]
    assert [e["message"] for e in entries] == [
        "first with [REDACTED]",
        "second\nspans lines",
        "third: Authorization: Bearer [REDACTED]",
    ]
    assert secret not in stream.getvalue()


def test_configure_logging_installs_one_json_handler(
    restored_root_logger: logging.Logger,
) -> None:
    configure_logging("WARNING")
    root = restored_root_logger
    assert root.level == logging.WARNING
    assert len(root.handlers) == 1
    assert isinstance(root.handlers[0].formatter, JsonFormatter)
    configure_logging("DEBUG")
    assert len(root.handlers) == 1
    assert root.level == logging.DEBUG
