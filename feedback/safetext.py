"""Text the database can store, and nesting the code can walk, checked at every way in.

PostgreSQL refuses NUL (U+0000) in text and JSONB, and a lone UTF-16 surrogate
(which JSON's `\\ud800` escapes can carry) cannot be encoded at all: either one
would turn a request into a database error. Every input path refuses them with
these checks, naming the field, before anything is stored; the same walk bounds
how deeply a document may nest (README, "Input limits").
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 32

NUL_MESSAGE = "must not contain NUL characters"
SURROGATE_MESSAGE = "is not valid Unicode (it contains a lone surrogate)"
TOO_DEEP_MESSAGE = f"is nested deeper than {MAX_DEPTH} levels, the limit"


@dataclass(frozen=True)
class TextProblem:
    field: str
    message: str
    too_deep: bool = False


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored, or None."""
    if "\x00" in text:
        return NUL_MESSAGE
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # only a lone surrogate cannot be encoded
            return SURROGATE_MESSAGE
    return None


def storable(text: str) -> str:
    """`text` with what the database cannot store replaced by U+FFFD: for what
    Leadback records rather than accepts (a source's answer), where refusing is
    no option."""
    if text_problem(text) is None:
        return text
    return (
        text.replace("\x00", "\ufffd")
        .encode("utf-8", "surrogatepass")
        .decode("utf-8", "replace")
    )


def shown(name: str) -> str:
    """`name` as an error can quote it: NUL and surrogates as \\u escapes."""
    if text_problem(name) is None:
        return name
    return "".join(
        f"\\u{ord(c):04x}" if c == "\x00" or "\ud800" <= c <= "\udfff" else c
        for c in name
    )


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def find_problem(
    value: Any, path: str = "", *, depth: int = 0, max_depth: int = MAX_DEPTH
) -> TextProblem | None:
    """The first key or string in `value` that cannot be stored, or the first
    object or list nested deeper than `max_depth`; None when there is none.

    `depth` is how deep `value` already sits: a document's top-level object is
    level 1, so a member of it is walked with depth=1.
    """
    if isinstance(value, str):
        message = text_problem(value)
        return TextProblem(path, message) if message else None
    if not isinstance(value, dict | list | tuple):
        return None
    if depth + 1 > max_depth:
        return TextProblem(path, TOO_DEEP_MESSAGE, too_deep=True)
    if isinstance(value, dict):
        for key, item in value.items():
            name = str(key)
            message = text_problem(name)
            if message:
                return TextProblem(join(path, shown(name)), f"the name {message}")
            problem = find_problem(
                item, join(path, name), depth=depth + 1, max_depth=max_depth
            )
            if problem:
                return problem
        return None
    for index, item in enumerate(value):
        problem = find_problem(
            item, join(path, str(index)), depth=depth + 1, max_depth=max_depth
        )
        if problem:
            return problem
    return None


def find_variable_problem(
    variables: Iterable[tuple[str, Iterable[str]]],
) -> TextProblem | None:
    """The first unstorable name or value among form or query variables
    (a QueryDict's `lists()`)."""
    for name, values in variables:
        message = text_problem(name)
        if message:
            return TextProblem(shown(name), f"the name {message}")
        for value in values:
            message = text_problem(value)
            if message:
                return TextProblem(name, message)
    return None
