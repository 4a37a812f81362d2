"""SCIM filter and PATCH path parsing (RFC 7644 3.4.2.2, 3.5.2) and evaluation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from service.scim.errors import ScimError
from service.scim.filter import (
    COMPARE_OPERATORS,
    MAX_COMPARISONS,
    MAX_DEPTH,
    MAX_LENGTH,
    And,
    AttrPath,
    Compare,
    Filter,
    Not,
    Or,
    PatchPath,
    Present,
    ValuePath,
    _Parser,
    matches,
    parse_filter,
    parse_patch_path,
)

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def path(attr: str, sub_attr: str | None = None, schema: str | None = None) -> AttrPath:
    return AttrPath(schema, attr, sub_attr)


def eq(attr: str, value: Any, sub_attr: str | None = None) -> Compare:
    return Compare(path(attr, sub_attr), "eq", value)


def pr(attr: str) -> Present:
    return Present(path(attr))


A, B, C, D = pr("a"), pr("b"), pr("c"), pr("d")


def filter_error(text: str) -> ScimError:
    with pytest.raises(ScimError) as caught:
        parse_filter(text)
    return caught.value


def path_error(text: str) -> ScimError:
    with pytest.raises(ScimError) as caught:
        parse_patch_path(text)
    return caught.value


def chain(count: int, joiner: str = " and ") -> str:
    return joiner.join(f"a{i} pr" for i in range(count))


def nested(depth: int) -> str:
    return "(" * depth + "a pr" + ")" * depth


# --- Parsing: comparisons ---------------------------------------------------


@pytest.mark.parametrize("op", sorted(COMPARE_OPERATORS))
def test_every_operator(op: str) -> None:
    assert parse_filter(f'title {op} "x"') == Compare(path("title"), op, "x")


def test_operator_set_is_rfc_table_3() -> None:
    assert {"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"} == COMPARE_OPERATORS


@pytest.mark.parametrize("spelling", ["EQ", "Eq", "eQ", "eq"])
def test_operators_are_case_insensitive(spelling: str) -> None:
    assert parse_filter(f'userName {spelling} "bjensen"') == eq("userName", "bjensen")


@pytest.mark.parametrize(
    ("op", "lowered"), [("GT", "gt"), ("Le", "le"), ("CO", "co"), ("sW", "sw")]
)
def test_operator_is_stored_lower_case(op: str, lowered: str) -> None:
    assert parse_filter(f"count {op} 5") == Compare(path("count"), lowered, 5)


@pytest.mark.parametrize("spelling", ["pr", "PR", "Pr"])
def test_present(spelling: str) -> None:
    assert parse_filter(f"title {spelling}") == pr("title")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'userName eq "7a6c2f0e-93b1-4e8c-9a50-1f2e3d4c5b6a"',
            eq("userName", "7a6c2f0e-93b1-4e8c-9a50-1f2e3d4c5b6a"),
        ),
        ('userName eq "a@b.com"', eq("userName", "a@b.com")),
        ('externalId eq "x"', eq("externalId", "x")),
        ('displayName eq "Group"', eq("displayName", "Group")),
        ('id eq "g1" and members eq "u1"', And(eq("id", "g1"), eq("members", "u1"))),
        (
            'meta.lastModified gt "2011-05-13T04:42:34Z"',
            Compare(path("meta", "lastModified"), "gt", "2011-05-13T04:42:34Z"),
        ),
        ("name.givenName pr", Present(path("name", "givenName"))),
        ('emails.value ew "@example.com"', Compare(path("emails", "value"), "ew", "@example.com")),
        (
            'userName Eq "john" and meta.lastModified gt "2011-05-13T04:42:34Z"',
            And(
                eq("userName", "john"),
                Compare(path("meta", "lastModified"), "gt", "2011-05-13T04:42:34Z"),
            ),
        ),
    ],
    ids=[
        "entra-userName",
        "okta-userName",
        "externalId",
        "group-displayName",
        "entra-group-membership",
        "meta-lastModified",
        "sub-attr-present",
        "sub-attr-ends-with",
        "rfc-example",
    ],
)
def test_client_filters(text: str, expected: Filter) -> None:
    assert parse_filter(text) == expected


# --- Parsing: values --------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ('""', ""),
        ('"plain"', "plain"),
        (r'"say \"hi\""', 'say "hi"'),
        (r'"back\\slash"', "back\\slash"),
        (r'"a\/b"', "a/b"),
        (r'"\b\f\n\r\t"', "\b\f\n\r\t"),
        (r'"\u00e9t\u00C9"', "étÉ"),
        (r'"\ud83d\ude00"', "\U0001f600"),
        ('"ünïcödé 😀"', "ünïcödé 😀"),
        ('"has ( ) [ ] and or not"', "has ( ) [ ] and or not"),
        ('"  spaced  "', "  spaced  "),
    ],
)
def test_string_values_are_json_strings(literal: str, value: str) -> None:
    assert parse_filter(f"title eq {literal}") == eq("title", value)


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        ("1.5", 1.5),
        ("-0.25", -0.25),
        ("1e3", 1000.0),
        ("1E+2", 100.0),
        ("2.5e-2", 0.025),
        ("-1.5E3", -1500.0),
        ("12345678901234567890", 12345678901234567890),
    ],
)
def test_number_values(literal: str, value: float) -> None:
    parsed = parse_filter(f"count gt {literal}")
    assert parsed == Compare(path("count"), "gt", value)
    assert isinstance(parsed, Compare)
    assert type(parsed.value) is type(value)


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("true", True),
        ("false", False),
        ("null", None),
        ("TRUE", True),
        ("False", False),
        ("NULL", None),
    ],
)
def test_literal_values(literal: str, value: bool | None) -> None:
    parsed = parse_filter(f"active eq {literal}")
    assert isinstance(parsed, Compare)
    assert parsed.value is value


@pytest.mark.parametrize("op", ["eq", "ne"])
@pytest.mark.parametrize("literal", ["true", "false", "null"])
def test_equality_with_boolean_and_null_is_allowed(op: str, literal: str) -> None:
    assert isinstance(parse_filter(f"active {op} {literal}"), Compare)


def test_value_without_spaces_around_it() -> None:
    assert parse_filter('title eq"x"and(b pr)') == And(eq("title", "x"), B)


# --- Parsing: logic ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a pr and b pr", And(A, B)),
        ("a pr or b pr", Or(A, B)),
        ("a pr or b pr and c pr", Or(A, And(B, C))),
        ("a pr and b pr or c pr", Or(And(A, B), C)),
        ("a pr and b pr or c pr and d pr", Or(And(A, B), And(C, D))),
        ("(a pr or b pr) and c pr", And(Or(A, B), C)),
        ("a pr and (b pr or c pr)", And(A, Or(B, C))),
        ("a pr and b pr and c pr", And(And(A, B), C)),
        ("a pr or b pr or c pr", Or(Or(A, B), C)),
        ("((a pr))", A),
        ("not (a pr)", Not(A)),
        ("not(a pr)", Not(A)),
        ("not (a pr) and b pr", And(Not(A), B)),
        ("b pr or not (a pr)", Or(B, Not(A))),
        ("not (a pr or b pr)", Not(Or(A, B))),
        ("not (not (a pr))", Not(Not(A))),
        ("(not (a pr)) or b pr", Or(Not(A), B)),
    ],
)
def test_precedence_and_grouping(text: str, expected: Filter) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "a pr AND b pr OR NOT (c pr)",
        "a pr And b pr Or Not (c pr)",
        "a PR and b Pr or not (c pR)",
    ],
)
def test_keywords_are_case_insensitive(text: str) -> None:
    assert parse_filter(text) == Or(And(A, B), Not(C))


@pytest.mark.parametrize(
    "text",
    [
        "a pr and b pr",
        "  a pr   and    b pr  ",
        "a\tpr\tand\tb\tpr",
        "a pr\nand\r\nb pr",
        "( a pr ) and ( b pr )",
    ],
)
def test_whitespace_is_tolerated(text: str) -> None:
    assert parse_filter(text) == And(A, B)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('not eq "x"', eq("not", "x")),
        ("pr pr", pr("pr")),
        ('and eq "x" and or pr', And(eq("and", "x"), pr("or"))),
    ],
)
def test_keywords_are_not_reserved_as_attribute_names(text: str, expected: Filter) -> None:
    assert parse_filter(text) == expected


# --- Parsing: attribute paths -----------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("userName", path("userName")),
        ("USERNAME", path("USERNAME")),
        ("name.givenName", path("name", "givenName")),
        ("Name.GivenName", path("Name", "GivenName")),
        ("x-custom_attr2", path("x-custom_attr2")),
        ("$ref", path("$ref")),
        ("members.$ref", path("members", "$ref")),
        (f"{CORE_USER}:userName", path("userName", None, CORE_USER)),
        (f"{CORE_USER}:name.givenName", path("name", "givenName", CORE_USER)),
        (f"{CORE_GROUP}:displayName", path("displayName", None, CORE_GROUP)),
        (f"{ENTERPRISE}:employeeNumber", path("employeeNumber", None, ENTERPRISE)),
        (f"{ENTERPRISE}:manager.value", path("manager", "value", ENTERPRISE)),
        ("urn:example:custom:1.0:Thing:color", path("color", None, "urn:example:custom:1.0:Thing")),
        (f"{ENTERPRISE.upper()}:Department", path("Department", None, ENTERPRISE.upper())),
    ],
)
def test_attribute_paths(text: str, expected: AttrPath) -> None:
    assert parse_filter(f"{text} pr") == Present(expected)


# --- Parsing: value paths ---------------------------------------------------


WORK = Compare(path("type"), "eq", "work")
AT_EXAMPLE = Compare(path("value"), "co", "@example.com")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('emails[type eq "work"]', ValuePath(path("emails"), WORK)),
        (
            'emails[type eq "work" and value co "@example.com"]',
            ValuePath(path("emails"), And(WORK, AT_EXAMPLE)),
        ),
        (
            'userType eq "Employee" and emails[type eq "work" and value co "@example.com"]',
            And(eq("userType", "Employee"), ValuePath(path("emails"), And(WORK, AT_EXAMPLE))),
        ),
        (
            'emails[type eq "work" and value co "@example.com"] or '
            'ims[type eq "xmpp" and value co "@foo.com"]',
            Or(
                ValuePath(path("emails"), And(WORK, AT_EXAMPLE)),
                ValuePath(
                    path("ims"),
                    And(
                        Compare(path("type"), "eq", "xmpp"),
                        Compare(path("value"), "co", "@foo.com"),
                    ),
                ),
            ),
        ),
        ('not (emails[type eq "work"])', Not(ValuePath(path("emails"), WORK))),
        ('emails[not (type eq "work")]', ValuePath(path("emails"), Not(WORK))),
        (
            'emails[(type eq "work" or type eq "home") and primary eq true]',
            ValuePath(
                path("emails"),
                And(Or(WORK, Compare(path("type"), "eq", "home")), eq("primary", True)),
            ),
        ),
        ('emails [ type eq "work" ]', ValuePath(path("emails"), WORK)),
        (
            f'{ENTERPRISE}:manager[value eq "m1"]',
            ValuePath(path("manager", None, ENTERPRISE), eq("value", "m1")),
        ),
        ("members[$ref pr]", ValuePath(path("members"), pr("$ref"))),
    ],
)
def test_value_paths(text: str, expected: Filter) -> None:
    assert parse_filter(text) == expected


# --- Parsing: errors --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ('userName eq "bjensen', "unterminated string"),
        ('userName eq "ends in backslash\\', "unterminated string"),
        ('userName eqx "bjensen"', "unknown operator 'eqx'"),
        ('userName == "bjensen"', "unknown operator '=='"),
        ('userName != "bjensen"', "unknown operator '!='"),
        ('userName like "bjensen"', "unknown operator 'like'"),
        ("userName eq", "missing value after 'eq'"),
        ("userName", "expected an operator after 'userName'"),
        ('userName "bjensen"', "expected an operator"),
        ("userName eq bjensen", "expected a value"),
        ("userName eq )", "expected a value"),
        ('userName eq "a" "b"', "expected 'and', 'or' or end of filter"),
        ('userName eq "a" garbage', "expected 'and', 'or' or end of filter, found 'garbage'"),
        ('userName eq "a" and', "expected an attribute name"),
        ('or userName eq "a"', "expected an attribute name, 'not' or '(', found 'or'"),
        ('userName eq "a" and or b pr', "expected an attribute name, 'not' or '(', found 'or'"),
        ('userName eq "a" or and b pr', "found 'and'"),
        ('title pr "x"', "'pr' takes no value"),
        ("title pr 5", "'pr' takes no value"),
        ("title pr null", "'pr' takes no value"),
        ('emails[type eq "work" and value[x eq "y"]]', "cannot be nested"),
        ('emails[type[x eq "y"]]', "cannot be nested"),
        ('emails[type eq "work"]]', "unbalanced ']'"),
        ('emails[type eq "work"', "'[' is never closed"),
        ('emails[type eq "work")', "expected 'and', 'or' or ']'"),
        ("emails[]", "expected an attribute name"),
        ('emails[type eq "work"].value eq "x"', "only allowed in a PATCH path"),
        ('emails.value[type eq "work"]', "not the sub-attribute 'emails.value'"),
        ('emails[emails.type eq "work"]', "name the sub-attribute alone"),
        (f'emails[{CORE_USER}:type eq "work"]', "schema URN cannot be used"),
        ("(a pr", "'(' is never closed"),
        ("(a pr]", "expected 'and', 'or' or ')'"),
        ("a pr)", "unbalanced ')'"),
        ("()", "expected an attribute name"),
        ("not a pr", "'not' must be followed by a filter in parentheses"),
        ("not", "'not' must be followed by a filter in parentheses"),
        ("a pr and not b pr", "'not' must be followed by a filter in parentheses"),
        ("count gt true", "'gt' cannot compare with true"),
        ("count ge false", "'ge' cannot compare with false"),
        ("count lt null", "'lt' cannot compare with null"),
        ("count LE NULL", "'LE' cannot compare with null"),
        ("count eq 01", "invalid number '01'"),
        ("count eq 1.", "invalid number '1.'"),
        ("count eq .5", "expected a value"),
        ("count eq -", "invalid number '-'"),
        ("count eq 12abc", "invalid number '12abc'"),
        ("count eq 1.2.3", "invalid number '1.2.3'"),
        ("count eq 1e999", "out of range"),
        ('title eq "bad \\x escape"', "invalid escape '\\x'"),
        ('title eq "\\u12"', "four hexadecimal digits"),
        ('title eq "\\u+1_f"', "four hexadecimal digits"),
        ('title eq "\\ud83d"', "unpaired surrogate"),
        ('title eq "\\ude00"', "unpaired surrogate"),
        ('title eq "\\ud83d\\u0041"', "unpaired surrogate"),
        ('title eq "raw\ttab"', "control characters"),
        ("title eq 'single'", 'unexpected character "\'"'),
        ('title eq "x" & b pr', "unexpected character '&'"),
        ("1abc pr", "invalid number"),
        ("foo:bar pr", "'foo' is not a schema URN"),
        (f"{ENTERPRISE}: pr", "missing attribute name"),
        ("name.given.name pr", "more than one sub-attribute"),
        ("name. pr", "invalid attribute name ''"),
        ("a$b pr", "invalid attribute name 'a$b'"),
        ("name.-x pr", "invalid attribute name '-x'"),
    ],
)
def test_invalid_filters(text: str, detail: str) -> None:
    error = filter_error(text)
    assert error.status == 400
    assert error.scim_type == "invalidFilter"
    assert detail in error.detail
    assert error.detail.startswith("Invalid filter")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('userName eqx "x"', "at character 10"),
        ('userName eq "x', "at character 13"),
        ("userName eq", "at end of filter"),
        ("a pr)", "at character 5"),
    ],
)
def test_errors_say_where(text: str, where: str) -> None:
    assert where in filter_error(text).detail


def test_error_body_carries_invalid_filter() -> None:
    body = filter_error("userName eq").body()
    assert body["status"] == "400"
    assert body["scimType"] == "invalidFilter"


@pytest.mark.parametrize(
    "text",
    [
        f'a eq "x" "{"y" * 200}"',
        f"{'a' * 200}",
        f"a {'x' * 200} 1",
        f"a eq {'1' * 200}x",
        f"a {'=' * 200} 1",
        f"{'b' * 200}:c pr",
        f"urn:{'b' * 200}: pr",
        f"a.{'b' * 200}.c pr",
        f"a.b{'$' * 200} pr",
        f"a.{'b' * 200}[c pr]",
        f"a[b.{'b' * 200} pr]",
    ],
)
def test_client_text_is_abbreviated_in_errors(text: str) -> None:
    detail = filter_error(text).detail
    assert "..." in detail
    assert len(detail) < 200


# --- Parsing: limits --------------------------------------------------------


def test_limits_are_as_documented() -> None:
    assert (MAX_LENGTH, MAX_DEPTH, MAX_COMPARISONS) == (4096, 32, 256)


def test_length_limit() -> None:
    padding = MAX_LENGTH - len('title eq ""')
    assert parse_filter(f'title eq "{"x" * padding}"') == eq("title", "x" * padding)
    error = filter_error(f'title eq "{"x" * (padding + 1)}"')
    assert error.scim_type == "invalidFilter"
    assert f"longer than {MAX_LENGTH}" in error.detail


def test_length_is_checked_before_anything_else() -> None:
    assert "longer than" in filter_error("(" * (MAX_LENGTH + 1)).detail


@pytest.mark.parametrize("make", [nested, lambda depth: "not (" * depth + "a pr" + ")" * depth])
def test_depth_limit(make: Callable[[int], str]) -> None:
    parse_filter(make(MAX_DEPTH))
    error = filter_error(make(MAX_DEPTH + 1))
    assert error.scim_type == "invalidFilter"
    assert f"nested deeper than {MAX_DEPTH}" in error.detail


def test_value_path_brackets_count_towards_depth() -> None:
    parse_filter("(" * (MAX_DEPTH - 1) + 'emails[type eq "w"]' + ")" * (MAX_DEPTH - 1))
    deep = "(" * MAX_DEPTH + 'emails[type eq "w"]' + ")" * MAX_DEPTH
    assert "nested deeper" in filter_error(deep).detail


@pytest.mark.parametrize("joiner", [" and ", " or "])
def test_comparison_limit(joiner: str) -> None:
    parse_filter(chain(MAX_COMPARISONS, joiner))
    error = filter_error(chain(MAX_COMPARISONS + 1, joiner))
    assert error.scim_type == "invalidFilter"
    assert f"more than {MAX_COMPARISONS} comparisons" in error.detail


def test_comparisons_inside_value_paths_count() -> None:
    inner = chain(MAX_COMPARISONS + 1, " or ")
    assert "comparisons" in filter_error(f"emails[{inner}]").detail


# --- PATCH paths ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("userName", PatchPath(path("userName"), None, None)),
        ("name.givenName", PatchPath(path("name", "givenName"), None, None)),
        ("members", PatchPath(path("members"), None, None)),
        ("active", PatchPath(path("active"), None, None)),
        (
            'emails[type eq "work"].value',
            PatchPath(path("emails"), WORK, "value"),
        ),
        (
            'members[value eq "abc"]',
            PatchPath(path("members"), eq("value", "abc"), None),
        ),
        (
            'addresses[type eq "work"].streetAddress',
            PatchPath(path("addresses"), Compare(path("type"), "eq", "work"), "streetAddress"),
        ),
        (
            'emails[type eq "work" and primary eq true].display',
            PatchPath(path("emails"), And(WORK, eq("primary", True)), "display"),
        ),
        (
            'members[value eq "2819c223-7f76-453a-919d-413861904646"].$ref',
            PatchPath(path("members"), eq("value", "2819c223-7f76-453a-919d-413861904646"), "$ref"),
        ),
        (
            f"{ENTERPRISE}:manager",
            PatchPath(path("manager", None, ENTERPRISE), None, None),
        ),
        (
            f"{ENTERPRISE}:manager.value",
            PatchPath(path("manager", "value", ENTERPRISE), None, None),
        ),
        (
            f"{ENTERPRISE}:employeeNumber",
            PatchPath(path("employeeNumber", None, ENTERPRISE), None, None),
        ),
        (
            f"{CORE_USER}:name.familyName",
            PatchPath(path("name", "familyName", CORE_USER), None, None),
        ),
        (
            f'{CORE_USER}:emails[type eq "work"].value',
            PatchPath(path("emails", None, CORE_USER), WORK, "value"),
        ),
        (
            'EMAILS[TYPE EQ "work"].VALUE',
            PatchPath(path("EMAILS"), Compare(path("TYPE"), "eq", "work"), "VALUE"),
        ),
        ("  name.givenName  ", PatchPath(path("name", "givenName"), None, None)),
    ],
)
def test_patch_paths(text: str, expected: PatchPath) -> None:
    assert parse_patch_path(text) == expected


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("", "empty"),
        ("  ", "empty"),
        ('"userName"', "expected an attribute name"),
        ("[type eq 1]", "expected an attribute name"),
        ("name.", "invalid attribute name ''"),
        ("name.given.name", "more than one sub-attribute"),
        ("foo:bar", "is not a schema URN"),
        ("userName eq", "unexpected 'eq'"),
        ('emails[type eq "work"]value', "unexpected 'value'"),
        ('emails[type eq "work"].', "expected a sub-attribute name"),
        ('emails[type eq "work"].a.b', "expected a sub-attribute name"),
        ('emails[type eq "work"].value.more', "expected a sub-attribute name"),
        ('emails[type eq "work"].value[x eq 1]', "unexpected '['"),
        ('emails[type eq "work"', "'[' is never closed"),
        ("emails[type eq]", "expected a value"),
        ("emails[type]", "expected an operator"),
        ('emails[type eqx "work"]', "unknown operator 'eqx'"),
        ('emails[value[x eq "y"]]', "cannot be nested"),
        ('emails.value[type eq "work"]', "not the sub-attribute"),
        ('emails[type eq "work]', "unterminated string"),
        ("emails[]", "expected an attribute name"),
        ("a" * (MAX_LENGTH + 1), "longer than"),
    ],
)
def test_invalid_patch_paths(text: str, detail: str) -> None:
    error = path_error(text)
    assert error.status == 400
    assert error.scim_type == "invalidPath"
    assert detail in error.detail
    assert error.detail.startswith("Invalid path")


# --- Evaluation -------------------------------------------------------------


USER: dict[str, Any] = {
    "schemas": [CORE_USER, ENTERPRISE],
    "id": "2819c223-7f76-453a-919d-413861904646",
    "externalId": "ext-1",
    "userName": "BJensen@Example.com",
    "displayName": "Babs Jensen",
    "title": "",
    "nickName": None,
    "active": True,
    "loginCount": 42,
    "score": 3.5,
    "name": {"givenName": "Barbara", "familyName": "Jensen", "middleName": None},
    "emails": [
        {"value": "bjensen@example.com", "type": "work", "primary": True},
        {"value": "babs@jensen.org", "type": "home"},
    ],
    "phoneNumbers": [],
    "ims": [{"type": "xmpp"}],
    "entitlements": [{}],
    "roles": {},
    "tags": ["Blue", "green"],
    "luckyNumbers": [7, 13],
    "meta": {"resourceType": "User", "lastModified": "2011-05-13T04:42:34Z"},
    ENTERPRISE: {
        "employeeNumber": "701984",
        "department": "Tour Operations",
        "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "John"},
    },
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # eq / ne on strings, case-insensitive by default
        ('userName eq "bjensen@example.com"', True),
        ('userName eq "BJENSEN@EXAMPLE.COM"', True),
        ('userName eq "bjensen"', False),
        ('userName ne "bjensen"', True),
        ('userName ne "bjensen@example.com"', False),
        ('externalId eq "ext-1"', True),
        ('id eq "2819C223-7F76-453A-919D-413861904646"', True),
        # co / sw / ew
        ('userName co "jensen@"', True),
        ('userName co "JENSEN@"', True),
        ('userName co "smith"', False),
        ('userName sw "bj"', True),
        ('userName sw "jensen"', False),
        ('userName ew ".COM"', True),
        ('userName ew ".org"', False),
        ('displayName co ""', True),
        # ordering on strings and date-times
        ('displayName gt "A"', True),
        ('displayName gt "babs"', True),
        ('displayName lt "babs"', False),
        ('displayName ge "BABS JENSEN"', True),
        ('displayName le "babs jensen"', True),
        ('meta.lastModified gt "2011-05-13T04:42:33Z"', True),
        ('meta.lastModified ge "2011-05-13T04:42:34Z"', True),
        ('meta.lastModified lt "2011-05-13T04:42:34Z"', False),
        ('meta.lastModified le "2012-01-01T00:00:00Z"', True),
        # numbers
        ("loginCount eq 42", True),
        ("loginCount eq 42.0", True),
        ("loginCount ne 42", False),
        ("loginCount gt 41", True),
        ("loginCount gt 42", False),
        ("loginCount ge 42", True),
        ("loginCount lt 42.5", True),
        ("loginCount le 41", False),
        ("score gt 3", True),
        ("score lt -1e3", False),
        # booleans
        ("active eq true", True),
        ("active eq TRUE", True),
        ("active eq false", False),
        ("active ne false", True),
        ("active ne true", False),
        # mismatched types are simply false
        ('loginCount eq "42"', False),
        ('loginCount co "4"', False),
        ("loginCount co 4", False),
        ("userName eq 42", False),
        ("active eq 1", False),
        ('active eq "true"', False),
        ("loginCount eq true", False),
        ('name eq "Barbara"', False),
        # null: equal exactly when unassigned
        ("nickName eq null", True),
        ("nickName ne null", False),
        ("missing eq null", True),
        ("phoneNumbers eq null", True),
        ("userName eq null", False),
        ("userName ne null", True),
        ("name.middleName eq null", True),
        ("name.givenName eq null", False),
        ("nickName co null", False),
        # a missing attribute satisfies no comparison
        ('missing eq "x"', False),
        ('missing ne "x"', False),
        ('name.missing eq "x"', False),
        ('userName.sub eq "x"', False),
        # pr
        ("userName pr", True),
        ("title pr", False),
        ("nickName pr", False),
        ("missing pr", False),
        ("phoneNumbers pr", False),
        ("roles pr", False),
        ("entitlements pr", False),
        ("emails pr", True),
        ("name pr", True),
        ("name.givenName pr", True),
        ("name.middleName pr", False),
        ("active pr", True),
        ("loginCount pr", True),
        ("ims.value pr", False),
        ("ims.type pr", True),
        # attribute names are case-insensitive
        ('USERNAME eq "bjensen@example.com"', True),
        ('Name.GivenName eq "barbara"', True),
        ('EMAILS.VALUE eq "babs@jensen.org"', True),
        ('emails[TYPE eq "HOME"]', True),
        # multi-valued: any element may match
        ('emails.value eq "babs@jensen.org"', True),
        ('emails.value eq "bjensen@example.com"', True),
        ('emails.value eq "nobody@example.com"', False),
        ('emails.type ne "work"', True),
        ('emails.value ew "@example.com"', True),
        ('tags eq "blue"', True),
        ('tags eq "GREEN"', True),
        ('tags eq "red"', False),
        ('tags sw "gr"', True),
        ("luckyNumbers eq 13", True),
        ("luckyNumbers gt 12", True),
        ("luckyNumbers gt 13", False),
        ("emails.primary eq true", True),
        ("emails.primary eq false", False),
        # a complex value compared with a primitive stands for its "value"
        ('emails eq "babs@jensen.org"', True),
        ('emails co "jensen"', True),
        ('emails eq "nobody@example.com"', False),
        # value paths: both conditions must hold for the same element
        ('emails[type eq "work" and value co "@example.com"]', True),
        ('emails[type eq "home" and value co "@example.com"]', False),
        ('emails[type eq "home" or value co "@example.com"]', True),
        ("emails[primary eq true]", True),
        ('emails[not (type eq "work")]', True),
        ('emails[type eq "other"]', False),
        ('phoneNumbers[type eq "work"]', False),
        ('missing[type eq "work"]', False),
        ('userName[type eq "work"]', False),
        ('name[givenName eq "barbara"]', True),
        ("ims[value pr]", False),
        (
            'userName sw "bj" and emails[type eq "work" and value co "@example.com"]',
            True,
        ),
        # logic
        ('userName pr and displayName eq "babs jensen"', True),
        ('userName pr and displayName eq "nobody"', False),
        ('displayName eq "nobody" or userName pr', True),
        ('displayName eq "nobody" or title pr', False),
        ("not (title pr)", True),
        ("not (userName pr)", False),
        ("not (not (userName pr))", True),
        ('not (missing eq "x")', True),
        ('title pr or userName pr and displayName eq "nobody"', False),
        ('(title pr or userName pr) and displayName eq "babs jensen"', True),
        # schema-qualified paths
        (f'{CORE_USER}:userName eq "bjensen@example.com"', True),
        (f'{CORE_USER.upper()}:userName eq "bjensen@example.com"', True),
        (f'{CORE_USER}:name.givenName eq "Barbara"', True),
        (f'{CORE_GROUP}:displayName eq "Babs Jensen"', True),
        (f'{ENTERPRISE}:employeeNumber eq "701984"', True),
        (f'{ENTERPRISE.upper()}:EMPLOYEENUMBER eq "701984"', True),
        (f'{ENTERPRISE}:employeeNumber eq "1"', False),
        (f'{ENTERPRISE}:manager.value eq "26118915-6090-4610-87E4-49D8CA9F808D"', True),
        (f"{ENTERPRISE}:department pr", True),
        (f"{ENTERPRISE}:userName pr", False),
        (f'{ENTERPRISE}:manager[displayName eq "john"]', True),
        ("employeeNumber pr", False),
        ("urn:example:unknown:1.0:Thing:userName pr", False),
    ],
)
def test_matches(text: str, expected: bool) -> None:
    assert matches(parse_filter(text), USER) is expected


GROUP: dict[str, Any] = {
    "schemas": [CORE_GROUP],
    "id": "g1",
    "displayName": "Group",
    "members": [
        {"value": "u1", "display": "Ann", "$ref": "https://example.com/Users/u1"},
        {"value": "u2", "display": "Bob"},
    ],
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('displayName eq "group"', True),
        ('id eq "g1" and members eq "u2"', True),
        ('id eq "g1" and members eq "u3"', False),
        ('members.value eq "u1"', True),
        ('members[value eq "u2"]', True),
        ('members[value eq "u2" and display eq "ann"]', False),
        ("members.$ref pr", True),
        ("members[$ref pr]", True),
        ('members[$REF co "/Users/u1"]', True),
    ],
)
def test_matches_group(text: str, expected: bool) -> None:
    assert matches(parse_filter(text), GROUP) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('type eq "work"', True),
        ('value co "@EXAMPLE"', True),
        ('type eq "work" and primary eq true', True),
        ('type eq "home"', False),
    ],
)
def test_matches_a_single_multi_valued_element(text: str, expected: bool) -> None:
    element = {"value": "bjensen@example.com", "type": "work", "primary": True}
    assert matches(parse_filter(text), element) is expected


def test_patch_path_value_filter_selects_elements() -> None:
    target = parse_patch_path('emails[type eq "WORK"].value')
    assert target.value_filter is not None
    chosen = [e for e in USER["emails"] if matches(target.value_filter, e)]
    assert chosen == [USER["emails"][0]]


def exact_for(*exact: AttrPath) -> Callable[[AttrPath], bool]:
    return lambda attr_path: attr_path in exact


@pytest.mark.parametrize(
    ("text", "exact", "expected"),
    [
        ('userName eq "bjensen@example.com"', (path("userName"),), False),
        ('userName eq "BJensen@Example.com"', (path("userName"),), True),
        ('userName eq "bjensen@example.com"', (path("displayName"),), True),
        ('userName co "jensen@example"', (path("userName"),), False),
        ('userName sw "bj"', (path("userName"),), False),
        ('userName sw "BJ"', (path("userName"),), True),
        ('userName ew ".COM"', (path("userName"),), False),
        ('displayName gt "a"', (path("displayName"),), False),
        ('displayName gt "A"', (path("displayName"),), True),
        ('id eq "2819C223-7F76-453A-919D-413861904646"', (path("id"),), False),
        ('tags eq "blue"', (path("tags"),), False),
        ('tags eq "Blue"', (path("tags"),), True),
        ('emails.value eq "BABS@jensen.org"', (path("emails", "value"),), False),
        # inside a value path the callback sees the full path, emails.value
        ('emails[value eq "BABS@jensen.org"]', (path("emails", "value"),), False),
        ('emails[value eq "babs@jensen.org"]', (path("emails", "value"),), True),
        ('emails[type eq "HOME"]', (path("emails", "value"),), True),
        ('emails[type eq "HOME"]', (path("emails", "type"),), False),
        # an implied "value" is asked about as such
        ('emails eq "BABS@jensen.org"', (path("emails", "value"),), False),
        ('emails eq "BABS@jensen.org"', (path("emails"),), True),
        (
            f'{ENTERPRISE}:department eq "tour operations"',
            (path("department", None, ENTERPRISE),),
            False,
        ),
    ],
)
def test_case_exact(text: str, exact: tuple[AttrPath, ...], expected: bool) -> None:
    assert matches(parse_filter(text), USER, case_exact=exact_for(*exact)) is expected


def test_case_is_ignored_as_postgresql_lowers_text() -> None:
    """Unicode letters compare without case, as PostgreSQL's `lower()` makes them (a list's
    filters and the index userName is unique on): not by full case folding."""
    element = {"displayName": "STRASSE", "givenName": "Ölaf"}
    assert matches(parse_filter('givenName eq "\\u00f6LAF"'), element)
    assert not matches(parse_filter('displayName eq "straße"'), element)
    assert matches(parse_filter('displayName eq "strasse"'), element)


def test_case_exact_is_asked_only_when_needed() -> None:
    asked: list[AttrPath] = []

    def record(attr_path: AttrPath) -> bool:
        asked.append(attr_path)
        return False

    matches(parse_filter('missing eq "x"'), USER, case_exact=record)
    assert asked == []
    matches(parse_filter('userName eq "x"'), USER, case_exact=record)
    assert asked == [path("userName")]


def test_boolean_is_not_a_number_in_data() -> None:
    element = {"flag": True, "count": 1}
    assert not matches(parse_filter("flag eq 1"), element)
    assert not matches(parse_filter("count eq true"), element)
    assert matches(parse_filter("count ge 1"), element)


def test_ambiguous_keys_do_not_break_lookup() -> None:
    element: dict[Any, Any] = {1: "x", "UserName": "a"}
    assert matches(parse_filter('userName eq "A"'), element)


def test_tree_nodes_are_immutable_and_hashable() -> None:
    parsed = parse_filter('emails[type eq "work"] and not (userName pr)')
    assert parsed == parse_filter('emails[type eq "work"] and not (userName pr)')
    assert len({parsed, parse_filter('emails[type eq "work"] and not (userName pr)')}) == 1
    with pytest.raises(AttributeError):
        parsed.left = A  # type: ignore[misc, union-attr]


@pytest.mark.parametrize(
    "text",
    [
        'userName eq "bjensen@example.com"',
        '  displayName   EQ "Sales Team"  ',
        'emails.value eq "a@example.com"',
        'externalId eq ""',
        'userName eq "é ü ß"',
        'userName eq "quote \\" inside"',
        'userName eq "tab\\there"',
        'urn:ietf:params:scim:schemas:core:2.0:User:userName eq "x"',
        'members.$ref eq "x"',
        'userName eq"x"',
        'userName ne "x"',
        "userName eq 12",
        'a.b.c eq "x"',
        '1userName eq "x"',
        'userName eq "x" and active eq true',
        'userName eq "unterminated',
        'userName eq "raw\tcontrol"',
        'userName\x0beq "x"',
    ],
)
def test_the_lookup_shortcut_parses_as_the_parser_does(text: str) -> None:
    """`parse_filter` reads `attr eq "..."` without the tokenizer: same tree, same errors."""

    def full(text: str) -> object:
        try:
            return _Parser(text, scim_type="invalidFilter", what="filter").parse_filter()
        except ScimError as error:
            return error.body()

    def shortcut(text: str) -> object:
        try:
            return parse_filter(text)
        except ScimError as error:
            return error.body()

    assert shortcut(text) == full(text)
