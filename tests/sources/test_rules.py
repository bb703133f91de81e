"""sources.rules: every operator, reasons, nesting, validation, and properties."""

import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sources.rules import (
    LIST_OPERATORS,
    MAX_DEPTH,
    MAX_RULES,
    OPERATORS,
    UNARY_OPERATORS,
    evaluate,
    validate_rule_set,
)
from sources.templating import is_template

MISSING = object()
NEGATIONS = {
    "is equal to": "is not equal to",
    "is between": "is not between",
    "is included in": "is not included in",
    "includes": "does not include",
    "matches pattern": "does not match pattern",
    "is blank": "is not blank",
    "is true": "is not true",
    "is false": "is not false",
    "format is valid": "format is invalid",
}
# For values that are not blank, each ordering operator is the negation of another.
COMPLEMENTS = {
    "is less than": "is greater than or equal to",
    "is less than or equal to": "is greater than",
}


def rule(lhv, op, rhv=MISSING, **extra):
    built = {"lhv": lhv, "op": op, **extra}
    if rhv is not MISSING:
        built["rhv"] = rhv
    return built


def one(lhv, op, rhv=MISSING):
    return {"op": "and", "rules": [rule(lhv, op, rhv)]}


def passes(value, op, rhv=MISSING, lhv="lead.x"):
    lead = {} if value is MISSING else {"x": value}
    return evaluate(one(lhv, op, rhv), {"lead": lead}) is None


def test_operator_lists():
    assert len(OPERATORS) == 22
    assert len(set(OPERATORS)) == 22
    assert OPERATORS[0] == "is equal to"
    assert OPERATORS[-1] == "format is invalid"
    assert UNARY_OPERATORS.issubset(OPERATORS)
    assert LIST_OPERATORS.isdisjoint(UNARY_OPERATORS)
    assert LIST_OPERATORS.issubset(OPERATORS)
    assert set(NEGATIONS) | set(NEGATIONS.values()) | set(COMPLEMENTS) | set(
        COMPLEMENTS.values()
    ) == set(OPERATORS)


# Every operator ---------------------------------------------------------------------

