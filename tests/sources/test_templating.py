"""sources.templating: the sandbox, the filters, the bounds and validate()."""

import datetime as dt
import hashlib
import time
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sources import templating
from sources.templating import (
    FILTERS,
    MAX_OUTPUT_CHARS,
    MAX_TEMPLATE_CHARS,
    SAMPLE_VARIABLES,
    TemplateError,
    is_template,
    render,
    validate,
)

VARIABLES = {
    "lead": {
        "id": "L-1",
        "email": "  Jane.Doe@Example.COM ",
        "phone_1": "(512) 555-0100",
        "state": "tx",
        "items": "three widgets",
        "tags": ["auto", "home"],
        "none": None,
        "big": "x" * 60_000,
        "huge": "x" * 150_000,
        "many": list(range(1_000_000)),
    },
    "event": {"id": "evt_1", "price": Decimal("12.50")},
    "event_id": "evt_1",
    "buyer": {"name": "Acme"},
    "feedback": {
        "timestamp": "2025-01-03T09:30:00+00:00",
        "occurred": dt.datetime(2025, 1, 3, 9, 30, tzinfo=dt.UTC),
        "day": dt.date(2025, 2, 28),
        "custom": {"plan": "gold"},
    },
}


def rendered(template: str) -> str:
    return render(template, VARIABLES)


# Rendering ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ lead.id }}", "L-1"),
        ("{{ event_id }}/{{ event.id }}", "evt_1/evt_1"),
        ("{{ buyer.name }} bought {{ lead['state'] }}", "Acme bought tx"),
        ("{{ feedback.custom.plan }}", "gold"),
        ("{{ lead.tags[1] }}", "home"),
        ("{{ event.price }}", "12.50"),
        ("[{{ lead.missing }}]", "[]"),
        ("[{{ nothing.at.all.here }}]", "[]"),
        ("[{{ lead.none }}]", "[]"),
        ("[{{ lead.none ~ 'x' }}]", "[x]"),
        # The lead's own "items" field, not dict.items.
        ("{{ lead.items }}", "three widgets"),
        ("{% if lead.missing %}yes{% else %}no{% endif %}", "no"),
        ("{% if lead.missing is defined %}yes{% else %}no{% endif %}", "no"),
        (
            "{% for tag in lead.tags %}{{ loop.index }}={{ tag }};{% endfor %}",
            "1=auto;2=home;",
        ),
        ("{% for t in lead.tags %}{{ loop.cycle('a', 'b') }}{% endfor %}", "ab"),
        ("{% for t in lead.nope %}x{% else %}empty{% endfor %}", "empty"),
        ("{{ lead.email.strip().split('@')[1] }}", "Example.COM"),
        ("{{ lead.get('state') }}", "tx"),
        (
            "{% macro greet(n) %}hi {{ n }}{% endmacro %}{{ greet(buyer.name) }}",
            "hi Acme",
        ),
        (
            "{% for x in [[1, [2]], 3] recursive %}{% if x is number %}{{ x }}"
            "{% else %}{{ loop(x) }}{% endif %}{% endfor %}",
            "123",
        ),
        (
            "{% set n = 2 %}{{ n * 3 }},{{ n ** 10 }},{{ 7 // n }},{{ 'ab' * 2 }}",
            "6,1024,3,abab",
        ),
        ("plain text, no syntax\n", "plain text, no syntax\n"),
        ("<xml>{{ '<&>' }}</xml>", "<xml><&></xml>"),  # autoescape is off
    ],
)
def test_render(template, expected):
    assert rendered(template) == expected


def test_render_accepts_any_mapping_and_leaves_it_alone():
    variables = {"lead": {"tags": ["a"]}}
    assert render("{{ lead.tags|tojson }}", variables) == '["a"]'
    with pytest.raises(TemplateError, match="not allowed"):
        render("{{ lead.tags.append('b') }}", variables)
    assert variables == {"lead": {"tags": ["a"]}}


