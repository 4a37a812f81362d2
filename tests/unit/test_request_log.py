"""What the request log stores of a request: masking, classification, the captured fields."""

from __future__ import annotations

import json
import random
from typing import Any, cast

import msgspec
import pytest
from litestar.types import Message, Receive, Scope, Send
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from observability.logging import redact
from service.request_log.masking import MASK, Masker, attribute_path, secret_paths
from service.request_log.middleware import RequestLogMiddleware
from service.request_log.recorder import Captured, RequestLog, classify
from service.settings import Settings, SettingsError

PII = Masker(["emails.value", "phoneNumbers.value", "name"])
PLAIN = Masker()
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def masked(masker: Masker, document: Any) -> Any:
    return json.loads(masker.body(json.dumps(document).encode()))


def test_secret_paths_come_from_the_write_only_attributes() -> None:
    assert secret_paths() == {"password"}


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ('emails[type eq "work"].value', "emails.value"),
        (f"{ENTERPRISE}:manager.value", "manager.value"),
        (ENTERPRISE, ""),
        ("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName", "name.givenname"),
        ("Password", "password"),
    ],
)
def test_attribute_paths(raw: str, path: str) -> None:
    assert attribute_path(raw) == path


def test_a_resource_keeps_its_shape_and_loses_secrets_and_pii() -> None:
    user = {
        "userName": "ada",
        "PassWord": "hunter2",
        "name": {"givenName": "Ada", "familyName": "King"},
        "emails": [{"value": "ada@x.org", "type": "work", "primary": True}],
        ENTERPRISE: {"employeeNumber": "7"},
    }
    assert masked(PII, user) == {
        "userName": "ada",
        "PassWord": MASK,
        "name": {"givenName": MASK, "familyName": MASK},
        "emails": [{"value": MASK, "type": "work", "primary": True}],
        ENTERPRISE: {"employeeNumber": "7"},
    }
    assert masked(PLAIN, user)["emails"][0]["value"] == "ada@x.org"


def test_patch_operations_are_masked_by_their_path() -> None:
    patch = {
        "Operations": [
            {"op": "replace", "path": 'emails[type eq "work"].value', "value": "new@x.org"},
            {"op": "replace", "value": {"name.givenName": "Bo", "active": False}},
            {"op": "add", "path": "password", "value": "p4ss"},
            {"op": "remove", "path": 'emails[value eq "old@x.org"]'},
            {"op": "add", "path": "emails", "value": [{"value": "a@x.org", "type": "home"}]},
        ]
    }
    operations = masked(PII, patch)["Operations"]
    assert [op.get("value") for op in operations] == [
        MASK,
        {"name.givenName": MASK, "active": False},
        MASK,
        None,
        [{"value": MASK, "type": "home"}],
    ]
    assert operations[3]["path"] == f'emails[value eq "{MASK}"]'
    assert masked(PLAIN, patch)["Operations"][2]["value"] == MASK


def test_bulk_data_and_search_filters_are_masked() -> None:
    bulk = {
        "Operations": [
            {"method": "POST", "path": "/Users", "data": {"userName": "c", "password": "pw"}},
            {
                "method": "PATCH",
                "path": "/Users/1",
                "data": {"Operations": [{"op": "add", "path": "password", "value": "pw"}]},
            },
        ]
    }
    operations = masked(PLAIN, bulk)["Operations"]
    assert operations[0]["data"] == {"userName": "c", "password": MASK}
    assert operations[1]["data"]["Operations"][0]["value"] == MASK
    search = {"filter": 'userName eq "x" and emails.value co "@x.org"'}
    assert masked(PII, search)["filter"] == f'userName eq "x" and emails.value co "{MASK}"'


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('password eq "s3cret"', f'password eq "{MASK}"'),
        (
            'emails[type eq "work" and value co "@x"]',
            f'emails[type eq "work" and value co "{MASK}"]',
        ),
        (
            'name.familyName sw "K" or userName eq "ada"',
            f'name.familyName sw "{MASK}" or userName eq "ada"',
        ),
        ("not (phoneNumbers.value eq 123)", f"not (phoneNumbers.value eq {MASK})"),
        ('"dangling" eq', f'"{MASK}" eq'),  # unparseable: a literal tied to nothing
        ('userName eq "unterminated', 'userName eq "unterminated'),
    ],
)
def test_filters_mask_the_operands_of_masked_attributes(expression: str, expected: str) -> None:
    assert PII.filter(expression) == expected


