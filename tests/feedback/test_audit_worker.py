"""Beat's retention job, in a real worker on the real broker and PostgreSQL,
deletes only the audit log rows past their retention."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from feedback.audit.models import AuditEntry
from feedback.audit.services import audit_record
from feedback.privacy.tasks import apply_retention_task

pytestmark = [pytest.mark.service, pytest.mark.django_db(transaction=True)]


def test_the_worker_expires_old_audit_rows_only(celery_worker_process):
    # The worker reads the default retention (730 days) from its own settings.
    now = timezone.now()
    old = audit_record(kind=AuditEntry.Kind.EXPORT, subject="deliveries.csv")
    kept = audit_record(kind=AuditEntry.Kind.CHANGE, subject="buyer")
    AuditEntry.objects.filter(pk=old.pk).update(occurred_at=now - timedelta(days=731))
    AuditEntry.objects.filter(pk=kept.pk).update(occurred_at=now - timedelta(days=729))

    apply_retention_task.delay()

    deadline = time.monotonic() + 60
    while AuditEntry.objects.filter(pk=old.pk).exists():
        assert time.monotonic() < deadline, "the worker did not expire the row"
        time.sleep(0.2)
    assert list(AuditEntry.objects.values_list("pk", flat=True)) == [kept.pk]
