"""Pausing and resuming a source (DESIGN §11).

The status is advice to the lead distribution system: a paused source still
receives and forwards feedback. Each change is one transaction that locks the
source, writes the audit rows (its history and the audit log) and emits the
webhook event, so an event is sent exactly when a change is committed.
"""

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from feedback.audit.models import AuditEntry
from feedback.audit.services import audit_change
from feedback.models import ApiKey
from feedback.sourcestatus.models import SourceStatusChange
from feedback.webhooks.services import webhook_emit
from sources.models import Source

MAX_REASON_LENGTH = 500
Status = Source.Status
Action = SourceStatusChange.Action


def _locked(source: Source) -> Source:
    return Source.objects.select_for_update().get(pk=source.pk)


def source_status_data(source: Source, *, via: str) -> dict[str, object]:
    """The `data` of a source.paused or source.resumed webhook."""
    paused = source.status == Status.PAUSED
    return {
        "source": {"slug": source.slug, "name": source.name},
        "status": source.status,
        "paused_reason": source.paused_reason if paused else None,
        "paused_at": source.paused_at if paused else None,
        "via": via,
    }


def _refresh(source: Source, locked: Source) -> None:
    # The caller's instance shows the committed status.
    source.status = locked.status
    source.paused_reason = locked.paused_reason
    source.paused_at = locked.paused_at
    source.updated_at = locked.updated_at


def source_pause(
    *,
    source: Source,
    reason: str,
    actor: User | None,
    via: str,
    api_key: ApiKey | None = None,
) -> bool:
    """Pause `source`; False (and nothing written) if it is paused already."""
    reason = reason.strip()[:MAX_REASON_LENGTH]
    with transaction.atomic():
        locked = _locked(source)
        if locked.status == Status.PAUSED:
            _refresh(source, locked)
            return False
        locked.status = Status.PAUSED
        locked.paused_reason = reason
        locked.paused_at = timezone.now()
        locked.save(
            update_fields=["status", "paused_reason", "paused_at", "updated_at"]
        )
        SourceStatusChange.objects.create(
            source=locked,
            action=Action.PAUSED,
            reason=reason,
            via=via[:120],
            user=actor,
            api_key=api_key,
            created_at=locked.paused_at,
        )
        audit_change(
            obj=locked, kind=AuditEntry.Kind.CHANGE, fields=["status", "paused_reason"]
        )
        webhook_emit(event="source.paused", payload=source_status_data(locked, via=via))
        _refresh(source, locked)
    return True


def source_resume(
    *,
    source: Source,
    actor: User | None,
    via: str,
    api_key: ApiKey | None = None,
) -> bool:
    """Resume a paused `source`; False (and nothing written) if it is active."""
    with transaction.atomic():
        locked = _locked(source)
        if locked.status == Status.ACTIVE:
            _refresh(source, locked)
            return False
        locked.status = Status.ACTIVE
        locked.paused_reason = ""
        locked.paused_at = None
        locked.save(
            update_fields=["status", "paused_reason", "paused_at", "updated_at"]
        )
        SourceStatusChange.objects.create(
            source=locked,
            action=Action.RESUMED,
            via=via[:120],
            user=actor,
            api_key=api_key,
        )
        audit_change(obj=locked, kind=AuditEntry.Kind.CHANGE, fields=["status"])
        webhook_emit(
            event="source.resumed", payload=source_status_data(locked, via=via)
        )
        _refresh(source, locked)
    return True
