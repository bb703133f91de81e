"""Configuration as code (DESIGN §9): buyers and sources as one JSON document.

`config_export` writes the document; `config_import` validates the whole of it
(JSON Schema, then the checks a schema cannot express) and only then creates or
updates buyers and sources by slug, in one transaction. The format is described
in docs/configuration.md.
"""

import copy
import json
import re
import ssl
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import time as dt_time
from difflib import get_close_matches
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError
from django.core.validators import validate_email, validate_slug
from django.db import transaction
from django.db.models import Prefetch, QuerySet
from jsonschema import Draft202012Validator

from feedback.models import Buyer, BuyerPolicy, Flow
from feedback.services import flow_get_or_create
from sources import rules, templating
from sources.models import FeedbackConfig, FieldMapping, Kind, Source
from sources.outbound.building import BuildError, validate_headers
from sources.outbound.responses import ResponseSpec, validate_response_spec
from sources.outbound.signing import SigningSecretError
from sources.outbound.signing import secret_key as signing_secret_key
from sources.transports.batch import SAMPLE_FILE_VARIABLES
from sources.transports.s3 import S3Transport
from sources.transports.sftp import host_key_parse, private_key_parse

Document = dict[str, Any]
JsonPath = tuple[str | int, ...]

REDACTED = "<redacted>"

# Every secret in the document, as a path where "*" stands for each item of a
# list. Export writes REDACTED there unless asked for secrets; import reads
# REDACTED back as "keep the stored value".
SECRET_PATHS: tuple[tuple[str, ...], ...] = (
    ("sources", "*", "feedback", "*", "auth", "password"),
    ("sources", "*", "feedback", "*", "auth", "token"),
    ("sources", "*", "feedback", "*", "auth", "value"),
    ("sources", "*", "feedback", "*", "signing", "secret"),
    ("sources", "*", "feedback", "*", "batch", "transport", "password"),
    ("sources", "*", "feedback", "*", "batch", "transport", "private_key"),
    ("sources", "*", "feedback", "*", "batch", "transport", "secret_access_key"),
)

# The order kinds appear in the document (as in DESIGN §9), so exports diff well.
KINDS: tuple[str, ...] = (Kind.RETURN.value, Kind.CONVERSION.value, Kind.STATUS.value)
DEFAULT_PORTS = {"ftp": 21, "ftps": 21, "sftp": 22}


# Problems ---------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One reason a document is refused, at a JSON path."""

    path: JsonPath
    message: str

    def __str__(self) -> str:
        return f"{json_path(self.path)}: {self.message}"


