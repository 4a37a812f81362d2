"""SCIM filters (RFC 7644 section 3.4.2.2) and PATCH paths (section 3.5.2).

A hand-written tokenizer turns the text into tokens carrying their offsets, and
a recursive-descent parser builds a small immutable tree from them, one method
per grammar rule::

    filter    = or
    or        = and *("or" and)
    and       = unary *("and" unary)
    unary     = "not" "(" filter ")" / "(" filter ")" / attrExp / valuePath
    attrExp   = attrPath "pr" / attrPath compareOp compValue
    valuePath = attrPath "[" filter "]"      ; no valuePath inside, paths relative
    patchPath = attrPath ["[" filter "]" ["." ATTRNAME]]

Keywords are recognised by position rather than reserved, so an attribute may
be called ``pr`` or ``not``. The parser is written by hand, not generated, so
that every error names the offending character and says what was expected:
these messages go straight back to the identity provider's administrator.
Hard limits on length, nesting and size bound the work one request can cause.

`matches` evaluates a tree against an in-memory dict (a resource, or one
element of a multi-valued attribute) with SCIM semantics: attribute names are
case-insensitive, a multi-valued attribute matches when any of its values
does, and null, missing and empty lists are the same state (RFC 7643 2.5).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, assert_never

from service.scim.errors import ScimError
from service.scim.schemas import GROUP_SCHEMA, USER_SCHEMA

__all__ = [
    "COMPARE_OPERATORS",
    "MAX_COMPARISONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "And",
    "AttrPath",
    "Compare",
    "Filter",
    "Not",
    "Or",
    "PatchPath",
    "Present",
    "ValuePath",
    "matches",
    "parse_filter",
    "parse_patch_path",
    "paths_in",
]

MAX_LENGTH: Final = 4096
MAX_DEPTH: Final = 32
MAX_COMPARISONS: Final = 256

COMPARE_OPERATORS: Final = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})
_ORDERING_OPERATORS: Final = frozenset({"gt", "ge", "lt", "le"})


# --- The tree ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttrPath:
    """``[schema ":"] attr ["." sub_attr]``, every part as the client wrote it."""

    schema: str | None
    attr: str
    sub_attr: str | None


@dataclass(frozen=True, slots=True)
class Compare:
    path: AttrPath
    op: str
    value: str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Present:
    path: AttrPath


@dataclass(frozen=True, slots=True)
class And:
    left: Filter
    right: Filter


@dataclass(frozen=True, slots=True)
class Or:
    left: Filter
    right: Filter


@dataclass(frozen=True, slots=True)
class Not:
    expr: Filter


@dataclass(frozen=True, slots=True)
class ValuePath:
    """``emails[type eq "work"]``: `filter`'s paths name sub-attributes of `path`."""

    path: AttrPath
    filter: Filter


Filter: TypeAlias = Compare | Present | And | Or | Not | ValuePath


@dataclass(frozen=True, slots=True)
class PatchPath:
    """The target of a PATCH operation.

    ``emails[type eq "work"].value`` gives ``attr=AttrPath(None, "emails", None)``,
    the bracketed filter and ``sub_attr="value"``; ``name.givenName`` gives
    ``attr=AttrPath(None, "name", "givenName")`` and neither of the others.
    """

    attr: AttrPath
    value_filter: Filter | None
    sub_attr: str | None


# --- Tokens -----------------------------------------------------------------

_Kind: TypeAlias = Literal["word", "string", "number", "(", ")", "[", "]", ".", "end"]


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str
    pos: int
    value: str | int | float | None = None


# A word is an attribute path (URN, dots and all) or a keyword; which one is
# decided by the parser from where it stands.
_WORD = re.compile(r"[A-Za-z$][A-Za-z0-9_$:.\-]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NUMBER_START = frozenset("-0123456789")
_WORD_CHAR = re.compile(r"[A-Za-z0-9_$:.\-]")
_PLAIN_STRING_RUN = re.compile(r'[^"\\\x00-\x1f]+')
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")
_ATTR_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*")
_WHITESPACE = frozenset(" \t\r\n")
_PUNCTUATION: Final[dict[str, _Kind]] = {"(": "(", ")": ")", "[": "[", "]": "]", ".": "."}
_OPERATOR_LOOKALIKES = frozenset("=!<>~")
_ESCAPES: Final = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}
_LITERALS: Final[dict[str, bool | None]] = {"true": True, "false": False, "null": None}


