"""Delivering webhook messages, with the guarantees of forwarding (DESIGN §5.4).

The same machinery as notifications: a message row is the source of truth,
claimed with a lease (`feedback.leases`), tried with an attempt row per try,
retried on `LEADBACK_RETRY_SCHEDULE_S` (`feedback.forwarding.schedule`,
Retry-After honoured) until it succeeds or is dead, swept when a lease runs
out, and resent from the admin. The request goes out through the guarded
session of `sources.outbound`, signed with Standard Webhooks. Network I/O only
happens between the short transactions that claim and record.
"""

import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from feedback.forwarding.engine import task_queue_backlog
from feedback.forwarding.schedule import retry_after_seconds, retry_delay
from feedback.leases import (
    due,
    leases_claim,
    leases_extend,
    leases_release,
    leases_take,
    messages_send,
)
from feedback.safetext import storable
from feedback.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from sources.outbound.sending import send
from sources.outbound.signing import SigningSecretError, sign
from sources.outbound.types import OutboundRequest, OutboundResponse, Outcome

logger = logging.getLogger(__name__)

Status = WebhookMessage.Status
Claim = tuple[int, uuid.UUID]
SEND_LEASE_MARGIN_S = 60
TYPICAL_TIMEOUT_S = 10.0
USER_AGENT = "Leadback-Webhooks/1"


# Claiming and queueing --------------------------------------------------------


def webhook_messages_claim_due(
    *, ids: Iterable[int] | None = None, limit: int | None = None
) -> list[Claim]:
    """Lease due messages for queueing."""
    rows = WebhookMessage.objects.filter(due(timezone.now()))
    if ids is not None:
        rows = rows.filter(pk__in=list(ids))
    token, claimed = leases_claim(
        rows,
        seconds=settings.LEADBACK_QUEUE_LEASE_S,
        limit=limit or settings.LEADBACK_SWEEP_BATCH,
        order_by=["next_attempt_at"],
    )
    return [(pk, token) for (pk,) in claimed]


def webhook_messages_enqueue(claims: Sequence[Claim]) -> int:
    """Queue the claims, LEADBACK_DELIVERY_BATCH a message; returns how many
    were queued. Those the broker refused are released for the next sweep."""
    from feedback.webhooks.tasks import deliver_webhook_messages_task

    size = max(1, settings.LEADBACK_DELIVERY_BATCH)
    chunks = [list(claims[i : i + size]) for i in range(0, len(claims), size)]
    queued, failed = messages_send(
        chunks,
        lambda chunk: deliver_webhook_messages_task.delay(
            [[pk, str(token)] for pk, token in chunk]
        ),
        what="webhook messages",
    )
    if failed:
        leases_release(
            WebhookMessage.objects.filter(
                pk__in=[pk for chunk in failed for pk, _ in chunk]
            )
        )
    return sum(len(chunk) for chunk in queued)


def webhook_messages_sweep() -> int:
    """Claim every due message and queue it (the beat task's work); not while
    the queue has a backlog, as for notifications."""
    if task_queue_backlog() > settings.LEADBACK_SWEEP_MAX_BACKLOG:
        return 0
    return webhook_messages_enqueue(webhook_messages_claim_due())


def webhook_messages_deliver_due(*, limit: int | None = None) -> int:
    """Claim due messages and send them in this process, with no broker."""
    claims = webhook_messages_claim_due(limit=limit)
    return len(webhook_messages_deliver(claims=claims))


# Delivering ---------------------------------------------------------------------


@dataclass
class _Tried:
    started: datetime
    request: OutboundRequest
    response: OutboundResponse
    outcome: Outcome
    reason: str
    error_class: str


def webhook_messages_deliver(*, claims: Sequence[Claim]) -> list[WebhookMessage]:
    """Send claimed messages one after another; returns those tried. After an
    error the rest of the batch is handed back untried, to wait as long as the
    message that failed, as the forwarding engine does: a receiver that is
    down is probed by one request per retry rather than hammered."""
    tried: list[WebhookMessage] = []
    for index, (pk, token) in enumerate(claims):
        message = webhook_message_deliver(message_id=pk, token=token)
        if message is None:
            continue
        tried.append(message)
        if message.status == Status.RETRYING:
            for rest_pk, rest_token in claims[index + 1 :]:
                WebhookMessage.objects.filter(
                    pk=rest_pk, lease_token=rest_token
                ).update(
                    lease_token=None,
                    lease_expires_at=None,
                    next_attempt_at=message.next_attempt_at,
                )
            break
    return tried


def webhook_message_deliver(
    *, message_id: int, token: uuid.UUID
) -> WebhookMessage | None:
    """Send one claimed message and record the attempt; None when the claim is
    stale (another worker holds the message, or it is final)."""
    if not leases_take(
        WebhookMessage.objects.filter(pk=message_id),
        token=token,
        seconds=_lease_s(TYPICAL_TIMEOUT_S),
        status=Status.SENDING,
    ):
        return None
    message = WebhookMessage.objects.select_related("endpoint").get(pk=message_id)
    endpoint = message.endpoint
    if endpoint is None or not endpoint.enabled:
        return _skip(message, token)
    if endpoint.timeout_s > TYPICAL_TIMEOUT_S:
        leases_extend(
            WebhookMessage.objects.filter(pk=message_id),
            token=token,
            seconds=_lease_s(endpoint.timeout_s),
        )
    return _record(message, token, _try(message, endpoint))


def _lease_s(timeout_s: float) -> float:
    return timeout_s * 3 + SEND_LEASE_MARGIN_S


