"""The delivery engine's services: forwarding accepted feedback to sources.

The database is the source of truth (DESIGN §5.4). A notification row says what
to send and when (`next_attempt_at`); a Celery message only says "work on row N
under lease L". Work is claimed with a lease: queueing a row leases it for
`LEADBACK_QUEUE_LEASE_S`, starting to send leases it for the config's timeout
plus a margin. A lease that runs out makes the row due again, so a lost message,
a flushed broker or a killed worker delays a notification but never loses it.
Network I/O only happens between the short transactions that claim and record.
"""

import email.utils
import logging
import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from feedback.models import DeliveryAttempt, Feedback, Notification
from feedback.variables import feedback_variables
from sources.models import FeedbackConfig
from sources.outbound.types import (
    Interpretation,
    OutboundRequest,
    OutboundResponse,
    Outcome,
)
from sources.services import (
    RequestError,
    feedback_config_build_request,
    feedback_config_criteria_check,
    feedback_config_send,
    request_redact,
)

logger = logging.getLogger(__name__)

Status = Notification.Status
# Where a row's lease has run out it is fair game again.
MAX_RETRY_AFTER_S = 24 * 3600
SEND_LEASE_MARGIN_S = 60


@dataclass(frozen=True)
class Claim:
    """A row leased to whoever holds `token`."""

    notification_id: int
    token: uuid.UUID


# Creating -----------------------------------------------------------------------


def notifications_create(*, feedbacks: Sequence[Feedback]) -> list[Notification]:
    """Notification rows for accepted feedback, one per enabled config of its
    source and kind. Runs in the intake's transaction, so a feedback and its
    notifications are stored together or not at all. Criteria are read now:
    feedback that fails them is recorded as skipped with the reason."""
    accepted = [f for f in feedbacks if f.outcome == Feedback.Outcome.SUCCESS]
    if not accepted:
        return []
    configs: dict[tuple[int, str], list[FeedbackConfig]] = {}
    for config in FeedbackConfig.objects.filter(
        enabled=True, source_id__in={f.source_id for f in accepted}
    ).order_by("pk"):
        configs.setdefault((config.source_id, config.kind), []).append(config)
    now = timezone.now()
    rows = []
    for feedback in accepted:
        matching = configs.get((feedback.source_id, feedback.kind), [])
        if not matching:
            continue
        variables = feedback_variables(feedback=feedback)
        for config in matching:
            skipped = feedback_config_criteria_check(config=config, variables=variables)
            # Batch configs' rows wait for the file of their period (feedback/batches).
            waits = skipped or config.method == FeedbackConfig.Method.BATCH
            rows.append(
                Notification(
                    feedback=feedback,
                    config=config,
                    source_id=feedback.source_id,
                    kind=feedback.kind,
                    status=_initial_status(config, skipped),
                    reason=(skipped or "")[:1000],
                    next_attempt_at=None if waits else now,
                    finished_at=now if skipped else None,
                    created_at=now,
                )
            )
    return Notification.objects.bulk_create(rows)


def _initial_status(config: FeedbackConfig, skipped: str | None) -> str:
    if skipped:
        return Status.SKIPPED
    if config.method == FeedbackConfig.Method.BATCH:
        return Status.BATCHED
    return Status.PENDING


# Claiming -----------------------------------------------------------------------


def _due(now: datetime) -> Q:
    unleased = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)
    waiting = Q(status__in=[Status.PENDING, Status.RETRYING], next_attempt_at__lte=now)
    # A worker died (or was cut off) while sending: its lease ran out.
    abandoned = Q(status=Status.SENDING, lease_expires_at__lt=now)
    return (waiting & unleased) | abandoned


