"""What of a SCIM request may be stored: secrets and configured PII are replaced by `***`.

Secrets are every attribute whose definition is `writeOnly` (the password),
and anything shaped like a token or a bearer credential. PII is what the
operator lists in `SCIM_REQUEST_LOG_MASK` as attribute paths without the
schema URN (`emails.value`, `phoneNumbers.value`, `name`); naming an
attribute masks its sub-attributes too. Values are masked wherever SCIM
can carry them: resource bodies, PATCH operations with or without `path`
(including Entra's `"name.givenName"` keys inside `value`), Bulk `data`,
and the string literals of filters, in a query string, a SearchRequest or a
PATCH path's value filter. A body that is not valid JSON keeps only its keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import unquote_plus

import msgspec

from observability.logging import redact
from service.scim.attributes import GROUP_RESOURCE, USER_RESOURCE

MASK: Final = "***"
_RESOURCE_TYPES: Final = (USER_RESOURCE, GROUP_RESOURCE)
# Longest first, so an extension URN is not taken for the core URN it starts with.
_SCHEMA_URNS: Final = tuple(
    sorted(
        {schema.id.lower() for rt in _RESOURCE_TYPES for schema in rt.schemas()},
        key=len,
        reverse=True,
    )
)
_VALUE_FILTER: Final = re.compile(r"\[[^\]]*\]?")
_COMPARISONS: Final = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})
_KEYWORDS: Final = frozenset({"and", "or", "not", "pr"})
_FILTER_TOKEN: Final = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]()]|[^\s\[\]()"]+')
_QUOTED: Final = re.compile(r"'[^']*'|\"(?:[^\"\\]|\\.)*\"")
# Tokens of text that failed to parse as JSON: strings (possibly unterminated), bare words.
_RAW_TOKEN: Final = re.compile(r'"(?:[^"\\]|\\.)*"?|[^\s{}\[\]:,"]+')
_RAW_KEEP: Final = re.compile(r"true|false|null|-?[0-9][0-9.eE+-]*")


def secret_paths() -> frozenset[str]:
    """Every `writeOnly` attribute of the SCIM schemas, as `attr` or `attr.sub`."""
    paths = set()
    for resource_type in _RESOURCE_TYPES:
        for schema in resource_type.schemas():
            for attribute in schema.attributes:
                if attribute.mutability == "writeOnly":
                    paths.add(attribute.name.lower())
                paths.update(
                    f"{attribute.name}.{sub.name}".lower()
                    for sub in attribute.sub_attributes
                    if sub.mutability == "writeOnly"
                )
    return frozenset(paths)


def attribute_path(raw: str) -> str:
    """`urn:...:User:emails[type eq "work"].value` -> `emails.value`; a schema URN -> ``."""
    if "[" not in raw and ":" not in raw:  # nearly every key: a plain attribute name
        return raw.strip().lower()
    path = _VALUE_FILTER.sub("", raw.strip().lower())
    for urn in _SCHEMA_URNS:
        if path == urn:
            return ""
        if path.startswith(urn + ":"):
            return path[len(urn) + 1 :]
    return path.rsplit(":", 1)[-1]


def _is_extension(key: str) -> bool:
    """A key holding an extension's attributes: a known schema URN or an unknown URN."""
    if ":" not in key:
        return False
    lowered = key.lower()
    if lowered in _SCHEMA_URNS:
        return True
    return not any(lowered.startswith(urn + ":") for urn in _SCHEMA_URNS)


def _join(parent: str, child: str) -> str:
    return f"{parent}.{child}" if parent and child else parent or child