def _try(message: WebhookMessage, endpoint: WebhookEndpoint) -> _Tried:
    started = timezone.now()
    body = message.body.encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    try:
        # A fresh timestamp each try: receivers refuse old ones (replay guard).
        headers |= sign(endpoint.secret, message.public_id, int(time.time()), body)
    except SigningSecretError as exc:
        request = OutboundRequest("POST", endpoint.url, headers, body)
        reason = f"The endpoint's secret is not usable: {exc}"
        response = OutboundResponse(status=None, error=reason)
        return _Tried(started, request, response, Outcome.ERROR, reason, "SecretError")
    request = OutboundRequest("POST", endpoint.url, headers, body)
    try:
        response = send(request, timeout_s=endpoint.timeout_s)
    except Exception as exc:
        # A bug, not the network (send reports those): recorded, so the message
        # follows the retry schedule instead of coming back every lease, unseen.
        logger.exception("webhook message %s: unexpected error", message.public_id)
        reason = f"Unexpected error ({type(exc).__name__}); see the worker's log."
        response = OutboundResponse(status=None, error=reason)
        error_class = type(exc).__name__[:100]
        return _Tried(started, request, response, Outcome.ERROR, reason, error_class)
    outcome, reason, error_class = _interpret(response)
    return _Tried(started, request, response, outcome, reason, error_class)


def _interpret(response: OutboundResponse) -> tuple[Outcome, str, str]:
    """2xx is delivered; 410 Gone refuses for good (the endpoint is disabled);
    anything else, or no answer, is tried again, as Standard Webhooks senders do."""
    status = response.status
    if status is None:
        error_class = (response.error.split(":", 1)[0] or "NoResponse")[:100]
        return Outcome.ERROR, response.error or "No response.", error_class
    if 200 <= status < 300:
        return Outcome.SUCCESS, f"Answered {status}.", ""
    if status == 410:
        return Outcome.FAILURE, "Answered 410 Gone: the endpoint was disabled.", ""
    error_class = "ServerError" if status >= 500 else f"HTTP{status}"
    return Outcome.ERROR, f"Answered {status}.", error_class


def _skip(message: WebhookMessage, token: uuid.UUID) -> WebhookMessage:
    with transaction.atomic():
        WebhookMessage.objects.filter(pk=message.pk, lease_token=token).update(
            status=Status.SKIPPED,
            reason="The endpoint was disabled or deleted before sending.",
            lease_token=None,
            lease_expires_at=None,
            next_attempt_at=None,
            finished_at=timezone.now(),
        )
    message.refresh_from_db()
    return message


def _record(message: WebhookMessage, token: uuid.UUID, tried: _Tried) -> WebhookMessage:
    """Store the attempt and move the message on, in one transaction."""
    now = timezone.now()
    with transaction.atomic():
        row = WebhookMessage.objects.select_for_update().get(pk=message.pk)
        number = row.attempt_count + 1
        WebhookAttempt.objects.create(
            message=row,
            number=number,
            started_at=tried.started,
            duration_ms=max(tried.response.elapsed_ms, 0),
            request_url=tried.request.url[:2000],
            request_headers=dict(tried.request.headers),
            response_status=tried.response.status,
            response_headers={
                storable(name): storable(value)
                for name, value in tried.response.headers.items()
            },
            response_body=storable(
                tried.response.text[: WebhookAttempt.MAX_BODY_CHARS]
            ),
            outcome=tried.outcome,
            reason=storable(tried.reason[:1000]),
            error_class=tried.error_class,
        )
        row.attempt_count = number
        row.schedule_tries += 1
        fields = ["attempt_count", "schedule_tries", "updated_at"]
        if row.lease_token != token:
            # Our lease ran out and someone else owns the message now: the
            # attempt is on record, its status is theirs to decide.
            row.save(update_fields=fields)
            return row
        row.reason = storable(tried.reason[:1000])
        row.lease_token = None
        row.lease_expires_at = None
        fields += ["reason", "lease_token", "lease_expires_at", "status"]
        fields += ["next_attempt_at", "finished_at"]
        if tried.outcome == Outcome.SUCCESS:
            row.status, row.next_attempt_at, row.finished_at = (
                Status.SUCCEEDED,
                None,
                now,
            )
        elif tried.outcome == Outcome.FAILURE:
            row.status, row.next_attempt_at, row.finished_at = Status.FAILED, None, now
            if row.endpoint_id is not None:
                _endpoint_disable(row.endpoint_id, reason=tried.reason)
        else:
            delay = retry_delay(
                row.schedule_tries,
                retry_after_s=retry_after_seconds(tried.response, now=now),
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
    logger.info(
        "webhook message %s attempt %d: %s", row.public_id, number, tried.outcome
    )
    return row


def _endpoint_disable(endpoint_id: int, *, reason: str) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(
        enabled=False, disabled_reason=reason[:500], updated_at=timezone.now()
    )
    logger.warning("webhook endpoint %s disabled: %s", endpoint_id, reason)


# Admin actions --------------------------------------------------------------------


def webhook_messages_resend(*, ids: Iterable[int]) -> int:
    """Send again, from a fresh schedule and with the same webhook-id, messages
    that are final (or stuck); one being sent now is left alone. Returns how
    many were reset; they are queued once the reset commits."""
    now = timezone.now()
    ids = list(ids)
    with transaction.atomic():
        resent = (
            WebhookMessage.objects.filter(pk__in=ids)
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
        if resent and settings.LEADBACK_QUEUE_ON_COMMIT:
            # Queued at once rather than at the sweep's next pass.
            transaction.on_commit(lambda: _queue_now(ids))
    return int(resent)


def _queue_now(ids: list[int]) -> None:
    try:
        webhook_messages_enqueue(webhook_messages_claim_due(ids=ids))
    except Exception:  # the database or broker is unwell: the sweep covers
        logger.warning("could not queue resent webhook messages", exc_info=True)
