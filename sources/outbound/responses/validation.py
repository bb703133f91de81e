"""Checking a response spec before it is saved."""

import re

from lxml import etree

from sources.outbound.responses.reading import css_selector
from sources.outbound.responses.spec import (
    MAX_EXPRESSION_LENGTH,
    PathError,
    ResponseSpec,
    compile_pattern,
    term_pattern,
)
from sources.outbound.types import (
    Outcome,
)

_DOT_SEGMENT = re.compile(r"\*|-?\d+|[\w\-$@# ]+")


def validate_response_spec(spec: ResponseSpec) -> list[str]:
    """Problems with a spec, one sentence each naming the field; empty when fine.

    Paths are checked against every syntax they might be read with, since the
    body type is only known when the answer arrives.
    """
    problems: list[str] = []
    for name in (
        "outcome_search_term",
        "outcome_search_path",
        "reason_path",
        "default_reason",
        "reference_path",
    ):
        value = getattr(spec, name)
        if not isinstance(value, str):
            problems.append(f"{name} must be text.")
        elif len(value) > MAX_EXPRESSION_LENGTH:
            problems.append(
                f"{name} is longer than {MAX_EXPRESSION_LENGTH} characters."
            )
    if problems:
        return problems

    if spec.outcome_on_match not in set(Outcome):
        problems.append(
            "outcome_on_match must be one of "
            + ", ".join(outcome.value for outcome in Outcome)
            + "."
        )
    if spec.outcome_search_term:
        try:
            term_pattern(spec.outcome_search_term)
        except ValueError as exc:
            detail = str(exc).removeprefix("outcome_search_term: ")
            problems.append(
                f"outcome_search_term is not a valid regular expression: {detail}."
            )
    for name, regex_allowed in (
        ("outcome_search_path", False),
        ("reason_path", True),
        ("reference_path", True),
    ):
        path = getattr(spec, name)
        if path and (problem := _path_problem(path, regex_allowed=regex_allowed)):
            problems.append(f"{name} {problem}.")
    return problems


def _path_problem(path: str, *, regex_allowed: bool) -> str:
    dotted = path.removeprefix("$").removeprefix(".")
    if all(_DOT_SEGMENT.fullmatch(segment) for segment in dotted.split(".")):
        return ""
    try:
        etree.XPath(path, regexp=False)
    except etree.XPathSyntaxError as exc:
        xpath_error = str(exc)
    else:
        return ""
    try:
        css_selector(path)
    except PathError as exc:
        css_error = str(exc)
    else:
        return ""
    if regex_allowed:
        try:
            compile_pattern(path)
        except re.error:
            pass
        else:
            return ""
    kinds = "dot path, XPath or CSS selector" + (" (or regex)" if regex_allowed else "")
    return f"is not a valid {kinds}: XPath says {xpath_error}; CSS says {css_error}"
