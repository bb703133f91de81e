from django.db.models import QuerySet

from feedback.audit.models import AuditEntry


def audit_entry_list() -> QuerySet[AuditEntry]:
    """The audit log, newest first, with the actor's user and key at hand."""
    return AuditEntry.objects.select_related("actor_user", "actor_key").order_by(
        "-occurred_at", "-pk"
    )