OPERATOR_CASES = [
    # is equal to: case-insensitive, trimmed, numeric when both sides are numbers
    ("TX", "is equal to", "TX", True),
    ("tx", "is equal to", "TX", True),
    (" TX ", "is equal to", "tx", True),
    ("Straße", "is equal to", "STRASSE", True),
    ("CA", "is equal to", "TX", False),
    ("10", "is equal to", 10, True),
    ("10.0", "is equal to", "10", True),
    (10, "is equal to", "10.00", True),
    ("1e3", "is equal to", 1000, True),
    ("010", "is equal to", "10", True),
    (True, "is equal to", "TRUE", True),
    (MISSING, "is equal to", "", True),
    (None, "is equal to", "TX", False),
    ("TX", "is equal to", "TX ", True),
    # is not equal to
    ("tx", "is not equal to", "TX", False),
    ("CA", "is not equal to", "TX", True),
    ("10", "is not equal to", "10.0", False),
    (MISSING, "is not equal to", "TX", True),
    # is less than: "9" < "10" numerically, though not as text
    ("9", "is less than", "10", True),
    ("10", "is less than", "9", False),
    (9, "is less than", "10", True),
    ("-3", "is less than", "-2", True),
    ("apple", "is less than", "Banana", True),
    ("Banana", "is less than", "apple", False),
    (5, "is less than", 5, False),
    (MISSING, "is less than", 5, False),
    ("", "is less than", 5, False),
    ("abc", "is less than", "", False),
    # is less than or equal to
    ("5", "is less than or equal to", 5, True),
    ("5.1", "is less than or equal to", 5, False),
    ("abc", "is less than or equal to", "ABC", True),
    (MISSING, "is less than or equal to", 5, False),
    # is greater than
    ("10", "is greater than", "9", True),
    (10, "is greater than", 9.5, True),
    ("B", "is greater than", "a", True),
    ("9", "is greater than", "10", False),
    (MISSING, "is greater than", 0, False),
    # is greater than or equal to
    ("10", "is greater than or equal to", "10", True),
    ("9.99", "is greater than or equal to", "10", False),
    (Decimal("10.5"), "is greater than or equal to", "10.50", True),
    (MISSING, "is greater than or equal to", -1, False),
    # is between: inclusive, "lo-hi" or a two-item list, negatives
    ("10", "is between", "10-20", True),
    ("20", "is between", "10-20", True),
    ("9.99", "is between", "10-20", False),
    ("20.01", "is between", "10-20", False),
    ("15", "is between", "10 - 20", True),
    ("15", "is between", [10, 20], True),
    ("15", "is between", "10, 20", True),
    ("15", "is between", "[10, 20]", True),
    (15, "is between", ["10", "20"], True),
    ("1.5", "is between", "1.25-1.75", True),
    ("0", "is between", "-5-5", True),
    ("-5", "is between", "-5-5", True),
    ("-6", "is between", "-5-5", False),
    ("-7", "is between", "-10--5", True),
    ("-4", "is between", "-10--5", False),
    ("b", "is between", ["a", "c"], True),
    ("B", "is between", ["a", "c"], True),
    ("d", "is between", ["a", "c"], False),
    (MISSING, "is between", "10-20", False),
    ("15", "is between", "20-10", False),
    ("15", "is between", "ten-twenty", False),
    # is not between
    ("25", "is not between", "10-20", True),
    ("10", "is not between", "10-20", False),
    ("20", "is not between", [10, 20], False),
    (MISSING, "is not between", "10-20", True),
    ("15", "is not between", "ten-twenty", False),
    # is included in: a JSON array, a string holding one, or comma-separated text
    ("tx", "is included in", "TX, OK", True),
    (" ok ", "is included in", " TX ,  OK ", True),
    ("TX", "is included in", ["ok", "tx"], True),
    ("TX", "is included in", '["OK", "TX"]', True),
    ("CA", "is included in", "TX, OK", False),
    ("T", "is included in", "TX, OK", False),
    ("10", "is included in", [10, 20], True),
    ("10.0", "is included in", "10,20", True),
    (["ca", "tx"], "is included in", "TX, OK", True),
    (["ca"], "is included in", "TX", False),
    (MISSING, "is included in", "TX, OK", False),
    ("", "is included in", "TX,,OK", False),
    # is not included in
    ("CA", "is not included in", "TX, OK", True),
    ("tx", "is not included in", "TX,OK", False),
    (MISSING, "is not included in", "TX", True),
    # includes: a list lhv has the item, a text lhv contains it
    (["auto", "home"], "includes", "HOME", True),
    (["auto"], "includes", "home", False),
    (["auto", "homeowner"], "includes", "home", False),
    ([1, 2], "includes", "2", True),
    ("hello world", "includes", "WORLD", True),
    ("hello", "includes", "world", False),
    ("a, b", "includes", "a, b", True),
    (["a", "b"], "includes", ["x", "B"], True),
    ("hello world", "includes", '["xyz", "hello"]', True),
    ("hello world", "includes", ["xyz", "abc"], False),
    (MISSING, "includes", "a", False),
    ("abc", "includes", "", False),
    # does not include
    (["auto"], "does not include", "home", True),
    ("hello world", "does not include", "world", False),
    (MISSING, "does not include", "a", True),
    # matches pattern: case-insensitive search, /.../ with flags accepted
    ("hello world", "matches pattern", "^HELLO", True),
    ("hello world", "matches pattern", "world$", True),
    ("hello", "matches pattern", "/^h.LLO$/", True),
    ("a\nb", "matches pattern", "/^b$/m", True),
    ("a\nb", "matches pattern", "^b$", False),
    ("a\nb", "matches pattern", "/a.b/s", True),
    ("555-0100", "matches pattern", r"^\d{3}-\d{4}$", True),
    (12345, "matches pattern", r"^\d+$", True),
    ("/usr/bin", "matches pattern", "/usr/bin", True),
    ("abc", "matches pattern", "x", False),
    (MISSING, "matches pattern", "^$", True),
    ("aaaa", "matches pattern", "(?>a+)+$", True),
    ("aaaa", "matches pattern", "(a++)+$", True),
    ("abc", "matches pattern", "(", False),
    # does not match pattern
    ("hello", "does not match pattern", "^x", True),
    ("hello", "does not match pattern", "^H", False),
    ("abc", "does not match pattern", "(", False),
    # is blank / is not blank
    (MISSING, "is blank", MISSING, True),
    (None, "is blank", MISSING, True),
    ("", "is blank", MISSING, True),
    ("   ", "is blank", MISSING, True),
    ([], "is blank", MISSING, True),
    ({}, "is blank", MISSING, True),
    ("x", "is blank", MISSING, False),
    (0, "is blank", MISSING, False),
    (False, "is blank", MISSING, False),
    ("x", "is not blank", MISSING, True),
    (0, "is not blank", MISSING, True),
    (MISSING, "is not blank", MISSING, False),
    (" ", "is not blank", MISSING, False),
    # is true / is false / is not true / is not false
    ("true", "is true", MISSING, True),
    ("YES", "is true", MISSING, True),
    ("y", "is true", MISSING, True),
    ("1", "is true", MISSING, True),
    ("on", "is true", MISSING, True),
    ("T", "is true", MISSING, True),
    (True, "is true", MISSING, True),
    (1, "is true", MISSING, True),
    ("2", "is true", MISSING, True),
    ("no", "is true", MISSING, False),
    ("maybe", "is true", MISSING, False),
    (MISSING, "is true", MISSING, False),
    (False, "is true", MISSING, False),
    ("false", "is false", MISSING, True),
    ("No", "is false", MISSING, True),
    ("n", "is false", MISSING, True),
    ("0", "is false", MISSING, True),
    ("0.0", "is false", MISSING, True),
    ("OFF", "is false", MISSING, True),
    (False, "is false", MISSING, True),
    (0, "is false", MISSING, True),
    ("maybe", "is false", MISSING, False),
    (MISSING, "is false", MISSING, False),
    ("yes", "is false", MISSING, False),
    ("maybe", "is not true", MISSING, True),
    (MISSING, "is not true", MISSING, True),
    ("yes", "is not true", MISSING, False),
    ("maybe", "is not false", MISSING, True),
    ("no", "is not false", MISSING, False),
    # format is valid / invalid for a field of no known type: valid when not blank
    ("anything", "format is valid", MISSING, True),
    (MISSING, "format is valid", MISSING, False),
    ("  ", "format is valid", MISSING, False),
    (MISSING, "format is invalid", MISSING, True),
    ("x", "format is invalid", MISSING, False),
]


