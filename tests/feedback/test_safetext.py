"""The one check every way in applies: text the database can store, and nesting."""

import pytest

from feedback.safetext import (
    MAX_DEPTH,
    find_problem,
    find_variable_problem,
    shown,
    storable,
    text_problem,
)


def nested(levels, leaf=1):
    """An object `levels` deep: nested(2) == {"a": {"a": 1}}."""
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def test_text_problem_names_nul_and_lone_surrogates_only():
    assert text_problem("Wrong number, é, 😀") is None
    assert text_problem("a\x00b") == "must not contain NUL characters"
    assert "lone surrogate" in text_problem("x\ud800")
    assert "lone surrogate" in text_problem("\udfff")


def test_find_problem_names_the_path_and_escapes_a_bad_name():
    problem = find_problem({"custom": {"plan": ["ok", "b\x00"]}})
    assert problem.field == "custom.plan.1"
    assert problem.message == "must not contain NUL characters"
    problem = find_problem({"custom": {"k\x00": 1}})
    assert problem.field == "custom.k\\u0000"
    assert problem.message == "the name must not contain NUL characters"
    assert shown("\ud800") == "\\ud800"


def test_find_problem_bounds_nesting_counting_the_top_object_as_level_one():
    assert find_problem(nested(MAX_DEPTH)) is None
    problem = find_problem(nested(MAX_DEPTH + 1))
    assert problem.too_deep
    assert problem.field == ".".join(["a"] * MAX_DEPTH)


def test_form_and_query_variables_are_checked_by_name_and_value():
    assert find_variable_problem([("reason", ["ok", "fine"])]) is None
    assert find_variable_problem([("reason", ["ok", "a\x00"])]).field == "reason"
    problem = find_variable_problem([("re\x00", ["ok"])])
    assert problem.field == "re\\u0000"
    assert problem.message.startswith("the name ")


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("plain", "plain"),
        ("héllo ✓", "héllo ✓"),
        ("a\x00b\x00", "a\ufffdb\ufffd"),
        ("x\ud800y", "x\ufffd\ufffd\ufffdy"),
        ("", ""),
    ],
)
def test_storable_replaces_only_what_postgresql_cannot_store(text, stored):
    assert storable(text) == stored
    assert text_problem(storable(text)) is None
