"""Intake, step one: each item as sent, checked for what needs no database.

Every channel (JSON API, LeadConduit URL, portal, admin, CSV chunks) parses its
items here, so a field means the same and is refused in the same words wherever
it comes from.
"""

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from django.utils.dateparse import parse_datetime

from feedback.models import EVENT_ID_PATTERN, Feedback, OutcomeCode
from feedback.safetext import find_problem
from feedback.services import EARLIEST_INSTANT, as_utc
from sources.models import Kind

CLOCK_SKEW = timedelta(minutes=5)


MAX_CUSTOM_BYTES = 4096


MAX_NOTE_CHARS = 2000


MAX_REASON_CHARS = 255


DATE_TIME_SEPARATOR = re.compile(r"\d[Tt ]\d")
DATE_ONLY_MESSAGE = (
    "Needs a time as well as the date, e.g. 2026-11-20T10:30:00Z: "
    "a date alone does not say when on that day."
)
EARLIEST_MESSAGE = f"Cannot be before {EARLIEST_INSTANT:%Y-%m-%d}."


# Kind.values builds a new list on every access; items are parsed by the thousand.
KINDS = frozenset(Kind.values)


# In this order, so the first problem named is the same on every run.
FIELDS = (
    "event_id",
    "reference",
    "type",
    "outcome_code",
    "reason",
    "revenue",
    "quality_score",
    "occurred_at",
    "custom",
    "note",
)
KNOWN_FIELDS = frozenset(FIELDS)

# Text fields: an object or a list (or XML elements with children) in one of
# these is refused, not stored as its Python repr.
NOT_TEXT = "Must be text, not an object or a list (or XML elements)."


def keep_extra_variables(
    variables: Mapping[str, Any], *, ignore: Collection[str] = ()
) -> dict[str, Any]:
    """One item of the feedback fields in `variables`, every other variable but
    those in `ignore` kept in `custom` (an explicit `custom` object wins, name by
    name).

    For the LeadConduit URL, where a CRM posts whatever variables it has; the
    JSON API refuses unknown fields instead. What is kept counts toward
    `custom`'s size limit. A `custom` that is not an object keeps nothing: it is
    refused as it stands."""
    item = {name: variables.get(name) for name in KNOWN_FIELDS}
    extra = {
        name: value
        for name, value in variables.items()
        if name not in KNOWN_FIELDS and name not in ignore
    }
    if not extra:
        return item
    custom = item["custom"]
    if _is_blank(custom):
        item["custom"] = extra
    elif isinstance(custom, dict):
        item["custom"] = {**extra, **custom}
    return item


class ReceiveStatus(StrEnum):
    """How one feedback ended. Only NOT_FOUND and INVALID store nothing."""

    ACCEPTED = "accepted"
    REFUSED = "refused"
    FORBIDDEN = "forbidden"
    ALREADY_RETURNED = "already_returned"
    NOT_FOUND = "not_found"
    INVALID = "invalid"


# A message that says something of its field ("Must be a decimal number.")
# reads as a sentence once the field leads it: "revenue must be a decimal number."
PREDICATES = ("must ", "cannot ", "is ", "has ", "needs ")


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}

    def sentence(self) -> str:
        """The error as a sentence a person reads: the field leads a message
        about it, a message that names its subject stands alone."""
        text = self.message.strip()
        if self.field and text.lower().startswith(PREDICATES):
            text = f"{self.field} {text[0].lower()}{text[1:]}"
        elif text:
            text = text[0].upper() + text[1:]
        return text if text.endswith((".", "?", "!")) else f"{text}."


@dataclass
class ReceiveResult:
    status: ReceiveStatus
    feedback: Feedback | None = None
    errors: list[FieldError] = field(default_factory=list)
    # For a return under a capped policy: the month's allowance left after it.
    returns_remaining: int | None = None

    @property
    def reason(self) -> str:
        if self.feedback is not None and self.feedback.outcome_reason:
            return self.feedback.outcome_reason
        return join_errors(self.errors)


