"""The delivery engine's services: forwarding accepted feedback to sources.

The database is the source of truth (DESIGN §5.4). A notification row says what
to send and when (`next_attempt_at`); a Celery message only says "work on row N
under lease L". Work is claimed with a lease: queueing a row leases it for
`LEADBACK_QUEUE_LEASE_S`, starting to send leases it for the config's timeout
plus a margin. A lease that runs out makes the row due again, so a lost message,
a flushed broker or a killed worker delays a notification but never loses it.
Network I/O only happens between the short transactions that claim and record.
"""

import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from feedback.bulk import instances_insert, instances_update
from feedback.forwarding.models import Notification, NotificationAttempt
from feedback.forwarding.schedule import retry_after_seconds, retry_delay
from feedback.leases import (
    due,
    leases_claim,
    leases_extend,
    leases_release,
    leases_take,
    messages_send,
)
from feedback.metrics import (
    ATTEMPT_SECONDS,
    FORWARDING_LATENCY_SECONDS,
    NOTIFICATIONS_FINISHED,
)
from feedback.models import Feedback
from feedback.safetext import storable
from feedback.variables import correction_variables, feedback_variables
from sources.models import FeedbackConfig, FieldMapping
from sources.outbound.types import (
    Interpretation,
    OutboundRequest,
    OutboundResponse,
    Outcome,
)
from sources.services import (
    RequestError,
    feedback_config_build_request,
    feedback_config_correction,
    feedback_config_mappings,
    feedback_config_send,
    request_redact,
)

logger = logging.getLogger(__name__)

Status = Notification.Status
SEND_LEASE_MARGIN_S = 60
# A config's default timeout: the lease first taken covers it, longer ones
# stretch the lease once their configs are loaded.
TYPICAL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Claim:
    """A row leased to whoever holds `token`."""

    notification_id: int
    token: uuid.UUID
    config_id: int | None = None


# Claiming -----------------------------------------------------------------------


def notifications_claim_due(
    *, ids: Iterable[int] | None = None, limit: int | None = None
) -> list[Claim]:
    """Lease due rows for queueing (feedback.leases)."""
    due_rows = Notification.objects.filter(due(timezone.now()))
    if ids is not None:
        due_rows = due_rows.filter(pk__in=list(ids))
    token, rows = leases_claim(
        due_rows,
        seconds=settings.LEADBACK_QUEUE_LEASE_S,
        limit=limit or settings.LEADBACK_SWEEP_BATCH,
        order_by=["next_attempt_at"],
        fields=["pk", "config_id"],
    )
    return [Claim(pk, token, config_id) for pk, config_id in rows]


def notifications_enqueue(claims: Sequence[Claim]) -> int:
    """Queue the claims, a message per config and up to LEADBACK_DELIVERY_BATCH
    rows each; returns how many claims were queued. Claims whose message cannot
    be queued (broker down) are released for the next sweep.

    One config per message: a message's rows are sent one after another, so a
    slow source only ever delays its own notifications."""
    from feedback.forwarding.tasks import deliver_notifications_task

    queued, failed = messages_send(
        _messages(claims),
        lambda chunk: deliver_notifications_task.delay(
            [[c.notification_id, str(c.token)] for c in chunk]
        ),
        what="notifications",
    )
    if failed:
        leases_release(
            Notification.objects.filter(
                pk__in=[c.notification_id for chunk in failed for c in chunk]
            )
        )
    return sum(len(chunk) for chunk in queued)


def _messages(claims: Sequence[Claim]) -> Iterator[list[Claim]]:
    size = max(1, settings.LEADBACK_DELIVERY_BATCH)
    groups: dict[tuple[uuid.UUID, int | None], list[Claim]] = {}
    for claim in claims:
        groups.setdefault((claim.token, claim.config_id), []).append(claim)
    for group in groups.values():
        for start in range(0, len(group), size):
            yield group[start : start + size]


def task_queue_backlog() -> int:
    """Messages waiting in the delivery task queue (0 when it cannot be read)."""
    from feedback.forwarding.tasks import deliver_notification_task

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
    for chunk in _messages(notifications_claim_due(limit=limit)):
        delivered += len(notifications_deliver(claims=chunk))
    return delivered