class ConfigurationError(Exception):
    """The document is invalid; nothing was written."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


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


def _path_order(problem: Problem) -> tuple[tuple[tuple[int, int | str], ...], str]:
    # At the first differing step both paths are in the same container, but keep
    # ints and strings apart anyway so sorting can never compare the two.
    key = tuple(
        (0, part) if isinstance(part, int) else (1, part) for part in problem.path
    )
    return key, problem.message


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


# Secrets ----------------------------------------------------------------------


def redact_secrets(
    document: Document, *, paths: Sequence[Sequence[str]] | None = None
) -> Document:
    """A copy of the document with every non-empty secret replaced by REDACTED."""
    redacted = copy.deepcopy(document)
    for pattern in SECRET_PATHS if paths is None else paths:
        for parent, key in _secret_slots(redacted, tuple(pattern)):
            value = parent[key]
            if isinstance(value, str) and value:
                parent[key] = REDACTED
    return redacted


def restore_secrets(
    document: Document,
    *,
    stored: Document,
    paths: Sequence[Sequence[str]] | None = None,
) -> list[Problem]:
    """Replace REDACTED secrets in `document`, in place, with the stored values.

    List items are matched by slug when they have one, else by position. A
    REDACTED secret with nothing stored behind it is a problem.
    """
    problems: list[Problem] = []
    for pattern in SECRET_PATHS if paths is None else paths:
        _restore(document, stored, tuple(pattern), (), problems)
    return problems


def _secret_slots(node: Any, pattern: tuple[str, ...]) -> Iterator[tuple[Any, str]]:
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        for item in node if isinstance(node, list) else []:
            yield from _secret_slots(item, rest)
    elif isinstance(node, dict) and head in node:
        if rest:
            yield from _secret_slots(node[head], rest)
        else:
            yield node, head


def _restore(
    node: Any,
    stored: Any,
    pattern: tuple[str, ...],
    path: JsonPath,
    problems: list[Problem],
) -> None:
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        items = node if isinstance(node, list) else []
        for index, item in enumerate(items):
            counterpart = _stored_counterpart(item, index, stored, items)
            _restore(item, counterpart, rest, (*path, index), problems)
        return
    if not isinstance(node, dict) or head not in node:
        return
    stored_value = stored.get(head) if isinstance(stored, dict) else None
    if rest:
        _restore(node[head], stored_value, rest, (*path, head), problems)
    elif node[head] == REDACTED:
        if isinstance(stored_value, str) and stored_value != REDACTED:
            node[head] = stored_value
        else:
            problems.append(
                Problem(
                    (*path, head),
                    f"is {REDACTED!r} but there is no stored secret to keep; "
                    "give the value",
                )
            )


def _stored_counterpart(
    item: Any, index: int, stored: Any, siblings: Sequence[Any] = ()
) -> Any:
    if not isinstance(stored, list):
        return None
    if isinstance(item, dict) and "kind" in item and "slug" not in item:
        # A source's feedback configs: the n-th config of a kind in the file is
        # the n-th stored config of that kind, whatever the order of kinds.
        nth = sum(
            1
            for other in siblings[:index]
            if isinstance(other, dict) and other.get("kind") == item["kind"]
        )
        same_kind = [
            s for s in stored if isinstance(s, dict) and s.get("kind") == item["kind"]
        ]
        return same_kind[nth] if nth < len(same_kind) else None
    if isinstance(item, dict) and "slug" in item:
        return next(
            (
                s
                for s in stored
                if isinstance(s, dict) and s.get("slug") == item["slug"]
            ),
            None,
        )
    return stored[index] if index < len(stored) else None


# The schema -------------------------------------------------------------------

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


def _object(
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


def _tagged(tag: str, variants: dict[str, Document]) -> Document:
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
                "then": _object(
                    {tag: {"const": name}, **properties["properties"]},
                    required=properties.get("required", ()),
                ),
            }
            for name, properties in variants.items()
        ],
    }


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
        "rule": _object(
            {
                "lhv": {"type": "string", "minLength": 1},
                "op": {"enum": list(RULE_OPERATORS)},
                "rhv": {"type": ["string", "number", "boolean", "array", "null"]},
                "rule_set": {"type": "object", "$ref": "#/$defs/rule_set"},
            },
            required=["lhv", "op"],
        ),
    }


def _policy_schema(kind: str) -> Document:
    properties: Document = {"enabled": {"type": "boolean"}, "rules": RULES_SCHEMA}
    if kind == Kind.RETURN:
        properties["max_age_days"] = {"type": "integer", "minimum": 1, "maximum": 3650}
    return _object(properties, required=["enabled"])


def _buyer_schema() -> Document:
    return _object(
        {
            "slug": SLUG_SCHEMA,
            "name": NAME_SCHEMA,
            "is_active": {"type": "boolean"},
            "policy": _object({kind: _policy_schema(kind) for kind in KINDS}),
            "flow_policies": {
                "type": "array",
                "items": _object(
                    {
                        "flow": SLUG_SCHEMA,
                        "kind": {"enum": list(KINDS)},
                        "enabled": {"type": "boolean"},
                        # Returns only; checked in _buyer_problems.
                        "max_age_days": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 3650,
                        },
                        "rules": RULES_SCHEMA,
                    },
                    required=["flow", "kind", "enabled"],
                ),
            },
        },
        required=["slug", "name"],
    )


def _source_schema() -> Document:
    accepts_entry = _object(
        {
            "enabled": {"type": "boolean"},
            "allowed_reasons": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": 200},
            },
        },
        required=["enabled"],
    )
    return _object(
        {
            "slug": SLUG_SCHEMA,
            "name": NAME_SCHEMA,
            "accepts": _object(dict.fromkeys(KINDS, accepts_entry)),
            "feedback": {"type": "array", "items": feedback_config_schema()},
        },
        required=["slug", "name"],
    )


def feedback_config_schema() -> Document:
    """The shape of one per-source feedback delivery config (DESIGN §5, §9).

    Stored as sources.FeedbackConfig rows; `feedback_config_problems` adds the
    checks a schema cannot express.
    """
    text = {"type": "string", "maxLength": 500}
    port = {"type": "integer", "minimum": 1, "maximum": 65535}
    secret = {"type": "string", "minLength": 1, "maxLength": 2000}
    username = {"type": "string", "minLength": 1, "maxLength": 200}
    file_transport: Document = {
        "properties": {
            "host": {"type": "string", "minLength": 1, "maxLength": 253},
            "port": port,
            "username": text,
            "password": secret,
            "directory": text,
        },
        "required": ["host"],
    }
    return _object(
        {
            "kind": {"enum": list(KINDS)},
            "enabled": {"type": "boolean"},
            "method": {"enum": list(METHODS)},
            "url": {"type": "string", "minLength": 1, "maxLength": 2000},
            "http_method": {"enum": list(HTTP_METHODS)},
            "sync": {"type": "boolean"},
            "timeout_s": {"type": "number", "minimum": 0.1, "maximum": 120},
            "headers": {"type": "object", "additionalProperties": text},
            "auth": _tagged(
                "type",
                {
                    "none": {"properties": {}},
                    "basic": {
                        "properties": {"username": username, "password": secret},
                        "required": ["username", "password"],
                    },
                    "bearer": {"properties": {"token": secret}, "required": ["token"]},
                    "header": {
                        "properties": {
                            "name": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 100,
                            },
                            "value": secret,
                        },
                        "required": ["name", "value"],
                    },
                    "wsse": {
                        "properties": {
                            "username": username,
                            "password": secret,
                            "password_type": {"enum": ["text", "digest"]},
                        },
                        "required": ["username", "password"],
                    },
                },
            ),
            "signing": _object({"enabled": {"type": "boolean"}, "secret": secret}),
            "criteria": RULES_SCHEMA,
            "mappings": {
                "type": "array",
                "items": _object(
                    {
                        "target": {"type": "string", "minLength": 1, "maxLength": 500},
                        "value": {"type": "string", "maxLength": 5000},
                    },
                    required=["target", "value"],
                ),
            },
            "response": _object(
                {
                    "outcome_search_term": text,
                    "outcome_search_path": text,
                    "outcome_on_match": {"enum": ["success", "failure", "error"]},
                    "reason_path": text,
                    "default_reason": text,
                    "reference_path": text,
                }
            ),
            "soap": _object(
                {
                    "operation": {"type": "string", "minLength": 1},
                    "version": {"enum": ["1.1", "1.2"]},
                },
                required=["operation"],
            ),
            "batch": _object(
                {
                    "schedule": _object(
                        {
                            "every": {"enum": ["hour", "day", "week"]},
                            "at": {
                                "type": "string",
                                "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$",
                                # Our own keyword, read by _schema_problems.
                                "x-message": "must be a 24-hour time, e.g. '06:00'",
                            },
                            "day": {"enum": list(WEEKDAYS)},
                            "timezone": {"type": "string", "minLength": 1},
                        },
                        required=["every"],
                    ),
                    "transport": _tagged(
                        "type",
                        {
                            "ftp": file_transport,
                            "ftps": {
                                "properties": {
                                    **file_transport["properties"],
                                    "certificate": {"type": "string"},
                                },
                                "required": ["host"],
                            },
                            "sftp": {
                                "properties": {
                                    **file_transport["properties"],
                                    "private_key": secret,
                                    "host_key": {"type": "string", "minLength": 1},
                                },
                                "required": ["host", "username", "host_key"],
                            },
                            "s3": {
                                "properties": {
                                    "bucket": {
                                        "type": "string",
                                        "minLength": 1,
                                        "maxLength": 63,
                                    },
                                    "prefix": text,
                                    "region": {"type": "string", "maxLength": 64},
                                    "endpoint_url": {
                                        "type": "string",
                                        "maxLength": 2000,
                                    },
                                    "access_key_id": username,
                                    "secret_access_key": secret,
                                },
                                "required": [
                                    "bucket",
                                    "access_key_id",
                                    "secret_access_key",
                                ],
                            },
                            "email": {
                                "properties": {
                                    "to": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                        "minItems": 1,
                                    },
                                    "subject": text,
                                },
                                "required": ["to"],
                            },
                        },
                    ),
                    "file_name": {"type": "string", "minLength": 1},
                    "header": {"type": "boolean"},
                    "send_empty": {"type": "boolean"},
                },
                required=["schedule", "transport", "file_name"],
            ),
        },
        required=["kind", "method"],
    )


def config_schema() -> Document:
    """The JSON Schema (Draft 2020-12) of the whole configuration document."""
    schema = _object(
        {
            "buyers": {"type": "array", "items": _buyer_schema()},
            "sources": {"type": "array", "items": _source_schema()},
        }
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": _rule_set_definitions(),
        **schema,
    }


_VALIDATOR = Draft202012Validator(config_schema())


# Validation -------------------------------------------------------------------


# Far deeper than any real document (a rule set nested ten times is about 35
# levels), and shallow enough that the recursive validators cannot overflow.
MAX_DEPTH = 64


def config_validate(*, document: object) -> list[Problem]:
    """Every problem in the document, in path order; empty when it is valid."""
    too_deep = _too_deep(document)
    if too_deep is not None:
        return [Problem(too_deep, f"nested more than {MAX_DEPTH} levels deep")]
    problems = _schema_problems(document) + _semantic_problems(document)
    unique = dict.fromkeys(problems)  # keeps order, drops repeats
    return sorted(unique, key=_path_order)


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
    for error in _VALIDATOR.iter_errors(document):
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
            # Only the tag of a _tagged variant uses const, and the enum on the
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


def _dicts(value: object) -> Iterator[tuple[int, dict[str, Any]]]:
    """The (index, item) pairs of a list's objects; the schema reports the rest."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict):
                yield index, item