def test_templates_are_compiled_once():
    source = "{{ lead.id }} cached " + str(time.monotonic_ns())
    rendered(source)
    hits = templating._compile.cache_info().hits
    assert rendered(source) == "L-1 cached " + source.rsplit(" ", 1)[1]
    assert templating._compile.cache_info().hits == hits + 1


# Filters ----------------------------------------------------------------------------


def test_the_filter_set_is_small_and_curated():
    assert set(FILTERS) == {
        "lower",
        "upper",
        "trim",
        "default",
        "date",
        "md5",
        "sha256",
        "digits",
        "urlencode",
        "tojson",
    }


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ lead.email|lower }}", "  jane.doe@example.com "),
        ("{{ lead.state|upper }}", "TX"),
        ("[{{ lead.email|trim }}]", "[Jane.Doe@Example.COM]"),
        ("[{{ '--a--'|trim('-') }}]", "[a]"),
        ("{{ lead.missing|default('n/a') }}", "n/a"),
        ("{{ lead.state|default('n/a') }}", "tx"),
        ("[{{ ''|default('n/a') }}]", "[]"),
        ("{{ ''|default('n/a', true) }}", "n/a"),
        ("{{ feedback.timestamp|date('%Y-%m-%d') }}", "2025-01-03"),
        ("{{ feedback.timestamp|date('%d/%m/%Y %H:%M') }}", "03/01/2025 09:30"),
        ("{{ feedback.timestamp|date }}", "2025-01-03T09:30:00+00:00"),
        ("{{ '2025-01-03'|date('%m/%d/%Y') }}", "01/03/2025"),
        ("{{ '2025-01-03T09:30:00Z'|date('%H%M') }}", "0930"),
        ("{{ feedback.occurred|date('%Y') }}", "2025"),
        ("{{ feedback.day|date('%b %d') }}", "Feb 28"),
        ("[{{ lead.missing|date('%Y') }}]", "[]"),
        ("[{{ ''|date('%Y') }}]", "[]"),
        ("{{ 'next tuesday'|date('%Y') }}", "next tuesday"),
        ("{{ 'abc'|md5 }}", "900150983cd24fb0d6963f7d28e17f72"),
        (
            "{{ 'abc'|sha256 }}",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            "{{ lead.email|trim|lower|sha256 }}",
            hashlib.sha256(b"jane.doe@example.com").hexdigest(),
        ),
        ("[{{ lead.missing|md5 }}{{ ''|sha256 }}]", "[]"),
        ("{{ lead.phone_1|digits }}", "5125550100"),
        ("[{{ 'no digits'|digits }}]", "[]"),
        ("{{ 'a b&c/d'|urlencode }}", "a%20b%26c/d"),
        ("{{ lead.email|trim|urlencode }}", "Jane.Doe%40Example.COM"),
        ("{{ {'q': 'a b', 'n': 1}|urlencode }}", "q=a+b&n=1"),
        ("[{{ lead.missing|urlencode }}]", "[]"),
        ("{{ lead.tags|tojson }}", '["auto", "home"]'),
        ("{{ feedback.custom|tojson }}", '{"plan": "gold"}'),
        ("{{ event.price|tojson }}", '"12.50"'),
        ("{{ feedback.occurred|tojson }}", '"2025-01-03T09:30:00+00:00"'),
        ("{{ lead.missing|tojson }}", "null"),
        ("{{ 'é<'|tojson }}", '"é<"'),
    ],
)
def test_filters(template, expected):
    assert rendered(template) == expected


@pytest.mark.parametrize(
    "name", ["attr", "map", "format", "join", "replace", "center", "indent", "wordwrap"]
)
def test_other_jinja_filters_are_not_available(name):
    with pytest.raises(TemplateError, match=f"No filter named '{name}'"):
        rendered(f"{{{{ lead.tags|{name} }}}}")


