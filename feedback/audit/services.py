"""Writing audit rows, and expiring them (the only way a row goes).

Rows say which fields changed and which filters an export used, never a value
that could be a secret or a person's contact details.
"""

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.db import transaction
from django.db.models import Model, QuerySet
from django.utils import timezone

from feedback.audit.context import (
    Actor,
    current_actor,
    current_via,
    request_actor,
)
from feedback.audit.models import AuditEntry

T = TypeVar("T")

# Objects whose name is the seller's own wording (a buyer's, a source's, a
# key's name): the row shows it. Any other object is named by its id only, as
# its text may hold a person's name or address (a user, a member, an entry).
NAMED_OBJECTS = frozenset(
    {
        "feedback.flow",
        "feedback.buyer",
        "feedback.buyerpolicy",
        "feedback.apikey",
        "feedback.outcomecode",
        "feedback.suppressionlist",
        "feedback.webhookendpoint",
        "sources.source",
        "sources.feedbackconfig",
        "reporting.digest",
        "monitoring.monitor",
        "auth.group",
    }
)

LOG_KINDS = {
    ADDITION: AuditEntry.Kind.ADDITION,
    CHANGE: AuditEntry.Kind.CHANGE,
    DELETION: AuditEntry.Kind.DELETION,
}

# Filters that search for a person: their values are withheld. Values of other
# filters are kept unless they look like an email address or a phone number.
SEARCH_PARAMETERS = frozenset({"q", "search", "email", "phone", "name", "contact"})
PHONE_LIKE = re.compile(r"\+?[\d\s().-]{7,24}")
ISO_DATE = re.compile(r"\d{4}-\d{2}(-\d{2})?([T ][\d:.]+)?(Z|[+-]\d{2}:?\d{2})?")
WITHHELD = "(withheld)"
MAX_QUERY = 2000


def audit_record(
    *,
    kind: str,
    subject: str,
    actor: Actor | None = None,
    via: str | None = None,
    object_id: object = "",
    object_repr: str = "",
    fields: Sequence[str] = (),
    query: str = "",
    row_count: int | None = None,
) -> AuditEntry:
    """Write one audit row; the actor and the channel default to the current
    request's or command's (feedback/audit/context.py)."""
    actor = actor or current_actor()
    return AuditEntry.objects.create(
        kind=kind,
        via=via or current_via(),
        actor=actor.label[:200],
        actor_user=actor.user,
        actor_key=actor.api_key,
        address=actor.address,
        subject=subject[:100],
        object_id=str(object_id)[:64],
        object_repr=object_repr[:200],
        fields=list(fields),
        query=query[:MAX_QUERY],
        row_count=row_count,
    )


def audit_export(
    *,
    request: Any,
    export: str,
    via: str,
    rows: int | None = None,
    scope: object = None,
) -> AuditEntry:
    """Record that `request`'s user or key downloaded `export` with the filters
    of its query string. `scope` names whose data it was (a buyer), if not all."""
    return audit_record(
        kind=AuditEntry.Kind.EXPORT,
        subject=export,
        actor=request_actor(request),
        via=via,
        object_id=getattr(scope, "pk", "") or "",
        object_repr=str(scope) if scope is not None else "",
        query=redacted_query(request.GET),
        row_count=rows,
    )


def redacted_query(params: Any) -> str:
    """A query string with every searched contact detail withheld."""
    parts = []
    for name in params:
        for value in params.getlist(name):
            if not value:  # a filter left empty filters nothing
                continue
            shown = value
            if name.lower() in SEARCH_PARAMETERS or looks_like_contact(value):
                shown = WITHHELD
            parts.append(f"{name}={shown}")
    return "&".join(parts)


def looks_like_contact(value: str) -> bool:
    """An email address, or a phone number however it is written."""
    value = value.strip()
    if "@" in value:
        return True
    if ISO_DATE.fullmatch(value) or not PHONE_LIKE.fullmatch(value):
        return False
    return 7 <= sum(c.isdigit() for c in value) <= 15


class Counted(Iterator[T]):
    """Passes rows through and counts them, for the row count of an export that
    is written as it is read."""

    def __init__(self, rows: Iterable[T]) -> None:
        self._rows = iter(rows)
        self.count = 0

    def __next__(self) -> T:
        row = next(self._rows)
        self.count += 1
        return row


def audit_log_entry(entry: LogEntry) -> AuditEntry | None:
    """The audit row of one of the admin's change-log entries."""
    kind = LOG_KINDS.get(entry.action_flag)
    if kind is None:
        return None
    content_type = entry.content_type
    label = (
        f"{content_type.app_label}.{content_type.model}" if content_type else "object"
    )
    if label == "feedback.apikey" and kind == AuditEntry.Kind.ADDITION:
        return None  # api_key_create recorded it, as it does for every way in
    model = content_type.model_class() if content_type else None
    subject = str(model._meta.verbose_name) if model is not None else label
    actor = current_actor()
    user = entry.user
    if actor.user is None or actor.user.pk != user.pk:
        actor = Actor(user.get_username(), user=user, address=actor.address)
    return audit_record(
        kind=kind,
        subject=subject,
        actor=actor,
        via=AuditEntry.Via.ADMIN,
        object_id=entry.object_id or "",
        object_repr=entry.object_repr if label in NAMED_OBJECTS else "",
        fields=changed_fields(entry.change_message),
    )


def changed_fields(change_message: str) -> list[str]:
    """The field and inline names of a change-log message, without the objects'
    own text (an inline's text may be a person's)."""
    try:
        messages = json.loads(change_message or "[]")
    except ValueError:
        return []
    names: list[str] = []
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, Mapping):
            continue
        for verb, detail in message.items():
            if not isinstance(detail, Mapping):
                continue
            fields = [str(f) for f in detail.get("fields", []) or []]
            inline = detail.get("name")
            if not inline:
                names.extend(fields)
            elif fields:
                names.extend(f"{inline}: {field}" for field in fields)
            else:
                names.append(f"{inline} ({verb})")
    return list(dict.fromkeys(names))


def audit_config_change(
    *, entity: str, slug: str, created: bool, fields: Sequence[str]
) -> AuditEntry:
    """Record one buyer, source or section item the configuration import wrote."""
    return audit_record(
        kind=AuditEntry.Kind.ADDITION if created else AuditEntry.Kind.CHANGE,
        subject=entity,
        object_id=slug,
        object_repr=slug,
        fields=fields,
    )


def audit_change(*, obj: Model, kind: str, fields: Sequence[str] = ()) -> AuditEntry:
    """Record a change a service made outside the admin's change log (a key
    created or revoked, a source paused)."""
    label = obj._meta.label_lower
    return audit_record(
        kind=kind,
        subject=str(obj._meta.verbose_name),
        object_id=obj.pk,
        object_repr=str(obj) if label in NAMED_OBJECTS else "",
        fields=fields,
    )


def audit_expired(*, now: Any = None) -> QuerySet[AuditEntry]:
    """The rows older than LEADBACK_AUDIT_RETENTION_DAYS."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.LEADBACK_AUDIT_RETENTION_DAYS)
    return AuditEntry.objects.filter(occurred_at__lt=cutoff)


def audit_expire(*, now: Any = None) -> int:
    """Delete the rows older than LEADBACK_AUDIT_RETENTION_DAYS (the only way a
    row goes; retention runs it); the count deleted."""
    with transaction.atomic():
        deleted, _ = audit_expired(now=now).delete()
    return deleted
