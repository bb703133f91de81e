"""The rule-set vocabulary: operators, which are unary or take lists, limits."""

from collections.abc import Mapping
from typing import Final

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
NEGATIONS: Final[Mapping[str, str]] = {
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


SET_KEYS: Final = frozenset({"op", "rules", "id"})


RULE_KEYS: Final = frozenset({"lhv", "op", "rhv", "rule_set", "id"})