def notifications_enqueue_on_commit(notifications: Sequence[Notification]) -> None:
    """The fast path: once the intake commits, queue its new pending rows.
    Rows born leased (`notifications_create(queue=True)`) are queued under
    their lease as they are; others are claimed first. Off with
    LEADBACK_QUEUE_ON_COMMIT: the rows wait, unclaimed, for the next sweep or
    `deliver_notifications --once`."""
    if not settings.LEADBACK_QUEUE_ON_COMMIT:
        return
    pending = [n for n in notifications if n.status == Status.PENDING]
    leased = [
        Claim(n.pk, n.lease_token, n.config_id)
        for n in pending
        if n.lease_token is not None
    ]
    unleased = [n.pk for n in pending if n.lease_token is None]
    if not pending:
        return

    def enqueue() -> None:
        claims = leased + (notifications_claim_due(ids=unleased) if unleased else [])
        notifications_enqueue(claims)

    transaction.on_commit(enqueue)


# Delivering ---------------------------------------------------------------------


def notification_deliver(
    *, claim: Claim, deadline_s: float | None = None
) -> Notification | None:
    """Send one claimed notification and record the attempt.

    Returns None when the claim is stale (another worker holds the row, or it
    is already final): the message that carried it is simply dropped.
    """
    rows = notifications_deliver(claims=[claim], deadline_s=deadline_s)
    return rows[0] if rows else None


@dataclass
class _Sent:
    notification: Notification
    claim: Claim
    config: FeedbackConfig
    started: datetime
    request: OutboundRequest | None
    response: OutboundResponse
    interpretation: Interpretation
    error_class: str


def notifications_deliver(
    *, claims: Sequence[Claim], deadline_s: float | None = None
) -> list[Notification]:
    """Send claimed notifications one after another and record their attempts.

    Returns the rows tried. Stale claims (another worker holds the row, or it is
    already final) are dropped. The database work is a fixed number of
    statements per call: rows are leased, loaded and recorded together. After an
    error the rest of a batch is handed back untried, to wait as long as the row
    that failed: its source is struggling, and one row per retry is enough to
    find out when it is back.
    """
    started = timezone.now()
    by_id = {claim.notification_id: claim for claim in claims}
    # The lease is taken first, so a stale message costs one statement and the
    # counts read below cannot change under us; it is stretched below when a
    # config's timeout needs more.
    by_token = _ids_by_token(claims)
    for token, ids in by_token.items():
        leases_take(
            Notification.objects.filter(pk__in=ids),
            token=token,
            seconds=_lease_s(TYPICAL_TIMEOUT_S),
            status=Status.SENDING,
        )
    held = [
        n
        for n in _notifications_load(list(by_id))
        if n.status == Status.SENDING and n.lease_token == by_id[n.pk].token
    ]
    # Long enough to send once with the slowest config and record the attempt;
    # the batch stops sending when the next try might outlive it.
    slowest = max((n.config.timeout_s for n in held if n.config), default=0.0)
    lease_s = _lease_s(max(slowest, TYPICAL_TIMEOUT_S))
    if slowest > TYPICAL_TIMEOUT_S:
        for token in by_token:
            leases_extend(
                Notification.objects.filter(pk__in=[n.pk for n in held]),
                token=token,
                seconds=lease_s - (timezone.now() - started).total_seconds(),
            )
    sent: list[_Sent] = []
    finished: list[Notification] = []
    untried: list[Notification] = []
    failed = False
    for index, notification in enumerate(held):
        claim = by_id[notification.pk]
        config = notification.config
        if config is None or not config.enabled:
            finished.append(_finish_without_sending(notification, claim))
            continue
        mappings = None
        if notification.correction_id is not None:
            corrected = _correction_request(notification, config)
            if corrected is None:
                finished.append(
                    _finish_without_sending(
                        notification,
                        claim,
                        reason="The config has no such correction request any more.",
                    )
                )
                continue
            config, mappings = corrected
        now = timezone.now()
        timeout_s = _timeout(config, deadline_s, since=started, now=now)
        elapsed = (now - started).total_seconds()
        if timeout_s is None or elapsed + timeout_s > lease_s - SEND_LEASE_MARGIN_S:
            untried = held[index:]
            break
        result = _send(
            notification, claim, config=config, timeout_s=timeout_s, mappings=mappings
        )
        sent.append(result)
        if result.interpretation.outcome == Outcome.ERROR:
            untried, failed = held[index + 1 :], True
            break
    recorded = _record(sent)
    last = recorded[-1] if recorded else None
    wait_until = (
        last.next_attempt_at
        if failed and last is not None and last.status == Status.RETRYING
        else None
    )
    _release(untried, by_id, wait_until=wait_until)
    return finished + recorded


def _lease_s(timeout_s: float) -> float:
    return timeout_s * 3 + SEND_LEASE_MARGIN_S


def _timeout(
    config: FeedbackConfig, deadline_s: float | None, *, since: datetime, now: datetime
) -> float | None:
    """The config's timeout, cut to what is left of the deadline (None: nothing)."""
    timeout_s = config.timeout_s
    if deadline_s is not None:
        left = deadline_s - (now - since).total_seconds()
        if left <= 0:
            return None
        timeout_s = max(0.1, min(timeout_s, left))
    return timeout_s


