"""The lease mechanism itself (feedback.leases), on notification rows.

Its users have their own tests: claiming and sweeping notifications
(test_delivery.py), batch runs (test_batches.py) and CSV imports
(test_imports.py, test_imports_parallel.py)."""

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from feedback.forwarding.models import Notification
from feedback.leases import (
    due,
    leases_claim,
    leases_extend,
    leases_release,
    leases_take,
    messages_send,
)
from tests.factories import FeedbackFactory

pytestmark = pytest.mark.django_db


def pending(count: int, **fields) -> list[Notification]:
    rows = []
    for _ in range(count):
        feedback = FeedbackFactory(kind="conversion")
        rows.append(
            Notification.objects.create(
                feedback=feedback,
                source=feedback.source,
                kind=feedback.kind,
                lead_delivered_at=feedback.delivery.delivered_at,
                next_attempt_at=timezone.now() - timedelta(seconds=1),
                **fields,
            )
        )
    return rows


def due_rows():
    return Notification.objects.filter(due(timezone.now()))


def test_a_claim_leases_due_rows_to_one_new_token():
    rows = pending(3)

    token, claimed = leases_claim(due_rows(), seconds=60, order_by=["pk"])

    assert [pk for (pk,) in claimed] == [r.pk for r in rows]
    held = Notification.objects.filter(lease_token=token)
    assert held.count() == 3
    assert all(
        55 <= (n.lease_expires_at - timezone.now()).total_seconds() <= 60 for n in held
    )


def test_a_leased_row_is_not_due_until_its_lease_runs_out():
    (row,) = pending(1)
    leases_claim(due_rows(), seconds=60)

    assert leases_claim(due_rows(), seconds=60)[1] == []

    Notification.objects.filter(pk=row.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert leases_claim(due_rows(), seconds=60)[1] == [(row.pk,)]


def test_a_claim_takes_at_most_the_limit_and_sets_other_columns():
    pending(3)

    token, claimed = leases_claim(due_rows(), seconds=60, limit=2, status="sending")

    assert len(claimed) == 2
    assert set(
        Notification.objects.filter(lease_token=token).values_list("status", flat=True)
    ) == {"sending"}


def test_taking_needs_the_token_or_an_expired_lease():
    (row,) = pending(1)
    token, _ = leases_claim(due_rows(), seconds=60)
    rows = Notification.objects.filter(pk=row.pk)

    assert leases_take(rows, token=uuid.uuid4(), seconds=60, status="sending") == 0
    assert leases_take(rows, token=token, seconds=60, status="sending") == 1

    # Abandoned mid-send: once the lease has run out anyone may take it over.
    rows.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    other = uuid.uuid4()
    assert leases_take(rows, token=other, seconds=60) == 1
    assert rows.get().lease_token == other
    # The old holder's token no longer works, and a final row is nobody's.
    assert leases_take(rows, token=token, seconds=60) == 0
    rows.update(status="succeeded")
    assert leases_take(rows, token=other, seconds=60) == 0


def test_extending_and_releasing():
    (row,) = pending(1)
    token, _ = leases_claim(due_rows(), seconds=10)
    rows = Notification.objects.filter(pk=row.pk)

    assert leases_extend(rows, token=uuid.uuid4(), seconds=600) == 0
    assert leases_extend(rows, token=token, seconds=600) == 1
    assert (rows.get().lease_expires_at - timezone.now()).total_seconds() > 590

    assert leases_release(rows) == 1
    assert leases_claim(due_rows(), seconds=60)[1] == [(row.pk,)]


def test_messages_that_cannot_be_queued_are_returned_as_failed(caplog):
    def send(message: int) -> None:
        if message == 2:
            raise ConnectionError("broker down")

    queued, failed = messages_send([1, 2, 3], send, what="a test message")

    assert (queued, failed) == ([1, 3], [2])
    assert "could not queue a test message" in caplog.text


@pytest.mark.service
@pytest.mark.django_db(transaction=True)
def test_concurrent_claimers_skip_each_others_rows():
    """While one claimer's transaction holds its rows, another claims the rest
    (FOR UPDATE SKIP LOCKED) instead of waiting for or repeating them."""
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's")
    rows = pending(6)
    first_claimed = threading.Event()
    second_done = threading.Event()
    claims: dict[str, list[int]] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                _, got = leases_claim(due_rows(), seconds=60, limit=3, order_by=["pk"])
                claims["first"] = [pk for (pk,) in got]
                first_claimed.set()
                second_done.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    assert first_claimed.wait(10)
    # The first claim has not committed: its rows still look due, but are locked.
    _, got = leases_claim(
        Notification.objects.filter(next_attempt_at__lte=timezone.now()),
        seconds=60,
        order_by=["pk"],
    )
    claims["second"] = [pk for (pk,) in got]
    second_done.set()
    thread.join(10)

    assert claims["first"] == [r.pk for r in rows[:3]]
    assert claims["second"] == [r.pk for r in rows[3:]]
