"""The LeadConduit rule-set engine (DESIGN.md §5.3): a pure function over JSON.

A rule set is `{"op": "and"|"or", "rules": [...]}` (`op` defaults to "and"); each
item of `rules` is a rule, `{"lhv": "lead.state", "op": "is equal to", "rhv": "TX"}`
with an optional `rule_set` ANDed with it, or a nested rule set. `evaluate()`
returns None when the set passes and a readable reason when it does not; it never
raises. An empty or missing rule set passes, and so does a set with no rules.

Values:

- `lhv` is a dotted path into the variables (`lead.state`, `lead.tags.0`; a key
  that itself holds dots is found too), or a template when it contains `{{`/`{%`.
  `rhv` is a literal or a template (each item of a list rhv may be one).
- Comparisons are numeric when both sides are numbers or numeric strings ("10" >
  "9"), otherwise they compare the trimmed, case-folded text. The ordering
  operators fail when either side is blank.
- A list rhv is a JSON array, a string holding one, or a comma-separated string
  (items trimmed, blanks dropped). `is included in`: the lhv (or, for a list lhv,
  any of its items) equals an item. `includes`: a list lhv has an item equal to
  the rhv, a text lhv contains it (case-insensitively); an array rhv means any
  of its items. `is between` is inclusive, with a range "10-20" (negative bounds
  work: "-5-5", "-10--2") or a two-item list ([lo, hi], "lo, hi"); it is exactly
  `>= lo and <= hi`.
- `matches pattern` is a case-insensitive `re.search`; `/.../` (with `m`/`s`
  flags) is accepted. Patterns are at most `MAX_PATTERN_CHARS`, values searched at
  most `MAX_MATCH_INPUT_CHARS`, and a backtracking quantifier nested in a
  repeated group (`(a+)+`, the usual catastrophic case) is refused; an atomic
  group `(?>...)` or a possessive quantifier `a++` is the way to write one.
- `is true`/`is false` know true, t, yes, y, on, 1 (and non-zero numbers) and
  false, f, no, n, off, 0; anything else is neither.
- `format is valid` checks the type named by lhv's last segment: email, phone
  (US by default), postal code (US ZIP or ZIP+4, Canadian), state (US states,
  DC, territories and military codes, or names), date/timestamp/`*_at` (ISO
  8601), url (http/https) and price/revenue/amount/... (a number, `$` and
  thousands commas allowed). Other fields are valid when not blank; blank is
  never valid.
- Each negated operator is the exact negation of its positive one, except that
  both fail (with a reason) when the rhv itself is unusable: a bad pattern, a bad
  range, an unrenderable template.

Reasons read `lead.state is "CA", not equal to "TX"`. An `and` set gives the
reason of its first failing rule; an `or` set that fails gives all of its rules'
reasons ("none of the rules passed: a; b"), as any one of them would have been
enough and an admin reading the log needs to see each. Structural problems (an
unknown operator, a missing rhv) fail the set with a reason naming the rule's
path, so a broken rule set never lets feedback through.

`validate_rule_set()` checks the structure for the admin and config import and
returns errors with JSON-ish paths (`rules[2].op: unknown operator "equals"`).
"""

import importlib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from email_validator import EmailNotValidError, validate_email

from sources import templating

OPERATORS: Final[tuple[str, ...]] = (
    "is equal to",
    "is not equal to",
    "is less than",
    "is less than or equal to",
    "is greater than",
    "is greater than or equal to",
    "is between",
    "is not between",
    "is included in",
    "is not included in",
    "includes",
    "does not include",
    "matches pattern",
    "does not match pattern",
    "is blank",
    "is not blank",
    "is true",
    "is false",
    "is not true",
    "is not false",
    "format is valid",
    "format is invalid",
)
UNARY_OPERATORS: Final[frozenset[str]] = frozenset(
    {
        "is blank",
        "is not blank",
        "is true",
        "is false",
        "is not true",
        "is not false",
        "format is valid",
        "format is invalid",
    }
)
# Operators whose rhv may be a list.
LIST_OPERATORS: Final[frozenset[str]] = frozenset(
    {
        "is between",
        "is not between",
        "is included in",
        "is not included in",
        "includes",
        "does not include",
    }
)
MAX_DEPTH: Final = 10
MAX_RULES: Final = 200
MAX_PATTERN_CHARS: Final = 500
MAX_MATCH_INPUT_CHARS: Final = 10_000