@pytest.mark.parametrize(("value", "op", "rhv", "expected"), OPERATOR_CASES)
def test_operator(value, op, rhv, expected):
    assert passes(value, op, rhv) is expected


def test_every_operator_has_cases_both_ways():
    outcomes = {(op, expected) for _, op, _, expected in OPERATOR_CASES}
    assert outcomes == {(op, result) for op in OPERATORS for result in (True, False)}


FORMAT_CASES = [
    ("lead.email", "jane@example.com", True),
    ("lead.email", " Jane.Doe@Example.COM ", True),
    ("lead.email", "jane@example", False),
    ("lead.email", "jane@@example.com", False),
    ("lead.work_email", "x@y.co", True),
    ("lead.emailAddress", "nope", False),
    ("lead.phone_1", "(512) 555-0100", True),
    ("lead.phone", "512-555-0100", True),
    ("lead.phone_1", "555-555-5555", False),
    ("lead.mobile_phone", "+44 20 7946 0958", True),
    ("lead.phone", "123", False),
    ("lead.phone", "not a phone", False),
    ("lead.postal_code", "78701", True),
    ("lead.zip", "78701-1234", True),
    ("lead.zip", "787011234", True),
    ("lead.postalCode", "K1A 0B1", True),
    ("lead.zip_code", "k1a0b1", True),
    ("lead.zip", "7870", False),
    ("lead.postal_code", "D1A 0B1", False),
    ("lead.state", "TX", True),
    ("lead.state", "tx", True),
    ("lead.state", "Texas", True),
    ("lead.home_state", "puerto rico", True),
    ("lead.state", "DC", True),
    ("lead.state", "ZZ", False),
    ("lead.state", "Ontario", False),
    ("feedback.timestamp", "2025-01-03T09:30:00+00:00", True),
    ("event.delivered_at", "2025-01-03T09:30:00Z", True),
    ("lead.dob", "1990-02-28", True),
    ("lead.dob", "02/28/1990", False),
    ("lead.date_of_birth", "1990-02-30", False),
    ("lead.landing_page_url", "https://example.com/x?y=1", True),
    ("lead.url", "ftp://example.com", False),
    ("lead.website", "not a url", False),
    ("feedback.revenue", "12.50", True),
    ("feedback.revenue", "-3", True),
    ("event.price", "$1,200.50", True),
    ("event.price", "1,2", False),
    ("feedback.revenue", "twelve", False),
    ("feedback.quality_score", 3, True),
    ("lead.age", "42", True),
    ("lead.comments", "anything at all", True),
    ("lead.comments", "", False),
    ("lead.phones.0", "512-555-0100", True),
]


@pytest.mark.parametrize(("lhv", "value", "valid"), FORMAT_CASES)
def test_format_checks_follow_the_field_type(lhv, value, valid):
    variables: dict = {}
    node = variables
    *parents, last = lhv.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    if last.isdigit():  # lead.phones.0
        variables["lead"]["phones"] = [value]
    else:
        node[last] = value
    assert (evaluate(one(lhv, "format is valid"), variables) is None) is valid
    assert (evaluate(one(lhv, "format is invalid"), variables) is None) is not valid


def test_a_templated_lhv_has_no_format_type():
    variables = {"lead": {"email": "not an email"}}
    assert evaluate(one("{{ lead.email }}", "format is valid"), variables) is None
    assert evaluate(one("lead.email", "format is valid"), variables) is not None


# Reasons ----------------------------------------------------------------------------

VARIABLES = {
    "lead": {
        "state": "CA",
        "age": "17",
        "tags": ["auto", "home"],
        "email": "bob@example",
        "note": "hello world",
        "long": "x" * 20_000,
    }
}


