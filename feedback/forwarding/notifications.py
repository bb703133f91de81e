"""Creating notifications: one per enabled config of the feedback's source and
kind, criteria read at once (DESIGN §5.4). Runs inside the intake's transaction,
so a feedback and its notifications are stored together or not at all."""

import uuid
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from feedback.forwarding.models import Notification
from feedback.leases import lease_until
from feedback.models import Feedback, FeedbackCorrection
from feedback.rows import Insert
from feedback.variables import feedback_variables
from sources.models import FeedbackConfig, Kind
from sources.services import feedback_config_criteria_check

Status = Notification.Status


# Sources' enabled configs by (source id, kind), in id order.
Configs = dict[tuple[int, str], list[FeedbackConfig]]


def notifications_create(
    *,
    feedbacks: Sequence[Feedback],
    configs: Configs | None = None,
    queue: bool = False,
) -> list[Notification]:
    """Notification rows for accepted feedback, one per enabled config of its
    source and kind. Runs in the intake's transaction, so a feedback and its
    notifications are stored together or not at all.

    With `queue` (and LEADBACK_QUEUE_ON_COMMIT on), the rows a worker will send
    are born leased to one token for a queue lease, so the caller can queue them
    once the transaction commits without claiming them again: one statement and
    one commit fewer per feedback. A process that dies between the commit and
    the queueing leaves them to the sweep once the lease runs out, as a lost
    message would. Sync configs' rows are left unleased: the intake sends them
    itself.

    Each feedback's `notifications` are set to the rows just created, in the
    order a prefetch would give, so the intake's answer lists them without
    reading them back."""
    created = notifications_prepare(feedbacks=feedbacks, configs=configs, queue=queue)
    if len(created) == 1:
        # What a single feedback forwarded to one config writes: the INSERT
        # written once rather than compiled on every call (feedback/rows.py).
        insert_notification(created[0])
    else:
        created = Notification.objects.bulk_create(created)
    notifications_remember(feedbacks, created)
    return created


insert_notification = Insert(Notification)


def notifications_prepare(
    *,
    feedbacks: Sequence[Feedback],
    configs: Configs | None = None,
    queue: bool = False,
) -> list[Notification]:
    """The unsaved rows `notifications_create` writes, for a caller that writes
    them with the feedback (intake/store.py): `feedback_id` is set from the
    feedback once it has one."""
    rows = notifications_build(feedbacks=feedbacks, configs=configs)
    if queue and settings.LEADBACK_QUEUE_ON_COMMIT:
        token = uuid.uuid4()
        expires = lease_until(settings.LEADBACK_QUEUE_LEASE_S)
        for row in rows:
            if row["status"] == Status.PENDING and not row["config"].sync:
                row["lease_token"], row["lease_expires_at"] = token, expires
    return [Notification(**row) for row in rows]


def notifications_remember(
    feedbacks: Sequence[Feedback], created: Sequence[Notification]
) -> None:
    """Set each feedback's `notifications` to the rows just created for them."""
    by_id: dict[int, list[Notification]] = {f.pk: [] for f in feedbacks}
    sources = {f.pk: f.source for f in feedbacks}
    for notification in created:
        notification.source = sources[notification.feedback_id]
        by_id[notification.feedback_id].append(notification)
    for feedback in feedbacks:
        cache = feedback.__dict__.setdefault("_prefetched_objects_cache", {})
        cache["notifications"] = by_id[feedback.pk]


def notifications_forget(feedback: Feedback) -> None:
    """Drop the rows `notifications_create` set on `feedback` (after they
    changed in the database), so the next read fetches them."""
    getattr(feedback, "_prefetched_objects_cache", {}).pop("notifications", None)


