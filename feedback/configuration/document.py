"""The whole configuration document: reading it, its schema, validating it,
exporting and importing it (DESIGN §9).

`config_import` validates the whole document (JSON Schema, then the checks a
schema cannot express) and only then creates or updates buyers and sources by
slug, in one transaction. Buyers come from buyers.py, sources from
sources/configuration/.
"""

import copy
import functools
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from enum import StrEnum
from typing import Any

from django.db import transaction
from jsonschema import Draft202012Validator

from feedback.audit.services import audit_config_change
from feedback.configuration.buyers import (
    buyer_document,
    buyer_from_input,
    buyer_problems,
    buyer_save,
    buyer_schema,
    buyers_with_policies,
)
from feedback.configuration.secrets import redact_secrets, restore_secrets
from feedback.configuration.sections import Section, sections
from feedback.models import Flow
from feedback.services import flow_get_or_create
from sources.configuration.base import (
    RULE_OPERATORS,
    Document,
    JsonPath,
    Problem,
    dict_items,
    json_path,
    object_schema,
    path_order,
    slug_problem,
)
from sources.configuration.checks import source_problems
from sources.configuration.documents import (
    source_document,
    source_from_input,
    source_save,
    sources_with_configs,
)
from sources.configuration.schema import source_schema

# Problems ---------------------------------------------------------------------


class ConfigurationError(Exception):
    """The document is invalid; nothing was written."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


# Reading and writing the text -------------------------------------------------


def config_dumps(document: Document) -> str:
    """The document as pretty-printed JSON ending in a newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def config_loads(text: str) -> object:
    """Parse JSON text; raises ConfigurationError with the line and column."""

    def refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # json keeps the last of two equal keys; in a reviewed config file the
        # first one silently losing is a mistake worth refusing.
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ValueError(f"duplicate key {key!r} in one object")
            result[key] = value
        return result

    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON value")

    try:
        return json.loads(
            text,
            object_pairs_hook=refuse_duplicate_keys,
            parse_constant=refuse_constant,
        )
    except json.JSONDecodeError as exc:
        message = f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise ConfigurationError([Problem((), message)]) from None
    except ValueError as exc:
        raise ConfigurationError([Problem((), f"not valid JSON: {exc}")]) from None
    except RecursionError:
        raise ConfigurationError([Problem((), "nested too deeply")]) from None


# The schema -------------------------------------------------------------------


def _rule_set_definitions() -> Document:
    return {
        "rule_set": {
            "properties": {
                "op": {"enum": ["and", "or"]},
                "rules": {"type": "array", "items": {"$ref": "#/$defs/rule"}},
            },
            "required": ["rules"],
            "additionalProperties": False,
        },
        "rule": object_schema(
            {
                "lhv": {"type": "string", "minLength": 1},
                "op": {"enum": list(RULE_OPERATORS)},
                "rhv": {"type": ["string", "number", "boolean", "array", "null"]},
                "rule_set": {"type": "object", "$ref": "#/$defs/rule_set"},
            },
            required=["lhv", "op"],
        ),
    }


def config_schema() -> Document:
    """The JSON Schema (Draft 2020-12) of the whole configuration document."""
    schema = object_schema(
        {
            "buyers": {"type": "array", "items": buyer_schema()},
            "sources": {"type": "array", "items": source_schema()},
            **{
                section.key: {"type": "array", "items": section.item_schema()}
                for section in sections()
            },
        }
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": _rule_set_definitions(),
        **schema,
    }


@functools.cache
def _validator() -> Draft202012Validator:
    # Built on first use: the sections register themselves when the apps are ready.
    return Draft202012Validator(config_schema())


# Validation -------------------------------------------------------------------


# Far deeper than any real document (a rule set nested ten times is about 35
# levels), and shallow enough that the recursive validators cannot overflow.
MAX_DEPTH = 64


def config_validate(*, document: object) -> list[Problem]:
    """Every problem in the document, in path order; empty when it is valid."""
    too_deep = _too_deep(document)
    if too_deep is not None:
        return [Problem(too_deep, f"nested more than {MAX_DEPTH} levels deep")]
    schema_problems = _schema_problems(document)
    refused = {problem.path for problem in schema_problems}
    # Where the schema has refused a value (or something inside it), its
    # message says what to fix; a rule on the same value would only repeat it.
    problems = schema_problems + [
        problem
        for problem in _semantic_problems(document, refused)
        if not any(where[: len(problem.path)] == problem.path for where in refused)
    ]
    unique = dict.fromkeys(problems)  # keeps order, drops repeats
    return sorted(unique, key=path_order)


def _too_deep(document: object) -> JsonPath | None:
    """The path of the first value nested deeper than MAX_DEPTH, if any."""
    stack: list[tuple[object, JsonPath]] = [(document, ())]
    while stack:
        node, path = stack.pop()
        if len(path) > MAX_DEPTH:
            return path
        if isinstance(node, dict):
            stack.extend((value, (*path, key)) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, (*path, index)) for index, value in enumerate(node))
    return None