def _blank(value: Any) -> Any:
    """The value with every leaf masked, its shape kept (which sub-attributes were sent)."""
    if isinstance(value, dict):
        return {key: _blank(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_blank(item) for item in value]
    return None if value is None else MASK


class Masker:
    def __init__(self, pii_paths: Iterable[str] = ()) -> None:
        self._pii = frozenset(p for p in (attribute_path(raw) for raw in pii_paths) if p)
        secrets = secret_paths()
        self._paths = secrets | self._pii
        # A secret is masked only under a key or a path that names it.
        self._secret_names = tuple({path.rsplit(".", 1)[-1].encode() for path in secrets})

    def masks(self, path: str) -> bool:
        head, _, _ = path.partition(".")
        return path in self._paths or head in self._paths

    # --- JSON documents ----------------------------------------------------------------------

    def body(self, raw: bytes) -> str:
        """The stored form of a request body."""
        try:
            document = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return redact(self._skeleton(raw.decode("utf-8", "replace")))
        if not self._masks_nothing_in(raw):
            document = self.document(document)
        return redact(msgspec.json.encode(document).decode())

    def _masks_nothing_in(self, raw: bytes) -> bool:
        """Whether `document` would return the body as it is, told from its text:
        no PII is masked and no secret attribute is named in it.

        Exact because the names are looked for as `document` compares keys and
        paths, lowercased: the text is ASCII (no other letter lowercases to an
        ASCII one, as the Kelvin sign does to `k`) without JSON escapes (which
        could spell a name). A 25-member PATCH is stored in 9 µs instead of 46.
        """
        if self._pii or not raw.isascii() or b"\\u" in raw:
            return False
        lowered = raw.lower()
        return not any(name in lowered for name in self._secret_names)

    def document(self, document: Any) -> Any:
        """A SCIM resource, PatchOp, SearchRequest or BulkRequest, masked."""
        if not isinstance(document, dict):
            return self._value("", document)
        masked: dict[str, Any] = {}
        for key, value in document.items():
            lowered = key.lower()
            if lowered == "operations" and isinstance(value, list):
                masked[key] = [self._operation(op) for op in value]
            elif lowered == "filter" and isinstance(value, str):
                masked[key] = self.filter(value)
            else:
                masked[key] = self._member("", key, value)
        return masked

    def _operation(self, operation: Any) -> Any:
        if not isinstance(operation, dict):
            return self._value("", operation)
        if any(key.lower() == "method" for key in operation):  # a Bulk operation
            return {
                key: self.document(value) if key.lower() == "data" else value
                for key, value in operation.items()
            }
        target = ""  # a PATCH operation: `value` is relative to `path`
        for key, value in operation.items():
            if key.lower() == "path" and isinstance(value, str):
                target = attribute_path(value)
        masked = {}
        for key, value in operation.items():
            lowered = key.lower()
            if lowered == "path" and isinstance(value, str):
                masked[key] = self.filter(value)
            elif lowered == "value":
                masked[key] = self._value(target, value) if target else self.document(value)
            else:
                masked[key] = value
        return masked

    def _member(self, parent: str, key: str, value: Any) -> Any:
        if isinstance(value, dict) and _is_extension(key):
            return {k: self._member("", k, v) for k, v in value.items()}
        return self._value(_join(parent, attribute_path(key)), value)

    def _value(self, path: str, value: Any) -> Any:
        if path and self.masks(path):
            return _blank(value)
        if isinstance(value, dict):
            return {key: self._member(path, key, item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._value(path, item) for item in value]
        return value

    @staticmethod
    def _skeleton(text: str) -> str:
        """Text that is not JSON: keys stay, every other string or word is masked."""
        out: list[str] = []
        last = 0
        for match in _RAW_TOKEN.finditer(text):
            token = match.group()
            before = text[: match.start()].rstrip()
            after = text[match.end() :].lstrip()
            is_key = (
                token.startswith('"')
                and len(token) > 1
                and token.endswith('"')
                and (not before or before[-1] in "{,")
                and after.startswith(":")
            )
            keep = is_key or (not token.startswith('"') and _RAW_KEEP.fullmatch(token))
            out.append(text[last : match.start()])
            out.append(token if keep else f'"{MASK}"')
            last = match.end()
        out.append(text[last:])
        return "".join(out)

    # --- filters, query strings, error details -----------------------------------------------

    def filter(self, text: str, base: str = "") -> str:
        """A filter or PATCH path with the literals compared to masked attributes masked.

        Tokenised rather than parsed, so a filter the parser rejects (the
        request that got `invalidFilter`) is still masked.
        """
        out: list[str] = []
        last = 0
        bases = [base]
        attr = ""
        operand_masked: bool | None = None  # set by a comparison: the next piece is its operand
        for match in _FILTER_TOKEN.finditer(text):
            piece = match.group()
            lowered = piece.lower()
            if operand_masked is not None:
                if operand_masked:
                    out.append(text[last : match.start()])
                    out.append(f'"{MASK}"' if piece.startswith('"') else MASK)
                    last = match.end()
                operand_masked = None
            elif piece == "[":
                bases.append(_join(bases[-1], attribute_path(attr)))
                attr = ""
            elif piece == "]":
                if len(bases) > 1:
                    bases.pop()
            elif lowered in _COMPARISONS and attr:
                operand_masked = self.masks(_join(bases[-1], attribute_path(attr)))
            elif piece.startswith('"'):
                if self._pii:
                    # A literal no comparison ties to an attribute: masked when
                    # PII is masked at all, so a misparse never reveals a value.
                    out.append(text[last : match.start()])
                    out.append(f'"{MASK}"')
                    last = match.end()
            elif lowered not in _KEYWORDS and piece not in ("(", ")"):
                attr = piece
        out.append(text[last:])
        return redact("".join(out))

    def query(self, raw: bytes) -> str | None:
        """The query string, decoded for reading, with its `filter` masked."""
        if not raw:
            return None
        parts = []
        for pair in raw.decode("latin-1").split("&"):
            key, eq, value = pair.partition("=")
            key, value = unquote_plus(key), unquote_plus(value)
            if key.lower() == "filter":
                value = self.filter(value)
            parts.append(f"{key}{eq}{value}")
        return redact("&".join(parts))

    def detail(self, detail: str) -> str:
        """An error detail: it may quote a value the client sent (a userName, a filter operand)."""
        return redact(_QUOTED.sub(f"'{MASK}'", detail) if self._pii else detail)