def notifications_build(
    *, feedbacks: Sequence[Feedback], configs: Configs | None = None
) -> list[dict[str, Any]]:
    """The field values of the rows `notifications_create` stores, for callers
    that write them their own way (CSV imports COPY them, without the cost of a
    model instance per row). `feedback_id` is the feedback's id, None until it
    is saved. Criteria are read now:
    feedback that fails them is recorded as skipped with the reason."""
    accepted = [f for f in feedbacks if f.outcome == Feedback.Outcome.SUCCESS]
    if not accepted:
        return []
    if configs is None:  # not read with the deliveries: read them now
        configs = {}
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
        if feedback.kind == Kind.RETURN:
            # A return whose config waits for approval is forwarded by the
            # approval (returns/services.py), not here.
            approved = feedback.review_state == Feedback.ReviewState.APPROVED
            matching = [c for c in matching if approved or not waits_approval(c)]
        variables = None  # built for the first config with criteria, if any
        for config in matching:
            skipped = None
            if config.criteria:
                if variables is None:
                    variables = feedback_variables(feedback=feedback)
                skipped = feedback_config_criteria_check(
                    config=config, variables=variables
                )
            # Batch configs' rows wait for their period's file (batches.py).
            waits = skipped or config.method == FeedbackConfig.Method.BATCH
            rows.append(
                {
                    "feedback_id": feedback.id,
                    "config": config,
                    "source_id": feedback.source_id,
                    "kind": feedback.kind,
                    "lead_delivered_at": feedback.delivery.delivered_at,
                    "status": _initial_status(config, skipped),
                    "reason": (skipped or "")[:1000],
                    "next_attempt_at": None if waits else now,
                    "finished_at": now if skipped else None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
    return rows


def waits_approval(config: FeedbackConfig) -> bool:
    return config.forward_on == FeedbackConfig.ForwardOn.APPROVED


def _initial_status(config: FeedbackConfig, skipped: str | None) -> str:
    if skipped:
        return Status.SKIPPED
    if config.method == FeedbackConfig.Method.BATCH:
        return Status.BATCHED
    return Status.PENDING


# Corrections (DESIGN §12) -------------------------------------------------------

# The originals a source has received, or is receiving: told of a correction
# when their config has the request for it. One still waiting is sent with the
# correction applied (an amended revenue) or not at all (a retraction).
RECEIVED = Q(status__in=(Status.SUCCEEDED, Status.SENDING)) | Q(
    status=Status.BATCHED, batch_run__isnull=False
)


def correction_field(action: str) -> str:
    """The config field holding the request of a correction `action`."""
    return "on_retract" if action == FeedbackCorrection.Action.RETRACT else "on_amend"


def correction_originals(feedback: Feedback) -> list[Notification]:
    """The feedback's own notifications a source got (or is getting), with
    their configs, oldest first: what a correction may need to be told to."""
    return list(
        Notification.objects.filter(
            RECEIVED, feedback=feedback, correction__isnull=True
        )
        .select_related("config", "source", "batch_run")
        .order_by("pk")
    )


def correction_notices_create(
    *, feedback: Feedback, correction: FeedbackCorrection
) -> list[Notification]:
    """One notice per notification that forwarded `feedback` whose config has
    a request for this correction (`on_retract` or `on_amend`), carrying the
    original's id; sources without one are not told. Runs in the correction's
    transaction; the caller queues the rows once it commits."""
    field = correction_field(correction.action)
    now = timezone.now()
    notices = [
        Notification(
            feedback=feedback,
            config=original.config,
            source_id=original.source_id,
            kind=feedback.kind,
            lead_delivered_at=original.lead_delivered_at,
            status=Status.PENDING,
            next_attempt_at=now,
            correction=correction,
            original=original,
            created_at=now,
            updated_at=now,
        )
        for original in correction_originals(feedback)
        if original.config is not None
        and original.config.enabled
        and getattr(original.config, field)
    ]
    return Notification.objects.bulk_create(notices)


def notifications_cancel_unsent(*, feedback: Feedback, reason: str) -> int:
    """Skip the feedback's own notifications not yet sent nor being sent (a
    retraction came first); how many."""
    now = timezone.now()
    return (
        Notification.objects.filter(feedback=feedback, correction__isnull=True)
        .filter(
            Q(status__in=(Status.PENDING, Status.RETRYING))
            | Q(status=Status.BATCHED, batch_run__isnull=True)
        )
        .update(
            status=Status.SKIPPED,
            lease_token=None,
            lease_expires_at=None,
            reason=reason[:1000],
            next_attempt_at=None,
            finished_at=now,
            updated_at=now,
        )
    )
