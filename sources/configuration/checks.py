"""Checks on a source's part of a configuration document beyond its schema,
each reported at its JSON path.

A feedback config is checked by the admin's own rules: the entry is built into
the unsaved FeedbackConfig and mappings import would save (documents.py) and
run through sources.services, and each problem's model field is mapped back to
its key in the file. One set of config rules, two callers. What stays here has
no counterpart on the model: which keys go with which method (a model has
every field; a file has only the keys its method uses) and what only a file
can get wrong. A source's allowed reasons go through the Source model's own
validator, as in the admin.
"""

from collections.abc import Collection
from typing import Any

from django.core.exceptions import ValidationError

from sources.configuration.base import (
    KINDS,
    METHODS,
    REDACTED,
    JsonPath,
    Problem,
    dict_items,
    rule_problem,
)
from sources.configuration.documents import (
    feedback_config_build,
    feedback_config_field_path,
)
from sources.models import validate_reason_list
from sources.services import feedback_config_problems, field_mapping_problem

# The keys of an HTTP config that a batch config has no use for.
HTTP_KEYS = ("url", "http_method", "sync", "timeout_s", "headers", "auth", "signing")


def source_problems(
    source: dict[str, Any], path: JsonPath, *, refused: Collection[JsonPath] = ()
) -> list[Problem]:
    """`refused`: the paths the schema has already refused; a config with one
    of them may be impossible to build, and is then left to the schema."""
    problems: list[Problem] = []
    accepts = source.get("accepts")
    if isinstance(accepts, dict):
        for kind in KINDS:
            entry = accepts.get(kind)
            if isinstance(entry, dict):
                problems += reason_problems(
                    entry.get("allowed_reasons"),
                    (*path, "accepts", kind, "allowed_reasons"),
                )
    for index, config in dict_items(source.get("feedback")):
        problems += feedback_config_problems_at(
            config, (*path, "feedback", index), refused=refused
        )
    return problems


def reason_problems(reasons: object, path: JsonPath) -> list[Problem]:
    """The Source model's own check on a list of allowed reasons."""
    if not isinstance(reasons, list) or not all(
        isinstance(reason, str) for reason in reasons
    ):
        return []  # the schema says what is wrong
    try:
        validate_reason_list(reasons)
    except ValidationError as exc:
        return [Problem(path, message) for message in exc.messages]
    return []


def feedback_config_problems_at(
    config: dict[str, Any], path: JsonPath, *, refused: Collection[JsonPath] = ()
) -> list[Problem]:
    """Everything wrong with one feedback config entry beyond its schema."""
    problems = method_key_problems(config, path)
    if "forward_on" in config and config.get("kind") in KINDS[1:]:
        problems.append(Problem((*path, "forward_on"), "only applies to returns"))
    if problems or any(where[: len(path)] == path for where in refused):
        try:
            return problems + model_problems(config, path)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            # An entry the schema or the checks above refused need not build;
            # those problems say what to fix first.
            return problems
    return model_problems(config, path)


def method_key_problems(config: dict[str, Any], path: JsonPath) -> list[Problem]:
    """Which keys go with which method: a file-only rule, since a model has every
    field. A config that passes these (and its schema) can be built."""
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
        for key in (*HTTP_KEYS, "response"):
            if key in config:
                refuse(key, "is not used with method 'batch'")
        batch = config.get("batch")
        schedule = batch.get("schedule") if isinstance(batch, dict) else None
        if isinstance(schedule, dict):
            every = schedule.get("every")
            if every in ("hour", "day") and "day" in schedule:
                refuse(
                    ("batch", "schedule", "day"), "is only used when every is 'week'"
                )
            if every == "hour" and "at" in schedule:
                refuse(("batch", "schedule", "at"), "is not used when every is 'hour'")
    elif method in METHODS:
        if "url" not in config:
            refuse("url", f"is required with method {method!r}")
        if method in ("query", "soap") and "http_method" in config:
            refuse("http_method", f"is not used with method {method!r}")
    signing = config.get("signing")
    if isinstance(signing, dict) and signing.get("enabled") and "secret" not in signing:
        # The admin generates a secret when signing is switched on without one;
        # a file has to give it, or export could not give it back.
        refuse(("signing", "secret"), "is required when signing is enabled")
    return problems


def model_problems(config: dict[str, Any], path: JsonPath) -> list[Problem]:
    """The admin's checks on the config and mappings this entry would store,
    each at the key in the file that holds the field."""
    model, mappings = feedback_config_build(config)
    problems: list[Problem] = []
    for field, messages in feedback_config_problems(model).items():
        where = (*path, *feedback_config_field_path(model, field))
        for message in messages:
            if field == "criteria":
                # The rules engine names the place inside the rule set itself.
                problem = rule_problem(message, where)
                if problem is not None:
                    problems.append(problem)
            elif lookup(config, where[len(path) :]) != REDACTED:
                # A "<redacted>" secret stands for the stored one, which import
                # keeps as it is; the placeholder itself is no secret to check.
                problems.append(Problem(where, message))
    for index, mapping in enumerate(mappings):
        mapping_problem = field_mapping_problem(mapping)
        if mapping_problem:
            where = (*path, "mappings", index, "value")
            problems.append(Problem(where, mapping_problem))
    return problems


def lookup(document: object, keys: JsonPath) -> object:
    for key in keys:
        if not isinstance(document, dict) or not isinstance(key, str):
            return None
        document = document.get(key)
    return document