def _semantic_problems(document: object) -> list[Problem]:
    """What JSON Schema cannot say. Written defensively: the schema may have failed."""
    if not isinstance(document, dict):
        return []
    problems: list[Problem] = []
    for section in ("buyers", "sources"):
        problems += _slug_problems(document.get(section), section)
    for index, buyer in _dicts(document.get("buyers")):
        problems += _buyer_problems(buyer, ("buyers", index))
    for index, source in _dicts(document.get("sources")):
        problems += _source_problems(source, ("sources", index))
    return problems


def _slug_problem(value: object, path: JsonPath) -> list[Problem]:
    if not isinstance(value, str) or not value:
        return []
    try:
        validate_slug(value)
    except ValidationError:
        return [
            Problem(path, "must contain only letters, digits, hyphens and underscores")
        ]
    return []


def _slug_problems(items: object, section: str) -> list[Problem]:
    problems: list[Problem] = []
    first_seen: dict[str, int] = {}
    for index, item in _dicts(items):
        slug = item.get("slug")
        path: JsonPath = (section, index, "slug")
        problems += _slug_problem(slug, path)
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


def _buyer_problems(buyer: dict[str, Any], path: JsonPath) -> list[Problem]:
    problems: list[Problem] = []
    policy = buyer.get("policy")
    if isinstance(policy, dict):
        for kind in KINDS:
            entry = policy.get(kind)
            if isinstance(entry, dict):
                problems += _rule_set_problems(
                    entry.get("rules"), (*path, "policy", kind, "rules")
                )
    first_seen: dict[tuple[str, str], int] = {}
    for index, entry in _dicts(buyer.get("flow_policies")):
        entry_path: JsonPath = (*path, "flow_policies", index)
        flow, flow_kind = entry.get("flow"), entry.get("kind")
        problems += _slug_problem(flow, (*entry_path, "flow"))
        if "max_age_days" in entry and flow_kind in KINDS and flow_kind != Kind.RETURN:
            problems.append(
                Problem((*entry_path, "max_age_days"), "only applies to returns")
            )
        if isinstance(flow, str) and isinstance(flow_kind, str):
            pair = (flow, flow_kind)
            if pair in first_seen:
                earlier = json_path((*path, "flow_policies", first_seen[pair]))
                problems.append(
                    Problem(
                        entry_path,
                        f"a second {flow_kind} policy for flow {flow!r} "
                        f"(first at {earlier})",
                    )
                )
            else:
                first_seen[pair] = index
        problems += _rule_set_problems(entry.get("rules"), (*entry_path, "rules"))
    return problems


_RULE_PATH_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def _rule_set_problems(rule_set: object, path: JsonPath) -> list[Problem]:
    """The rules engine's own checks (patterns, ranges, templates, rhv) with paths."""
    if not isinstance(rule_set, dict):
        return []
    problems: list[Problem] = []
    for message in rules.validate_rule_set(rule_set):
        where, _, text = message.partition(": ")
        if text.startswith("unknown operator"):
            continue  # the schema names the allowed operators instead
        parts: JsonPath = tuple(
            int(index) if index else name
            for index, name in _RULE_PATH_PART.findall(where)
        )
        problems.append(Problem((*path, *parts), text))
    return problems


def _source_problems(source: dict[str, Any], path: JsonPath) -> list[Problem]:
    problems: list[Problem] = []
    accepts = source.get("accepts")
    if isinstance(accepts, dict):
        for kind in KINDS:
            entry = accepts.get(kind)
            if isinstance(entry, dict):
                problems += _reason_problems(
                    entry.get("allowed_reasons"),
                    (*path, "accepts", kind, "allowed_reasons"),
                )
    for index, config in _dicts(source.get("feedback")):
        problems += feedback_config_problems(config, (*path, "feedback", index))
    return problems