def test_query_strings_are_decoded_and_masked() -> None:
    raw = b"filter=password+eq+%22hunter2%22&count=1&attributes=userName"
    assert PLAIN.query(raw) == f'filter=password eq "{MASK}"&count=1&attributes=userName'
    assert PLAIN.query(b"") is None


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    keys = [
        "userName",
        "Password",
        "pAsSwOrd",
        "name",
        "givenName",
        "value",
        "members",
        "Operations",
        "op",
        "path",
        "filter",
        "emails",
        "displayName",
        f"{ENTERPRISE}:manager",
        "urn:ietf:params:scim:schemas:core:2.0:User:PASSWORD",
    ]
    leaves = [
        "x",
        "Zoë",
        "\u212aelvin",
        'password eq "s3cret"',
        'userName eq "a"',
        'members[value eq "1"]',
        "password",
        "Bearer scimsk_abcdefghijklmnop",
        7,
        True,
        None,
    ]
    if depth < 3 and rng.random() < 0.6:
        if rng.random() < 0.5:
            return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
        return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(5))}
    return rng.choice(leaves)


def test_a_body_that_masks_nothing_is_stored_as_the_full_walk_would_store_it() -> None:
    # The shortcut (`Masker._masks_nothing_in`) against walking every document:
    # random bodies of secret and ordinary keys in any case, URN-prefixed keys,
    # filters naming the secret, non-ASCII text, JSON escapes and ASCII-only encodings.
    rng = random.Random(11)  # noqa: S311 - test data, not a secret
    shortcuts = 0
    for _ in range(3000):
        document = _random_json(rng)
        raw = json.dumps(document, ensure_ascii=rng.random() < 0.5).encode()
        for masker in (PLAIN, PII):
            walked = redact(msgspec.json.encode(masker.document(msgspec.json.decode(raw))).decode())
            assert masker.body(raw) == walked, raw
        shortcuts += PLAIN._masks_nothing_in(raw)
    assert 500 < shortcuts < 2900
    # A key may spell the secret's name in JSON escapes.
    spelled = b'{"p\\u0061ssword": "s3cret", "userName": "a"}'
    assert json.loads(PLAIN.body(spelled)) == {"password": MASK, "userName": "a"}


def test_bodies_that_are_not_json_keep_only_their_keys() -> None:
    trailing_comma = PLAIN.body(b'{"userName": "bob", "password": "x1", "active": true, "n": 1,}')
    assert trailing_comma == '{"userName": "***", "password": "***", "active": true, "n": 1,}'
    # A stray quote: whatever follows it is masked, keys included.
    stray = PLAIN.body(b'{"userName": "bob", "password": "se"cret", "active": true')
    assert stray.startswith('{"userName": "***", "password": "***"')
    assert "cret" not in stray
    assert "bob" not in stray
    assert PLAIN.body(b'{"password": "unterminated') == '{"password": "***"'


def test_tokens_are_redacted_anywhere() -> None:
    token = "scimsk_" + "a" * 38
    assert token not in PLAIN.body(json.dumps({"externalId": token}).encode())
    assert "abc.def" not in PLAIN.body(b'{"title": "Bearer abc.def"}')


def test_error_details_lose_quoted_values_when_pii_is_masked() -> None:
    detail = "a user with userName 'ada@x.org' already exists"
    assert PII.detail(detail) == f"a user with userName '{MASK}' already exists"
    assert PLAIN.detail(detail) == detail


@pytest.mark.parametrize(
    ("method", "path", "location", "expected"),
    [
        ("POST", "/scim/v2/acme/Users", "http://x/scim/v2/acme/Users/42", ("create", "42")),
        ("GET", "/scim/v2/acme/Users", None, ("list", None)),
        ("GET", "/scim/v2/acme/Groups/7", None, ("get", "7")),
        ("PUT", "/scim/v2/acme/Users/7", None, ("replace", "7")),
        ("PATCH", "/scim/v2/acme/Groups/7", None, ("patch", "7")),
        ("DELETE", "/scim/v2/acme/Users/7", None, ("delete", "7")),
        ("POST", "/scim/v2/acme/Users/.search", None, ("search", None)),
        ("POST", "/scim/v2/acme/.search", None, ("search", None)),
        ("POST", "/scim/v2/acme/Bulk", None, ("bulk", None)),
        ("GET", "/scim/v2/acme/ServiceProviderConfig", None, ("get", None)),
        ("GET", "/scim/v2/acme/Schemas", None, ("list", None)),
        ("POST", "/scim/v2/acme/Users", None, ("create", None)),
    ],
)
def test_operations_are_classified_from_the_request_line(
    method: str, path: str, location: str | None, expected: tuple[str, str | None]
) -> None:
    assert classify(method, path, location) == expected


