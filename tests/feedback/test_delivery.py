"""The delivery engine against a real local receiver, run in-process."""

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from feedback.forwarding.engine import (
    Claim,
    notification_deliver,
    notifications_claim_due,
    notifications_deliver,
    notifications_deliver_due,
    notifications_enqueue,
    notifications_resend,
)
from feedback.forwarding.models import Notification, NotificationAttempt
from feedback.forwarding.notifications import notifications_create
from feedback.forwarding.schedule import retry_after_seconds, retry_delay
from feedback.intake.pipeline import feedback_receive
from feedback.models import Feedback
from sources.models import FeedbackConfig, FieldMapping
from sources.outbound.types import OutboundResponse
from tests.factories import DeliveryEventFactory, FeedbackFactory, SourceFactory
from tests.sources.servers import RecordingServer, Reply

pytestmark = pytest.mark.django_db

Status = Notification.Status
SCHEDULE = [0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]


# The attempts' INSERT; PostgreSQL writes them with COPY, which goes round the
# statement log.
INSERT = [] if connection.vendor == "postgresql" else ["INSERT"]


@pytest.fixture(autouse=True)
def engine_settings(settings):
    # These tests drive the engine by hand: feedback's rows wait unclaimed for
    # a claim, as without the fast path (whose on-commit queueing a test's
    # transaction never runs anyway). The fast path's own tests switch it on.
    settings.LEADBACK_QUEUE_ON_COMMIT = False
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    settings.LEADBACK_RETRY_SCHEDULE_S = SCHEDULE
    settings.LEADBACK_RETRY_JITTER = 0.2
    return settings


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    with RecordingServer(Reply(200, b'{"ok": true, "id": "S-1"}')) as server:
        yield server


def make_config(source, url, **fields) -> FeedbackConfig:
    values = {"kind": "return", "method": "json", "url": url} | fields
    config = FeedbackConfig.objects.create(source=source, **values)
    FieldMapping.objects.create(
        config=config, position=0, target="event", value="{{ event.id }}"
    )
    FieldMapping.objects.create(
        config=config, position=1, target="reason", value="{{ feedback.reason }}"
    )
    return config


def returned(buyer, *, source=None, reason="Wrong number") -> Feedback:
    delivery = DeliveryEventFactory(
        buyer=buyer, **({"lead__source": source} if source else {})
    )
    result = feedback_receive(
        buyer=buyer,
        data={"event_id": delivery.event_id, "type": "return", "reason": reason},
        channel=Feedback.Channel.API,
    )
    assert result.feedback is not None
    return result.feedback


# Creating -------------------------------------------------------------------------


def test_accepted_feedback_gets_one_notification_per_enabled_config(buyer, receiver):
    source = SourceFactory()
    first = make_config(source, receiver.url("/a"))
    second = make_config(source, receiver.url("/b"), method="form")
    make_config(source, receiver.url("/off"), enabled=False)
    make_config(source, receiver.url("/conversions"), kind="conversion")

    feedback = returned(buyer, source=source)

    rows = Notification.objects.filter(feedback=feedback).order_by("config_id")
    assert [(n.config, n.status, n.kind) for n in rows] == [
        (first, Status.PENDING, "return"),
        (second, Status.PENDING, "return"),
    ]
    assert all(n.public_id.startswith("msg_") for n in rows)


def test_failing_criteria_are_recorded_as_skipped_with_the_reason(buyer, receiver):
    source = SourceFactory()
    make_config(
        source,
        receiver.url(),
        criteria={
            "rules": [{"lhv": "feedback.reason", "op": "is equal to", "rhv": "Fraud"}]
        },
    )

    feedback = returned(buyer, source=source, reason="Wrong number")

    notification = Notification.objects.get(feedback=feedback)
    assert notification.status == Status.SKIPPED
    assert "Fraud" in notification.reason
    assert notification.next_attempt_at is None
    assert notifications_deliver_due() == 0
    assert receiver.requests == []