# The sandbox ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ ''.__class__ }}", "'__class__' of a str is not allowed"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "'__class__'"),
        ("{{ lead.__init__ }}", "'__init__' of a dict is not allowed"),
        ("{{ lead['__class__'] }}", "'__class__' of a dict is not allowed"),
        ("{{ lead.email.__class__ }}", "'__class__' of a str"),
        ("{{ nothing.__class__ }}", "'__class__' of a _Undefined"),
        ("{% macro m() %}{% endmacro %}{{ m._func }}", "'_func' of a Macro"),
        ("{% for x in lead.tags %}{{ loop._iterator }}{% endfor %}", "'_iterator'"),
        ("{{ range(10) }}", "'range' is not available"),
        ("{% for i in range(3) %}{% endfor %}", "'range' is not available"),
        ("{{ cycler }}", "'cycler' is not available"),
        ("{{ joiner() }}", "'joiner' is not available"),
        ("{{ lipsum() }}", "'lipsum' is not available"),
        ("{{ dict(a=1) }}", "'dict' is not available"),
        ("{% set ns = namespace(a=1) %}", "'namespace' is not available"),
        ("{{ self }}", "'self' is not available"),
        ("{{ self.__init__ }}", "'self' is not available"),
        ("{% include 'other.html' %}", "{% include %} is not allowed"),
        ("{% extends 'base.html' %}", "{% extends %} is not allowed"),
        ("{% import 'macros.html' as m %}", "{% import %} is not allowed"),
        ("{% from 'macros.html' import m %}", "{% from ... import %} is not allowed"),
        ("{{ 'x'.format(lead) }}", "calling str.format() is not allowed"),
        ("{{ 'x'.center(10) }}", "calling str.center() is not allowed"),
        ("{{ lead.email.replace('a', 'b') }}", "calling str.replace() is not allowed"),
        ("{{ lead.pop('email') }}", "access to 'pop' of a dict is not allowed"),
        ("{{ lead.tags.append(1) }}", "access to 'append' of a list is not allowed"),
        (
            "{{ lead.tags.count.__self__ }}",
            "'__self__' of a builtin_function_or_method",
        ),
        ("{{ lead.missing() }}", "has no attribute 'missing'"),
        ("{{ nothing() }}", "'nothing' is undefined"),
        ("{{ '%s' % lead }}", "formatting text with % is not allowed"),
    ],
)
def test_sandbox_escapes_are_refused(template, message):
    with pytest.raises(TemplateError) as caught:
        rendered(template)
    assert message in str(caught.value)


def test_missing_private_attributes_are_just_missing():
    # No such attribute exists, so there is nothing to refuse: it renders as "".
    assert rendered("[{{ lead.tags._private }}{{ lead.email.__nothing }}]") == "[]"


def test_templates_cannot_reach_globals_by_any_name():
    assert templating._ENV.globals == {}
    # A name that is not a variable is simply missing, not a Python builtin.
    assert rendered("[{{ len }}{{ open }}{{ __import__ }}{{ config }}]") == "[]"