def _reason_problems(reasons: object, path: JsonPath) -> list[Problem]:
    # Mirrors sources.models.validate_reason_list: intake matches reasons
    # case-insensitively, so two spellings of one reason would be ambiguous.
    if not isinstance(reasons, list):
        return []
    problems: list[Problem] = []
    first_seen: dict[str, int] = {}
    for index, reason in enumerate(reasons):
        if not isinstance(reason, str) or not reason:
            continue
        folded = reason.strip().casefold()
        if not folded:
            problems.append(Problem((*path, index), "must not be blank"))
        elif folded in first_seen:
            earlier = json_path((*path, first_seen[folded]))
            problems.append(
                Problem(
                    (*path, index),
                    f"{reason!r} is listed twice, ignoring case (first at {earlier})",
                )
            )
        else:
            first_seen[folded] = index
    return problems


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def feedback_config_problems(config: dict[str, Any], path: JsonPath) -> list[Problem]:
    """Checks on one feedback config that its schema cannot express."""
    problems: list[Problem] = []
    method = config.get("method")

    def refuse(key: str | JsonPath, message: str) -> None:
        keys = (key,) if isinstance(key, str) else key
        problems.append(Problem((*path, *keys), message))

    for block in ("soap", "batch"):
        if method == block and block not in config:
            refuse(block, f"is required with method {block!r}")
        elif method in METHODS and method != block and block in config:
            refuse(block, f"is only used with method {block!r}")
    if method == "batch":
        for key in (
            "url",
            "http_method",
            "sync",
            "timeout_s",
            "headers",
            "auth",
            "signing",
        ):
            if key in config:
                refuse(key, "is not used with method 'batch'")
        if "response" in config:
            refuse("response", "is not used with method 'batch'")
    elif method in METHODS:
        url = config.get("url")
        if "url" not in config:
            refuse("url", f"is required with method {method!r}")
        elif isinstance(url, str) and url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                refuse("url", "must be an http:// or https:// URL with a host")
        if method in ("query", "soap") and "http_method" in config:
            refuse("http_method", f"is not used with method {method!r}")

    auth = config.get("auth")
    if isinstance(auth, dict) and auth.get("type") == "wsse" and method != "soap":
        refuse(("auth", "type"), "'wsse' is only used with method 'soap'")
    signing = config.get("signing")
    if isinstance(signing, dict) and signing.get("enabled") and "secret" not in signing:
        refuse(("signing", "secret"), "is required when signing is enabled")

    headers = config.get("headers")
    for name, value in headers.items() if isinstance(headers, dict) else []:
        if not _HEADER_NAME.fullmatch(name):
            refuse(("headers", name), "is not a valid header name")
        elif isinstance(value, str) and ("\r" in value or "\n" in value):
            refuse(("headers", name), "must not contain line breaks")

    response = config.get("response")
    term = response.get("outcome_search_term") if isinstance(response, dict) else None
    if isinstance(term, str) and term:
        pattern = term[1:-1] if len(term) > 1 and term[0] == term[-1] == "/" else term
        try:
            re.compile(pattern)
        except re.error as exc:
            refuse(
                ("response", "outcome_search_term"),
                f"is not a valid regular expression: {exc}",
            )

    problems += _rule_set_problems(config.get("criteria"), (*path, "criteria"))
    for index, mapping in _dicts(config.get("mappings")):
        value = mapping.get("value")
        problem = templating.validate(value) if isinstance(value, str) else None
        if problem:
            refuse(
                ("mappings", index, "value"), f"is not a working template: {problem}"
            )
    if isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values()):
        try:
            validate_headers(headers)
        except BuildError as exc:
            refuse("headers", str(exc))
    if isinstance(signing, dict) and isinstance(signing.get("secret"), str):
        secret = signing["secret"]
        if secret != REDACTED:
            try:
                signing_secret_key(secret)
            except SigningSecretError as exc:
                refuse(("signing", "secret"), str(exc))
    if isinstance(response, dict) and all(
        isinstance(v, str) for v in response.values()
    ):
        spec = ResponseSpec(
            **{k: v for k, v in response.items() if k != "outcome_on_match"}
        )
        for message in validate_response_spec(spec):
            name = message.split(" ", 1)[0]
            key = name if name in response else "outcome_search_term"
            refuse(("response", key), message.removeprefix(f"{name} "))
    batch = config.get("batch")
    if isinstance(batch, dict):
        problems += _batch_problems(batch, (*path, "batch"))
    return problems


def _batch_problems(batch: dict[str, Any], path: JsonPath) -> list[Problem]:
    problems: list[Problem] = []
    schedule = batch.get("schedule")
    if isinstance(schedule, dict):
        every = schedule.get("every")
        if every == "week" and "day" not in schedule:
            problems.append(
                Problem((*path, "schedule", "day"), "is required when every is 'week'")
            )
        if every in ("hour", "day") and "day" in schedule:
            problems.append(
                Problem((*path, "schedule", "day"), "is only used when every is 'week'")
            )
        if every == "hour" and "at" in schedule:
            problems.append(
                Problem((*path, "schedule", "at"), "is not used when every is 'hour'")
            )
        zone = schedule.get("timezone")
        if isinstance(zone, str) and zone:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                problems.append(
                    Problem(
                        (*path, "schedule", "timezone"),
                        f"{zone!r} is not a known time zone, e.g. 'America/Chicago'",
                    )
                )
    transport = batch.get("transport")
    if isinstance(transport, dict):
        problems += _transport_problems(transport, (*path, "transport"))
    file_name = batch.get("file_name")
    if isinstance(file_name, str) and file_name:
        problem = templating.validate(file_name, variables=SAMPLE_FILE_VARIABLES)
        if problem:
            problems.append(
                Problem((*path, "file_name"), f"is not a working template: {problem}")
            )
    recipients = transport.get("to") if isinstance(transport, dict) else None
    for index, address in enumerate(recipients if isinstance(recipients, list) else []):
        if not isinstance(address, str):
            continue
        try:
            validate_email(address)
        except ValidationError:
            problems.append(
                Problem(
                    (*path, "transport", "to", index), "is not a valid email address"
                )
            )
    return problems