def test_refused_feedback_is_not_forwarded(buyer, receiver):
    source = SourceFactory(accepts_return=False)
    make_config(source, receiver.url())

    feedback = returned(buyer, source=source)

    assert feedback.outcome == Feedback.Outcome.FAILURE
    assert not Notification.objects.exists()


# Delivering -----------------------------------------------------------------------


def test_a_notification_is_delivered_and_its_attempt_logged(buyer, receiver):
    source = SourceFactory()
    make_config(
        source,
        receiver.url("/returns"),
        auth_type="bearer",
        auth_secret="tok-secret-1",
        reference_path="id",
    )
    feedback = returned(buyer, source=source)

    assert notifications_deliver_due() == 1

    notification = Notification.objects.get()
    assert notification.status == Status.SUCCEEDED
    assert notification.reference == "S-1"
    assert notification.attempt_count == 1
    arrived = receiver.last
    assert json.loads(arrived.body) == {
        "event": feedback.delivery.event_id,
        "reason": "Wrong number",
    }
    assert arrived.header("webhook-id") == notification.public_id
    assert arrived.header("Authorization") == "Bearer tok-secret-1"
    attempt = NotificationAttempt.objects.get()
    assert (attempt.number, attempt.outcome, attempt.response_status) == (
        1,
        "success",
        200,
    )
    assert attempt.request_headers["Authorization"] == "<redacted>"
    assert "tok-secret-1" not in json.dumps(attempt.request_headers)
    assert json.loads(attempt.response_body) == {"ok": True, "id": "S-1"}


def test_a_refusal_is_final(buyer):
    with RecordingServer(Reply(422, b"duplicate lead")) as server:
        make_config(source := SourceFactory(), server.url(), outcome_search_term="ok")
        returned(buyer, source=source)
        notifications_deliver_due()
        notifications_deliver_due()

    notification = Notification.objects.get()
    assert notification.status == Status.FAILED
    assert notification.next_attempt_at is None
    assert notification.attempt_count == 1
    assert "did not match" in notification.reason


def test_an_error_is_retried_on_schedule_with_the_same_webhook_id(buyer):
    with RecordingServer(Reply(503, b"busy")) as server:
        make_config(source := SourceFactory(), server.url())
        returned(buyer, source=source)
        start = timezone.now()
        with time_machine.travel(start, tick=False):
            notifications_deliver_due()
        notification = Notification.objects.get()
        assert notification.status == Status.RETRYING
        wait = (notification.next_attempt_at - start).total_seconds()
        assert 4.0 <= wait <= 6.0  # 5 s ± 20%

        with time_machine.travel(start + timedelta(seconds=3), tick=False):
            assert notifications_deliver_due() == 0
        with time_machine.travel(start + timedelta(seconds=7), tick=False):
            assert notifications_deliver_due() == 1
        ids = {request.header("webhook-id") for request in server.requests}

    notification.refresh_from_db()
    assert notification.attempt_count == 2
    assert ids == {notification.public_id}
    assert notification.reason.startswith("HTTP 503")


def test_an_always_failing_source_ends_dead_after_the_whole_schedule(
    buyer, engine_settings
):
    # The real schedule, compressed: every wait is a few milliseconds.
    engine_settings.LEADBACK_RETRY_SCHEDULE_S = [s / 100_000 for s in SCHEDULE]
    with RecordingServer(Reply(500, b"down")) as server:
        make_config(source := SourceFactory(), server.url())
        returned(buyer, source=source)
        deadline = timezone.now() + timedelta(seconds=30)
        while Notification.objects.get().status != Status.DEAD:
            assert timezone.now() < deadline, "never went dead"
            notifications_deliver_due()
        sent = len(server.requests)

    notification = Notification.objects.get()
    assert sent == len(SCHEDULE) == notification.attempt_count
    assert list(notification.attempts.values_list("number", flat=True)) == list(
        range(1, len(SCHEDULE) + 1)
    )
    assert notification.finished_at is not None


