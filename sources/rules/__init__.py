"""The LeadConduit rule-set engine (DESIGN §5.3): a pure function over JSON.

`evaluate(rule_set, variables)` returns None when the set passes and a readable
reason when it does not, and never raises; `validate_rule_set` lists what is
wrong with a set before it is saved. The operators' meaning, list and range
syntax, templates in `lhv`/`rhv` and the limits are documented for users in
docs/configuration.md, "Rules".
"""

from sources.rules.engine import evaluate
from sources.rules.validation import validate_rule_set
from sources.rules.vocabulary import (
    LIST_OPERATORS,
    MAX_DEPTH,
    MAX_MATCH_INPUT_CHARS,
    MAX_PATTERN_CHARS,
    MAX_RULES,
    OPERATORS,
    UNARY_OPERATORS,
)

__all__ = [
    "LIST_OPERATORS",
    "MAX_DEPTH",
    "MAX_MATCH_INPUT_CHARS",
    "MAX_PATTERN_CHARS",
    "MAX_RULES",
    "OPERATORS",
    "UNARY_OPERATORS",
    "evaluate",
    "validate_rule_set",
]
