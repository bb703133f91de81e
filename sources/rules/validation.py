"""Checking a rule set before it is saved, with the path of each problem."""

from collections.abc import Mapping
from typing import Any

from sources import templating
from sources.rules.engine import at_path
from sources.rules.values import (
    RuleError,
    as_number,
    as_text,
    compiled_pattern,
    list_items,
    quote,
    range_bounds,
    show_bound,
    show_json,
)
from sources.rules.vocabulary import (
    LIST_OPERATORS,
    MAX_DEPTH,
    MAX_RULES,
    OPERATORS,
    RULE_KEYS,
    SET_KEYS,
    UNARY_OPERATORS,
)


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
            errors.append(f"{path}: takes a single value with {quote(op)}, not a list")
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
                compiled_pattern(as_text(rhv))
        elif op in {"is between", "is not between"}:
            low, high = range_bounds(rhv)
            x, y = as_number(low), as_number(high)
            if x is not None and y is not None and x > y:
                errors.append(
                    f"{path}: the range is reversed ({show_bound(low)} is greater "
                    f"than {show_bound(high)})"
                )
        elif op in {"is included in", "is not included in"} and not list_items(rhv):
            errors.append(f"{path}: the list is empty")
    except RuleError as exc:
        errors.append(f"{path}: {exc}")


def _validate_rule(rule: Any, path: str, depth: int, errors: list[str]) -> int:
    if not isinstance(rule, Mapping):
        errors.append(f"{path}: must be an object")
        return 1
    for key in rule:
        if key not in RULE_KEYS:
            errors.append(f"{at_path(path, str(key))}: unknown key")
    lhv = rule.get("lhv")
    if "lhv" not in rule:
        errors.append(f"{at_path(path, 'lhv')}: required")
    elif not isinstance(lhv, str) or not lhv.strip():
        errors.append(f"{at_path(path, 'lhv')}: must be a variable name or a template")
    else:
        _validate_template(lhv, at_path(path, "lhv"), errors)
    op = rule.get("op")
    if "op" not in rule:
        errors.append(f"{at_path(path, 'op')}: required")
    elif op not in OPERATORS:
        errors.append(f"{at_path(path, 'op')}: unknown operator {show_json(op)}")
    else:
        rhv = rule.get("rhv")
        if op in UNARY_OPERATORS:
            if rhv not in (None, "", []):
                errors.append(
                    f"{at_path(path, 'rhv')}: not used with the operator {quote(op)}"
                )
        elif rhv is None:
            errors.append(
                f"{at_path(path, 'rhv')}: required with the operator {quote(op)}"
            )
        else:
            _validate_rhv(op, rhv, at_path(path, "rhv"), errors)
    nested = rule.get("rule_set")
    if nested is None or nested == {}:
        return 1
    return 1 + _validate_set(nested, at_path(path, "rule_set"), depth + 1, errors)


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
        if key not in SET_KEYS:
            errors.append(f"{at_path(path, str(key))}: unknown key")
    op = rule_set.get("op")
    if op is not None and op not in ("and", "or"):
        errors.append(
            f'{at_path(path, "op")}: must be "and" or "or", not {show_json(op)}'
        )
    rules = rule_set.get("rules")
    if "rules" not in rule_set:
        errors.append(f"{at_path(path, 'rules')}: required")
        return 0
    if not isinstance(rules, list):
        errors.append(f"{at_path(path, 'rules')}: must be a list")
        return 0
    count = 0
    for index, item in enumerate(rules):
        item_path = f"{at_path(path, 'rules')}[{index}]"
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