def test_gone_disables_the_config(buyer):
    with RecordingServer(Reply(410, b"")) as server:
        config = make_config(source := SourceFactory(), server.url())
        returned(buyer, source=source)
        notifications_deliver_due()

    config.refresh_from_db()
    assert not config.enabled
    assert "410" in config.disabled_reason
    assert Notification.objects.get().status == Status.FAILED


def test_retry_after_is_honoured(buyer):
    reply = Reply(429, b"slow down", headers={"Retry-After": "120"})
    with RecordingServer(reply) as server:
        make_config(source := SourceFactory(), server.url())
        returned(buyer, source=source)
        start = timezone.now()
        with time_machine.travel(start, tick=False):
            notifications_deliver_due()

    notification = Notification.objects.get()
    assert notification.status == Status.RETRYING
    assert (notification.next_attempt_at - start).total_seconds() >= 120


def test_redirects_are_not_followed(buyer):
    with RecordingServer(
        Reply(302, b"", headers={"Location": "http://127.0.0.1:1/x"})
    ) as server:
        make_config(source := SourceFactory(), server.url(), outcome_search_term="ok")
        returned(buyer, source=source)
        notifications_deliver_due()
        assert len(server.requests) == 1

    attempt = NotificationAttempt.objects.get()
    assert attempt.response_status == 302


def test_a_private_destination_is_refused_and_retried(buyer, engine_settings):
    engine_settings.LEADBACK_OUTBOUND_ALLOWLIST = []
    with RecordingServer() as server:
        make_config(source := SourceFactory(), server.url())
        returned(buyer, source=source)
        notifications_deliver_due()
        assert server.requests == []

    notification = Notification.objects.get()
    assert notification.status == Status.RETRYING
    attempt = notification.attempts.get()
    assert attempt.response_status is None
    assert attempt.outcome == "error"


# Leases ---------------------------------------------------------------------------


def test_a_stale_claim_is_dropped_without_sending(buyer, receiver):
    make_config(source := SourceFactory(), receiver.url())
    returned(buyer, source=source)
    [claim] = notifications_claim_due()

    assert (
        notification_deliver(claim=Claim(claim.notification_id, uuid.uuid4())) is None
    )
    assert receiver.requests == []
    assert notification_deliver(claim=claim).status == Status.SUCCEEDED
    assert notification_deliver(claim=claim) is None  # already final
    assert len(receiver.requests) == 1


def test_a_claimed_row_is_not_claimed_again_until_its_lease_runs_out(
    buyer, receiver, engine_settings
):
    engine_settings.LEADBACK_QUEUE_LEASE_S = 60
    make_config(source := SourceFactory(), receiver.url())
    returned(buyer, source=source)
    start = timezone.now()

    with time_machine.travel(start, tick=False):
        first = notifications_claim_due()
        assert notifications_claim_due() == []
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        second = notifications_claim_due()

    assert len(first) == len(second) == 1
    assert first[0].token != second[0].token
    assert notification_deliver(claim=first[0]) is None  # the lost message's claim
    assert notification_deliver(claim=second[0]).status == Status.SUCCEEDED