# Bounds -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ 'x' * 10**6 }}", "longer than 100000 characters"),
        ('{% for i in "x"*10**6 %}{% endfor %}', "longer than 100000 characters"),
        ("{{ [0] * 10**6 }}", "longer than 100000 characters"),
        ("{{ lead.big + lead.big }}", "longer than 100000 characters"),
        ("{{ lead.big ~ lead.big }}", "longer than 100000 characters"),
        ("{% set s = lead.big ~ '-' ~ lead.big %}", "longer than 100000 characters"),
        ("{{ 2 ** 100000 }}", "larger than 4096 bits"),
        ("{{ (2 ** 4000) * (2 ** 4000) }}", "larger than 4096 bits"),
        ("{{ lead.big ~ lead.big[:40001] }}", "longer than 100000 characters"),
        ("{{ lead.huge|upper }}", "a filter's input is longer than 100000"),
        ("{{ ('%' * 40000)|urlencode }}", "a filter's result is longer than 100000"),
        ("{{ lead.huge }}", "a value is longer than 100000 characters"),
        (
            # Doubling through macro recursion is stopped at the first oversized value.
            "{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% else %}{{ s }}"
            "{% endif %}{% endmacro %}{{ f('ab', 60) }}",
            "longer than 100000 characters",
        ),
        (
            "{% set x %}{% for i in 'x' * 50000 %}abc{% endfor %}{% endset %}",
            "output is longer than 100000 characters",
        ),
        (
            "{% filter upper %}{% for i in 'x' * 50000 %}abc{% endfor %}"
            "{% endfilter %}",
            "output is longer than 100000 characters",
        ),
        (
            "{% macro m() %}{% for i in 'x' * 50000 %}{{ lead.big }}{% endfor %}"
            "{% endmacro %}{{ m() }}",
            "wrote more than 1000000 characters",
        ),
        ("{{ lead.big }}{{ lead.big }}", "output is longer than 100000 characters"),
        ("{% for i in 'x' * 50000 %}abc{% endfor %}", "output is longer than 100000"),
    ],
)
def test_size_bounds(template, message):
    with pytest.raises(TemplateError) as caught:
        rendered(template)
    assert message in str(caught.value)


def test_output_just_under_the_bound_renders():
    out = rendered("{{ lead.big }}{{ 'y' * 39999 }}")
    assert len(out) == MAX_OUTPUT_CHARS - 1


@pytest.fixture
def generous_clock(monkeypatch):
    """Let only the step bound stop a render, however slow the host."""
    monkeypatch.setattr(templating, "MAX_RENDER_SECONDS", 600.0)


@pytest.mark.usefixtures("generous_clock")
@pytest.mark.parametrize(
    "template",
    [
        "{% for i in 'x' * 100000 %}{% for j in 'x' * 100000 %}{% endfor %}"
        "{% endfor %}",
        "{% for i in lead.many %}{% endfor %}",
        "{% for i in lead.tags recursive %}{% if loop.depth == 1 %}"
        "{{ loop(lead.many) }}{% endif %}{% endfor %}",
        "{% macro m(n) %}{{ n }}{% endmacro %}"
        "{% for i in 'x' * 90000 %}{% for j in 'ab' %}{{ m(1)|trim }}{% endfor %}"
        "{% endfor %}",
    ],
)
def test_step_bound_stops_big_loops_and_calls(template):
    with pytest.raises(TemplateError, match="more than 100000 loop iterations"):
        rendered(template)


def test_time_bound_stops_slow_loops():
    # 20 000 iterations (under the step bound), each hashing 60 000 characters and
    # writing nothing: seconds of work, stopped at the CPU-time deadline.
    started = time.monotonic()
    with pytest.raises(TemplateError, match="more than 100 ms of CPU time"):
        rendered(
            "{% for i in 'x' * 20000 %}{% if lead.big|md5 == '' %}x{% endif %}"
            "{% endfor %}"
        )
    assert time.monotonic() - started < 5


def test_a_stopped_render_does_not_use_up_the_next_ones_budget():
    with pytest.raises(TemplateError):
        rendered("{% for i in lead.many %}{% endfor %}")
    assert rendered("{% for i in 'x' * 50000 %}{% endfor %}done") == "done"


def test_template_source_is_bounded():
    with pytest.raises(TemplateError, match="template is longer than"):
        render("x" * (MAX_TEMPLATE_CHARS + 1), {})
    assert render("x" * MAX_TEMPLATE_CHARS, {}) == "x" * MAX_TEMPLATE_CHARS


def test_deeply_nested_source_is_a_template_error():
    with pytest.raises(TemplateError):
        render("{{ " + "(" * 20_000 + "1" + ")" * 20_000 + " }}", {})


# Errors, validate() and is_template() -----------------------------------------------