def _transport_problems(transport: dict[str, Any], path: JsonPath) -> list[Problem]:
    problems: list[Problem] = []
    host = transport.get("host")
    if isinstance(host, str) and ("/" in host or ":" in host.strip("[]")):
        problems.append(
            Problem(
                (*path, "host"),
                "must be a host name only (port and directory have their own keys)",
            )
        )
    host_key = transport.get("host_key")
    if isinstance(host_key, str) and host_key:
        try:
            host_key_parse(host_key)
        except ValueError as exc:
            problems.append(Problem((*path, "host_key"), str(exc)))
    private_key = transport.get("private_key")
    if isinstance(private_key, str) and private_key and private_key != REDACTED:
        try:
            private_key_parse(private_key)
        except ValueError as exc:
            problems.append(Problem((*path, "private_key"), str(exc)))
    certificate = transport.get("certificate")
    if isinstance(certificate, str) and certificate.strip():
        try:
            ssl.create_default_context(cadata=certificate)
        except (ssl.SSLError, ValueError):
            problems.append(Problem((*path, "certificate"), "is not a PEM certificate"))
    if transport.get("type") == "s3":
        problems += _s3_problems(transport, path)
    if (
        transport.get("type") == "sftp"
        and "password" not in transport
        and "private_key" not in transport
    ):
        problems.append(
            Problem((*path, "password"), "SFTP needs a password or a private_key")
        )
    return problems


# The S3 keys of a transport block, by the FeedbackConfig field each is stored in.
S3_FIELDS = {
    "batch_s3_bucket": "bucket",
    "batch_directory": "prefix",
    "batch_s3_region": "region",
    "batch_s3_endpoint_url": "endpoint_url",
    "batch_username": "access_key_id",
    "batch_password": "secret_access_key",
}


def _s3_problems(transport: dict[str, Any], path: JsonPath) -> list[Problem]:
    """The S3 transport's own checks, run on the config the block would store."""
    config = FeedbackConfig(
        **{
            name: value
            for name, key in S3_FIELDS.items()
            if isinstance(value := transport.get(key, ""), str)
        }
    )
    return [
        Problem((*path, S3_FIELDS.get(name, "type")), message)
        for name, message in S3Transport.config_problems(config)
        if S3_FIELDS.get(name) in transport  # a missing key: the schema says so
    ]


# Export -----------------------------------------------------------------------


