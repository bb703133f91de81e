"""Secrets in a configuration document: redacted on export, kept on import."""

import copy
from collections.abc import Iterator, Sequence
from typing import Any

from feedback.configuration.sections import section_secret_paths
from sources.configuration.base import REDACTED, Document, JsonPath, Problem
from sources.configuration.documents import SOURCE_SECRET_PATHS

# Every secret in the document, as a path where "*" stands for each item of a
# list. Export writes REDACTED there unless asked for secrets; import reads
# REDACTED back as "keep the stored value". Buyers have none; the registered
# sections add theirs (`section_secret_paths`).
SECRET_PATHS: tuple[tuple[str, ...], ...] = SOURCE_SECRET_PATHS


def _all_secret_paths() -> tuple[tuple[str, ...], ...]:
    return SECRET_PATHS + section_secret_paths()


def redact_secrets(
    document: Document, *, paths: Sequence[Sequence[str]] | None = None
) -> Document:
    """A copy of the document with every non-empty secret replaced by REDACTED."""
    redacted = copy.deepcopy(document)
    for pattern in _all_secret_paths() if paths is None else paths:
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
    for pattern in _all_secret_paths() if paths is None else paths:
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