# --- Parser -----------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, *, scim_type: str, what: str) -> None:
        self._text = text
        self._scim_type = scim_type
        self._what = what
        self._depth = 0
        self._comparisons = 0
        self._i = 0
        # Checked before tokenising so that oversized input costs nothing.
        if len(text) > MAX_LENGTH:
            raise self._error(MAX_LENGTH, f"longer than {MAX_LENGTH} characters")
        if not text.strip():
            raise ScimError(400, f"Invalid {what}: it is empty", scim_type)
        self._tokens = self._tokenize()

    # -- errors

    def _error(self, pos: int, message: str) -> ScimError:
        where = f"at end of {self._what}" if pos >= len(self._text) else f"at character {pos + 1}"
        return ScimError(400, f"Invalid {self._what} {where}: {message}", self._scim_type)

    def _describe(self, token: _Token) -> str:
        if token.kind == "end":
            return f"end of {self._what}"
        return _quoted(token.text, quote="" if token.kind == "string" else "'")

    # -- tokenizer

    def _tokenize(self) -> list[_Token]:
        text = self._text
        tokens: list[_Token] = []
        i = 0
        while i < len(text):
            ch = text[i]
            if ch in _WHITESPACE:
                i += 1
            elif ch in _PUNCTUATION:
                tokens.append(_Token(_PUNCTUATION[ch], ch, i))
                i += 1
            elif ch == '"':
                value, end = self._read_string(i)
                tokens.append(_Token("string", text[i:end], i, value))
                i = end
            elif ch in _NUMBER_START:
                tokens.append(self._read_number(i))
                i += len(tokens[-1].text)
            elif word := _WORD.match(text, i):
                tokens.append(_Token("word", word.group(), i))
                i = word.end()
            elif ch in _OPERATOR_LOOKALIKES:
                end = i
                while end < len(text) and text[end] in _OPERATOR_LOOKALIKES:
                    end += 1
                raise self._error(
                    i,
                    f"unknown operator {_quoted(text[i:end])}; SCIM uses "
                    "eq, ne, co, sw, ew, gt, ge, lt, le and pr",
                )
            else:
                raise self._error(i, f"unexpected character {ch!r}")
        tokens.append(_Token("end", "", len(text)))
        return tokens

    def _read_number(self, start: int) -> _Token:
        found = _NUMBER.match(self._text, start)
        end = found.end() if found else start + 1
        # "12abc" or "01" must not silently split into two tokens.
        while end < len(self._text) and _WORD_CHAR.match(self._text, end):
            end += 1
        text = self._text[start:end]
        if found is None or found.end() != end:
            raise self._error(start, f"invalid number {_quoted(text)}")
        if any(c in text for c in ".eE"):
            value: int | float = float(text)
            if not math.isfinite(value):
                raise self._error(start, f"number {_quoted(text)} is out of range")
        else:
            value = int(text)
        return _Token("number", text, start, value)

    def _read_string(self, start: int) -> tuple[str, int]:
        """Decode the JSON string opening at `start`; return it and the offset after it."""
        text = self._text
        parts: list[str] = []
        i = start + 1
        while True:
            if run := _PLAIN_STRING_RUN.match(text, i):
                parts.append(run.group())
                i = run.end()
            if i >= len(text):
                raise self._error(start, "unterminated string")
            ch = text[i]
            if ch == '"':
                return "".join(parts), i + 1
            if ch != "\\":
                raise self._error(i, "control characters in a string must be escaped")
            escape = text[i + 1 : i + 2]
            if escape == "u":
                code, i = self._read_unicode_escape(i)
                parts.append(chr(code))
            elif escape in _ESCAPES:
                parts.append(_ESCAPES[escape])
                i += 2
            elif not escape:
                raise self._error(start, "unterminated string")
            else:
                raise self._error(i, f"invalid escape '\\{escape}' in string")

    def _read_unicode_escape(self, i: int) -> tuple[int, int]:
        code = self._hex4(i)
        if 0xDC00 <= code <= 0xDFFF:
            raise self._error(i, "unpaired surrogate in \\u escape")
        if 0xD800 <= code <= 0xDBFF:
            # Characters beyond the BMP arrive as a surrogate pair; a lone half
            # would later fail to encode as UTF-8 on its way to the database.
            if self._text.startswith("\\u", i + 6):
                low = self._hex4(i + 6)
                if 0xDC00 <= low <= 0xDFFF:
                    return 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00), i + 12
            raise self._error(i, "unpaired surrogate in \\u escape")
        return code, i + 6

    def _hex4(self, i: int) -> int:
        # int(x, 16) alone would accept "+1_f".
        digits = self._text[i + 2 : i + 6]
        if not _HEX4.fullmatch(digits):
            raise self._error(i, "\\u must be followed by four hexadecimal digits")
        return int(digits, 16)

    # -- token cursor

    def _peek(self, ahead: int = 0) -> _Token:
        return self._tokens[min(self._i + ahead, len(self._tokens) - 1)]

    def _advance(self) -> _Token:
        token = self._tokens[self._i]
        if token.kind != "end":
            self._i += 1
        return token

    def _at_keyword(self, keyword: str) -> bool:
        token = self._peek()
        return token.kind == "word" and token.text.lower() == keyword

    def _enter(self, pos: int) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise self._error(pos, f"nested deeper than {MAX_DEPTH} levels")

    def _leave(self) -> None:
        self._depth -= 1

    # -- grammar

    def parse_filter(self) -> Filter:
        expr = self._or(in_value_filter=False)
        token = self._peek()
        if token.kind == "end":
            return expr
        if token.kind == ".":
            raise self._error(
                token.pos, "a sub-attribute after ']' is only allowed in a PATCH path"
            )
        if token.kind in (")", "]"):
            raise self._error(token.pos, f"unbalanced '{token.kind}'")
        raise self._error(
            token.pos, f"expected 'and', 'or' or end of filter, found {self._describe(token)}"
        )

    def parse_patch_path(self) -> PatchPath:
        token = self._peek()
        if token.kind != "word":
            raise self._error(
                token.pos, f"expected an attribute name, found {self._describe(token)}"
            )
        self._advance()
        attr = self._attr_path(token, relative=False)
        value_filter: Filter | None = None
        sub_attr: str | None = None
        if self._peek().kind == "[":
            self._check_value_path_target(attr, self._peek())
            value_filter = self._value_filter()
            if self._peek().kind == ".":
                self._advance()
                name = self._peek()
                if name.kind != "word" or not _is_attr_name(name.text):
                    raise self._error(
                        name.pos, f"expected a sub-attribute name, found {self._describe(name)}"
                    )
                self._advance()
                sub_attr = name.text
        token = self._peek()
        if token.kind != "end":
            raise self._error(token.pos, f"unexpected {self._describe(token)}")
        return PatchPath(attr, value_filter, sub_attr)

    def _or(self, *, in_value_filter: bool) -> Filter:
        expr = self._and(in_value_filter=in_value_filter)
        while self._at_keyword("or"):
            self._advance()
            expr = Or(expr, self._and(in_value_filter=in_value_filter))
        return expr

    def _and(self, *, in_value_filter: bool) -> Filter:
        expr = self._unary(in_value_filter=in_value_filter)
        while self._at_keyword("and"):
            self._advance()
            expr = And(expr, self._unary(in_value_filter=in_value_filter))
        return expr

    def _unary(self, *, in_value_filter: bool) -> Filter:
        token = self._peek()
        if token.kind == "(":
            return self._group(in_value_filter=in_value_filter)
        if token.kind == "word":
            keyword = token.text.lower()
            following = self._peek(1)
            names_attribute = following.kind == "[" or _is_operator(following)
            if keyword in ("and", "or") and not names_attribute:
                raise self._error(
                    token.pos,
                    f"expected an attribute name, 'not' or '(', found {self._describe(token)}",
                )
            if keyword == "not":
                if following.kind == "(":
                    self._advance()
                    return Not(self._group(in_value_filter=in_value_filter))
                # Otherwise "not" may still be an attribute called "not".
                if not names_attribute:
                    raise self._error(
                        following.pos,
                        "'not' must be followed by a filter in parentheses, e.g. not (...)",
                    )
            return self._attr_expression(in_value_filter=in_value_filter)
        raise self._error(
            token.pos,
            f"expected an attribute name, 'not' or '(', found {self._describe(token)}",
        )

    def _group(self, *, in_value_filter: bool) -> Filter:
        opening = self._advance()
        self._enter(opening.pos)
        expr = self._or(in_value_filter=in_value_filter)
        closing = self._peek()
        if closing.kind != ")":
            if closing.kind == "end":
                raise self._error(opening.pos, "'(' is never closed")
            raise self._error(
                closing.pos, f"expected 'and', 'or' or ')', found {self._describe(closing)}"
            )
        self._advance()
        self._leave()
        return expr

    def _value_filter(self) -> Filter:
        opening = self._advance()
        self._enter(opening.pos)
        expr = self._or(in_value_filter=True)
        closing = self._peek()
        if closing.kind != "]":
            if closing.kind == "end":
                raise self._error(opening.pos, "'[' is never closed")
            raise self._error(
                closing.pos, f"expected 'and', 'or' or ']', found {self._describe(closing)}"
            )
        self._advance()
        self._leave()
        return expr

    def _check_value_path_target(self, path: AttrPath, bracket: _Token) -> None:
        if path.sub_attr is not None:
            raise self._error(
                bracket.pos,
                f"'[' must follow a multi-valued attribute, not the sub-attribute "
                f"{_quoted(f'{path.attr}.{path.sub_attr}')}",
            )

    def _attr_expression(self, *, in_value_filter: bool) -> Filter:
        name = self._advance()
        path = self._attr_path(name, relative=in_value_filter)
        token = self._peek()
        if token.kind == "[":
            if in_value_filter:
                raise self._error(token.pos, "'[' cannot be nested inside another '[...]'")
            self._check_value_path_target(path, token)
            return ValuePath(path, self._value_filter())
        self._comparisons += 1
        if self._comparisons > MAX_COMPARISONS:
            raise self._error(name.pos, f"more than {MAX_COMPARISONS} comparisons")
        if token.kind != "word":
            raise self._error(
                token.pos,
                f"expected an operator after {_quoted(name.text)}, found {self._describe(token)}",
            )
        op = token.text.lower()
        if op == "pr":
            self._advance()
            after = self._peek()
            if _is_value(after):
                raise self._error(after.pos, "'pr' takes no value")
            return Present(path)
        if op not in COMPARE_OPERATORS:
            raise self._error(token.pos, f"unknown operator {_quoted(token.text)}")
        self._advance()
        return Compare(path, op, self._comp_value(token))

    def _comp_value(self, op_token: _Token) -> str | int | float | bool | None:
        token = self._peek()
        if not _is_value(token):
            if token.kind == "end":
                raise self._error(token.pos, f"missing value after '{op_token.text}'")
            raise self._error(
                token.pos,
                "expected a value (a string in double quotes, a number, true, false or null) "
                f"after '{op_token.text}', found {self._describe(token)}",
            )
        self._advance()
        if token.kind == "word":
            value: str | int | float | bool | None = _LITERALS[token.text.lower()]
        else:
            value = token.value
        if op_token.text.lower() in _ORDERING_OPERATORS and (
            value is None or isinstance(value, bool)
        ):
            raise self._error(
                token.pos, f"'{op_token.text}' cannot compare with {token.text.lower()}"
            )
        return value

    def _attr_path(self, token: _Token, *, relative: bool) -> AttrPath:
        schema: str | None = None
        rest = token.text
        if ":" in rest:
            if relative:
                raise self._error(
                    token.pos, "a schema URN cannot be used inside '[...]'; name the sub-attribute"
                )
            schema, _, rest = rest.rpartition(":")
            if not schema.lower().startswith("urn:"):
                raise self._error(token.pos, f"{_quoted(schema)} is not a schema URN")
            if not rest:
                raise self._error(
                    token.pos, f"missing attribute name after {_quoted(schema + ':')}"
                )
        names = rest.split(".")
        if len(names) > 2:
            raise self._error(token.pos, f"{_quoted(rest)} has more than one sub-attribute")
        for name in names:
            if not _is_attr_name(name):
                raise self._error(token.pos, f"invalid attribute name {_quoted(name)}")
        if relative and len(names) == 2:
            raise self._error(
                token.pos,
                f"inside '[...]' name the sub-attribute alone, not {_quoted(rest)}",
            )
        return AttrPath(schema, names[0], names[1] if len(names) == 2 else None)