def _sorted_json(value: Any) -> Any:
    """Free-form JSON (rule sets) with sorted keys: jsonb reorders keys, SQLite
    does not, and an export must read the same whichever database it came from."""
    if isinstance(value, dict):
        return {key: _sorted_json(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted_json(item) for item in value]
    return value


def _policy_entry(
    kind: str, *, enabled: bool, max_age_days: int, rules: Any
) -> Document:
    entry: Document = {"enabled": enabled}
    if kind == Kind.RETURN:
        entry["max_age_days"] = max_age_days
    entry["rules"] = _sorted_json(rules)
    return entry


def _flow_policy_entry(
    *, flow: str, kind: str, enabled: bool, max_age_days: int, rules: Any
) -> Document:
    entry = _policy_entry(kind, enabled=enabled, max_age_days=max_age_days, rules=rules)
    return {"flow": flow, "kind": kind, **entry}


def _flow_policy_order(entry: Document) -> tuple[str, int]:
    return entry["flow"], KINDS.index(entry["kind"])


def _buyers_with_policies() -> QuerySet[Buyer]:
    return Buyer.objects.prefetch_related(
        Prefetch("policies", queryset=BuyerPolicy.objects.select_related("flow"))
    )


def _buyer_document(buyer: Buyer) -> Document:
    policies = list(buyer.policies.all())
    policy = {
        row.kind: _policy_entry(
            row.kind,
            enabled=row.enabled,
            max_age_days=row.max_age_days,
            rules=row.rules,
        )
        for row in policies
        if row.flow is None
    }
    flow_policies = [
        _flow_policy_entry(
            flow=row.flow.slug,
            kind=row.kind,
            enabled=row.enabled,
            max_age_days=row.max_age_days,
            rules=row.rules,
        )
        for row in policies
        if row.flow is not None
    ]
    return {
        "slug": buyer.slug,
        "name": buyer.name,
        "is_active": buyer.is_active,
        "policy": {kind: policy[kind] for kind in KINDS if kind in policy},
        "flow_policies": sorted(flow_policies, key=_flow_policy_order),
    }


def _source_document(source: Source) -> Document:
    return {
        "slug": source.slug,
        "name": source.name,
        "accepts": {
            kind: {
                "enabled": source.accepts(kind),
                "allowed_reasons": source.allowed_reasons(kind),
            }
            for kind in KINDS
        },
        "feedback": _in_kind_order(
            _feedback_config_document(config)
            for config in source.feedback_configs.all()
        ),
    }


def _in_kind_order(configs: Iterable[Document]) -> list[Document]:
    """Configs grouped by kind in KINDS order; within a kind, as they were."""
    return sorted(configs, key=lambda config: KINDS.index(config["kind"]))


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _feedback_config_document(config: FeedbackConfig) -> Document:
    """One stored config in the shape of DESIGN §9, every key present."""
    if config.method == FeedbackConfig.Method.BATCH:
        return _batch_config_document(config)
    document: Document = {
        "kind": config.kind,
        "enabled": config.enabled,
        "method": config.method,
        "url": config.url,
    }
    if config.method not in (FeedbackConfig.Method.QUERY, FeedbackConfig.Method.SOAP):
        document["http_method"] = config.http_method
    document |= {
        "sync": config.sync,
        "timeout_s": _number(config.timeout_s),
        "headers": dict(sorted((config.headers or {}).items())),
        "auth": _auth_document(config),
        "signing": {"enabled": config.signing_enabled}
        | ({"secret": config.signing_secret} if config.signing_secret else {}),
        "criteria": _sorted_json(config.criteria),
        "mappings": [
            {"target": mapping.target, "value": mapping.value}
            for mapping in config.mappings.all()
        ],
        "response": {
            "outcome_search_term": config.outcome_search_term,
            "outcome_search_path": config.outcome_search_path,
            "outcome_on_match": config.outcome_on_match,
            "reason_path": config.reason_path,
            "default_reason": config.default_reason,
            "reference_path": config.reference_path,
        },
    }
    if config.method == FeedbackConfig.Method.SOAP:
        document["soap"] = {
            "operation": config.soap_operation,
            "version": config.soap_version,
        }
    return document


def _batch_config_document(config: FeedbackConfig) -> Document:
    schedule: Document = {"every": config.batch_every}
    if config.batch_every != FeedbackConfig.BatchEvery.HOUR:
        schedule["at"] = (config.batch_at or dt_time(0)).strftime("%H:%M")
    if config.batch_every == FeedbackConfig.BatchEvery.WEEK:
        schedule["day"] = WEEKDAYS[config.batch_day or 0]
    schedule["timezone"] = config.batch_timezone
    transport_type = config.batch_transport
    transport: Document = {"type": transport_type}
    if transport_type == FeedbackConfig.Transport.EMAIL:
        transport |= {
            "to": list(config.batch_email_to or []),
            "subject": config.batch_email_subject,
        }
    elif transport_type == FeedbackConfig.Transport.S3:
        transport |= {
            "bucket": config.batch_s3_bucket,
            "prefix": config.batch_directory,
            "region": config.batch_s3_region,
            "endpoint_url": config.batch_s3_endpoint_url,
            "access_key_id": config.batch_username,
        }
        if config.batch_password:
            transport["secret_access_key"] = config.batch_password
    elif transport_type:
        transport |= {
            "host": config.batch_host,
            "port": config.batch_port or DEFAULT_PORTS[transport_type],
            "username": config.batch_username,
        }
        if config.batch_password:
            transport["password"] = config.batch_password
        if transport_type == FeedbackConfig.Transport.SFTP:
            if config.batch_private_key:
                transport["private_key"] = config.batch_private_key
            transport["host_key"] = config.batch_host_key
        if transport_type == FeedbackConfig.Transport.FTPS:
            transport["certificate"] = config.batch_tls_certificate
        transport["directory"] = config.batch_directory
    return {
        "kind": config.kind,
        "enabled": config.enabled,
        "method": config.method,
        "batch": {
            "schedule": schedule,
            "transport": transport,
            "file_name": config.batch_file_name,
            "header": config.batch_header,
            "send_empty": config.batch_send_empty,
        },
        "criteria": _sorted_json(config.criteria),
        "mappings": [
            {"target": mapping.target, "value": mapping.value}
            for mapping in config.mappings.all()
        ],
    }


def _auth_document(config: FeedbackConfig) -> Document:
    auth_type = config.auth_type
    secret = config.auth_secret
    if auth_type == FeedbackConfig.AuthType.BASIC:
        return {"type": auth_type, "username": config.auth_username, "password": secret}
    if auth_type == FeedbackConfig.AuthType.BEARER:
        return {"type": auth_type, "token": secret}
    if auth_type == FeedbackConfig.AuthType.HEADER:
        return {"type": auth_type, "name": config.auth_header_name, "value": secret}
    if auth_type == FeedbackConfig.AuthType.WSSE:
        return {
            "type": auth_type,
            "username": config.auth_username,
            "password": secret,
            "password_type": "digest" if config.wsse_password_digest else "text",
        }
    return {"type": "none"}


def config_export(*, include_secrets: bool = False) -> Document:
    """Buyers and sources as a configuration document, each list ordered by slug."""
    document: Document = {
        "buyers": [
            _buyer_document(buyer) for buyer in _buyers_with_policies().order_by("slug")
        ],
        "sources": [
            _source_document(source)
            for source in _sources_with_configs().order_by("slug")
        ],
    }
    return document if include_secrets else redact_secrets(document)


# Import -----------------------------------------------------------------------


class Action(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Change:
    """What import did (or, on a check, would do) to one buyer or source."""

    entity: str  # "buyer" or "source"
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
        for entity, label in (("buyer", "Buyers"), ("source", "Sources")):
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


def _buyer_from_input(item: Document) -> Document:
    policy = item.get("policy") or {}
    flow_policies = [
        _flow_policy_entry(
            flow=entry["flow"],
            kind=entry["kind"],
            enabled=entry["enabled"],
            max_age_days=int(
                entry.get("max_age_days", BuyerPolicy.DEFAULT_MAX_AGE_DAYS)
            ),
            rules=entry.get("rules"),
        )
        for entry in item.get("flow_policies") or []
    ]
    return {
        "slug": item["slug"],
        "name": item["name"],
        "is_active": item.get("is_active", True),
        "policy": {
            kind: _policy_entry(
                kind,
                enabled=policy[kind]["enabled"],
                max_age_days=int(
                    policy[kind].get("max_age_days", BuyerPolicy.DEFAULT_MAX_AGE_DAYS)
                ),
                rules=policy[kind].get("rules"),
            )
            for kind in KINDS
            if kind in policy
        },
        "flow_policies": sorted(flow_policies, key=_flow_policy_order),
    }


def _source_from_input(item: Document) -> Document:
    accepts = item.get("accepts") or {}
    return {
        "slug": item["slug"],
        "name": item["name"],
        "accepts": {
            kind: {
                "enabled": accepts.get(kind, {}).get("enabled", True),
                "allowed_reasons": list(
                    accepts.get(kind, {}).get("allowed_reasons", [])
                ),
            }
            for kind in KINDS
        },
        "feedback": _in_kind_order(
            _feedback_config_from_input(c) for c in item.get("feedback", [])
        ),
    }


def _feedback_config_from_input(item: Document) -> Document:
    """A config from the file with defaults filled in, shaped as export writes it."""
    method = item["method"]
    if method == "batch":
        return _batch_config_from_input(item)
    document: Document = {
        "kind": item["kind"],
        "enabled": item.get("enabled", True),
        "method": method,
        "url": item["url"],
    }
    if method not in ("query", "soap"):
        document["http_method"] = item.get("http_method", "POST")
    signing = item.get("signing") or {}
    auth = dict(item.get("auth") or {"type": "none"})
    if auth["type"] == "wsse":
        auth.setdefault("password_type", "text")
    response = item.get("response") or {}
    document |= {
        "sync": item.get("sync", False),
        "timeout_s": item.get("timeout_s", 10),
        "headers": dict(sorted((item.get("headers") or {}).items())),
        "auth": auth,
        "signing": {"enabled": signing.get("enabled", False)}
        | ({"secret": signing["secret"]} if signing.get("secret") else {}),
        "criteria": _sorted_json(item.get("criteria")),
        "mappings": [
            {"target": m["target"], "value": m["value"]}
            for m in item.get("mappings", [])
        ],
        "response": {
            "outcome_search_term": response.get("outcome_search_term", ""),
            "outcome_search_path": response.get("outcome_search_path", ""),
            "outcome_on_match": response.get("outcome_on_match", "success"),
            "reason_path": response.get("reason_path", ""),
            "default_reason": response.get("default_reason", ""),
            "reference_path": response.get("reference_path", ""),
        },
    }
    if method == "soap":
        document["soap"] = {
            "operation": item["soap"]["operation"],
            "version": item["soap"].get("version", "1.1"),
        }
    return document


def _batch_config_from_input(item: Document) -> Document:
    batch = item["batch"]
    given = batch["schedule"]
    schedule: Document = {"every": given["every"]}
    if given["every"] != "hour":
        schedule["at"] = given.get("at", "00:00")
    if given["every"] == "week":
        schedule["day"] = given["day"]
    schedule["timezone"] = given.get("timezone", "UTC")
    given = batch["transport"]
    transport: Document = {"type": given["type"]}
    if given["type"] == "email":
        transport |= {"to": list(given["to"]), "subject": given.get("subject", "")}
    elif given["type"] == "s3":
        transport |= {
            "bucket": given["bucket"],
            "prefix": given.get("prefix", ""),
            "region": given.get("region", ""),
            "endpoint_url": given.get("endpoint_url", ""),
            "access_key_id": given["access_key_id"],
        }
        if given.get("secret_access_key"):
            transport["secret_access_key"] = given["secret_access_key"]
    else:
        transport |= {
            "host": given["host"],
            "port": given.get("port", DEFAULT_PORTS[given["type"]]),
            "username": given.get("username", ""),
        }
        if given.get("password"):
            transport["password"] = given["password"]
        if given["type"] == "sftp":
            if given.get("private_key"):
                transport["private_key"] = given["private_key"]
            transport["host_key"] = given["host_key"]
        if given["type"] == "ftps":
            transport["certificate"] = given.get("certificate", "")
        transport["directory"] = given.get("directory", "")
    return {
        "kind": item["kind"],
        "enabled": item.get("enabled", True),
        "method": "batch",
        "batch": {
            "schedule": schedule,
            "transport": transport,
            "file_name": batch["file_name"],
            "header": batch.get("header", True),
            "send_empty": batch.get("send_empty", False),
        },
        "criteria": _sorted_json(item.get("criteria")),
        "mappings": [
            {"target": m["target"], "value": m["value"]}
            for m in item.get("mappings", [])
        ],
    }


def _compare(entity: str, desired: Document, current: Document | None) -> Change:
    if current is None:
        return Change(entity, desired["slug"], Action.CREATED)
    changed = tuple(key for key in desired if desired[key] != current.get(key))
    action = Action.UPDATED if changed else Action.UNCHANGED
    return Change(entity, desired["slug"], action, changed)


def config_import(*, document: object, dry_run: bool) -> ImportReport:
    """Create or update buyers and sources by slug from a configuration document.

    Raises ConfigurationError listing every problem, and writes nothing, unless
    the whole document is valid. With `dry_run` it only reports what would change.
    Buyers and sources the document does not mention are left alone.
    """
    problems = config_validate(document=document)
    if problems or not isinstance(document, dict):  # the schema refuses non-objects
        raise ConfigurationError(problems)
    document = copy.deepcopy(document)
    report = ImportReport(dry_run=dry_run)

    buyer_items: list[Document] = document.get("buyers", [])
    source_items: list[Document] = document.get("sources", [])
    with transaction.atomic():
        buyers = _buyers_with_policies().filter(
            slug__in=[item["slug"] for item in buyer_items]
        )
        sources = _sources_with_configs().filter(
            slug__in=[item["slug"] for item in source_items]
        )
        if not dry_run:
            # Compare and write against rows nobody else changes meanwhile.
            buyers = buyers.select_for_update()
            sources = sources.select_for_update()
        buyer_rows = {buyer.slug: buyer for buyer in buyers}
        source_rows = {source.slug: source for source in sources}
        current_buyers = {s: _buyer_document(b) for s, b in buyer_rows.items()}
        current_sources = {s: _source_document(r) for s, r in source_rows.items()}

        problems = restore_secrets(
            document,
            stored={
                "buyers": list(current_buyers.values()),
                "sources": list(current_sources.values()),
            },
        )
        if problems:
            raise ConfigurationError(sorted(problems, key=_path_order))

        buyer_plan = []
        for item in buyer_items:
            desired = _buyer_from_input(item)
            change = _compare("buyer", desired, current_buyers.get(desired["slug"]))
            report.changes.append(change)
            buyer_plan.append((desired, change))
        source_plan = []
        for item in source_items:
            desired = _source_from_input(item)
            change = _compare("source", desired, current_sources.get(desired["slug"]))
            report.changes.append(change)
            source_plan.append((desired, change))

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
                _buyer_save(desired, buyer_rows.get(desired["slug"]), flows=flows)
        for desired, change in source_plan:
            if change.action != Action.UNCHANGED:
                _source_save(desired, source_rows.get(desired["slug"]))
    return report


def _buyer_save(
    desired: Document, buyer: Buyer | None, *, flows: dict[str, Flow]
) -> None:
    existing: dict[tuple[str | None, str], BuyerPolicy] = {}
    if buyer is None:
        buyer = Buyer.objects.create(
            slug=desired["slug"], name=desired["name"], is_active=desired["is_active"]
        )
    else:
        if (buyer.name, buyer.is_active) != (desired["name"], desired["is_active"]):
            buyer.name = desired["name"]
            buyer.is_active = desired["is_active"]
            buyer.save(update_fields=["name", "is_active", "updated_at"])
        existing = {
            (row.flow.slug if row.flow else None, row.kind): row
            for row in buyer.policies.all()
        }

    # The document is the whole truth about a buyer's policy rows: rows it does
    # not mention are removed, the rest updated in place or created.
    wanted: dict[tuple[str | None, str], Document] = {}
    for kind, entry in desired["policy"].items():
        wanted[None, kind] = entry
    for entry in desired["flow_policies"]:
        wanted[entry["flow"], entry["kind"]] = entry
    stale = [row.pk for key, row in existing.items() if key not in wanted]
    if stale:
        BuyerPolicy.objects.filter(pk__in=stale).delete()
    for (flow_slug, kind), entry in wanted.items():
        values = {
            "enabled": entry["enabled"],
            "max_age_days": entry.get("max_age_days", BuyerPolicy.DEFAULT_MAX_AGE_DAYS),
            "rules": entry["rules"],
        }
        row = existing.get((flow_slug, kind))
        if row is None:
            BuyerPolicy.objects.create(
                buyer=buyer,
                flow=flows[flow_slug] if flow_slug else None,
                kind=kind,
                **values,
            )
        elif any(getattr(row, name) != value for name, value in values.items()):
            for name, value in values.items():
                setattr(row, name, value)
            row.save(update_fields=list(values))


def _source_save(desired: Document, source: Source | None) -> None:
    values: dict[str, Any] = {"name": desired["name"]}
    for kind, entry in desired["accepts"].items():
        values[f"accepts_{kind}"] = entry["enabled"]
        values[f"{kind}_reasons"] = entry["allowed_reasons"]
    if source is None:
        source = Source.objects.create(slug=desired["slug"], **values)
    else:
        for name, value in values.items():
            setattr(source, name, value)
        source.save(update_fields=[*values, "updated_at"])
    _feedback_configs_save(source, desired["feedback"])


def _feedback_configs_save(source: Source, desired: list[Document]) -> None:
    """Make the source's configs those of the document.

    The n-th config of a kind updates the n-th stored one of that kind, so a
    config keeps its id (and, later, its notifications) across imports; extra
    stored configs of a kind are removed.
    """
    stored: dict[str, list[FeedbackConfig]] = {}
    for config in source.feedback_configs.all():
        stored.setdefault(config.kind, []).append(config)
    for entry in desired:
        same_kind = stored.get(entry["kind"], [])
        config = same_kind.pop(0) if same_kind else FeedbackConfig(source=source)
        _feedback_config_apply(config, entry)
        config.save()
        config.mappings.all().delete()
        FieldMapping.objects.bulk_create(
            FieldMapping(config=config, position=position, **mapping)
            for position, mapping in enumerate(entry["mappings"])
        )
    leftovers = [config.pk for configs in stored.values() for config in configs]
    if leftovers:
        FeedbackConfig.objects.filter(pk__in=leftovers).delete()


def _feedback_config_apply(config: FeedbackConfig, entry: Document) -> None:
    _batch_settings_apply(config, entry.get("batch"))
    if entry["method"] == FeedbackConfig.Method.BATCH:
        # The HTTP settings go back to their defaults: the document has none.
        for model_field in FeedbackConfig._meta.concrete_fields:
            if model_field.name in HTTP_SETTINGS:
                setattr(config, model_field.attname, model_field.get_default())
        config.kind = entry["kind"]
        config.enabled = entry["enabled"]
        config.method = entry["method"]
        config.url = ""
        config.criteria = entry["criteria"]
        return
    auth = entry["auth"]
    response = entry["response"]
    soap = entry.get("soap") or {}
    config.kind = entry["kind"]
    config.enabled = entry["enabled"]
    config.method = entry["method"]
    config.url = entry["url"]
    config.http_method = entry.get(
        "http_method", "GET" if entry["method"] == "query" else "POST"
    )
    config.sync = entry["sync"]
    config.timeout_s = float(entry["timeout_s"])
    config.headers = entry["headers"]
    config.auth_type = auth["type"]
    config.auth_username = auth.get("username", "")
    config.auth_header_name = auth.get("name", "")
    config.auth_secret = (
        auth.get("password") or auth.get("token") or auth.get("value", "")
    )
    config.wsse_password_digest = auth.get("password_type") == "digest"
    config.signing_enabled = entry["signing"]["enabled"]
    config.signing_secret = entry["signing"].get("secret", "")
    config.criteria = entry["criteria"]
    config.soap_operation = soap.get("operation", "")
    config.soap_version = soap.get("version", FeedbackConfig.SoapVersion.SOAP_11)
    for name, value in response.items():
        setattr(config, name, value)


HTTP_SETTINGS = frozenset(
    {
        "http_method",
        "sync",
        "timeout_s",
        "headers",
        "auth_type",
        "auth_username",
        "auth_header_name",
        "auth_secret",
        "wsse_password_digest",
        "signing_enabled",
        "signing_secret",
        "soap_operation",
        "soap_version",
        "outcome_search_term",
        "outcome_search_path",
        "outcome_on_match",
        "reason_path",
        "default_reason",
        "reference_path",
    }
)


def _batch_settings_apply(config: FeedbackConfig, batch: Document | None) -> None:
    """Store a batch block; without one, the batch settings go back to defaults."""
    for model_field in FeedbackConfig._meta.concrete_fields:
        if model_field.name.startswith("batch_"):
            setattr(config, model_field.attname, model_field.get_default())
    if batch is None:
        return
    schedule, transport = batch["schedule"], batch["transport"]
    config.batch_every = schedule["every"]
    config.batch_at = (
        dt_time.fromisoformat(schedule["at"]) if "at" in schedule else None
    )
    config.batch_day = WEEKDAYS.index(schedule["day"]) if "day" in schedule else None
    config.batch_timezone = schedule["timezone"]
    config.batch_transport = transport["type"]
    config.batch_host = transport.get("host", "")
    config.batch_port = transport.get("port")
    # S3's keys share the username and password fields (see FeedbackConfig).
    config.batch_username = transport.get(
        "username", transport.get("access_key_id", "")
    )
    config.batch_password = transport.get(
        "password", transport.get("secret_access_key", "")
    )
    config.batch_private_key = transport.get("private_key", "")
    config.batch_host_key = transport.get("host_key", "")
    config.batch_tls_certificate = transport.get("certificate", "")
    config.batch_directory = transport.get("directory", transport.get("prefix", ""))
    config.batch_s3_bucket = transport.get("bucket", "")
    config.batch_s3_region = transport.get("region", "")
    config.batch_s3_endpoint_url = transport.get("endpoint_url", "")
    config.batch_email_to = list(transport.get("to", []))
    config.batch_email_subject = transport.get("subject", "")
    config.batch_file_name = batch["file_name"]
    config.batch_header = batch["header"]
    config.batch_send_empty = batch["send_empty"]


def _sources_with_configs() -> QuerySet[Source]:
    return Source.objects.prefetch_related(
        Prefetch(
            "feedback_configs",
            queryset=FeedbackConfig.objects.prefetch_related("mappings").order_by(
                "kind", "pk"
            ),
        )
    )
