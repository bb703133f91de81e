"""Erasure notices (DESIGN §12): telling a lead's source that its data was
erased, where a config of the source has an `on_erase` mapping.

A notice carries the lead's id, its event ids and the erasure's id, so the
source can find its own copy; nothing personal is left to send. It is built
with the config's own request settings (auth, headers, signing) and the
mapping's URL, method and fields, sent through the outbound session with its
SSRF guard, and retried on forwarding's schedule like a notification.
"""

import copy
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone

from feedback.forwarding.schedule import retry_after_seconds, retry_delay
from feedback.leases import due, leases_claim, leases_take
from feedback.models import Lead
from feedback.privacy.models import Erasure, ErasureNotice
from feedback.safetext import storable
from sources.models import FeedbackConfig, FieldMapping
from sources.outbound.types import Interpretation, OutboundResponse, Outcome
from sources.services import (
    RequestError,
    feedback_config_build_request,
    feedback_config_send,
    on_erase_problem,
)

logger = logging.getLogger(__name__)

Status = ErasureNotice.Status
SEND_LEASE_S = 120.0


def _erase_configs(source_ids: set[int]) -> list[FeedbackConfig]:
    configs = FeedbackConfig.objects.filter(
        source_id__in=source_ids, enabled=True, on_erase__isnull=False
    ).order_by("pk")
    return [c for c in configs if c.on_erase and on_erase_problem(c.on_erase) is None]


def erasure_notices_create(
    *, erasure: Erasure, leads: Sequence[Lead], events: dict[int, list[str]]
) -> list[ErasureNotice]:
    """One notice per lead and config of its source with an `on_erase`
    mapping; written in the erasure's transaction. `events` are the event ids
    of each lead (by its pk)."""
    configs = _erase_configs({lead.source_id for lead in leads})
    now = timezone.now()
    notices = [
        ErasureNotice(
            erasure=erasure,
            config=config,
            source_id=lead.source_id,
            lead_id=lead.public_id,
            event_ids=events.get(lead.pk, []),
            next_attempt_at=now,
        )
        for lead in leads
        for config in configs
        if config.source_id == lead.source_id
    ]
    return ErasureNotice.objects.bulk_create(notices)


def erasure_notices_enqueue_on_commit() -> None:
    def queue() -> None:
        from feedback.privacy.tasks import send_erasure_notices_task

        try:
            send_erasure_notices_task.delay()
        except Exception:  # the beat sweep sends them when the broker is back
            logger.warning("erasure notices not queued; the sweep will send them")

    transaction.on_commit(queue)


def _variables(notice: ErasureNotice) -> dict[str, Any]:
    return {
        "lead": {"id": notice.lead_id},
        "events": list(notice.event_ids),
        "event": {"id": notice.event_ids[0] if notice.event_ids else ""},
        "erasure": {"id": notice.erasure.public_id},
        "source": {"slug": notice.source.slug},
    }


def _erase_config(config: FeedbackConfig) -> tuple[FeedbackConfig, list[FieldMapping]]:
    """The config as the notice sends it: its own auth, headers and signing,
    the mapping's URL, method and fields."""
    spec = config.on_erase or {}
    sending = copy.copy(config)
    sending.url = spec["url"]
    sending.method = spec.get("method", "json")
    sending.http_method = "POST"
    mappings = [
        FieldMapping(position=i, target=str(target), value=str(template))
        for i, (target, template) in enumerate(spec["mappings"].items())
    ]
    return sending, mappings


def erasure_notices_send_due(*, limit: int = 100) -> int:
    """Send the notices that are due; how many were tried."""
    now = timezone.now()
    token, rows = leases_claim(
        ErasureNotice.objects.filter(due(now)),
        seconds=SEND_LEASE_S,
        limit=limit,
        order_by=("next_attempt_at", "pk"),
    )
    for (pk,) in rows:
        erasure_notice_send(notice_id=pk, token=token)
    return len(rows)


def erasure_notice_send(*, notice_id: int, token: uuid.UUID) -> ErasureNotice | None:
    """One try at one notice held under `token`; None when another took it."""
    held = ErasureNotice.objects.filter(pk=notice_id)
    if not leases_take(held, token=token, seconds=SEND_LEASE_S, status=Status.SENDING):
        return None
    notice = ErasureNotice.objects.select_related("erasure", "source", "config").get(
        pk=notice_id
    )
    config = notice.config
    if config is None or on_erase_problem(config.on_erase) or not config.on_erase:
        return _finish(
            notice,
            Status.FAILED,
            "The config or its erasure mapping was removed.",
            response=None,
        )
    sending, mappings = _erase_config(config)
    started = timezone.now()
    try:
        request = feedback_config_build_request(
            config=sending,
            variables=_variables(notice),
            message_id=notice.public_id,
            mappings=mappings,
            now=started,
        )
    except RequestError as exc:
        response = OutboundResponse(status=None, error=str(exc))
        interpretation = Interpretation(Outcome.ERROR, str(exc))
    else:
        response, interpretation = feedback_config_send(config=sending, request=request)
    notice.attempt_count += 1
    notice.schedule_tries += 1
    if interpretation.outcome == Outcome.SUCCESS:
        return _finish(notice, Status.SUCCEEDED, "", response=response)
    if interpretation.outcome == Outcome.FAILURE:
        return _finish(notice, Status.FAILED, interpretation.reason, response=response)
    delay = retry_delay(
        notice.schedule_tries,
        retry_after_s=retry_after_seconds(response, now=started),
    )
    if delay is None:
        return _finish(notice, Status.DEAD, interpretation.reason, response=response)
    notice.status = Status.RETRYING
    notice.next_attempt_at = timezone.now() + delay
    notice.reason = storable(interpretation.reason[:1000])
    notice.response_status = response.status
    notice.lease_token = None
    notice.lease_expires_at = None
    notice.save(
        update_fields=[
            "status",
            "next_attempt_at",
            "reason",
            "response_status",
            "attempt_count",
            "schedule_tries",
            "lease_token",
            "lease_expires_at",
        ]
    )
    return notice


def _finish(
    notice: ErasureNotice,
    status: str,
    reason: str,
    *,
    response: OutboundResponse | None,
) -> ErasureNotice:
    notice.status = status
    notice.reason = storable(reason[:1000])
    notice.response_status = response.status if response is not None else None
    notice.finished_at = timezone.now()
    notice.next_attempt_at = None
    notice.lease_token = None
    notice.lease_expires_at = None
    notice.save(
        update_fields=[
            "status",
            "reason",
            "response_status",
            "finished_at",
            "next_attempt_at",
            "attempt_count",
            "schedule_tries",
            "lease_token",
            "lease_expires_at",
        ]
    )
    logger.info("erasure notice %s %s", notice.public_id, status)
    return notice