def join_errors(errors: list[FieldError]) -> str:
    """The errors as plain sentences, for people and the `reason` of answers;
    the API keeps each one's field beside it in `errors`."""
    return " ".join(error.sentence() for error in errors)


@dataclass
class Parsed:
    """One item after the checks that need no database."""

    event_id: str = ""
    reference: str = ""
    kind: str = ""
    outcome_code: OutcomeCode | None = None
    reason: str = ""
    revenue: Decimal | None = None
    quality_score: int | None = None
    occurred_at: datetime | None = None
    custom: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    fatal: list[FieldError] = field(default_factory=list)  # nothing can be stored
    errors: list[FieldError] = field(default_factory=list)  # stored as refused


def lookup_key(item: Parsed) -> tuple[str, str]:
    return (
        ("event_id", item.event_id) if item.event_id else ("reference", item.reference)
    )


def not_found(item: Parsed) -> ReceiveResult:
    name = lookup_key(item)[0]
    message = (
        "No delivery of yours has this event id."
        if name == "event_id"
        else "No delivery of yours has this reference."
    )
    return ReceiveResult(ReceiveStatus.NOT_FOUND, errors=[FieldError(name, message)])


def parse_item(
    data: Mapping[str, Any], *, codes: dict[str, OutcomeCode], now: datetime
) -> Parsed:
    item = Parsed()
    if not isinstance(data, Mapping):
        item.fatal.append(FieldError("", "Each feedback must be an object."))
        return item
    # Nothing the database cannot store goes further, whichever channel sent it.
    item.fatal.extend(_unstorable(data))
    for name in ("event_id", "reference", "type", "outcome_code"):
        if isinstance(data.get(name), Mapping | list):
            item.fatal.append(FieldError(name, NOT_TEXT))
    if item.fatal:
        return item

    item.event_id = _text(data.get("event_id")).lower()
    item.reference = _text(data.get("reference"))
    if item.event_id and not re.fullmatch(EVENT_ID_PATTERN, item.event_id):
        item.fatal.append(FieldError("event_id", "Must be 24 hexadecimal characters."))
    if not item.event_id and not item.reference:
        item.fatal.append(FieldError("event_id", "Send an event_id or a reference."))

    kind = _text(data.get("type")).lower()
    code_name = _text(data.get("outcome_code")).lower()
    if kind and kind not in KINDS:
        item.fatal.append(
            FieldError(
                "type", f"Must be one of {', '.join(Kind.values)}, not {kind!r}."
            )
        )
    if code_name:
        code = codes.get(code_name)
        if code is None:
            item.fatal.append(
                FieldError("outcome_code", f"Unknown outcome code {code_name!r}.")
            )
        elif kind and code.kind != kind:
            item.fatal.append(
                FieldError(
                    "outcome_code",
                    f"{code_name!r} is a {code.kind} outcome, not a {kind}.",
                )
            )
        else:
            item.outcome_code = code
            kind = code.kind
    if not kind and not code_name:
        item.fatal.append(FieldError("type", "Send a type or an outcome_code."))
    item.kind = kind

    item.reason = _free_text(data.get("reason"), "reason", item.errors)
    if len(item.reason) > MAX_REASON_CHARS:
        item.errors.append(
            FieldError("reason", f"Must be at most {MAX_REASON_CHARS} characters.")
        )
        item.reason = item.reason[:MAX_REASON_CHARS]
    item.note = _free_text(data.get("note"), "note", item.errors)
    if len(item.note) > MAX_NOTE_CHARS:
        item.errors.append(
            FieldError("note", f"Must be at most {MAX_NOTE_CHARS} characters.")
        )
        item.note = item.note[:MAX_NOTE_CHARS]
    item.revenue = _revenue(data.get("revenue"), item.errors)
    item.quality_score = _quality_score(data.get("quality_score"), item.errors)
    item.occurred_at = _occurred_at(data.get("occurred_at"), item.errors, now=now)
    item.custom = _custom(data.get("custom"), item.errors)
    return item