def _ids_by_token(claims: Sequence[Claim]) -> dict[uuid.UUID, list[int]]:
    ids: dict[uuid.UUID, list[int]] = {}
    for claim in claims:
        ids.setdefault(claim.token, []).append(claim.notification_id)
    return ids


def _notifications_load(pks: list[int]) -> list[Notification]:
    """The rows with their configs and everything the variables read, in the
    order asked.

    Two queries rather than one nine-table join: PostgreSQL spent about 10 ms
    planning that join, several times the cost of everything else a delivery
    does in the database."""
    rows = Notification.objects.select_related(
        "config", "correction", "original"
    ).in_bulk(pks)
    feedbacks = Feedback.objects.select_related(
        "delivery", "lead", "buyer", "source", "flow", "outcome_code"
    ).in_bulk({n.feedback_id for n in rows.values()})
    for notification in rows.values():
        notification.feedback = feedbacks[notification.feedback_id]
    return [rows[pk] for pk in pks if pk in rows]


def _correction_request(
    notification: Notification, config: FeedbackConfig
) -> tuple[FeedbackConfig, tuple[FieldMapping, ...]] | None:
    """A correction notice's request: the config's retraction or amendment
    request (DESIGN §12), None when the config no longer has it."""
    correction = notification.correction
    if correction is None:
        return None
    return feedback_config_correction(config=config, action=correction.action)


def _variables(notification: Notification) -> dict[str, Any]:
    if notification.correction is None:
        return feedback_variables(feedback=notification.feedback)
    original = notification.original
    return correction_variables(
        feedback=notification.feedback,
        correction=notification.correction,
        notification_id=notification.public_id,
        original_id=original.public_id if original is not None else "",
    )