def _quoted(text: str, *, quote: str = "'") -> str:
    # Error details echo the client's text; a 4 KB attribute name should not.
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{quote}{text}{quote}"


def _is_attr_name(name: str) -> bool:
    return name.lower() == "$ref" or _ATTR_NAME.fullmatch(name) is not None


def _is_operator(token: _Token) -> bool:
    return token.kind == "word" and (
        token.text.lower() == "pr" or token.text.lower() in COMPARE_OPERATORS
    )


def _is_value(token: _Token) -> bool:
    if token.kind in ("string", "number"):
        return True
    return token.kind == "word" and token.text.lower() in _LITERALS


# `userName eq "..."`, `displayName eq "..."`, `emails.value eq "..."`: the lookup
# IdPs send before nearly every write, read here without the tokenizer (a tenth
# of a lookup's CPU). Anything else (escapes, a URN, `$ref`, another operator)
# takes the full parser, which gives the same tree for these.
_SIMPLE_EQUALITY = re.compile(
    r"[ \t\r\n]*([A-Za-z][A-Za-z0-9_\-]*)(?:\.([A-Za-z][A-Za-z0-9_\-]*))?"
    r'[ \t\r\n]+[eE][qQ][ \t\r\n]+"([^"\\\x00-\x1f]*)"[ \t\r\n]*'
)


