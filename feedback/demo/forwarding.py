"""The demo's forwarding history: what the engine would have left behind for
the last days of the seeded feedback, so delivery health, dead letters and
batch runs have something to show the moment the demo starts.

Real-time configs get notifications in every state the engine reaches
(succeeded at once, succeeded after retries, refused by the source, still
retrying, dead), each with its attempts as the engine records them: the
request built from the config's own mappings, the answer the demo receiver
gives. A daily email batch config gets its runs, built by the batch code
itself, then marked sent or failed as a mail server might have left them.
Nothing here sends anything.
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.utils import timezone

from feedback.forwarding.batches import batch_run_create
from feedback.forwarding.models import (
    BatchAttempt,
    BatchRun,
    Notification,
    NotificationAttempt,
)
from feedback.forwarding.schedule import retry_delay
from feedback.models import Feedback
from feedback.variables import feedback_variables
from sources.models import FeedbackConfig, FieldMapping, Kind, Source
from sources.services import (
    RequestError,
    feedback_config_build_request,
    feedback_config_validate,
    request_redact,
)

Status = Notification.Status

# How far back the history of forwarding reaches, and how many of each
# config's accepted feedback in that time get a notification.
DAYS = 10
PER_CONFIG = 120

# (what happened, weight): most succeed at once, as they do in life.
FATES = (
    ("succeeded", 0.80),
    ("retried", 0.08),
    ("refused", 0.05),
    ("retrying", 0.04),
    ("dead", 0.03),
)

BATCH_SOURCE = "northwind-media"
BATCH_TO = ["conversions@northwind.example"]
REFUSED_MAIL = "The mail server refused the recipient: 550 mailbox unavailable."
BUSY_MAIL = "The mail server answered 451: try again later."


@dataclass(frozen=True)
class ForwardingHistory:
    notifications: dict[str, int]
    batch_runs: dict[str, int]


def forwarding_history_generate(
    *, rng: random.Random, now: datetime, sources: dict[str, Source]
) -> ForwardingHistory:
    """Notifications for the real-time configs, batch runs for the batch one."""
    counts: dict[str, int] = {}
    for config in FeedbackConfig.objects.filter(
        source__in=sources.values(), enabled=True
    ).exclude(method__in=[FeedbackConfig.Method.SOAP, FeedbackConfig.Method.BATCH]):
        # SOAP configs would read their WSDL from the demo's own receiver,
        # which is not serving while the demo is seeded.
        for fate, number in _notifications_for(config, rng=rng, now=now).items():
            counts[fate] = counts.get(fate, 0) + number
    runs = _batch_history(_batch_config(sources[BATCH_SOURCE]), rng=rng, now=now)
    return ForwardingHistory(notifications=counts, batch_runs=runs)


def _recent_feedback(config: FeedbackConfig, *, now: datetime) -> list[Feedback]:
    return list(
        Feedback.objects.filter(
            source=config.source,
            kind=config.kind,
            outcome=Feedback.Outcome.SUCCESS,
            received_at__gte=now - timedelta(days=DAYS),
            received_at__lt=now - timedelta(minutes=30),
        )
        .exclude(review_state__in=["pending", "rejected"])
        .select_related("delivery", "lead", "buyer", "source", "flow", "outcome_code")
        .order_by("received_at")[:PER_CONFIG]
    )


def _notifications_for(
    config: FeedbackConfig, *, rng: random.Random, now: datetime
) -> dict[str, int]:
    mappings = list(config.mappings.all())
    counts: dict[str, int] = {}
    recent = _recent_feedback(config, now=now)
    # Every fate at least once, so each page of the admin has an example.
    fates = [f for f, _ in FATES][: len(recent)]
    fates += rng.choices(
        [f for f, _ in FATES], [w for _, w in FATES], k=len(recent) - len(fates)
    )
    rng.shuffle(fates)
    for feedback, fate in zip(recent, fates, strict=True):
        counts[fate] = counts.get(fate, 0) + 1
        notification = Notification.objects.create(
            feedback=feedback,
            config=config,
            source=config.source,
            kind=config.kind,
            lead_delivered_at=feedback.delivery.delivered_at,
            status=Status.PENDING,
            created_at=feedback.received_at,
        )
        try:
            request = feedback_config_build_request(
                config=config,
                variables=feedback_variables(feedback=feedback),
                message_id=notification.public_id,
                mappings=mappings,
                now=feedback.received_at,
            )
        except RequestError:
            request = None
        _play(notification, fate, request=request, rng=rng, now=now)
    return counts


# The demo receiver's answers, as each method reads them.
ANSWERS = {
    "accepted": (
        200,
        '{"status": "accepted", "id": "RCV-%06d", "message": "Recorded."}',
    ),
    "busy": (503, '{"status": "error", "message": "Service busy, try again."}'),
    "refused": (
        422,
        '{"status": "rejected", "message": "Duplicate return: already credited."}',
    ),
}


def _play(
    notification: Notification,
    fate: str,
    *,
    request: object,
    rng: random.Random,
    now: datetime,
) -> None:
    """Write the attempts a notification of this fate had, and its state now."""
    start = notification.created_at + timedelta(seconds=rng.uniform(0.2, 2.0))
    failures = {"succeeded": 0, "retried": rng.randint(1, 3), "refused": 0}.get(fate, 0)
    if fate == "retrying":
        failures = rng.randint(1, 4)
    elif fate == "dead":
        failures = 5
    attempts: list[NotificationAttempt] = []
    at = start
    for number in range(1, failures + 1):
        attempts.append(_attempt(notification, number, at, request, "busy", rng))
        delay = retry_delay(number)
        if delay is None:
            break
        at = at + delay
    if fate in ("succeeded", "retried"):
        attempts.append(
            _attempt(notification, len(attempts) + 1, at, request, "accepted", rng)
        )
        notification.status = Status.SUCCEEDED
        notification.reason = "Recorded."
        notification.reference = f"RCV-{notification.pk:06d}"
        notification.finished_at = at
    elif fate == "refused":
        attempts.append(_attempt(notification, 1, at, request, "refused", rng))
        notification.status = Status.FAILED
        notification.reason = "Duplicate return: already credited."
        notification.finished_at = at
    elif fate == "retrying":
        notification.status = Status.RETRYING
        notification.reason = "HTTP 503: Service busy, try again."
        notification.next_attempt_at = max(
            at, now + timedelta(minutes=rng.randint(5, 90))
        )
    else:
        notification.status = Status.DEAD
        notification.reason = "HTTP 503: Service busy, try again. Retries exhausted."
        notification.finished_at = attempts[-1].started_at
    notification.attempt_count = notification.schedule_tries = len(attempts)
    NotificationAttempt.objects.bulk_create(attempts)
    notification.save()


def _attempt(
    notification: Notification,
    number: int,
    at: datetime,
    request: object,
    answer: str,
    rng: random.Random,
) -> NotificationAttempt:
    status, body = ANSWERS[answer]
    if answer == "accepted":
        body = body % notification.pk
    config = notification.config
    shown = request_redact(request, config) if request is not None and config else None  # type: ignore[arg-type]
    outcome = {"accepted": "success", "busy": "error", "refused": "failure"}[answer]
    return NotificationAttempt(
        notification=notification,
        number=number,
        started_at=at,
        duration_ms=rng.randint(40, 400),
        request_method=shown.method if shown else "",
        request_url=shown.url[:2000] if shown else "",
        request_headers=dict(shown.headers) if shown else {},
        request_body=shown.body.decode("utf-8", "replace") if shown else "",
        response_status=status,
        response_headers={"Content-Type": "application/json"},
        response_body=body,
        outcome=outcome,
        reason={
            "accepted": "Recorded.",
            "busy": "HTTP 503: Service busy, try again.",
            "refused": "Duplicate return: already credited.",
        }[answer],
        error_class="ServerError" if answer == "busy" else "",
    )


# Batch runs -------------------------------------------------------------------------


def _batch_config(source: Source) -> FeedbackConfig:
    """A daily conversions file by email for the batch source (made once).

    The demo prints mail to its console, so the runs it makes while running
    are sent too."""
    found = FeedbackConfig.objects.filter(
        source=source, kind=Kind.CONVERSION, method=FeedbackConfig.Method.BATCH
    ).first()
    if found is not None:
        return found
    config = FeedbackConfig(
        source=source,
        kind=Kind.CONVERSION,
        method=FeedbackConfig.Method.BATCH,
        batch_every="day",
        batch_at=time(6, 0),
        batch_timezone="America/Chicago",
        batch_transport="email",
        batch_email_to=BATCH_TO,
        batch_email_subject="Conversions {{ period.start|date('%Y-%m-%d') }}",
        batch_file_name="conversions-{{ period.start|date('%Y-%m-%d') }}.csv",
        batch_header=True,
    )
    feedback_config_validate(config)
    config.save()
    FieldMapping.objects.bulk_create(
        FieldMapping(config=config, position=position, target=target, value=value)
        for position, (target, value) in enumerate(
            (
                ("event_id", "{{ event.id }}"),
                ("converted_at", "{{ feedback.timestamp }}"),
                ("revenue", "{{ feedback.revenue }}"),
            )
        )
    )
    return config


def _batch_history(
    config: FeedbackConfig, *, rng: random.Random, now: datetime
) -> dict[str, int]:
    """The config's batched notifications for the last DAYS days and a run a
    day: sent, but for one the mail server refused and one it took on a retry."""
    feedback = _recent_feedback(config, now=now)
    Notification.objects.bulk_create(
        Notification(
            feedback=f,
            config=config,
            source=config.source,
            kind=config.kind,
            lead_delivered_at=f.delivery.delivered_at,
            status=Status.BATCHED,
            created_at=f.received_at,
        )
        for f in feedback
    )
    counts: dict[str, int] = {}
    pending: list[BatchRun] = []
    for end in _period_ends(now):
        run = batch_run_create(config=config, period_end=end, now=end)
        if run is None:
            continue
        if run.status == BatchRun.Status.PENDING:
            pending.append(run)
        else:  # a day without conversions: an empty run, nothing sent
            counts[run.status] = counts.get(run.status, 0) + 1
    # One file the mail server refused, one it took on the second try.
    failed_run, retried_run = (
        rng.sample(pending, 2) if len(pending) >= 2 else (None, None)
    )
    for run in pending:
        end = run.period_end
        tries = 2 if run is retried_run else 1
        refused = run is failed_run
        at = end + timedelta(seconds=rng.uniform(1, 20))
        attempts = []
        for number in range(1, tries + 1):
            last = number == tries
            attempts.append(
                BatchAttempt(
                    run=run,
                    number=number,
                    started_at=at,
                    duration_ms=rng.randint(200, 1500),
                    destination="email to " + ", ".join(BATCH_TO),
                    outcome="failure" if refused else ("success" if last else "error"),
                    reason=REFUSED_MAIL if refused else "Sent." if last else BUSY_MAIL,
                    error_class="" if last else "SMTPResponseException",
                )
            )
            at += timedelta(minutes=5)
        BatchAttempt.objects.bulk_create(attempts)
        run.attempt_count = run.schedule_tries = tries
        run.next_attempt_at = None
        if refused:
            run.status, run.reason = BatchRun.Status.FAILED, attempts[-1].reason
        else:
            run.status, run.reason, run.sent_at = BatchRun.Status.SENT, "Sent.", at
        run.save()
        Notification.objects.filter(batch_run=run).update(
            status=Status.FAILED if refused else Status.SUCCEEDED,
            finished_at=at,
            attempt_count=tries,
        )
        counts[run.status] = counts.get(run.status, 0) + 1
    return counts


def _period_ends(now: datetime) -> Sequence[datetime]:
    """The last DAYS days' 06:00 in Chicago (the config's schedule), oldest
    first, all past."""
    zone = ZoneInfo("America/Chicago")
    today = timezone.localtime(now, zone).date()
    ends = []
    for back in range(DAYS, 0, -1):
        day = today - timedelta(days=back - 1)
        end = datetime.combine(day, time(6, 0), tzinfo=zone)
        if end < now:
            ends.append(end)
    return ends