def test_template_error_carries_the_line():
    with pytest.raises(TemplateError) as caught:
        render("line one\n{{ lead.email }}\n{{ lead.x( }}", VARIABLES)
    assert isinstance(caught.value, ValueError)
    assert caught.value.lineno == 3
    assert str(caught.value).startswith("line 3: ")


def test_runtime_errors_carry_the_line_too():
    with pytest.raises(TemplateError) as caught:
        render("a\nb\n{{ 1 // 0 }}", VARIABLES)
    assert caught.value.lineno == 3
    assert str(caught.value) == "line 3: integer division or modulo by zero"


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{{ lead.email|lower }}", None),
        ("{{ feedback.timestamp|date('%Y') }}-{{ lead.phone_1|digits }}", None),
        ("{% for k in lead %}{{ k }}{% endfor %}", None),
        ("{{ lead.unknown_field }}", None),
        ("{% if %}", "line 1: Expected an expression, got 'end of statement block'"),
        ("ok\n{{ lead.email }", "line 2: unexpected '}'"),
        (
            "{% for x in y %}",
            "line 1: Unexpected end of template. Jinja was looking for the following "
            "tags: 'endfor' or 'else'. The innermost block that needs to be closed is "
            "'for'.",
        ),
        ("{{ lead.email|lowercase }}", "line 1: No filter named 'lowercase'."),
        ("\n{{ range(3) }}", "line 2: 'range' is not available in templates"),
        ("{{ lead.email + 1 }}", 'line 1: can only concatenate str (not "int") to str'),
        (
            "{{ lead.__class__ }}",
            "line 1: access to '__class__' of a dict is not allowed",
        ),
    ],
)
def test_validate(template, problem):
    assert validate(template) == problem


def test_validate_renders_against_the_given_variables():
    assert validate("{{ lead.n + 1 }}", variables={"lead": {"n": 1}}) is None
    assert validate("{{ lead.n + 1 }}", variables={"lead": {"n": "1"}}) is not None


def test_sample_variables_follow_the_design():
    assert set(SAMPLE_VARIABLES) == {
        "lead",
        "event",
        "event_id",
        "buyer",
        "source",
        "flow",
        "feedback",
    }
    assert render("{{ feedback.timestamp|date('%Y') }}", SAMPLE_VARIABLES) == "2026"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ lead.email }}", True),
        ("{% if x %}y{% endif %}", True),
        ("prefix {{x}}", True),
        ("lead.email", False),
        ("{ not one }", False),
        ("{# a comment #}", False),
        ("", False),
        (None, False),
        (12, False),
    ],
)
def test_is_template(text, expected):
    assert is_template(text) is expected


# Properties -------------------------------------------------------------------------


@settings(deadline=None, max_examples=200)
@given(st.text(alphabet=st.characters(exclude_characters="{}#%\r")))
def test_text_without_syntax_renders_as_itself(text):
    assert render(text, VARIABLES) == text


@settings(deadline=None, max_examples=300)
@given(
    st.lists(
        st.sampled_from(
            [
                "{{",
                "}}",
                "{%",
                "%}",
                " for x in ",
                " if ",
                " endfor ",
                " endif ",
                "lead",
                ".email",
                ".__class__",
                "|",
                "upper",
                "md5",
                "(",
                ")",
                "'a'",
                " * ",
                "99999",
                " ~ ",
                "[",
                "]",
                "range",
                "self",
                "loop",
                "x",
                " ",
            ]
        ),
        max_size=25,
    ).map("".join)
)
def test_render_returns_text_or_raises_template_error(template):
    # Anything but a TemplateError (a RecursionError, a TypeError...) fails the test.
    try:
        out = render(template, VARIABLES)
    except TemplateError as exc:
        out, problem = None, str(exc)
    if out is None:
        assert problem
    else:
        assert len(out) <= MAX_OUTPUT_CHARS
        assert "class '" not in out