def parse_filter(text: str) -> Filter:
    """Parse a ``filter`` query parameter; raise ScimError(400, invalidFilter) if malformed."""
    if len(text) <= MAX_LENGTH and (simple := _SIMPLE_EQUALITY.fullmatch(text)) is not None:
        attr, sub_attr, value = simple.groups()
        return Compare(AttrPath(None, attr, sub_attr), "eq", value)
    return _Parser(text, scim_type="invalidFilter", what="filter").parse_filter()


def parse_patch_path(text: str) -> PatchPath:
    """Parse a PATCH operation's ``path``; raise ScimError(400, invalidPath) if malformed."""
    return _Parser(text, scim_type="invalidPath", what="path").parse_patch_path()


# --- Evaluation -------------------------------------------------------------

_CORE_SCHEMAS: Final = frozenset({USER_SCHEMA.lower(), GROUP_SCHEMA.lower()})

# Comparators over two values of one SCIM type (both strings or both numbers).
_COMPARATORS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "eq": lambda actual, expected: bool(actual == expected),
    "ne": lambda actual, expected: bool(actual != expected),
    "gt": lambda actual, expected: bool(actual > expected),
    "ge": lambda actual, expected: bool(actual >= expected),
    "lt": lambda actual, expected: bool(actual < expected),
    "le": lambda actual, expected: bool(actual <= expected),
    "co": lambda actual, expected: expected in actual,
    "sw": lambda actual, expected: bool(actual.startswith(expected)),
    "ew": lambda actual, expected: bool(actual.endswith(expected)),
}
_STRING_ONLY: Final = frozenset({"co", "sw", "ew"})


