"""`instances_insert` and `instances_update`: what `bulk_create` and
`bulk_update` store, in one statement."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from feedback.bulk import instances_insert, instances_update
from feedback.forwarding.models import Notification, NotificationAttempt
from feedback.models import Feedback
from tests.factories import FeedbackFactory
from tests.feedback.test_forwarding_admin import make_notification

Status = Notification.Status

pytestmark = pytest.mark.django_db

FIELDS = ["public_id", "reason", "revenue", "quality_score", "occurred_at", "custom"]


def test_it_saves_each_rows_own_values_including_nulls():
    rows = [FeedbackFactory(kind="conversion") for _ in range(3)]
    untouched = FeedbackFactory(kind="conversion")
    before = Feedback.objects.get(pk=untouched.pk)
    now = timezone.now().replace(microsecond=123456)
    wanted = [
        (uuid.uuid4(), "First, with a comma", Decimal("12.50"), 2, now, {"a": [1]}),
        (uuid.uuid4(), "", None, None, now + timedelta(hours=1), {}),
        (uuid.uuid4(), "Ünïcode ✓", Decimal("0.01"), 5, now - timedelta(days=9), {}),
    ]
    for row, values in zip(rows, wanted, strict=True):
        for name, value in zip(FIELDS, values, strict=True):
            setattr(row, name, value)

    with CaptureQueriesContext(connection) as statements:
        instances_update(rows, FIELDS)

    saved = [
        tuple(getattr(Feedback.objects.get(pk=row.pk), name) for name in FIELDS)
        for row in rows
    ]
    assert saved == wanted
    after = Feedback.objects.get(pk=untouched.pk)
    assert [getattr(after, n) for n in FIELDS] == [getattr(before, n) for n in FIELDS]
    updates = [q["sql"] for q in statements if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1
    if connection.vendor == "postgresql":
        assert "unnest(" in updates[0]
        assert "CASE" not in updates[0]


def test_nothing_to_save_sends_nothing():
    with CaptureQueriesContext(connection) as statements:
        instances_update([], FIELDS)
    assert statements.captured_queries == []


def test_insert_stores_every_column_in_one_statement():
    notification = make_notification(Status.RETRYING, attempts=0)
    started = timezone.now().replace(microsecond=0)
    attempts = [
        NotificationAttempt(
            notification=notification,
            number=number,
            started_at=started + timedelta(seconds=number),
            duration_ms=12 * number,
            request_method="POST",
            request_url="https://returns.example/api",
            request_headers={"content-type": "application/json", "x-tab": "a\tb"},
            request_body='{"lead": "L-1",\n "note": "back\\slash"}',
            response_status=status,
            response_headers={} if status is None else {"server": "test"},
            response_body="" if status is None else "ok ✓",
            outcome=outcome,
            reason=reason,
            error_class="ConnectionError" if status is None else "",
        )
        for number, status, outcome, reason in [
            (1, None, "error", "Connection refused."),
            (2, 200, "success", ""),
        ]
    ]
    wanted = [model_to_dict(a, exclude=["id"]) for a in attempts]

    with CaptureQueriesContext(connection) as statements:
        instances_insert(attempts)

    stored = [
        model_to_dict(a, exclude=["id"])
        for a in NotificationAttempt.objects.filter(notification=notification).order_by(
            "number"
        )
    ]
    assert stored == wanted
    inserts = [q["sql"] for q in statements if q["sql"].startswith("INSERT")]
    # PostgreSQL's COPY goes round the statement log: nothing shows there.
    assert len(inserts) == (0 if connection.vendor == "postgresql" else 1)
