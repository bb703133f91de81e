"""Evaluating a rule set: each operator, each rule, and the sets around them."""

from collections.abc import Mapping, Sequence
from typing import Any

from sources import templating
from sources.rules.values import (
    RuleError,
    compare_values,
    field_type_of,
    fold_text,
    format_valid,
    is_array,
    is_blank,
    list_items,
    lookup,
    pattern_matches,
    quote,
    range_bounds,
    show,
    show_bound,
    show_json,
    truth,
    values_equal,
)
from sources.rules.vocabulary import MAX_DEPTH, NEGATIONS, OPERATORS, UNARY_OPERATORS


def _holds(op: str, value: Any, rhv: Any, kind: str | None) -> bool:
    """Whether a positive operator holds; raises RuleError for an unusable rhv."""
    if op == "is equal to":
        return values_equal(value, rhv)
    if op in {
        "is less than",
        "is less than or equal to",
        "is greater than",
        "is greater than or equal to",
    }:
        if is_blank(value) or is_blank(rhv):
            return False
        order = compare_values(value, rhv)
        return {
            "is less than": order < 0,
            "is less than or equal to": order <= 0,
            "is greater than": order > 0,
            "is greater than or equal to": order >= 0,
        }[op]
    if op == "is between":
        low, high = range_bounds(rhv)
        if is_blank(value) or is_blank(low) or is_blank(high):
            return False
        return compare_values(value, low) >= 0 and compare_values(value, high) <= 0
    if op == "is included in":
        options = list_items(rhv)
        values = value if isinstance(value, list | tuple) else [value]
        return any(
            values_equal(item, option)
            for item in values
            if not is_blank(item)
            for option in options
        )
    if op == "includes":
        candidates = list_items(rhv) if is_array(rhv) else [rhv]
        needles = [needle for needle in candidates if not is_blank(needle)]
        if isinstance(value, list | tuple):
            return any(
                values_equal(item, needle) for item in value for needle in needles
            )
        if is_blank(value):
            return False
        haystack = fold_text(value)
        return any(fold_text(needle) in haystack for needle in needles)
    if op == "matches pattern":
        return pattern_matches(value, rhv)
    if op == "is blank":
        return is_blank(value)
    if op == "is true":
        return truth(value) is True
    if op == "is false":
        return truth(value) is False
    if op == "format is valid":
        return format_valid(kind, value)
    raise AssertionError(op)  # pragma: no cover - OPERATORS is exhaustive


def _expected(op: str, rhv: Any, kind: str | None) -> str:
    """What a positive operator expected, as the end of a reason."""
    if op in {"is between", "is not between"}:
        low, high = range_bounds(rhv)
        return f"between {show_bound(low)} and {show_bound(high)}"
    if op in {"is included in", "is not included in"}:
        return "one of " + (", ".join(show(item) for item in list_items(rhv)) or "[]")
    if op in {"includes", "does not include"}:
        return f"include {show(rhv)}"
    if op in {"matches pattern", "does not match pattern"}:
        return f"match {quote(rhv)}"
    if op in {"format is valid", "format is invalid"}:
        return f"a valid {kind or 'value'}"
    if op in UNARY_OPERATORS:  # is (not) blank / true / false
        return op.split()[-1]
    if op in {"is equal to", "is not equal to"}:
        return f"equal to {show(rhv)}"
    return f"{op.removeprefix('is ')} {show(rhv)}"


def _apply(op: str, label: str, value: Any, rhv: Any, kind: str | None) -> str | None:
    """None when the rule's condition holds, else the reason it does not."""
    positive = NEGATIONS.get(op, op)
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
            expected, verb = f"equal {show(rhv)}", ""
        return f"{label} is {show(value)}, but must not {verb}{expected}"
    if op in {"includes", "matches pattern"}:
        return f"{label} is {show(value)}, which does not {expected}"
    return f"{label} is {show(value)}, not {expected}"


def at_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _render(text: Any, variables: Mapping[str, Any]) -> Any:
    if templating.is_template(text):
        try:
            return templating.render(text, variables)
        except templating.TemplateError as exc:
            raise RuleError(f"template {quote(text)} failed: {exc}") from None
    return text


def _evaluate_rule(
    rule: Any, variables: Mapping[str, Any], path: str, depth: int
) -> str | None:
    if not isinstance(rule, Mapping):
        return f"{path}: must be an object"
    op, lhv = rule.get("op"), rule.get("lhv")
    if op not in OPERATORS:
        return f"{at_path(path, 'op')}: unknown operator {show_json(op)}"
    if not isinstance(lhv, str) or not lhv.strip():
        return f"{at_path(path, 'lhv')}: must be a variable name or a template"
    binary = op not in UNARY_OPERATORS
    if binary and rule.get("rhv") is None:
        return f"{at_path(path, 'rhv')}: required with the operator {quote(op)}"
    try:
        value = (
            _render(lhv, variables)
            if templating.is_template(lhv)
            else lookup(variables, lhv.strip())
        )
        rhv: Any = None
        if binary:
            rhv = rule["rhv"]
            rhv = (
                [_render(item, variables) for item in rhv]
                if isinstance(rhv, list | tuple)
                else _render(rhv, variables)
            )
        reason = _apply(op, lhv, value, rhv, field_type_of(lhv))
    except RuleError as exc:
        return f"{lhv}: {exc}"
    if reason is not None:
        return reason
    nested = rule.get("rule_set")
    if nested is None or nested == {}:
        return None
    return _evaluate_set(nested, variables, at_path(path, "rule_set"), depth + 1)


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
        return f'{at_path(path, "op")}: must be "and" or "or", not {show_json(op)}'
    rules = rule_set.get("rules")
    if rules is None:
        rules = []
    if not isinstance(rules, list | tuple):
        return f"{at_path(path, 'rules')}: must be a list"
    reasons: list[str] = []
    for index, item in enumerate(rules):
        item_path = f"{at_path(path, 'rules')}[{index}]"
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