def paths_in(expr: Filter) -> Iterator[AttrPath]:
    """Every attribute a filter names; inside a value path, as `attr.sub` of its attribute."""
    if isinstance(expr, And | Or):
        yield from paths_in(expr.left)
        yield from paths_in(expr.right)
    elif isinstance(expr, Not):
        yield from paths_in(expr.expr)
    elif isinstance(expr, ValuePath):
        for inner in paths_in(expr.filter):
            yield AttrPath(expr.path.schema, expr.path.attr, inner.attr)
    else:
        yield expr.path


def _never_case_exact(_: AttrPath) -> bool:
    return False


def matches(
    expr: Filter,
    element: Mapping[str, Any],
    *,
    case_exact: Callable[[AttrPath], bool] = _never_case_exact,
) -> bool:
    """Whether `element` satisfies `expr`.

    Inside a value path (``emails[value eq "x"]``) `case_exact` is asked about
    the full path (``emails.value``), so one schema lookup serves both forms.
    """
    if isinstance(expr, And):
        return matches(expr.left, element, case_exact=case_exact) and matches(
            expr.right, element, case_exact=case_exact
        )
    if isinstance(expr, Or):
        return matches(expr.left, element, case_exact=case_exact) or matches(
            expr.right, element, case_exact=case_exact
        )
    if isinstance(expr, Not):
        return not matches(expr.expr, element, case_exact=case_exact)
    if isinstance(expr, Present):
        return any(_is_present(value) for value in _resolve(expr.path, element))
    if isinstance(expr, Compare):
        return _compare(expr, element, case_exact)
    if isinstance(expr, ValuePath):
        outer = expr.path

        def inner_case_exact(path: AttrPath) -> bool:
            return case_exact(AttrPath(outer.schema, outer.attr, path.attr))

        return any(
            isinstance(item, Mapping) and matches(expr.filter, item, case_exact=inner_case_exact)
            for item in _resolve(outer, element)
        )
    assert_never(expr)