@pytest.mark.parametrize(
    ("built", "reason"),
    [
        (
            rule("lead.state", "is equal to", "TX"),
            'lead.state is "CA", not equal to "TX"',
        ),
        (
            rule("lead.state", "is not equal to", "ca"),
            'lead.state is "CA", but must not equal "ca"',
        ),
        (
            rule("lead.age", "is greater than", 18),
            'lead.age is "17", not greater than 18',
        ),
        (
            rule("lead.age", "is less than or equal to", "16"),
            'lead.age is "17", not less than or equal to "16"',
        ),
        (rule("lead.zip", "is less than", 5), "lead.zip is blank, not less than 5"),
        (
            rule("lead.age", "is between", "18-25"),
            'lead.age is "17", not between 18 and 25',
        ),
        (
            rule("lead.age", "is not between", [10, 20]),
            'lead.age is "17", but must not be between 10 and 20',
        ),
        (
            rule("lead.state", "is included in", "TX, OK"),
            'lead.state is "CA", not one of "TX", "OK"',
        ),
        (
            rule("lead.state", "is not included in", ["ca", "ny"]),
            'lead.state is "CA", but must not be one of "ca", "ny"',
        ),
        (
            rule("lead.tags", "includes", "boat"),
            'lead.tags is ["auto", "home"], which does not include "boat"',
        ),
        (
            rule("lead.tags", "does not include", "home"),
            'lead.tags is ["auto", "home"], but must not include "home"',
        ),
        (
            rule("lead.note", "matches pattern", "^bye"),
            'lead.note is "hello world", which does not match "^bye"',
        ),
        (
            rule("lead.note", "does not match pattern", "/^HELLO/"),
            'lead.note is "hello world", but must not match "/^HELLO/"',
        ),
        (rule("lead.state", "is blank"), 'lead.state is "CA", not blank'),
        (rule("lead.zip", "is not blank"), "lead.zip is blank"),
        (rule("lead.state", "is true"), 'lead.state is "CA", not true'),
        (rule("lead.state", "is false"), 'lead.state is "CA", not false'),
        (rule("lead.age", "is not true"), 'lead.age is "17", but must not be true'),
        (
            rule("lead.email", "format is valid"),
            'lead.email is "bob@example", not a valid email',
        ),
        (
            rule("lead.zip", "format is valid"),
            "lead.zip is blank, not a valid postal code",
        ),
        (
            rule("lead.state", "format is invalid"),
            'lead.state is "CA", but must not be a valid state',
        ),
        (rule("lead.note", "format is valid", None), None),
        (
            rule("{{ lead.state|lower }}-{{ lead.age }}", "is equal to", "ca-18"),
            '{{ lead.state|lower }}-{{ lead.age }} is "ca-17", not equal to "ca-18"',
        ),
        (
            rule("lead.long", "is equal to", "x"),
            'lead.long is "' + "x" * 59 + '…", not equal to "x"',
        ),
    ],
)
def test_reasons_are_readable(built, reason):
    assert evaluate({"rules": [built]}, VARIABLES) == reason


@pytest.mark.parametrize(
    ("built", "reason"),
    [
        (
            rule("lead.note", "matches pattern", "("),
            'lead.note: invalid pattern "(": missing ), unterminated subpattern at '
            "position 0",
        ),
        (
            rule("lead.note", "does not match pattern", "(a+)+$"),
            'lead.note: pattern "(a+)+$" repeats a repeated group, which can take '
            "exponential time; use an atomic group (?>...) or a possessive a++",
        ),
        (
            rule("lead.note", "matches pattern", "a" * 501),
            "lead.note: pattern is longer than 500 characters",
        ),
        (
            rule("lead.long", "does not match pattern", "y"),
            "lead.long: value is longer than 10000 characters to match",
        ),
        (
            rule("lead.age", "is between", "ten-twenty"),
            'lead.age: invalid range "ten-twenty": use "10-20" or [10, 20]',
        ),
        (
            rule("lead.age", "is not between", [1, 2, 3]),
            'lead.age: invalid range [1, 2, 3]: use "10-20" or [10, 20]',
        ),
        (
            rule("lead.age", "is equal to", "{{ lead.age + 1 }}"),
            'lead.age: template "{{ lead.age + 1 }}" failed: line 1: can only '
            'concatenate str (not "int") to str',
        ),
        (
            rule("{{ range(3) }}", "is blank"),
            '{{ range(3) }}: template "{{ range(3) }}" failed: line 1: '
            "'range' is not "
            "available in templates",
        ),
    ],
)
def test_unusable_rules_fail_with_the_cause(built, reason):
    assert evaluate({"rules": [built]}, VARIABLES) == reason