def test_a_row_left_sending_by_a_killed_worker_is_sent_again(buyer, receiver):
    make_config(source := SourceFactory(), receiver.url())
    returned(buyer, source=source)
    [claim] = notifications_claim_due()
    # A worker started sending, then died: the row is SENDING with a lease.
    Notification.objects.update(
        status=Status.SENDING, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert notifications_deliver_due() == 1
    assert Notification.objects.get().status == Status.SUCCEEDED
    assert notification_deliver(claim=claim) is None


def test_resend_starts_a_fresh_schedule(buyer, engine_settings):
    engine_settings.LEADBACK_RETRY_SCHEDULE_S = [0]
    with RecordingServer(Reply(500, b"down")) as server:
        make_config(source := SourceFactory(), server.url())
        returned(buyer, source=source)
        notifications_deliver_due()
        notification = Notification.objects.get()
        assert notification.status == Status.DEAD

        assert notifications_resend(ids=[notification.pk]) == 1
        notification.refresh_from_db()
        assert notification.status == Status.PENDING
        notifications_deliver_due()

    notification.refresh_from_db()
    assert notification.status == Status.DEAD
    assert notification.attempt_count == 2
    assert len(server.requests) == 2


def test_deliver_notifications_once_command(buyer, receiver, capsys):
    make_config(source := SourceFactory(), receiver.url())
    returned(buyer, source=source)

    call_command("deliver_notifications", "--once")

    assert "Delivered 1 notification(s)." in capsys.readouterr().out
    assert Notification.objects.get().status == Status.SUCCEEDED


# The schedule ---------------------------------------------------------------------


@pytest.mark.parametrize(("tries", "base"), list(enumerate(SCHEDULE))[1:])
def test_the_retry_schedule_with_jitter(tries, base):
    low = retry_delay(tries, rng=lambda: 0.0)
    high = retry_delay(tries, rng=lambda: 1.0)
    middle = retry_delay(tries, rng=lambda: 0.5)

    assert low.total_seconds() == pytest.approx(base * 0.8)
    assert high.total_seconds() == pytest.approx(base * 1.2)
    assert middle.total_seconds() == pytest.approx(base)


def test_the_schedule_ends():
    assert retry_delay(len(SCHEDULE)) is None
    assert retry_delay(len(SCHEDULE) - 1) is not None


def test_retry_after_wins_when_longer_and_is_capped():
    assert retry_delay(1, retry_after_s=600, rng=lambda: 0.5).total_seconds() == 600
    assert retry_delay(2, retry_after_s=1, rng=lambda: 0.5).total_seconds() == 300
    assert retry_delay(1, retry_after_s=10**9).total_seconds() == 24 * 3600


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("Wed, 25 Nov 2026 12:02:00 GMT", 120.0),
        ("Wed, 25 Nov 2026 11:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after_parsing(value, expected):
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    headers = {"Retry-After": value} if value else {}
    response = OutboundResponse(status=503, headers=headers)

    assert retry_after_seconds(response, now=now) == expected


def test_notifications_are_created_only_for_successful_feedback(buyer):
    source = SourceFactory()
    make_config(source, "https://r.example/")
    refused = FeedbackFactory(
        source=source,
        kind="return",
        outcome=Feedback.Outcome.FAILURE,
        delivery__lead__source=source,
    )

    assert notifications_create(feedbacks=[refused]) == []


def test_resend_leaves_skipped_notifications_alone(buyer, receiver):
    make_config(
        source := SourceFactory(),
        receiver.url(),
        criteria={"rules": [{"lhv": "lead.state", "op": "is equal to", "rhv": "ZZ"}]},
    )
    returned(buyer, source=source)
    notification = Notification.objects.get()
    assert notification.status == Status.SKIPPED

    assert notifications_resend(ids=[notification.pk]) == 0
    notifications_deliver_due()

    assert receiver.requests == []
    assert Notification.objects.get().status == Status.SKIPPED


def test_a_message_that_outlived_its_lease_still_delivers_a_due_row(
    buyer, receiver, engine_settings
):
    # A long queue: the message is read after its lease ran out and nobody
    # else holds the row. It does the work instead of being wasted.
    make_config(source := SourceFactory(), receiver.url())
    returned(buyer, source=source)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        [first] = notifications_claim_due()
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        [second] = notifications_claim_due()  # the sweeper queued it again
    with time_machine.travel(start + timedelta(seconds=122), tick=False):
        delivered = notification_deliver(claim=first)  # both leases ran out
        assert notification_deliver(claim=second) is None  # now the first's

    assert delivered.status == Status.SUCCEEDED
    assert len(receiver.requests) == 1


def test_a_stale_message_does_not_send_a_retry_early(buyer):
    with RecordingServer(Reply(503, b"busy")) as server:
        make_config(source := SourceFactory(), server.url())
        returned(buyer, source=source)
        [claim] = notifications_claim_due()
        notification_deliver(claim=claim)
        assert Notification.objects.get().status == Status.RETRYING

        # A duplicate of the first message arrives before the retry is due.
        assert notification_deliver(claim=claim) is None
        assert len(server.requests) == 1


def test_the_sweeper_waits_while_the_queue_has_a_backlog(
    buyer, receiver, engine_settings, monkeypatch
):
    from feedback.forwarding import engine as delivery

    engine_settings.LEADBACK_SWEEP_MAX_BACKLOG = 50
    make_config(source := SourceFactory(), receiver.url())
    returned(buyer, source=source)
    queued: list = []
    monkeypatch.setattr(delivery, "notifications_enqueue", queued.extend)

    monkeypatch.setattr(delivery, "task_queue_backlog", lambda: 51)
    delivery.notifications_sweep()
    assert queued == []

    monkeypatch.setattr(delivery, "task_queue_backlog", lambda: 50)
    delivery.notifications_sweep()
    assert len(queued) == 1


def test_mappings_are_read_once_and_again_after_the_config_is_saved(buyer, receiver):
    config = make_config(source := SourceFactory(), receiver.url())
    returned(buyer, source=source)
    returned(buyer, source=source)
    first, second = notifications_claim_due()
    notification_deliver(claim=first)

    with CaptureQueriesContext(connection) as captured:
        notification_deliver(claim=second)

    # Lease, the row with its config, the feedback, then the attempt's
    # transaction (lock, update, insert): the mappings come from the cache.
    statements = [
        q["sql"].split()[0]
        for q in captured.captured_queries
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT"))
    ]
    assert statements == ["UPDATE", "SELECT", "SELECT", "SELECT", "UPDATE", *INSERT]

    # The admin form and config imports save the config with its mappings.
    FieldMapping.objects.filter(config=config, target="reason").update(
        target="why", value="{{ feedback.reason | upper }}"
    )
    config.save()
    returned(buyer, source=source, reason="Bad phone")
    notifications_deliver_due()

    assert json.loads(receiver.last.body)["why"] == "BAD PHONE"


def test_an_attempt_whose_lease_was_taken_over_is_recorded_without_its_status(
    buyer, receiver, monkeypatch
):
    from feedback.forwarding import engine as delivery

    make_config(source := SourceFactory(), receiver.url())
    returned(buyer, source=source)
    [claim] = notifications_claim_due()
    real_send = delivery.feedback_config_send

    def send_then_lose_the_lease(**kwargs):
        answer = real_send(**kwargs)
        # The lease ran out while the request was in flight and another worker
        # took the row over.
        Notification.objects.update(lease_token=uuid.uuid4())
        return answer

    monkeypatch.setattr(delivery, "feedback_config_send", send_then_lose_the_lease)

    row = notification_deliver(claim=claim)

    assert row is not None
    stored = Notification.objects.get()
    assert stored.status == Status.SENDING  # the new owner decides
    assert stored.attempt_count == 1
    assert NotificationAttempt.objects.get().number == 1


# Several rows per message -----------------------------------------------------


def _statements(captured) -> list[str]:
    return [
        q["sql"].split()[0]
        for q in captured.captured_queries
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT"))
    ]


@pytest.mark.parametrize("count", [2, 12])
def test_a_batch_costs_the_same_statements_whatever_its_size(buyer, receiver, count):
    make_config(source := SourceFactory(), receiver.url())
    for _ in range(count):
        returned(buyer, source=source)
    claims = notifications_claim_due()

    with CaptureQueriesContext(connection) as captured:
        rows = notifications_deliver(claims=claims)

    assert len(rows) == count
    assert {r.status for r in Notification.objects.all()} == {Status.SUCCEEDED}
    assert NotificationAttempt.objects.count() == count
    assert len(receiver.requests) == count
    # Lease, two loads (the mappings once), then lock, update, insert.
    assert _statements(captured) == [
        "UPDATE",
        "SELECT",
        "SELECT",
        "SELECT",
        "SELECT",
        "UPDATE",
        *INSERT,
    ]


def test_after_an_error_the_rest_of_the_batch_is_handed_back_untried(buyer):
    with RecordingServer(Reply(503, b"busy")) as server:
        make_config(source := SourceFactory(), server.url())
        for _ in range(3):
            returned(buyer, source=source)
        claims = notifications_claim_due()

        rows = notifications_deliver(claims=claims)

        assert len(rows) == 1
        assert len(server.requests) == 1
    tried = Notification.objects.get(pk=rows[0].pk)
    assert tried.status == Status.RETRYING
    assert tried.attempt_count == 1
    untried = Notification.objects.exclude(pk=tried.pk)
    assert [(n.status, n.attempt_count, n.lease_token) for n in untried] == [
        (Status.PENDING, 0, None),
        (Status.PENDING, 0, None),
    ]
    # They wait as long as the row that failed, then go on their own schedules.
    assert {n.next_attempt_at for n in untried} == {tried.next_attempt_at}
    assert tried.next_attempt_at > timezone.now()
    assert notifications_claim_due() == []
    with time_machine.travel(tried.next_attempt_at + timedelta(seconds=1)):
        assert len(notifications_claim_due()) == 3


def test_a_batch_cut_short_by_its_deadline_hands_the_rest_back_due_now(
    buyer, receiver, monkeypatch
):
    from feedback.forwarding import engine as delivery

    make_config(source := SourceFactory(), receiver.url())
    for _ in range(3):
        returned(buyer, source=source)
    claims = notifications_claim_due()
    real_send = delivery.feedback_config_send

    def slow_send(**kwargs):
        answer = real_send(**kwargs)
        time_machine_travel.shift(timedelta(seconds=5))
        return answer

    with time_machine.travel(timezone.now(), tick=True) as time_machine_travel:
        monkeypatch.setattr(delivery, "feedback_config_send", slow_send)
        rows = notifications_deliver(claims=claims, deadline_s=8)

        assert [r.status for r in rows] == [Status.SUCCEEDED, Status.SUCCEEDED]
        [left] = Notification.objects.filter(status=Status.PENDING)
        assert left.attempt_count == 0
        assert left.lease_token is None
        assert left.next_attempt_at <= timezone.now()


def test_messages_carry_one_config_each_and_at_most_the_batch_size(
    buyer, receiver, engine_settings, monkeypatch
):
    from feedback.forwarding import tasks

    engine_settings.LEADBACK_DELIVERY_BATCH = 2
    source = SourceFactory()
    first = make_config(source, receiver.url("/a"))
    second = make_config(source, receiver.url("/b"))
    for _ in range(3):
        returned(buyer, source=source)
    sent: list[list[list[object]]] = []
    monkeypatch.setattr(tasks.deliver_notifications_task, "delay", sent.append)

    assert notifications_enqueue(notifications_claim_due()) == 6

    configs = [
        {Notification.objects.get(pk=pk).config_id for pk, _ in message}
        for message in sent
    ]
    assert sorted(len(m) for m in sent) == [1, 1, 2, 2]
    assert sorted(c.pop() for c in configs) == sorted(
        [first.pk, first.pk, second.pk, second.pk]
    )


def test_a_slow_config_stretches_the_lease(buyer, receiver, monkeypatch):
    make_config(source := SourceFactory(), receiver.url(), timeout_s=100)
    returned(buyer, source=source)
    [claim] = notifications_claim_due()
    seen = []
    from feedback.forwarding import engine as delivery

    real_send = delivery.feedback_config_send

    def send(**kwargs):
        seen.append(Notification.objects.get().lease_expires_at - timezone.now())
        return real_send(**kwargs)

    monkeypatch.setattr(delivery, "feedback_config_send", send)
    notification_deliver(claim=claim)

    assert seen[0] > timedelta(seconds=300)  # three times 100 s, plus the margin


# Without a worker ---------------------------------------------------------------


def test_without_the_fast_path_a_cron_run_sends_a_new_notification_at_once(
    buyer, receiver, engine_settings, monkeypatch, django_capture_on_commit_callbacks
):
    """LEADBACK_QUEUE_ON_COMMIT off (no Celery worker, cron runs
    `deliver_notifications --once`): nothing is queued or leased at intake, so
    the next run sends the notification instead of waiting out a queue lease."""
    from feedback.forwarding import tasks

    engine_settings.LEADBACK_QUEUE_ON_COMMIT = False
    queued: list[object] = []
    monkeypatch.setattr(tasks.deliver_notifications_task, "delay", queued.append)
    make_config(SourceFactory(), receiver.url())
    source = FeedbackConfig.objects.get().source

    with django_capture_on_commit_callbacks(execute=True):
        feedback = returned(buyer, source=source)

    notification = Notification.objects.get(feedback=feedback)
    assert queued == []
    assert (notification.status, notification.lease_token) == (Status.PENDING, None)
    out = StringIO()
    call_command("deliver_notifications", "--once", stdout=out)
    assert out.getvalue().strip() == "Delivered 1 notification(s)."
    notification.refresh_from_db()
    assert notification.status == Status.SUCCEEDED
    assert len(receiver.requests) == 1


def test_with_the_fast_path_a_new_notification_is_held_for_the_workers(
    buyer, receiver, engine_settings, monkeypatch, django_capture_on_commit_callbacks
):
    """The default: the intake writes the row leased to the message it queues
    on commit, so a cron run in the meantime leaves it to the worker (the lease
    protects it)."""
    from feedback.forwarding import tasks

    engine_settings.LEADBACK_QUEUE_ON_COMMIT = True
    queued: list[object] = []
    monkeypatch.setattr(tasks.deliver_notifications_task, "delay", queued.append)
    make_config(SourceFactory(), receiver.url())
    source = FeedbackConfig.objects.get().source

    with (
        CaptureQueriesContext(connection) as statements,
        django_capture_on_commit_callbacks(execute=True),
    ):
        feedback = returned(buyer, source=source)

    notification = Notification.objects.get(feedback=feedback)
    assert queued == [[[notification.pk, str(notification.lease_token)]]]
    # Born leased: queueing it after the commit took no claim of its own.
    assert not [
        q["sql"] for q in statements if q["sql"].startswith('UPDATE "feedback_notif')
    ]
    assert notification.lease_expires_at > timezone.now() + timedelta(seconds=50)
    assert notifications_deliver_due() == 0
    assert receiver.requests == []


def test_an_answer_with_nul_bytes_is_recorded_without_them(buyer):
    """PostgreSQL cannot store NUL in text: a source that sends one must not
    leave its notification unrecorded (and sent again and again)."""
    reply = Reply(
        200,
        b'{"status": "accepted", "id": "R\x00-1"}\x00trailing',
        {"X-Odd": "a\x00b"},
    )
    with RecordingServer(reply) as server:
        make_config(source := SourceFactory(), server.url())
        returned(buyer, source=source)

        assert notifications_deliver_due() == 1

    attempt = NotificationAttempt.objects.get()
    assert "\x00" not in attempt.response_body
    assert attempt.response_body.endswith("trailing")
    assert Notification.objects.get().status == Status.SUCCEEDED