def _lookup(mapping: Mapping[str, Any], name: str) -> Any:
    if name in mapping:
        return mapping[name]
    folded = name.lower()
    for key, value in mapping.items():
        if isinstance(key, str) and key.lower() == folded:
            return value
    return None


def _spread(value: Any) -> list[Any]:
    """A value as the list of its values; null, missing and [] all give []."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [item for item in value if item is not None]
    return [value]


def _resolve(path: AttrPath, element: Mapping[str, Any]) -> list[Any]:
    container: Any = element
    if path.schema is not None and path.schema.lower() not in _CORE_SCHEMAS:
        container = _lookup(element, path.schema)
        if not isinstance(container, Mapping):
            return []
    values = _spread(_lookup(container, path.attr))
    if path.sub_attr is None:
        return values
    return [
        sub
        for value in values
        if isinstance(value, Mapping)
        for sub in _spread(_lookup(value, path.sub_attr))
    ]


def _is_present(value: Any) -> bool:
    return not (value == "" or (isinstance(value, list | tuple | Mapping) and not value))


def _compare(
    expr: Compare, element: Mapping[str, Any], case_exact: Callable[[AttrPath], bool]
) -> bool:
    values = _resolve(expr.path, element)
    if expr.value is None:
        # RFC 7643 2.5: an attribute equals null exactly when it is unassigned.
        if expr.op == "eq":
            return not values
        return expr.op == "ne" and bool(values)
    plain = [value for value in values if not isinstance(value, Mapping)]
    if plain:
        exact = case_exact(expr.path)
        if any(_compare_one(value, expr.op, expr.value, exact) for value in plain):
            return True
    # A complex value compared with a primitive stands for its "value"
    # sub-attribute: Entra asks "members eq <id>" to test group membership.
    implied = [
        sub
        for value in values
        if isinstance(value, Mapping) and expr.path.sub_attr is None
        for sub in _spread(_lookup(value, "value"))
    ]
    if not implied:
        return False
    implied_exact = case_exact(AttrPath(expr.path.schema, expr.path.attr, "value"))
    return any(_compare_one(value, expr.op, expr.value, implied_exact) for value in implied)


_SIMPLE_LOWER: Final = {0x0130: "i"}
"""The one letter whose lower case Python's `str.lower()` makes two code points ("İ" is
"i" and a combining dot), where PostgreSQL's `lower()` maps it to one."""


def _lowered(text: str) -> str:
    """``text`` lower-cased as PostgreSQL's `lower()` does it, which a list's filters and
    the index userName is unique on use: not by full case folding ("STRASSE" is not
    "straße"), so that a PATCH path's filter and a list's agree."""
    return text.translate(_SIMPLE_LOWER).lower()


def _compare_one(actual: Any, op: str, expected: str | int | float | bool, exact: bool) -> bool:
    # bool is an int in Python, but SCIM keeps booleans and numbers apart.
    if isinstance(expected, bool):
        same_type = isinstance(actual, bool) and op in ("eq", "ne")
    elif isinstance(expected, int | float):
        same_type = (
            isinstance(actual, int | float)
            and not isinstance(actual, bool)
            and op not in _STRING_ONLY
        )
    else:
        same_type = isinstance(actual, str)
        if same_type and not exact:
            actual, expected = _lowered(actual), _lowered(expected)
    return same_type and _COMPARATORS[op](actual, expected)