@pytest.mark.parametrize(
    ("rule_set", "reason"),
    [
        (
            {"rules": [rule("lead.state", "equals", "CA")]},
            'rules[0].op: unknown operator "equals"',
        ),
        (
            {"rules": [rule("lead.state", "is equal to")]},
            'rules[0].rhv: required with the operator "is equal to"',
        ),
        (
            {"rules": [rule("lead.state", "is equal to", None)]},
            'rules[0].rhv: required with the operator "is equal to"',
        ),
        (
            {"rules": [rule("", "is blank")]},
            "rules[0].lhv: must be a variable name or a template",
        ),
        (
            {"rules": [rule(["lead"], "is blank")]},
            "rules[0].lhv: must be a variable name or a template",
        ),
        ({"rules": ["lead.state"]}, "rules[0]: must be an object"),
        ({"op": "xor", "rules": []}, 'op: must be "and" or "or", not "xor"'),
        ({"rules": "lead.state"}, "rules: must be a list"),
        ([rule("lead.state", "is blank")], "rule set: must be an object"),
        (
            {"rules": [rule("lead.state", "is not blank", rule_set={"rules": [{}]})]},
            "rules[0].rule_set.rules[0].op: unknown operator null",
        ),
    ],
)
def test_broken_rule_sets_fail_closed(rule_set, reason):
    assert evaluate(rule_set, VARIABLES) == reason


# Sets, nesting and templates --------------------------------------------------------

PASS = rule("lead.state", "is equal to", "ca")
FAIL_STATE = rule("lead.state", "is equal to", "TX")
FAIL_AGE = rule("lead.age", "is greater than", 20)


@pytest.mark.parametrize(
    "rule_set", [None, {}, {"rules": []}, {"op": "or", "rules": []}]
)
def test_empty_rule_sets_pass(rule_set):
    assert evaluate(rule_set, VARIABLES) is None


def test_and_gives_the_first_failure():
    assert evaluate({"op": "and", "rules": [PASS, PASS]}, VARIABLES) is None
    assert evaluate({"rules": [PASS, FAIL_AGE, FAIL_STATE]}, VARIABLES) == (
        'lead.age is "17", not greater than 20'
    )


def test_or_passes_on_any_and_otherwise_gives_every_reason():
    assert evaluate({"op": "or", "rules": [FAIL_STATE, PASS]}, VARIABLES) is None
    assert evaluate({"op": "or", "rules": [FAIL_STATE]}, VARIABLES) == (
        'lead.state is "CA", not equal to "TX"'
    )
    assert evaluate({"op": "or", "rules": [FAIL_STATE, FAIL_AGE]}, VARIABLES) == (
        'none of the rules passed: lead.state is "CA", not equal to "TX"; '
        'lead.age is "17", not greater than 20'
    )
    many = [rule("lead.state", "is equal to", str(n)) for n in range(7)]
    reason = evaluate({"op": "or", "rules": many}, VARIABLES)
    assert reason.startswith('none of the rules passed: lead.state is "CA", not equal')
    assert reason.endswith('not equal to "4"; and 2 more')


def test_a_rules_own_rule_set_is_anded_with_it():
    with_nested = rule(
        "lead.state", "is equal to", "CA", rule_set={"rules": [FAIL_AGE]}
    )
    assert evaluate({"rules": [with_nested]}, VARIABLES) == (
        'lead.age is "17", not greater than 20'
    )
    with_passing = {**with_nested, "rule_set": {"op": "or", "rules": [FAIL_AGE, PASS]}}
    assert evaluate({"rules": [with_passing]}, VARIABLES) is None
    # The rule's own condition is read first.
    failing = {**FAIL_STATE, "rule_set": {"rules": [FAIL_AGE]}}
    assert evaluate({"rules": [failing]}, VARIABLES) == (
        'lead.state is "CA", not equal to "TX"'
    )
    # In an "or", a rule whose nested set fails does not count as passing.
    assert evaluate({"op": "or", "rules": [with_nested, FAIL_STATE]}, VARIABLES) == (
        'none of the rules passed: lead.age is "17", not greater than 20; '
        'lead.state is "CA", not equal to "TX"'
    )


def test_rule_sets_nest():
    nested = {
        "op": "and",
        "rules": [
            PASS,
            {"op": "or", "rules": [FAIL_AGE, {"op": "and", "rules": [PASS, PASS]}]},
        ],
    }
    assert evaluate(nested, VARIABLES) is None
    nested["rules"][1]["rules"][1]["rules"][1] = FAIL_STATE
    assert evaluate(nested, VARIABLES) == (
        'none of the rules passed: lead.age is "17", not greater than 20; '
        'lead.state is "CA", not equal to "TX"'
    )


def deep(levels):
    rule_set = {"rules": [PASS]}
    for _ in range(levels - 1):
        rule_set = {"rules": [rule_set]}
    return rule_set


def test_nesting_is_bounded():
    assert evaluate(deep(MAX_DEPTH), VARIABLES) is None
    reason = evaluate(deep(MAX_DEPTH + 1), VARIABLES)
    assert reason == "rules[0]" + ".rules[0]" * 9 + ": nested deeper than 10 levels"
    assert evaluate(deep(5000), VARIABLES) is not None  # no RecursionError