def _unstorable(data: Mapping[str, Any]) -> list[FieldError]:
    errors = []
    for name in FIELDS:
        value = data.get(name)
        if value is None or (
            isinstance(value, str) and value.isascii() and "\x00" not in value
        ):
            continue  # the common case, without a call per field
        problem = find_problem(value, name, depth=1)
        if problem is not None:
            errors.append(FieldError(problem.field, problem.message))
    return errors


def _text(value: object) -> str:
    if value is None:
        return ""
    return str(value).strip()


def _free_text(value: object, name: str, errors: list[FieldError]) -> str:
    if isinstance(value, Mapping | list):
        errors.append(FieldError(name, NOT_TEXT))
        return ""
    return _text(value)


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def revenue_parse(value: object) -> tuple[Decimal | None, str]:
    """A revenue as the intake reads it: (amount, "") or (None, why not)."""
    errors: list[FieldError] = []
    amount = _revenue(value, errors)
    return amount, errors[0].message if errors else ""


def _revenue(value: object, errors: list[FieldError]) -> Decimal | None:
    if _is_blank(value):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        errors.append(FieldError("revenue", "Must be a decimal number."))
        return None
    text = str(value).strip()
    if not text.isascii() or "_" in text:
        # Decimal() also reads other scripts' digits and 1_000; a CRM sending
        # those is more likely garbled than meaning them.
        errors.append(
            FieldError("revenue", "Must be a decimal number in the digits 0-9.")
        )
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        errors.append(FieldError("revenue", "Must be a decimal number."))
        return None
    exponent = amount.as_tuple().exponent
    if not amount.is_finite() or not isinstance(exponent, int):
        errors.append(FieldError("revenue", "Must be a decimal number."))
        return None
    if amount < 0:
        errors.append(FieldError("revenue", "Cannot be negative."))
        return None
    if exponent < -2:
        errors.append(FieldError("revenue", "Must have at most 2 decimal places."))
        return None
    if amount >= Decimal("10000000000"):
        errors.append(FieldError("revenue", "Must be less than 10,000,000,000."))
        return None
    return amount.quantize(Decimal("0.01"))


def _quality_score(value: object, errors: list[FieldError]) -> int | None:
    if _is_blank(value):
        return None
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"[1-5]", text):
        errors.append(
            FieldError("quality_score", "Must be a whole number from 1 to 5.")
        )
        return None
    return int(text)


def _occurred_at(
    value: object, errors: list[FieldError], *, now: datetime
) -> datetime | None:
    if _is_blank(value):
        return None
    text = str(value).strip()
    parsed: datetime | None
    try:
        parsed = parse_datetime(text)
    except ValueError:
        parsed = None
    if parsed is None:
        errors.append(
            FieldError(
                "occurred_at",
                "Must be an ISO 8601 date-time, e.g. 2026-11-20T10:30:00Z.",
            )
        )
        return None
    if not DATE_TIME_SEPARATOR.search(text):
        # parse_datetime reads a date alone as midnight, in a time zone the
        # sender may not mean: a day-old conversion could land before delivery.
        errors.append(FieldError("occurred_at", DATE_ONLY_MESSAGE))
        return None
    try:
        parsed = as_utc(parsed)
    except ValueError:
        errors.append(FieldError("occurred_at", "Is out of range."))
        return None
    if parsed < EARLIEST_INSTANT:
        errors.append(FieldError("occurred_at", EARLIEST_MESSAGE))
        return None
    if parsed > now + CLOCK_SKEW:
        errors.append(FieldError("occurred_at", "Cannot be in the future."))
        return None
    return parsed


def _custom(value: object, errors: list[FieldError]) -> dict[str, Any]:
    if _is_blank(value):
        return {}
    if not isinstance(value, dict):
        errors.append(FieldError("custom", "Must be a JSON object."))
        return {}
    size = len(json.dumps(value, default=str).encode())
    if size > MAX_CUSTOM_BYTES:
        errors.append(
            FieldError(
                "custom",
                f"Must be at most {MAX_CUSTOM_BYTES} bytes as JSON, not {size}.",
            )
        )
        return {}
    return value