def _send(
    notification: Notification,
    claim: Claim,
    *,
    config: FeedbackConfig,
    timeout_s: float,
    mappings: Sequence[FieldMapping] | None = None,
) -> _Sent:
    started = timezone.now()
    clock = time.monotonic()
    request: OutboundRequest | None = None
    try:
        request = feedback_config_build_request(
            config=config,
            variables=_variables(notification),
            message_id=notification.public_id,
            mappings=(
                feedback_config_mappings(config=config)
                if mappings is None
                else mappings
            ),
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
    ATTEMPT_SECONDS.labels(outcome=interpretation.outcome).observe(
        time.monotonic() - clock
    )
    return _Sent(
        notification,
        claim,
        config,
        started,
        request_redact(request, config) if request is not None else None,
        response,
        interpretation,
        error_class,
    )


def _release(
    rows: Sequence[Notification],
    by_id: dict[int, Claim],
    *,
    wait_until: datetime | None = None,
) -> None:
    """Hand rows back untried, status as before the lease: due at `wait_until`,
    or at once. Their schedules do not move: nothing was tried."""
    later = {} if wait_until is None else {"next_attempt_at": wait_until}
    for status in (Status.PENDING, Status.RETRYING):
        ids = [
            n.pk
            for n in rows
            if (Status.PENDING if n.attempt_count == 0 else Status.RETRYING) == status
        ]
        for token, mine in _ids_by_token([by_id[pk] for pk in ids]).items():
            Notification.objects.filter(pk__in=mine, lease_token=token).update(
                status=status, lease_token=None, lease_expires_at=None, **later
            )


def _error_class(response: OutboundResponse) -> str:
    if response.status is None:
        return (response.error.split(":", 1)[0] or "NoResponse")[:100]
    if response.status >= 500:
        return "ServerError"
    if response.status == 429:
        return "RateLimited"
    return ""


def _finish_without_sending(
    notification: Notification,
    claim: Claim,
    *,
    reason: str = "The config was disabled or deleted before sending.",
) -> Notification:
    with transaction.atomic():
        updated = Notification.objects.filter(
            pk=notification.pk, lease_token=claim.token
        ).update(
            status=Status.SKIPPED,
            reason=reason,
            lease_token=None,
            lease_expires_at=None,
            next_attempt_at=None,
            finished_at=timezone.now(),
        )
    if updated:
        notification.refresh_from_db()
    return notification


RECORDED_FIELDS = [
    "attempt_count",
    "schedule_tries",
    "reason",
    "lease_token",
    "lease_expires_at",
    "reference",
    "status",
    "next_attempt_at",
    "finished_at",
    "updated_at",
]


def _record(sent: Sequence[_Sent]) -> list[Notification]:
    """Store the attempts and move each row on, in one transaction."""
    if not sent:
        return []
    now = timezone.now()
    attempts: list[NotificationAttempt] = []
    rows: list[Notification] = []
    still_ours: list[Notification] = []
    disable: list[tuple[FeedbackConfig, str]] = []
    with transaction.atomic():
        # Locked so the lease checked here is the lease when the rows are saved.
        # The counts come from here too: a worker whose lease ran out may have
        # recorded its own attempt since these rows were loaded.
        locked = {
            pk: (token, attempts, tries)
            for pk, token, attempts, tries in Notification.objects.select_for_update()
            .filter(pk__in=[s.notification.pk for s in sent])
            .values_list("pk", "lease_token", "attempt_count", "schedule_tries")
        }
        for item in sent:
            row = item.notification
            token, row.attempt_count, row.schedule_tries = locked[row.pk]
            if token == item.claim.token:
                _move_on(row, item, now=now)
                still_ours.append(row)
                if item.interpretation.outcome == Outcome.FAILURE and (
                    item.response.status == 410
                ):
                    disable.append((item.config, _gone_reason(item)))
            else:
                # Our lease ran out and someone else owns the row now: the
                # attempt is on record, its status is theirs to decide.
                row.attempt_count += 1
                row.schedule_tries += 1
                row.save(
                    update_fields=["attempt_count", "schedule_tries", "updated_at"]
                )
            attempts.append(_attempt(row, item))
            rows.append(row)
        instances_update(still_ours, RECORDED_FIELDS)
        instances_insert(attempts)
        for config, reason in disable:
            _config_disable(config, reason=reason)
    for row, attempt in zip(rows, attempts, strict=True):
        logger.info(
            "notification %s attempt %d: %s",
            row.public_id,
            attempt.number,
            attempt.outcome,
        )
    _measured(rows, now=now)
    return rows


def _measured(rows: Sequence[Notification], *, now: datetime) -> None:
    """Where the attempts left their rows, and the delivered rows' latency."""
    for row in rows:
        if row.status in FINISHED_COUNTED:
            NOTIFICATIONS_FINISHED.labels(state=row.status).inc()
        if row.status == Status.SUCCEEDED:
            FORWARDING_LATENCY_SECONDS.observe(
                max((now - row.created_at).total_seconds(), 0.0)
            )


FINISHED_COUNTED = frozenset(
    {Status.SUCCEEDED, Status.FAILED, Status.DEAD, Status.RETRYING}
)


def _move_on(row: Notification, item: _Sent, *, now: datetime) -> None:
    """Apply one attempt's outcome to its row (saved by the caller)."""
    interpretation = item.interpretation
    row.attempt_count += 1
    row.schedule_tries += 1
    row.reason = storable(interpretation.reason[:1000])
    row.lease_token = None
    row.lease_expires_at = None
    row.reference = storable(interpretation.reference[:255]) or row.reference
    row.updated_at = now
    if interpretation.outcome == Outcome.SUCCESS:
        row.status, row.next_attempt_at, row.finished_at = Status.SUCCEEDED, None, now
    elif interpretation.outcome == Outcome.FAILURE:
        row.status, row.next_attempt_at, row.finished_at = Status.FAILED, None, now
    else:
        delay = retry_delay(
            row.schedule_tries,
            retry_after_s=retry_after_seconds(item.response, now=now),
        )
        if delay is None:
            row.status, row.next_attempt_at, row.finished_at = Status.DEAD, None, now
        else:
            row.status, row.next_attempt_at = Status.RETRYING, now + delay


def _attempt(row: Notification, item: _Sent) -> NotificationAttempt:
    request, response = item.request, item.response
    return NotificationAttempt(
        notification=row,
        number=row.attempt_count,
        started_at=item.started,
        duration_ms=max(response.elapsed_ms, 0),
        request_method=request.method if request else "",
        request_url=request.url[:2000] if request else "",
        request_headers=dict(request.headers) if request else {},
        request_body=(
            request.body.decode("utf-8", errors="replace")[
                : NotificationAttempt.MAX_BODY_CHARS
            ]
            if request
            else ""
        ),
        response_status=response.status,
        # What a source sends back is recorded, never refused: what PostgreSQL
        # cannot store is replaced.
        response_headers={
            storable(name): storable(value) for name, value in response.headers.items()
        },
        response_body=storable(response.text[: NotificationAttempt.MAX_BODY_CHARS]),
        outcome=item.interpretation.outcome,
        reason=storable(item.interpretation.reason[:1000]),
        error_class=item.error_class,
    )


def _gone_reason(item: _Sent) -> str:
    # The host only: a query URL carries the lead's mapped fields.
    host = urlsplit(item.request.url).hostname if item.request else ""
    return f"The source answered 410 Gone ({host})."


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
