"""What both halves of configuration as code share: problems at JSON paths,
schema helpers and the rule-set checks (DESIGN §9).

The sources half lives in this package; the buyers half and the whole document
(validate, export, import) in feedback/configuration/, which builds on this.
"""

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug

from sources import rules
from sources.models import Kind

Document = dict[str, Any]

JsonPath = tuple[str | int, ...]

REDACTED = "<redacted>"

# The order kinds appear in the document (as in DESIGN §9), so exports diff well.
KINDS: tuple[str, ...] = (Kind.RETURN.value, Kind.CONVERSION.value, Kind.STATUS.value)


@dataclass(frozen=True)
class Problem:
    """One reason a document is refused, at a JSON path."""

    path: JsonPath
    message: str

    def __str__(self) -> str:
        return f"{json_path(self.path)}: {self.message}"


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def json_path(path: JsonPath) -> str:
    """`$.sources[1].accepts.return`, quoting keys that are not identifiers."""
    parts = ["$"]
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif _IDENTIFIER.fullmatch(part):
            parts.append(f".{part}")
        else:
            parts.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(parts)


def path_order(problem: Problem) -> tuple[tuple[tuple[int, int | str], ...], str]:
    # At the first differing step both paths are in the same container, but keep
    # ints and strings apart anyway so sorting can never compare the two.
    key = tuple(
        (0, part) if isinstance(part, int) else (1, part) for part in problem.path
    )
    return key, problem.message


SLUG_SCHEMA: Document = {"type": "string", "minLength": 1, "maxLength": 100}

NAME_SCHEMA: Document = {"type": "string", "minLength": 1, "maxLength": 200}

# A rule set or null. The rule_set definition carries no "type", so its object
# keywords simply do not apply to null.
RULES_SCHEMA: Document = {"type": ["object", "null"], "$ref": "#/$defs/rule_set"}

RULE_OPERATORS: tuple[str, ...] = rules.OPERATORS

METHODS: tuple[str, ...] = ("query", "form", "json", "xml", "soap", "batch")

HTTP_METHODS: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH")

WEEKDAYS: tuple[str, ...] = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)


def object_schema(
    properties: Document, *, required: Sequence[str] = (), **extra: Any
) -> Document:
    """An object schema that refuses keys it does not list."""
    schema: Document = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return {**schema, **extra}


def tagged_schema(tag: str, variants: dict[str, Document]) -> Document:
    """An object whose `tag` picks which other keys it may have.

    Each variant is an if/then with its own `additionalProperties: false`, so an
    unknown key is reported against the variant actually chosen.
    """
    return {
        "type": "object",
        "required": [tag],
        "properties": {tag: {"enum": list(variants)}},
        "allOf": [
            {
                "if": {"properties": {tag: {"const": name}}, "required": [tag]},
                "then": object_schema(
                    {tag: {"const": name}, **properties["properties"]},
                    required=properties.get("required", ()),
                ),
            }
            for name, properties in variants.items()
        ],
    }


def dict_items(value: object) -> Iterator[tuple[int, dict[str, Any]]]:
    """The (index, item) pairs of a list's objects; the schema reports the rest."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict):
                yield index, item


_RULE_PATH_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def rule_set_problems(rule_set: object, path: JsonPath) -> list[Problem]:
    """The rules engine's own checks (patterns, ranges, templates, rhv) with paths."""
    if not isinstance(rule_set, dict):
        return []
    return [
        problem
        for message in rules.validate_rule_set(rule_set)
        if (problem := rule_problem(message, path)) is not None
    ]


def rule_problem(message: str, path: JsonPath) -> Problem | None:
    """A rules engine message ("rules[0].rhv: invalid pattern ...") at its place
    under the rule set at `path`; None for an unknown operator, since the schema
    names the allowed operators instead."""
    where, _, text = message.partition(": ")
    if text.startswith("unknown operator"):
        return None
    parts: JsonPath = tuple(
        int(index) if index else name for index, name in _RULE_PATH_PART.findall(where)
    )
    return Problem((*path, *parts), text)


def slug_problem(value: object, path: JsonPath) -> list[Problem]:
    """A slug (a buyer's, a source's, a flow's) the admin would refuse."""
    if not isinstance(value, str) or not value:
        return []
    try:
        validate_slug(value)
    except ValidationError:
        return [
            Problem(path, "must contain only letters, digits, hyphens and underscores")
        ]
    return []


def sorted_json(value: Any) -> Any:
    """Free-form JSON (rule sets) with sorted keys: jsonb reorders keys, SQLite
    does not, and an export must read the same whichever database it came from."""
    if isinstance(value, dict):
        return {key: sorted_json(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_json(item) for item in value]
    return value