_SCHEMA_TYPES = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "boolean": "a boolean",
    "integer": "a whole number",
    "number": "a number",
    "null": "null",
}
_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}


def _schema_problems(document: object) -> list[Problem]:
    problems: list[Problem] = []
    for error in _validator().iter_errors(document):
        path: JsonPath = tuple(error.absolute_path)
        instance = error.instance
        if error.validator == "additionalProperties" and error.validator_value is False:
            known = list(error.schema.get("properties", {}))
            for key in instance:
                if key not in known:
                    problems.append(Problem((*path, key), _unknown_key(key, known)))
        elif error.validator == "required":
            for key in error.validator_value:
                if key not in instance:
                    problems.append(Problem((*path, key), "is required"))
        elif error.validator == "const":
            # Only the tag of a tagged_schema variant uses const, and the enum on the
            # tag already reports a wrong value.
            continue
        else:
            problems.append(Problem(path, _schema_message(error)))
    return problems


def _schema_message(error: Any) -> str:
    """jsonschema's message, reworded where it would quote a large value."""
    limit = error.validator_value
    match error.validator:
        case "type":
            expected = [limit] if isinstance(limit, str) else limit
            names = " or ".join(_SCHEMA_TYPES[name] for name in expected)
            actual = _JSON_TYPES.get(type(error.instance), "something else")
            return f"must be {names}, not {actual}"
        case "enum":
            choices = ", ".join(json.dumps(choice) for choice in limit)
            return f"must be one of {choices}; not {json.dumps(error.instance)}"
        case "minLength" | "minItems":
            return "must not be empty"
        case "maxLength":
            return f"must be at most {limit} characters"
        case "minimum":
            return f"must be at least {limit}"
        case "maximum":
            return f"must be at most {limit}"
        case "exclusiveMinimum":
            return f"must be more than {limit}"
    return str(error.schema.get("x-message") or error.message)


def _unknown_key(key: str, known: list[str]) -> str:
    close = get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    allowed = ", ".join(known) if known else "none"
    return f"unknown key ({hint}allowed: {allowed})"


def _semantic_problems(
    document: object, refused: Collection[JsonPath] = ()
) -> list[Problem]:
    """What JSON Schema cannot say. Written defensively: the schema may have failed."""
    if not isinstance(document, dict):
        return []
    problems: list[Problem] = []
    for key in ("buyers", "sources", *(section.key for section in sections())):
        problems += _slug_problems(document.get(key), key)
    for index, buyer in dict_items(document.get("buyers")):
        problems += buyer_problems(buyer, ("buyers", index))
    for index, source in dict_items(document.get("sources")):
        problems += source_problems(source, ("sources", index), refused=refused)
    for section in sections():
        for index, item in dict_items(document.get(section.key)):
            problems += section.problems(item, (section.key, index), document)
    return problems


def _slug_problems(items: object, section: str) -> list[Problem]:
    problems: list[Problem] = []
    first_seen: dict[str, int] = {}
    for index, item in dict_items(items):
        slug = item.get("slug")
        path: JsonPath = (section, index, "slug")
        problems += slug_problem(slug, path)
        if not isinstance(slug, str):
            continue
        if slug in first_seen:
            earlier = json_path((section, first_seen[slug], "slug"))
            problems.append(
                Problem(path, f"duplicate slug {slug!r} (first used at {earlier})")
            )
        else:
            first_seen[slug] = index
    return problems


# Export -----------------------------------------------------------------------


def config_export(*, include_secrets: bool = False) -> Document:
    """Buyers and sources as a configuration document, each list ordered by slug."""
    document: Document = {
        "buyers": [
            buyer_document(buyer) for buyer in buyers_with_policies().order_by("slug")
        ],
        "sources": [
            source_document(source)
            for source in sources_with_configs().order_by("slug")
        ],
    }
    for section in sections():
        # A section appears once it has items, so a document without any still
        # reads as before.
        items = section.export()
        if items:
            document[section.key] = items
    return document if include_secrets else redact_secrets(document)


# Import -----------------------------------------------------------------------