def _scope(path: str, method: str = "POST") -> Scope:
    partial: dict[str, Any] = {  # only the keys the middleware reads
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"count=1",
        "headers": [(b"user-agent", b"Okta SCIM Client"), (b"authorization", b"Bearer x")],
    }
    return cast(Scope, partial)


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    """A handler that reads its body in two chunks and answers a SCIM error."""
    await receive()
    await receive()
    await send({"type": "http.response.start", "status": 409, "headers": []})
    body = b'{"status":"409","scimType":"uniqueness","detail":"taken"}'
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _empty_body() -> Any:
    return {"type": "http.request", "body": b"", "more_body": False}


async def test_the_middleware_captures_body_status_scim_type_and_trace() -> None:
    request_log = RequestLog(PLAIN)
    middleware = RequestLogMiddleware(request_log)
    chunks: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"userName":', "more_body": True},
        {"type": "http.request", "body": b'"ada"}', "more_body": False},
    ]
    sent: list[Message] = []

    async def receive() -> Any:
        return chunks.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    tracer = TracerProvider().get_tracer(__name__)
    with tracer.start_as_current_span("POST /scim/v2/{tenant}/Users") as span:
        await middleware.handle(_scope("/scim/v2/acme/Users"), receive, send, _app)
        await middleware.handle(_scope("/admin/v1/tenants"), _empty_body, send, _app)
    assert len(sent) == 4  # the response passes through untouched, both times
    assert len(request_log) == 1  # the admin API is not recorded
    (captured,) = request_log._entries
    assert captured.slug == "acme"
    assert captured.body == b'{"userName":"ada"}'
    assert captured.status == 409
    assert b"uniqueness" in captured.error_body
    assert captured.user_agent == "Okta SCIM Client"
    assert captured.query == b"count=1"
    assert captured.trace_id == trace.format_trace_id(span.get_span_context().trace_id)
    assert captured.latency_ms >= 0


def test_settings_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "SCIM_REQUEST_LOG_ENABLED": "false",
            "SCIM_REQUEST_LOG_RETENTION_DAYS": "3",
            "SCIM_REQUEST_LOG_MASK": " emails.value, name ,,",
            "SCIM_REQUEST_LOG_BODY_MAX_BYTES": "4096",
            "SCIM_REQUEST_LOG_BUFFER": "50",
        }
    )
    assert not settings.request_log_enabled
    assert settings.request_log_retention_days == 3
    assert settings.request_log_mask == ("emails.value", "name")
    assert settings.request_log_body_max_bytes == 4096
    assert settings.request_log_buffer == 50
    defaults = Settings.from_env({})
    assert defaults.request_log_enabled
    assert defaults.request_log_mask == ()


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("SCIM_REQUEST_LOG_ENABLED", "maybe"),
        ("SCIM_REQUEST_LOG_RETENTION_DAYS", "0"),
        ("SCIM_REQUEST_LOG_BODY_MAX_BYTES", "100"),
        ("SCIM_REQUEST_LOG_BUFFER", "0"),
    ],
)
def test_bad_settings_are_refused(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env({variable: raw})


def test_a_full_buffer_counts_what_it_drops() -> None:
    request_log = RequestLog(PLAIN, max_entries=2)
    for _ in range(5):
        request_log.record(_captured())
    assert len(request_log) == 2
    assert request_log.dropped == 3
    byte_bound = RequestLog(PLAIN, max_bytes=3000)
    for _ in range(5):
        byte_bound.record(_captured(body=b"x" * 1000))
    assert len(byte_bound) == 2
    assert byte_bound.dropped == 3


def _captured(body: bytes = b"{}") -> Captured:
    return Captured(
        slug="acme",
        received_at=0.0,
        method="POST",
        path="/scim/v2/acme/Users",
        query=b"",
        user_agent=None,
        body=body,
        status=201,
        error_body=b"",
        location=None,
        latency_ms=1.0,
        trace_id=None,
    )