def notifications_claim_due(
    *, ids: Iterable[int] | None = None, limit: int | None = None
) -> list[Claim]:
    """Lease due rows for queueing. On PostgreSQL concurrent claimers skip each
    other's rows (FOR UPDATE SKIP LOCKED); on SQLite the immediate transaction
    serialises them, which claims just as safely."""
    now = timezone.now()
    token = uuid.uuid4()
    limit = limit or settings.LEADBACK_SWEEP_BATCH
    with transaction.atomic():
        due = Notification.objects.filter(_due(now))
        if ids is not None:
            due = due.filter(pk__in=list(ids))
        pks = list(
            due.order_by("next_attempt_at")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        if pks:
            Notification.objects.filter(pk__in=pks).update(
                lease_token=token,
                lease_expires_at=now
                + timedelta(seconds=settings.LEADBACK_QUEUE_LEASE_S),
            )
    return [Claim(pk, token) for pk in pks]


def notifications_enqueue(claims: Sequence[Claim]) -> int:
    """Queue a task per claim; returns how many were queued. A claim whose
    message cannot be queued (broker down) is released for the next sweep."""
    from feedback.tasks import deliver_notification_task

    queued = 0
    failed: list[int] = []
    for claim in claims:
        try:
            deliver_notification_task.delay(claim.notification_id, str(claim.token))
            queued += 1
        except Exception as exc:  # the broker's errors vary by transport
            failed.append(claim.notification_id)
            logger.warning("could not queue notification %s: %r", claim, exc)
    if failed:
        Notification.objects.filter(pk__in=failed).update(lease_expires_at=None)
    return queued


def task_queue_backlog() -> int:
    """Messages waiting in the delivery task queue (0 when it cannot be read)."""
    from feedback.tasks import deliver_notification_task

    app = deliver_notification_task.app
    try:
        with app.connection_or_acquire() as conn:
            return int(
                conn.default_channel.queue_declare(
                    queue=app.conf.task_default_queue, passive=True
                ).message_count
            )
    except Exception:  # no such queue yet (an empty Redis list), broker down
        return 0


def notifications_sweep() -> int:
    """Claim every due row and queue it (the beat task's work).

    Not while the queue has a backlog: its messages still hold their rows, and
    queueing those rows again would only grow the backlog."""
    if task_queue_backlog() > settings.LEADBACK_SWEEP_MAX_BACKLOG:
        return 0
    return notifications_enqueue(notifications_claim_due())


def notifications_deliver_due(*, limit: int | None = None) -> int:
    """Claim due rows and deliver them in this process, with no broker at all
    (manage.py deliver_notifications --once). Returns how many were tried."""
    delivered = 0
    for claim in notifications_claim_due(limit=limit):
        if notification_deliver(claim=claim) is not None:
            delivered += 1
    return delivered


def notifications_enqueue_on_commit(notifications: Sequence[Notification]) -> None:
    """The fast path: once the intake commits, queue its new pending rows."""
    ids = [n.pk for n in notifications if n.status == Status.PENDING]
    if ids:
        transaction.on_commit(
            lambda: notifications_enqueue(notifications_claim_due(ids=ids))
        )


# Delivering ---------------------------------------------------------------------


def notification_deliver(
    *, claim: Claim, deadline_s: float | None = None
) -> Notification | None:
    """Send one claimed notification and record the attempt.

    Returns None when the claim is stale (another worker holds the row, or it
    is already final): the message that carried it is simply dropped.
    """
    notification = (
        Notification.objects.select_related(
            "config",
            "feedback__delivery",
            "feedback__lead",
            "feedback__buyer",
            "feedback__source",
            "feedback__flow",
            "feedback__outcome_code",
        )
        .filter(pk=claim.notification_id)
        .first()
    )
    if notification is None:
        return None
    config = notification.config
    timeout_s = config.timeout_s if config is not None else 10.0
    if deadline_s is not None:
        timeout_s = max(0.1, min(timeout_s, deadline_s))
    started = timezone.now()
    lease = started + timedelta(seconds=timeout_s * 3 + SEND_LEASE_MARGIN_S)
    # Ours, or due and nobody's any more: a message that waited in a long queue
    # past its lease still does the work rather than being wasted, while a row
    # someone else holds, or one waiting for its next retry, is left alone.
    mine = Q(lease_token=claim.token, status__in=Notification.OPEN_STATUSES)
    if not Notification.objects.filter(mine | _due(started), pk=notification.pk).update(
        status=Status.SENDING, lease_token=claim.token, lease_expires_at=lease
    ):
        return None

    if config is None or not config.enabled:
        return _finish_without_sending(notification, claim)
    request: OutboundRequest | None = None
    try:
        request = feedback_config_build_request(
            config=config,
            variables=feedback_variables(feedback=notification.feedback),
            message_id=notification.public_id,
            now=started,
        )
    except RequestError as exc:
        # A broken template or an unreachable WSDL is not the source refusing:
        # it is retried, and shows up in the attempt log until fixed.
        response = OutboundResponse(status=None, error=str(exc))
        interpretation = Interpretation(Outcome.ERROR, str(exc))
        error_class = "RequestError"
    else:
        response, interpretation = feedback_config_send(
            config=config, request=request, timeout_s=timeout_s
        )
        error_class = _error_class(response)
    return _record(
        notification,
        claim,
        config=config,
        started=started,
        request=request_redact(request, config) if request is not None else None,
        response=response,
        interpretation=interpretation,
        error_class=error_class,
    )


def _error_class(response: OutboundResponse) -> str:
    if response.status is None:
        return (response.error.split(":", 1)[0] or "NoResponse")[:100]
    if response.status >= 500:
        return "ServerError"
    if response.status == 429:
        return "RateLimited"
    return ""


def _finish_without_sending(notification: Notification, claim: Claim) -> Notification:
    with transaction.atomic():
        updated = Notification.objects.filter(
            pk=notification.pk, lease_token=claim.token
        ).update(
            status=Status.SKIPPED,
            reason="The config was disabled or deleted before sending.",
            lease_token=None,
            lease_expires_at=None,
            next_attempt_at=None,
            finished_at=timezone.now(),
        )
    if updated:
        notification.refresh_from_db()
    return notification


def retry_delay(
    attempt_count: int,
    *,
    retry_after_s: float | None = None,
    rng: Callable[[], float] = random.random,
) -> timedelta | None:
    """How long to wait after the `attempt_count`-th try ended in error, or None
    when the schedule is spent (the notification is dead). ±20% jitter spreads
    retries of a source that was down for everyone; a longer Retry-After wins."""
    schedule = settings.LEADBACK_RETRY_SCHEDULE_S
    if attempt_count >= len(schedule):
        return None
    base = float(schedule[attempt_count])
    jitter = settings.LEADBACK_RETRY_JITTER
    seconds = base * (1 + jitter * (2 * rng() - 1))
    if retry_after_s is not None:
        seconds = max(seconds, min(retry_after_s, MAX_RETRY_AFTER_S))
    return timedelta(seconds=seconds)


def retry_after_seconds(response: OutboundResponse, *, now: datetime) -> float | None:
    """The response's Retry-After (delta-seconds or an HTTP date), if any."""
    value = next(
        (v for k, v in response.headers.items() if k.lower() == "retry-after"), ""
    ).strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def _record(
    notification: Notification,
    claim: Claim,
    *,
    config: FeedbackConfig,
    started: datetime,
    request: OutboundRequest | None,
    response: OutboundResponse,
    interpretation: Interpretation,
    error_class: str,
) -> Notification:
    now = timezone.now()
    disable_config = False
    with transaction.atomic():
        row = Notification.objects.select_for_update().get(pk=notification.pk)
        number = row.attempt_count + 1
        DeliveryAttempt.objects.create(
            notification=row,
            number=number,
            started_at=started,
            duration_ms=max(response.elapsed_ms, 0),
            request_method=request.method if request else "",
            request_url=request.url[:2000] if request else "",
            request_headers=dict(request.headers) if request else {},
            request_body=(
                request.body.decode("utf-8", errors="replace")[
                    : DeliveryAttempt.MAX_BODY_CHARS
                ]
                if request
                else ""
            ),
            response_status=response.status,
            response_headers=dict(response.headers),
            response_body=response.text[: DeliveryAttempt.MAX_BODY_CHARS],
            outcome=interpretation.outcome,
            reason=interpretation.reason[:1000],
            error_class=error_class,
        )
        row.attempt_count = number
        row.schedule_tries += 1
        fields = ["attempt_count", "schedule_tries", "updated_at"]
        if row.lease_token != claim.token:
            # Our lease ran out and someone else owns the row now: the attempt is
            # on record, its status is theirs to decide.
            row.save(update_fields=fields)
            return row
        row.reason = interpretation.reason[:1000]
        row.lease_token = None
        row.lease_expires_at = None
        fields += ["reason", "lease_token", "lease_expires_at", "status"]
        fields += ["next_attempt_at", "finished_at", "reference"]
        row.reference = interpretation.reference[:255] or row.reference
        if interpretation.outcome == Outcome.SUCCESS:
            row.status, row.next_attempt_at, row.finished_at = (
                Status.SUCCEEDED,
                None,
                now,
            )
        elif interpretation.outcome == Outcome.FAILURE:
            row.status, row.next_attempt_at, row.finished_at = Status.FAILED, None, now
            disable_config = response.status == 410
        else:
            delay = retry_delay(
                row.schedule_tries,
                retry_after_s=retry_after_seconds(response, now=now),
            )
            if delay is None:
                row.status, row.next_attempt_at, row.finished_at = (
                    Status.DEAD,
                    None,
                    now,
                )
            else:
                row.status, row.next_attempt_at = Status.RETRYING, now + delay
        row.save(update_fields=fields)
        if disable_config:
            # The host only: a query URL carries the lead's mapped fields.
            host = urlsplit(request.url).hostname if request else ""
            _config_disable(config, reason=f"The source answered 410 Gone ({host}).")
    logger.info(
        "notification %s attempt %d: %s", row.public_id, number, interpretation.outcome
    )
    return row


def _config_disable(config: FeedbackConfig, *, reason: str) -> None:
    # 410 Gone: the source says this endpoint is gone for good. Stop sending
    # to it and say why where admins look.
    FeedbackConfig.objects.filter(pk=config.pk).update(
        enabled=False, disabled_reason=reason[:500], updated_at=timezone.now()
    )
    logger.warning("feedback config %s disabled: %s", config.pk, reason)


# Admin actions --------------------------------------------------------------------


def notifications_resend(*, ids: Iterable[int]) -> int:
    """Send again, from a fresh schedule, notifications that are final (or stuck);
    batched and skipped ones are left alone. Returns how many were reset."""
    now = timezone.now()
    with transaction.atomic():
        count = (
            Notification.objects.filter(pk__in=list(ids))
            # Skipped rows failed the criteria: sending them would ignore the rules.
            .exclude(status__in=[Status.BATCHED, Status.SKIPPED])
            .exclude(status=Status.SENDING, lease_expires_at__gte=now)
            .update(
                status=Status.PENDING,
                next_attempt_at=now,
                lease_token=None,
                lease_expires_at=None,
                finished_at=None,
                schedule_tries=0,
                updated_at=now,
            )
        )
    return count