def test_templated_lhv_and_rhv():
    variables = {
        "lead": {"first": "Ann", "last": "Lee", "state": "tx"},
        "flow": {"name": "TX"},
    }
    assert (
        evaluate(
            one("{{ lead.first }} {{ lead.last }}", "is equal to", "ann lee"), variables
        )
        is None
    )
    assert (
        evaluate(one("lead.state", "is equal to", "{{ flow.name }}"), variables) is None
    )
    assert (
        evaluate(
            one("lead.state", "is included in", ["CA", "{{ flow.name }}"]), variables
        )
        is None
    )
    assert (
        evaluate(one("lead.state", "is included in", "{{ flow.name }}, OK"), variables)
        is None
    )
    assert (
        evaluate(one("lead.state", "is between", ["{{ 's' }}", "u"]), variables) is None
    )
    assert evaluate(one("{{ lead.missing }}", "is blank"), variables) is None


@pytest.mark.parametrize(
    ("lhv", "expected"),
    [
        ("lead.state", "CA"),
        (" lead.state ", "CA"),
        ("lead.tags.1", "home"),
        ("lead.tags.9", None),
        ("lead.utm.source", "google"),
        ("lead.nested.a.b", 1),
        ("lead.state.length", None),
        ("event_id", "evt_1"),
        ("nothing.here", None),
    ],
)
def test_lhv_is_a_dotted_path(lhv, expected):
    variables = {
        "lead": {
            "state": "CA",
            "tags": ["auto", "home"],
            "utm.source": "google",
            "nested": {"a": {"b": 1}},
        },
        "event_id": "evt_1",
    }
    if expected is None:
        assert evaluate(one(lhv, "is blank"), variables) is None
    else:
        assert evaluate(one(lhv, "is equal to", expected), variables) is None
        assert evaluate(one(lhv, "is not blank"), variables) is None


# validate_rule_set -------------------------------------------------------------------


@pytest.mark.parametrize("rule_set", [None, {}])
def test_no_rule_set_is_valid(rule_set):
    assert validate_rule_set(rule_set) == []


def test_a_full_rule_set_is_valid():
    rule_set = {
        "id": "a1b2c3",
        "op": "or",
        "rules": [
            rule("lead.state", "is included in", ["TX", "OK"], id="r1"),
            rule("lead.age", "is between", "18-65"),
            rule("lead.age", "is not between", [-5, 5.5]),
            rule("lead.note", "matches pattern", "/^hello/i"),
            rule("lead.email", "format is valid"),
            rule("lead.email", "is not blank", None),
            rule("lead.email", "is blank", ""),
            rule("{{ lead.first|lower }}", "is equal to", "{{ flow.name }}"),
            rule("lead.state", "is equal to", True),
            rule("lead.price", "is greater than", 10.5),
            rule("lead.tags", "includes", ["a", "{{ lead.b }}"]),
            rule("lead.x", "is between", "{{ lead.low }}-{{ lead.high }}"),
            rule(
                "lead.x", "is equal to", "TX", rule_set={"op": "and", "rules": [PASS]}
            ),
            {"op": "and", "rules": [PASS, FAIL_AGE]},
        ],
    }
    assert validate_rule_set(rule_set) == []