# Each negated operator and the positive one it negates.
_NEGATIONS: Final[Mapping[str, str]] = {
    "is not equal to": "is equal to",
    "is not between": "is between",
    "is not included in": "is included in",
    "does not include": "includes",
    "does not match pattern": "matches pattern",
    "is not blank": "is blank",
    "is not true": "is true",
    "is not false": "is false",
    "format is invalid": "format is valid",
}
_SET_KEYS: Final = frozenset({"op", "rules", "id"})
_RULE_KEYS: Final = frozenset({"lhv", "op", "rhv", "rule_set", "id"})
_NUMBER: Final = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_NUMBER_RE: Final = re.compile(rf"{_NUMBER}(?:[eE][+-]?\d{{1,6}})?")
_RANGE_RE: Final = re.compile(rf"\s*({_NUMBER})\s*-\s*({_NUMBER})\s*")
_MONEY_RE: Final = re.compile(r"[+-]?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_TRUE: Final = frozenset({"true", "t", "yes", "y", "on"})
_FALSE: Final = frozenset({"false", "f", "no", "n", "off"})

_FIELD_TYPES: Final[tuple[tuple[str, re.Pattern[str]], ...]] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        ("email", r"(?:\w+_)?email(?:_?address)?(?:_?\d+)?"),
        ("phone", r"(?:\w+_)?(?:phone|telephone|mobile|cell)(?:_?number)?(?:_?\d+)?"),
        ("postal code", r"(?:\w+_)?(?:postal_?code|post_?code|zip|zip_?code)"),
        ("state", r"(?:\w+_)?state(?:_?code)?"),
        (
            "date",
            r"(?:\w+_)?(?:date|dob|birth_?date|birthday|timestamp)(?:_\w+)?|\w+_at",
        ),
        ("url", r"(?:\w+_)?(?:url|website|homepage|landing_page(?:_url)?)"),
        (
            "number",
            r"(?:\w+_)?(?:price|revenue|amount|cost|quantity|score|age|total)"
            r"|number|count",
        ),
    )
)
_US_STATES: Final[Mapping[str, str]] = {
    "AL": "Alabama",
    "AK": "Alaska",
    "AZ": "Arizona",
    "AR": "Arkansas",
    "CA": "California",
    "CO": "Colorado",
    "CT": "Connecticut",
    "DE": "Delaware",
    "DC": "District of Columbia",
    "FL": "Florida",
    "GA": "Georgia",
    "HI": "Hawaii",
    "ID": "Idaho",
    "IL": "Illinois",
    "IN": "Indiana",
    "IA": "Iowa",
    "KS": "Kansas",
    "KY": "Kentucky",
    "LA": "Louisiana",
    "ME": "Maine",
    "MD": "Maryland",
    "MA": "Massachusetts",
    "MI": "Michigan",
    "MN": "Minnesota",
    "MS": "Mississippi",
    "MO": "Missouri",
    "MT": "Montana",
    "NE": "Nebraska",
    "NV": "Nevada",
    "NH": "New Hampshire",
    "NJ": "New Jersey",
    "NM": "New Mexico",
    "NY": "New York",
    "NC": "North Carolina",
    "ND": "North Dakota",
    "OH": "Ohio",
    "OK": "Oklahoma",
    "OR": "Oregon",
    "PA": "Pennsylvania",
    "RI": "Rhode Island",
    "SC": "South Carolina",
    "SD": "South Dakota",
    "TN": "Tennessee",
    "TX": "Texas",
    "UT": "Utah",
    "VT": "Vermont",
    "VA": "Virginia",
    "WA": "Washington",
    "WV": "West Virginia",
    "WI": "Wisconsin",
    "WY": "Wyoming",
    "AS": "American Samoa",
    "GU": "Guam",
    "MP": "Northern Mariana Islands",
    "PR": "Puerto Rico",
    "VI": "U.S. Virgin Islands",
    "UM": "U.S. Minor Outlying Islands",
    "AA": "Armed Forces Americas",
    "AE": "Armed Forces Europe",
    "AP": "Armed Forces Pacific",
}
_STATE_NAMES: Final = frozenset(name.casefold() for name in _US_STATES.values())
_US_ZIP_RE: Final = re.compile(r"\d{5}(?:-?\d{4})?")
_CA_POSTAL_RE: Final = re.compile(
    r"[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z][ -]?\d[ABCEGHJ-NPRSTV-Z]\d", re.IGNORECASE
)
_URL_VALIDATOR: Final = URLValidator(schemes=["http", "https"])