class Action(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Change:
    """What import did (or, on a check, would do) to one buyer or source."""

    entity: str  # "buyer", "source" or a section's entity
    slug: str
    action: Action
    fields: tuple[str, ...] = ()  # the top-level keys that differ, when updated

    def __str__(self) -> str:
        detail = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{self.entity} {self.slug}: {self.action}{detail}"


@dataclass
class ImportReport:
    dry_run: bool
    changes: list[Change] = field(default_factory=list)
    flows_created: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def count(self, entity: str, action: Action) -> int:
        return sum(1 for c in self.changes if c.entity == entity and c.action == action)

    def summary(self) -> str:
        parts = []
        entities = [("buyer", "Buyers"), ("source", "Sources")] + [
            (section.entity, section.label)
            for section in sections()
            if any(change.entity == section.entity for change in self.changes)
        ]
        for entity, label in entities:
            counts = ", ".join(
                f"{self.count(entity, action)} {action}" for action in Action
            )
            parts.append(f"{label}: {counts}.")
        if self.flows_created:
            verb = "to create" if self.dry_run else "created"
            parts.append(f"Flows {verb}: {', '.join(self.flows_created)}.")
        if self.dry_run:
            parts.append("Check only: nothing was written.")
        return " ".join(parts)


def _compare(entity: str, desired: Document, current: Document | None) -> Change:
    if current is None:
        return Change(entity, desired["slug"], Action.CREATED)
    changed = tuple(key for key in desired if desired[key] != current.get(key))
    action = Action.UPDATED if changed else Action.UNCHANGED
    return Change(entity, desired["slug"], action, changed)


def config_import(*, document: object, dry_run: bool) -> ImportReport:
    """Create or update buyers, sources and every section's items by slug.

    Raises ConfigurationError listing every problem, and writes nothing, unless
    the whole document is valid. With `dry_run` it only reports what would change.
    Items the document does not mention are left alone.
    """
    problems = config_validate(document=document)
    if problems or not isinstance(document, dict):  # the schema refuses non-objects
        raise ConfigurationError(problems)
    document = copy.deepcopy(document)
    report = ImportReport(dry_run=dry_run)

    buyer_items: list[Document] = document.get("buyers", [])
    source_items: list[Document] = document.get("sources", [])
    with transaction.atomic():
        buyers = buyers_with_policies().filter(
            slug__in=[item["slug"] for item in buyer_items]
        )
        sources = sources_with_configs().filter(
            slug__in=[item["slug"] for item in source_items]
        )
        if not dry_run:
            # Compare and write against rows nobody else changes meanwhile.
            buyers = buyers.select_for_update()
            sources = sources.select_for_update()
        buyer_rows = {buyer.slug: buyer for buyer in buyers}
        source_rows = {source.slug: source for source in sources}
        current_buyers = {s: buyer_document(b) for s, b in buyer_rows.items()}
        current_sources = {s: source_document(r) for s, r in source_rows.items()}

        section_items: dict[str, list[Document]] = {
            section.key: document.get(section.key, []) for section in sections()
        }
        current_sections = {
            section.key: section.current(
                [item["slug"] for item in section_items[section.key]], not dry_run
            )
            for section in sections()
        }
        problems = restore_secrets(
            document,
            stored={
                "buyers": list(current_buyers.values()),
                "sources": list(current_sources.values()),
                **{
                    key: list(current.values())
                    for key, current in current_sections.items()
                },
            },
        )
        if problems:
            raise ConfigurationError(sorted(problems, key=path_order))

        buyer_plan = []
        for item in buyer_items:
            desired = buyer_from_input(item)
            change = _compare("buyer", desired, current_buyers.get(desired["slug"]))
            report.changes.append(change)
            buyer_plan.append((desired, change))
        source_plan = []
        for item in source_items:
            desired = source_from_input(item)
            change = _compare("source", desired, current_sources.get(desired["slug"]))
            report.changes.append(change)
            source_plan.append((desired, change))
        section_plan: list[tuple[Section, Document, Change]] = []
        for section in sections():
            current = current_sections[section.key]
            for item in section_items[section.key]:
                desired = section.normalise(item)
                change = _compare(section.entity, desired, current.get(desired["slug"]))
                report.changes.append(change)
                section_plan.append((section, desired, change))

        wanted_flows = sorted(
            {
                entry["flow"]
                for desired, change in buyer_plan
                if change.action != Action.UNCHANGED
                for entry in desired["flow_policies"]
            }
        )
        flows = {flow.slug: flow for flow in Flow.objects.filter(slug__in=wanted_flows)}
        report.flows_created = [slug for slug in wanted_flows if slug not in flows]
        if dry_run:
            return report

        for slug in report.flows_created:
            flows[slug] = flow_get_or_create(slug=slug)
        for desired, change in buyer_plan:
            if change.action != Action.UNCHANGED:
                buyer_save(desired, buyer_rows.get(desired["slug"]), flows=flows)
        for desired, change in source_plan:
            if change.action != Action.UNCHANGED:
                source_save(desired, source_rows.get(desired["slug"]))
        for section, desired, change in section_plan:
            if change.action != Action.UNCHANGED:
                section.save(desired)
        for slug in report.flows_created:
            audit_config_change(entity="flow", slug=slug, created=True, fields=())
        for change in report.changes:
            if change.action != Action.UNCHANGED:
                audit_config_change(
                    entity=change.entity,
                    slug=change.slug,
                    created=change.action == Action.CREATED,
                    fields=change.fields,
                )
    return report