@pytest.mark.parametrize(
    ("rule_set", "errors"),
    [
        ("lead.state", ["rule set: must be an object"]),
        ([PASS], ["rule set: must be an object"]),
        ({"op": "and"}, ["rules: required"]),
        ({"rules": {}}, ["rules: must be a list"]),
        ({"op": "xor", "rules": []}, ['op: must be "and" or "or", not "xor"']),
        ({"rules": [], "name": "x"}, ["name: unknown key"]),
        ({"rules": ["x"]}, ["rules[0]: must be an object"]),
        ({"rules": [{"op": "is blank"}]}, ["rules[0].lhv: required"]),
        (
            {"rules": [rule(" ", "is blank")]},
            ["rules[0].lhv: must be a variable name or a template"],
        ),
        (
            {"rules": [rule(3, "is blank")]},
            ["rules[0].lhv: must be a variable name or a template"],
        ),
        (
            {"rules": [rule("{{ lead.x( }}", "is blank")]},
            ["rules[0].lhv: line 1: unexpected '}', expected ')'"],
        ),
        ({"rules": [{"lhv": "a"}]}, ["rules[0].op: required"]),
        (
            {"rules": [PASS, PASS, rule("a", "equals", "b")]},
            ['rules[2].op: unknown operator "equals"'],
        ),
        (
            {"rules": [rule("a", "is equal to")]},
            ['rules[0].rhv: required with the operator "is equal to"'],
        ),
        (
            {"rules": [rule("a", "includes", None)]},
            ['rules[0].rhv: required with the operator "includes"'],
        ),
        (
            {"rules": [rule("a", "is blank", "x")]},
            ['rules[0].rhv: not used with the operator "is blank"'],
        ),
        (
            {"rules": [rule("a", "is true", 0)]},
            ['rules[0].rhv: not used with the operator "is true"'],
        ),
        (
            {"rules": [rule("a", "is equal to", {"x": 1})]},
            ["rules[0].rhv: must be text, a number, true/false or a list"],
        ),
        (
            {"rules": [rule("a", "is less than", [1, 2])]},
            ['rules[0].rhv: takes a single value with "is less than", not a list'],
        ),
        (
            {"rules": [rule("a", "is included in", ["x", ["y"]])]},
            ["rules[0].rhv[1]: must be text, a number or true/false"],
        ),
        (
            {"rules": [rule("a", "is included in", " , ")]},
            ["rules[0].rhv: the list is empty"],
        ),
        (
            {"rules": [rule("a", "matches pattern", "[a-")]},
            [
                'rules[0].rhv: invalid pattern "[a-": unterminated character set at '
                "position 0"
            ],
        ),
        (
            {"rules": [rule("a", "matches pattern", r"(\w+\s?)+$")]},
            [
                r'rules[0].rhv: pattern "(\\w+\\s?)+$" repeats a repeated group, which '
                "can take exponential time; use an atomic group (?>...) or a "
                "possessive a++"
            ],
        ),
        (
            {"rules": [rule("a", "matches pattern", ["x"])]},
            ['rules[0].rhv: takes a single value with "matches pattern", not a list'],
        ),
        (
            {"rules": [rule("a", "is between", "10 to 20")]},
            ['rules[0].rhv: invalid range "10 to 20": use "10-20" or [10, 20]'],
        ),
        (
            {"rules": [rule("a", "is between", [1, 2, 3])]},
            ['rules[0].rhv: invalid range [1, 2, 3]: use "10-20" or [10, 20]'],
        ),
        (
            {"rules": [rule("a", "is between", "20-10")]},
            ["rules[0].rhv: the range is reversed (20 is greater than 10)"],
        ),
        (
            {"rules": [rule("a", "is not between", "-1--5")]},
            ["rules[0].rhv: the range is reversed (-1 is greater than -5)"],
        ),
        (
            {"rules": [rule("a", "is equal to", "{{ range(2) }}")]},
            ["rules[0].rhv: line 1: 'range' is not available in templates"],
        ),
        (
            {"rules": [rule("a", "is included in", ["ok", "{% if %}"])]},
            [
                "rules[0].rhv[1]: line 1: Expected an expression, got 'end of "
                "statement block'"
            ],
        ),
        ({"rules": [rule("a", "is blank", rhs="x")]}, ["rules[0].rhs: unknown key"]),
        (
            {
                "rules": [
                    rule(
                        "a",
                        "is blank",
                        rule_set={"rules": [PASS, rule("b", "is", "c")]},
                    )
                ]
            },
            ['rules[0].rule_set.rules[1].op: unknown operator "is"'],
        ),
        (
            {"rules": [rule("a", "is blank", rule_set=[])]},
            ["rules[0].rule_set: must be an object"],
        ),
        (
            {"rules": [PASS, {"op": "or", "rules": [rule("b", "is blank", 1)]}]},
            ['rules[1].rules[0].rhv: not used with the operator "is blank"'],
        ),
        (
            {"op": "nand", "rules": [rule("a", "equals"), rule("b", "is equal to")]},
            [
                'op: must be "and" or "or", not "nand"',
                'rules[0].op: unknown operator "equals"',
                'rules[1].rhv: required with the operator "is equal to"',
            ],
        ),
    ],
)
def test_validate_rule_set_errors_have_paths(rule_set, errors):
    assert validate_rule_set(rule_set) == errors


def test_validate_rule_set_bounds_depth_and_size():
    assert validate_rule_set(deep(MAX_DEPTH)) == []
    assert validate_rule_set(deep(MAX_DEPTH + 1)) == [
        "rules[0]" + ".rules[0]" * 9 + ": nested deeper than 10 levels"
    ]
    assert validate_rule_set({"rules": [PASS] * MAX_RULES}) == []
    assert validate_rule_set({"rules": [PASS] * (MAX_RULES + 1)}) == [
        "rules: 201 rules, more than the 200 allowed"
    ]
    nested_count = {"rules": [{**PASS, "rule_set": {"rules": [PASS] * 150}}] * 2}
    assert validate_rule_set(nested_count) == [
        "rules: 302 rules, more than the 200 allowed"
    ]


# Properties ---------------------------------------------------------------------------

plain_text = st.text(min_size=1, max_size=20).filter(
    lambda s: s.strip() and not is_template(s)
)
number_text = st.decimals(
    min_value=-1000, max_value=1000, places=2, allow_nan=False, allow_infinity=False
).map(lambda d: f"{d:f}")
scalars = st.one_of(
    plain_text,
    st.integers(-1000, 1000),
    number_text,
    st.booleans(),
    st.sampled_from(
        ["yes", "no", "TRUE", "0", "1", "TX", "tx", "Texas", "78701", "a@b.co"]
    ),
)
values = st.one_of(scalars, st.lists(scalars, min_size=1, max_size=3))
ranges = st.tuples(number_text, number_text).flatmap(
    lambda pair: st.sampled_from(
        [f"{pair[0]}-{pair[1]}", [pair[0], pair[1]], list(pair)]
    )
)
patterns = st.one_of(
    plain_text.map(re.escape),
    st.sampled_from(["^a", "b$", r"\d+", "/^t/", "x|y", "[aeiou]{2}", "^$", "."]),
)
fields = st.sampled_from(
    [
        "lead.x",
        "lead.email",
        "lead.phone",
        "lead.state",
        "lead.zip",
        "lead.dob",
        "lead.price",
    ]
)


