"""Reading rule values: text, numbers, lists and ranges, variable paths, safe
patterns, and the formats `format is valid` knows."""

import importlib
import json
import math
import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from email_validator import EmailNotValidError, validate_email

from sources import templating
from sources.rules.vocabulary import MAX_MATCH_INPUT_CHARS, MAX_PATTERN_CHARS

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
            r"(?:\w+_)?(?:date|dob|birth_?date|birthday|timestamp)(?:_\w+)?|\w+at_path",
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


class RuleError(Exception):
    """The rule cannot be applied (a bad rhv): it fails, whatever its operator."""


def is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        return not value
    return False


def as_text(value: Any, depth: int = 0) -> str:
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
                f"{as_text(k, depth + 1)}: {as_text(v, depth + 1)}"
                for k, v in value.items()
            )
        return ", ".join(as_text(item, depth + 1) for item in value)
    try:
        return str(value)
    except ValueError:  # an int too long to print
        return "…"


def fold_text(value: Any) -> str:
    return as_text(value).strip().casefold()


def as_number(value: Any) -> Decimal | None:
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


def compare_values(left: Any, right: Any) -> int:
    """-1, 0 or 1: numerically when both sides are numbers, else by folded text."""
    x, y = as_number(left), as_number(right)
    if x is not None and y is not None:
        return (x > y) - (x < y)
    a, b = fold_text(left), fold_text(right)
    return (a > b) - (a < b)


def values_equal(left: Any, right: Any) -> bool:
    return compare_values(left, right) == 0


def quote(value: Any, limit: int = 60) -> str:
    text = as_text(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return json.dumps(text, ensure_ascii=False)


def show(value: Any, depth: int = 0) -> str:
    """A value as a reason shows it: blank, a bare number, or quoted text."""
    if is_blank(value):
        return "blank"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return as_text(value)
    if isinstance(value, list | tuple):
        if depth > 2:
            return "[…]"
        shown = [show(item, depth + 1) for item in value[:5]]
        more = ", …" if len(value) > 5 else ""
        return f"[{', '.join(shown)}{more}]"
    return quote(value)


def show_bound(value: Any) -> str:
    """A range bound: bare when it is a number, even one written as text."""
    return as_text(value).strip() if as_number(value) is not None else show(value)


def show_json(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        return show(value)
    return text if len(text) <= 60 else text[:59] + "…"


def list_items(rhv: Any) -> list[Any]:
    """A list rhv: a list, a JSON array in a string, or comma-separated text."""
    if isinstance(rhv, list | tuple):
        return [item for item in rhv if not is_blank(item)]
    if isinstance(rhv, str):
        text = rhv.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except (ValueError, RecursionError):
                parsed = None
            if isinstance(parsed, list):
                return [item for item in parsed if not is_blank(item)]
        return [item.strip() for item in text.split(",") if item.strip()]
    return [] if is_blank(rhv) else [rhv]


def is_array(rhv: Any) -> bool:
    if isinstance(rhv, list | tuple):
        return True
    if isinstance(rhv, str) and rhv.strip().startswith("["):
        try:
            return isinstance(json.loads(rhv), list)
        except (ValueError, RecursionError):
            return False
    return False


def range_bounds(rhv: Any) -> tuple[Any, Any]:
    """The (low, high) of an `is between` rhv."""
    if isinstance(rhv, str) and (match := _RANGE_RE.fullmatch(rhv)):
        return match.group(1), match.group(2)
    items = list_items(rhv) if isinstance(rhv, list | tuple | str) else []
    if len(items) != 2 or any(
        isinstance(item, Mapping | list | tuple) for item in items
    ):
        raise RuleError(f'invalid range {show_json(rhv)}: use "10-20" or [10, 20]')
    return items[0], items[1]


def lookup(variables: Mapping[str, Any], path: str) -> Any:
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
def compiled_pattern(source: str) -> re.Pattern[str]:
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
        raise RuleError(f"pattern is longer than {MAX_PATTERN_CHARS} characters")
    try:
        compiled = re.compile(text, flags)
        nested = _sre_parser is not None and _nested_repeat(
            _sre_parser.parse(text, flags), False
        )
    except (re.error, RecursionError, OverflowError) as exc:
        raise RuleError(f"invalid pattern {quote(source)}: {exc}") from None
    if nested:
        raise RuleError(
            f"pattern {quote(source)} repeats a repeated group, which can take "
            "exponential time; use an atomic group (?>...) or a possessive a++"
        )
    return compiled


def pattern_matches(value: Any, rhv: Any) -> bool:
    pattern = compiled_pattern(as_text(rhv))
    text = as_text(value)
    if len(text) > MAX_MATCH_INPUT_CHARS:
        raise RuleError(
            f"value is longer than {MAX_MATCH_INPUT_CHARS} characters to match"
        )
    return pattern.search(text) is not None


def field_type_of(lhv: str) -> str | None:
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


def format_valid(kind: str | None, value: Any) -> bool:
    if is_blank(value):
        return False
    if isinstance(value, date) and kind == "date":
        return True
    text = as_text(value).strip()
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
        return as_number(text) is not None or bool(_MONEY_RE.fullmatch(text))
    return True


def truth(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    number = as_number(value)
    if number is not None:
        return number != 0
    folded = fold_text(value) if isinstance(value, str) else None
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    return None