try:
    # The parser behind `re`; used only to spot nested quantifiers, and skipped
    # (the length caps still apply) should a Python version move it.
    _sre_parser: Any = importlib.import_module("re._parser")
except ImportError:  # pragma: no cover
    _sre_parser = None


class _RuleError(Exception):
    """The rule cannot be applied (a bad rhv): it fails, whatever its operator."""


# Values -----------------------------------------------------------------------


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        return not value
    return False


def _text(value: Any, depth: int = 0) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        if depth > 8:
            return "…"
        if isinstance(value, Mapping):
            return ", ".join(
                f"{_text(k, depth + 1)}: {_text(v, depth + 1)}"
                for k, v in value.items()
            )
        return ", ".join(_text(item, depth + 1) for item in value)
    try:
        return str(value)
    except ValueError:  # an int too long to print
        return "…"


def _fold(value: Any) -> str:
    return _text(value).strip().casefold()


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int):
        return Decimal(value) if value.bit_length() < 1000 else None
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        if len(text) <= 100 and _NUMBER_RE.fullmatch(text):
            return Decimal(text)
    return None


def _compare(left: Any, right: Any) -> int:
    """-1, 0 or 1: numerically when both sides are numbers, else by folded text."""
    x, y = _number(left), _number(right)
    if x is not None and y is not None:
        return (x > y) - (x < y)
    a, b = _fold(left), _fold(right)
    return (a > b) - (a < b)


def _equal(left: Any, right: Any) -> bool:
    return _compare(left, right) == 0