def rhv_for(op):
    if op in UNARY_OPERATORS:
        return st.just(MISSING)
    if op in {"is between", "is not between"}:
        return ranges
    if op in {"matches pattern", "does not match pattern"}:
        return patterns
    if op in {"is included in", "is not included in", "includes", "does not include"}:
        return st.one_of(scalars, st.lists(scalars, min_size=1, max_size=4))
    return scalars


simple_rules = st.sampled_from(OPERATORS).flatmap(
    lambda op: st.tuples(fields, values, st.just(op), rhv_for(op))
)


def outcome(lhv, value, op, rhv):
    variables = {"lead": {lhv.split(".")[1]: value}}
    return evaluate(one(lhv, op, rhv), variables) is None


@settings(deadline=None, max_examples=400)
@given(
    st.sampled_from([*NEGATIONS.items(), *COMPLEMENTS.items()]).flatmap(
        lambda pair: st.tuples(st.just(pair), fields, values, rhv_for(pair[0]))
    )
)
def test_an_operator_and_its_negation_disagree_on_every_non_blank_value(case):
    (op, negation), lhv, value, rhv = case
    assert outcome(lhv, value, op, rhv) != outcome(lhv, value, negation, rhv)


@settings(deadline=None, max_examples=200)
@given(st.lists(simple_rules, min_size=1, max_size=6), values)
def test_and_passes_iff_all_pass_and_or_iff_any(cases, value):
    variables = {"lead": {"x": value}}
    built = [rule("lead.x", op, rhv) for _, _, op, rhv in cases]
    each = [evaluate({"rules": [r]}, variables) is None for r in built]
    assert (evaluate({"op": "and", "rules": built}, variables) is None) == all(each)
    assert (evaluate({"op": "or", "rules": built}, variables) is None) == any(each)


@settings(deadline=None, max_examples=300)
@given(
    st.one_of(number_text, st.integers(-2000, 2000), plain_text),
    number_text,
    number_text,
    st.booleans(),
)
def test_between_is_greater_or_equal_and_less_or_equal(value, low, high, as_text):
    rhv = f"{low}-{high}" if as_text else [low, high]
    between = passes(value, "is between", rhv)
    assert between == (
        passes(value, "is greater than or equal to", low)
        and passes(value, "is less than or equal to", high)
    )


@settings(deadline=None, max_examples=200)
@given(number_text, number_text)
def test_numeric_strings_compare_as_numbers(left, right):
    assert passes(left, "is less than", right) == (Decimal(left) < Decimal(right))
    assert passes(left, "is equal to", right) == (Decimal(left) == Decimal(right))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["{{ lead.x }}", "{{", "(", "10-20", "[1, 2]", "/a/", "lead.x"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
rule_sets = st.recursive(
    st.fixed_dictionaries(
        {
            "lhv": st.one_of(fields, json_values),
            "op": st.one_of(st.sampled_from(OPERATORS), json_values),
        },
        optional={"rhv": json_values},
    ),
    lambda children: (
        st.fixed_dictionaries(
            {
                "op": st.one_of(st.sampled_from(["and", "or"]), json_values),
                "rules": st.lists(children, max_size=4),
            }
        )
        | st.fixed_dictionaries(
            {
                "lhv": fields,
                "op": st.sampled_from(OPERATORS),
                "rhv": json_values,
                "rule_set": children,
            }
        )
    ),
    max_leaves=10,
)


@settings(deadline=None, max_examples=400)
@given(
    st.one_of(rule_sets.map(lambda r: {"rules": [r]}), rule_sets, json_values),
    st.dictionaries(st.sampled_from(["lead", "feedback"]), json_values),
)
def test_evaluate_and_validate_never_raise(rule_set, variables):
    result = evaluate(rule_set, variables)
    assert result is None or (isinstance(result, str) and result)
    errors = validate_rule_set(rule_set)
    assert isinstance(errors, list)
    assert all(isinstance(error, str) and error for error in errors)


@settings(deadline=None, max_examples=200)
@given(st.lists(simple_rules, min_size=1, max_size=5), st.sampled_from(["and", "or"]))
def test_generated_well_formed_rule_sets_validate_clean(cases, op):
    built = [rule(lhv, rule_op, rhv) for lhv, _, rule_op, rhv in cases]
    errors = validate_rule_set({"op": op, "rules": built})
    # A reversed range is the one structural error well-formed input can carry.
    assert all("the range is reversed" in error for error in errors)
