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