def _quote(value: Any, limit: int = 60) -> str:
    text = _text(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return json.dumps(text, ensure_ascii=False)


def _show(value: Any, depth: int = 0) -> str:
    """A value as a reason shows it: blank, a bare number, or quoted text."""
    if _is_blank(value):
        return "blank"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return _text(value)
    if isinstance(value, list | tuple):
        if depth > 2:
            return "[…]"
        shown = [_show(item, depth + 1) for item in value[:5]]
        more = ", …" if len(value) > 5 else ""
        return f"[{', '.join(shown)}{more}]"
    return _quote(value)


def _show_bound(value: Any) -> str:
    """A range bound: bare when it is a number, even one written as text."""
    return _text(value).strip() if _number(value) is not None else _show(value)


def _show_json(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        return _show(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _items(rhv: Any) -> list[Any]:
    """A list rhv: a list, a JSON array in a string, or comma-separated text."""
    if isinstance(rhv, list | tuple):
        return [item for item in rhv if not _is_blank(item)]
    if isinstance(rhv, str):
        text = rhv.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except (ValueError, RecursionError):
                parsed = None
            if isinstance(parsed, list):
                return [item for item in parsed if not _is_blank(item)]
        return [item.strip() for item in text.split(",") if item.strip()]
    return [] if _is_blank(rhv) else [rhv]


def _is_array(rhv: Any) -> bool:
    if isinstance(rhv, list | tuple):
        return True
    if isinstance(rhv, str) and rhv.strip().startswith("["):
        try:
            return isinstance(json.loads(rhv), list)
        except (ValueError, RecursionError):
            return False
    return False


def _range(rhv: Any) -> tuple[Any, Any]:
    """The (low, high) of an `is between` rhv."""
    if isinstance(rhv, str) and (match := _RANGE_RE.fullmatch(rhv)):
        return match.group(1), match.group(2)
    items = _items(rhv) if isinstance(rhv, list | tuple | str) else []
    if len(items) != 2 or any(
        isinstance(item, Mapping | list | tuple) for item in items
    ):
        raise _RuleError(f'invalid range {_show_json(rhv)}: use "10-20" or [10, 20]')
    return items[0], items[1]


def _lookup(variables: Mapping[str, Any], path: str) -> Any:
    """A dotted path into nested mappings and lists; None when it leads nowhere."""
    parts = path.split(".")
    current: Any = variables
    index = 0
    while index < len(parts):
        if isinstance(current, Mapping):
            # Longest key first, so a key that holds dots ("utm.source") is found.
            for end in range(len(parts), index, -1):
                key = ".".join(parts[index:end])
                if key in current:
                    current = current[key]
                    index = end
                    break
            else:
                return None
        elif isinstance(current, list | tuple) and parts[index].isdecimal():
            position = int(parts[index])
            if position >= len(current):
                return None
            current = current[position]
            index += 1
        else:
            return None
    return current


# Patterns ---------------------------------------------------------------------


def _children(value: Any) -> Iterator[Any]:
    if isinstance(value, _sre_parser.SubPattern):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _children(item)


def _nested_repeat(pattern: Any, inside_repeat: bool) -> bool:
    """Whether a backtracking repeat sits inside a repeated group (`(a+)+`)."""
    backtracking = (_sre_parser.MAX_REPEAT, _sre_parser.MIN_REPEAT)
    for op, av in pattern:
        if op == _sre_parser.ATOMIC_GROUP:
            continue  # no backtracking into it
        if op in backtracking:
            _low, high, sub = av
            if inside_repeat and high > 1:
                return True
            if _nested_repeat(sub, inside_repeat or high > 10):
                return True
            continue
        for child in _children(av):
            if _nested_repeat(child, inside_repeat):
                return True
    return False


@lru_cache(maxsize=256)
def _pattern(source: str) -> re.Pattern[str]:
    text = source  # not stripped: spaces are part of a pattern
    flags = re.IGNORECASE
    end = text.rfind("/")
    if text.startswith("/") and end > 0 and set(text[end + 1 :]) <= set("gimsuy"):
        modifiers = text[end + 1 :]
        text = text[1:end]
        if "m" in modifiers:
            flags |= re.MULTILINE
        if "s" in modifiers:
            flags |= re.DOTALL
    if len(text) > MAX_PATTERN_CHARS:
        raise _RuleError(f"pattern is longer than {MAX_PATTERN_CHARS} characters")
    try:
        compiled = re.compile(text, flags)
        nested = _sre_parser is not None and _nested_repeat(
            _sre_parser.parse(text, flags), False
        )
    except (re.error, RecursionError, OverflowError) as exc:
        raise _RuleError(f"invalid pattern {_quote(source)}: {exc}") from None
    if nested:
        raise _RuleError(
            f"pattern {_quote(source)} repeats a repeated group, which can take "
            "exponential time; use an atomic group (?>...) or a possessive a++"
        )
    return compiled


def _matches(value: Any, rhv: Any) -> bool:
    pattern = _pattern(_text(rhv))
    text = _text(value)
    if len(text) > MAX_MATCH_INPUT_CHARS:
        raise _RuleError(
            f"value is longer than {MAX_MATCH_INPUT_CHARS} characters to match"
        )
    return pattern.search(text) is not None


# Formats ----------------------------------------------------------------------


def _field_type(lhv: str) -> str | None:
    """The format `format is valid` checks, from the lhv's last named segment."""
    if templating.is_template(lhv):
        return None
    segments = [part for part in lhv.strip().split(".") if part and not part.isdigit()]
    if not segments:
        return None
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", segments[-1]).lower()
    for kind, pattern in _FIELD_TYPES:
        if pattern.fullmatch(name):
            return kind
    return None


def _format_valid(kind: str | None, value: Any) -> bool:
    if _is_blank(value):
        return False
    if isinstance(value, date) and kind == "date":
        return True
    text = _text(value).strip()
    if len(text) > 2000:
        return False
    if kind == "email":
        try:
            validate_email(text, check_deliverability=False)
        except EmailNotValidError:
            return False
        return True
    if kind == "phone":
        try:
            return phonenumbers.is_valid_number(phonenumbers.parse(text, "US"))
        except phonenumbers.NumberParseException:
            return False
    if kind == "postal code":
        return bool(_US_ZIP_RE.fullmatch(text) or _CA_POSTAL_RE.fullmatch(text))
    if kind == "state":
        return text.upper() in _US_STATES or text.casefold() in _STATE_NAMES
    if kind == "date":
        try:
            datetime.fromisoformat(text)
        except ValueError:
            return False
        return True
    if kind == "url":
        try:
            _URL_VALIDATOR(text)
        except (ValidationError, ValueError):
            return False
        return True
    if kind == "number":
        return _number(text) is not None or bool(_MONEY_RE.fullmatch(text))
    return True


def _truth(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    number = _number(value)
    if number is not None:
        return number != 0
    folded = _fold(value) if isinstance(value, str) else None
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    return None


# Operators --------------------------------------------------------------------


def _holds(op: str, value: Any, rhv: Any, kind: str | None) -> bool:
    """Whether a positive operator holds; raises _RuleError for an unusable rhv."""
    if op == "is equal to":
        return _equal(value, rhv)
    if op in {
        "is less than",
        "is less than or equal to",
        "is greater than",
        "is greater than or equal to",
    }:
        if _is_blank(value) or _is_blank(rhv):
            return False
        order = _compare(value, rhv)
        return {
            "is less than": order < 0,
            "is less than or equal to": order <= 0,
            "is greater than": order > 0,
            "is greater than or equal to": order >= 0,
        }[op]
    if op == "is between":
        low, high = _range(rhv)
        if _is_blank(value) or _is_blank(low) or _is_blank(high):
            return False
        return _compare(value, low) >= 0 and _compare(value, high) <= 0
    if op == "is included in":
        options = _items(rhv)
        values = value if isinstance(value, list | tuple) else [value]
        return any(
            _equal(item, option)
            for item in values
            if not _is_blank(item)
            for option in options
        )
    if op == "includes":
        candidates = _items(rhv) if _is_array(rhv) else [rhv]
        needles = [needle for needle in candidates if not _is_blank(needle)]
        if isinstance(value, list | tuple):
            return any(_equal(item, needle) for item in value for needle in needles)
        if _is_blank(value):
            return False
        haystack = _fold(value)
        return any(_fold(needle) in haystack for needle in needles)
    if op == "matches pattern":
        return _matches(value, rhv)
    if op == "is blank":
        return _is_blank(value)
    if op == "is true":
        return _truth(value) is True
    if op == "is false":
        return _truth(value) is False
    if op == "format is valid":
        return _format_valid(kind, value)
    raise AssertionError(op)  # pragma: no cover - OPERATORS is exhaustive


def _expected(op: str, rhv: Any, kind: str | None) -> str:
    """What a positive operator expected, as the end of a reason."""
    if op in {"is between", "is not between"}:
        low, high = _range(rhv)
        return f"between {_show_bound(low)} and {_show_bound(high)}"
    if op in {"is included in", "is not included in"}:
        return "one of " + (", ".join(_show(item) for item in _items(rhv)) or "[]")
    if op in {"includes", "does not include"}:
        return f"include {_show(rhv)}"
    if op in {"matches pattern", "does not match pattern"}:
        return f"match {_quote(rhv)}"
    if op in {"format is valid", "format is invalid"}:
        return f"a valid {kind or 'value'}"
    if op in UNARY_OPERATORS:  # is (not) blank / true / false
        return op.split()[-1]
    if op in {"is equal to", "is not equal to"}:
        return f"equal to {_show(rhv)}"
    return f"{op.removeprefix('is ')} {_show(rhv)}"


def _apply(op: str, label: str, value: Any, rhv: Any, kind: str | None) -> str | None:
    """None when the rule's condition holds, else the reason it does not."""
    positive = _NEGATIONS.get(op, op)
    holds = _holds(positive, value, rhv, kind)
    negated = positive != op
    if holds != negated:
        return None
    if op == "is not blank":
        return f"{label} is blank"
    expected = _expected(op, rhv, kind)
    if negated:
        verb = "be " if op not in {"does not include", "does not match pattern"} else ""
        if op == "is not equal to":
            expected, verb = f"equal {_show(rhv)}", ""
        return f"{label} is {_show(value)}, but must not {verb}{expected}"
    if op in {"includes", "matches pattern"}:
        return f"{label} is {_show(value)}, which does not {expected}"
    return f"{label} is {_show(value)}, not {expected}"


# Evaluation -------------------------------------------------------------------


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _render(text: Any, variables: Mapping[str, Any]) -> Any:
    if templating.is_template(text):
        try:
            return templating.render(text, variables)
        except templating.TemplateError as exc:
            raise _RuleError(f"template {_quote(text)} failed: {exc}") from None
    return text


def _evaluate_rule(
    rule: Any, variables: Mapping[str, Any], path: str, depth: int
) -> str | None:
    if not isinstance(rule, Mapping):
        return f"{path}: must be an object"
    op, lhv = rule.get("op"), rule.get("lhv")
    if op not in OPERATORS:
        return f"{_at(path, 'op')}: unknown operator {_show_json(op)}"
    if not isinstance(lhv, str) or not lhv.strip():
        return f"{_at(path, 'lhv')}: must be a variable name or a template"
    binary = op not in UNARY_OPERATORS
    if binary and rule.get("rhv") is None:
        return f"{_at(path, 'rhv')}: required with the operator {_quote(op)}"
    try:
        value = (
            _render(lhv, variables)
            if templating.is_template(lhv)
            else _lookup(variables, lhv.strip())
        )
        rhv: Any = None
        if binary:
            rhv = rule["rhv"]
            rhv = (
                [_render(item, variables) for item in rhv]
                if isinstance(rhv, list | tuple)
                else _render(rhv, variables)
            )
        reason = _apply(op, lhv, value, rhv, _field_type(lhv))
    except _RuleError as exc:
        return f"{lhv}: {exc}"
    if reason is not None:
        return reason
    nested = rule.get("rule_set")
    if nested is None or nested == {}:
        return None
    return _evaluate_set(nested, variables, _at(path, "rule_set"), depth + 1)


def _none_passed(reasons: Sequence[str]) -> str:
    if len(reasons) == 1:
        return reasons[0]
    shown = "; ".join(reasons[:5])
    more = f"; and {len(reasons) - 5} more" if len(reasons) > 5 else ""
    return f"none of the rules passed: {shown}{more}"


def _evaluate_set(
    rule_set: Any, variables: Mapping[str, Any], path: str, depth: int
) -> str | None:
    where = path or "rule set"
    if depth > MAX_DEPTH:
        return f"{where}: nested deeper than {MAX_DEPTH} levels"
    if not isinstance(rule_set, Mapping):
        return f"{where}: must be an object"
    op = rule_set.get("op")
    if op is None:
        op = "and"
    if op not in ("and", "or"):
        return f'{_at(path, "op")}: must be "and" or "or", not {_show_json(op)}'
    rules = rule_set.get("rules")
    if rules is None:
        rules = []
    if not isinstance(rules, list | tuple):
        return f"{_at(path, 'rules')}: must be a list"
    reasons: list[str] = []
    for index, item in enumerate(rules):
        item_path = f"{_at(path, 'rules')}[{index}]"
        if isinstance(item, Mapping) and "rules" in item and "lhv" not in item:
            reason = _evaluate_set(item, variables, item_path, depth + 1)
        else:
            reason = _evaluate_rule(item, variables, item_path, depth)
        if reason is None and op == "or":
            return None
        if reason is not None and op == "and":
            return reason
        if reason is not None:
            reasons.append(reason)
    return _none_passed(reasons) if reasons else None


def evaluate(
    rule_set: Mapping[str, Any] | None, variables: Mapping[str, Any]
) -> str | None:
    """None when `rule_set` passes for `variables` (or is empty), else the reason."""
    if not rule_set:
        return None
    return _evaluate_set(rule_set, variables, "", 1)


# Validation -------------------------------------------------------------------


def _validate_template(text: str, path: str, errors: list[str]) -> bool:
    """Record an error for a template that does not render; True if `text` is one."""
    if not templating.is_template(text):
        return False
    problem = templating.validate(text)
    if problem:
        errors.append(f"{path}: {problem}")
    return True


def _validate_rhv(op: str, rhv: Any, path: str, errors: list[str]) -> None:
    scalar = str | int | float | bool
    if isinstance(rhv, list):
        if op not in LIST_OPERATORS:
            errors.append(f"{path}: takes a single value with {_quote(op)}, not a list")
            return
        templated = False
        for index, item in enumerate(rhv):
            if not isinstance(item, scalar):
                errors.append(f"{path}[{index}]: must be text, a number or true/false")
                return
            if isinstance(item, str):
                templated |= _validate_template(item, f"{path}[{index}]", errors)
        if templated:
            return
    elif not isinstance(rhv, scalar):
        errors.append(f"{path}: must be text, a number, true/false or a list")
        return
    elif isinstance(rhv, str) and _validate_template(rhv, path, errors):
        return
    try:
        if op in {"matches pattern", "does not match pattern"}:
            if isinstance(rhv, list):
                errors.append(f"{path}: a pattern must be text")
            else:
                _pattern(_text(rhv))
        elif op in {"is between", "is not between"}:
            low, high = _range(rhv)
            x, y = _number(low), _number(high)
            if x is not None and y is not None and x > y:
                errors.append(
                    f"{path}: the range is reversed ({_show_bound(low)} is greater "
                    f"than {_show_bound(high)})"
                )
        elif op in {"is included in", "is not included in"} and not _items(rhv):
            errors.append(f"{path}: the list is empty")
    except _RuleError as exc:
        errors.append(f"{path}: {exc}")


def _validate_rule(rule: Any, path: str, depth: int, errors: list[str]) -> int:
    if not isinstance(rule, Mapping):
        errors.append(f"{path}: must be an object")
        return 1
    for key in rule:
        if key not in _RULE_KEYS:
            errors.append(f"{_at(path, str(key))}: unknown key")
    lhv = rule.get("lhv")
    if "lhv" not in rule:
        errors.append(f"{_at(path, 'lhv')}: required")
    elif not isinstance(lhv, str) or not lhv.strip():
        errors.append(f"{_at(path, 'lhv')}: must be a variable name or a template")
    else:
        _validate_template(lhv, _at(path, "lhv"), errors)
    op = rule.get("op")
    if "op" not in rule:
        errors.append(f"{_at(path, 'op')}: required")
    elif op not in OPERATORS:
        errors.append(f"{_at(path, 'op')}: unknown operator {_show_json(op)}")
    else:
        rhv = rule.get("rhv")
        if op in UNARY_OPERATORS:
            if rhv not in (None, "", []):
                errors.append(
                    f"{_at(path, 'rhv')}: not used with the operator {_quote(op)}"
                )
        elif rhv is None:
            errors.append(
                f"{_at(path, 'rhv')}: required with the operator {_quote(op)}"
            )
        else:
            _validate_rhv(op, rhv, _at(path, "rhv"), errors)
    nested = rule.get("rule_set")
    if nested is None or nested == {}:
        return 1
    return 1 + _validate_set(nested, _at(path, "rule_set"), depth + 1, errors)


def _validate_set(rule_set: Any, path: str, depth: int, errors: list[str]) -> int:
    """Record the set's errors; return how many rules it holds."""
    where = path or "rule set"
    if not isinstance(rule_set, Mapping):
        errors.append(f"{where}: must be an object")
        return 0
    if depth > MAX_DEPTH:
        errors.append(f"{where}: nested deeper than {MAX_DEPTH} levels")
        return 0
    for key in rule_set:
        if key not in _SET_KEYS:
            errors.append(f"{_at(path, str(key))}: unknown key")
    op = rule_set.get("op")
    if op is not None and op not in ("and", "or"):
        errors.append(f'{_at(path, "op")}: must be "and" or "or", not {_show_json(op)}')
    rules = rule_set.get("rules")
    if "rules" not in rule_set:
        errors.append(f"{_at(path, 'rules')}: required")
        return 0
    if not isinstance(rules, list):
        errors.append(f"{_at(path, 'rules')}: must be a list")
        return 0
    count = 0
    for index, item in enumerate(rules):
        item_path = f"{_at(path, 'rules')}[{index}]"
        if isinstance(item, Mapping) and "rules" in item and "lhv" not in item:
            count += _validate_set(item, item_path, depth + 1, errors)
        else:
            count += _validate_rule(item, item_path, depth, errors)
    return count


def validate_rule_set(rule_set: object) -> list[str]:
    """The structural errors of a rule set, each prefixed with its JSON-ish path.

    None and {} (no criteria) are valid. Used on admin save and config import.
    """
    if rule_set is None or rule_set == {}:
        return []
    errors: list[str] = []
    count = _validate_set(rule_set, "", 1, errors)
    if count > MAX_RULES:
        errors.append(f"rules: {count} rules, more than the {MAX_RULES} allowed")
    return errors
