"""Batch files (DESIGN §5.6): a batch config's notifications, one CSV file a period.

Exactly once, by construction:
- Intake stores a batch config's notifications as `batched` with no run.
- When a period ends, `batch_runs_schedule` creates its run (one per config and
  period end: a unique constraint, so racing schedulers make one) and ties to it,
  in one UPDATE, every notification of the config that is not in a file yet. A
  notification committed too late for its period goes into the next one.
- The file is built once from those rows and stored on the run, so a retry, a
  resend or a worker that takes over from a killed one sends the same bytes.
- Transports upload to `<name>.part` and rename; a name already there with the
  same content means an earlier try finished, and counts as sent.
Sending is leased like notifications (feedback/leases.py): a run whose worker
died becomes due again when its lease runs out.
"""

import io
import logging
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from feedback.forwarding.models import BatchAttempt, BatchRun, Notification
from feedback.forwarding.schedule import retry_delay
from feedback.leases import (
    due,
    leases_claim,
    leases_release,
    leases_take,
    messages_send,
)
from feedback.variables import feedback_variables
from sources import templating
from sources.csvcells import write_csv
from sources.models import FeedbackConfig
from sources.services import RequestError, feedback_config_render
from sources.transports import BatchFile, TransportError
from sources.transports.batch import batch_destination, batch_file_send

logger = logging.getLogger(__name__)

Status = BatchRun.Status
Every = FeedbackConfig.BatchEvery


# Periods ------------------------------------------------------------------------


def batch_period_end(config: FeedbackConfig, *, now: datetime) -> datetime:
    """The latest scheduled time at or before `now`: where the last period ended."""
    zone = ZoneInfo(config.batch_timezone or "UTC")
    local = now.astimezone(zone)
    at = config.batch_at or dt_time(0)
    if config.batch_every == Every.HOUR:
        tick = local.replace(minute=0, second=0, microsecond=0)
    elif config.batch_every == Every.WEEK:
        back = (local.weekday() - (config.batch_day or 0)) % 7
        tick = datetime.combine(local.date() - timedelta(days=back), at, zone)
        if tick > local:
            tick -= timedelta(days=7)
    else:
        tick = datetime.combine(local.date(), at, zone)
        if tick > local:
            tick -= timedelta(days=1)
    return tick.astimezone(UTC)


def batch_period_start(config: FeedbackConfig, *, end: datetime) -> datetime:
    """The scheduled time before `end` (wall-clock days, across DST changes)."""
    if config.batch_every == Every.HOUR:
        return end - timedelta(hours=1)
    zone = ZoneInfo(config.batch_timezone or "UTC")
    days = 7 if config.batch_every == Every.WEEK else 1
    return (end.astimezone(zone) - timedelta(days=days)).astimezone(UTC)


# Scheduling ---------------------------------------------------------------------


def batch_configs() -> QuerySet[FeedbackConfig]:
    """The enabled batch configs, the scheduler's work list."""
    return FeedbackConfig.objects.filter(
        enabled=True, method=FeedbackConfig.Method.BATCH
    ).select_related("source")


def batch_runs_schedule(*, now: datetime | None = None) -> list[BatchRun]:
    """Create the run of every enabled batch config whose period has ended and
    has no run yet; returns the runs created."""
    now = now or timezone.now()
    created = []
    for config in batch_configs():
        end = batch_period_end(config, now=now)
        if BatchRun.objects.filter(config=config, period_end__gte=end).exists():
            continue
        run = batch_run_create(config=config, period_end=end, now=now)
        if run is not None:
            created.append(run)
    return created


def batch_run_create(
    *, config: FeedbackConfig, period_end: datetime, now: datetime | None = None
) -> BatchRun | None:
    """The run of the period ending at `period_end`, holding every notification of
    the config not yet in a file; None when that period already has its run."""
    now = now or timezone.now()
    last = (
        BatchRun.objects.filter(config=config, period_end__lt=period_end)
        .order_by("-period_end")
        .values_list("period_end", flat=True)
        .first()
    )
    # After a gap (beat down, config off) the period reaches back to the last run.
    start = last or batch_period_start(config, end=period_end)
    try:
        with transaction.atomic():
            run = BatchRun.objects.create(
                config=config,
                source_id=config.source_id,
                period_start=start,
                period_end=period_end,
                next_attempt_at=now,
                created_at=now,
            )
            count = Notification.objects.filter(
                config=config,
                status=Notification.Status.BATCHED,
                batch_run__isnull=True,
                created_at__lt=period_end,
            ).update(batch_run=run, updated_at=now)
            run.row_count = count
            fields = ["row_count", "updated_at"]
            if count == 0 and not config.batch_send_empty:
                run.status, run.next_attempt_at = Status.EMPTY, None
                run.reason = "No feedback in this period; nothing was sent."
                fields += ["status", "next_attempt_at", "reason"]
            run.save(update_fields=fields)
    except IntegrityError:
        return None  # another scheduler made this period's run first
    logger.info(
        "batch run %s for config %s: %d rows", run.public_id, config.pk, run.row_count
    )
    if run.status == Status.PENDING:
        batch_run_build(run=run)
    return run


# Building -----------------------------------------------------------------------


def _file_variables(run: BatchRun, config: FeedbackConfig) -> dict[str, Any]:
    zone = ZoneInfo(config.batch_timezone or "UTC")
    return {
        "period": {
            "start": run.period_start.astimezone(zone),
            "end": run.period_end.astimezone(zone),
        },
        "source": {"name": config.source.name, "slug": config.source.slug},
        "kind": config.kind,
        "run": {"id": run.public_id, "rows": run.row_count},
    }


def batch_file_name(run: BatchRun, config: FeedbackConfig) -> str:
    """The file name the config's template gives this run; RequestError if bad."""
    template = config.batch_file_name or "{{ source.slug }}-{{ kind }}-{{ run.id }}.csv"
    try:
        name = templating.render(template, _file_variables(run, config)).strip()
    except templating.TemplateError as exc:
        raise RequestError(f"File name template: {exc}") from None
    if not name or name in (".", "..") or any(c in name for c in "/\\\0\r\n"):
        raise RequestError(
            f"File name template: {name!r} is not a file name (no slashes or "
            "line breaks, not empty)."
        )
    return name[:500]


def batch_file_build(run: BatchRun, config: FeedbackConfig) -> tuple[str, bytes]:
    """The run's file name and CSV bytes: one row per notification, columns from
    the mappings, every cell formula-safe. RequestError if a template fails."""
    mappings = list(config.mappings.all())
    notifications = (
        Notification.objects.filter(batch_run=run)
        .select_related(
            "feedback__delivery",
            "feedback__lead",
            "feedback__buyer",
            "feedback__source",
            "feedback__flow",
            "feedback__outcome_code",
        )
        .order_by("created_at", "pk")
    )
    rows = []
    for notification in notifications.iterator(chunk_size=500):
        fields = feedback_config_render(
            config=config,
            variables=feedback_variables(feedback=notification.feedback),
            mappings=mappings,
        )
        rows.append([value for _target, value in fields])
    stream = io.StringIO(newline="")
    header = [mapping.target for mapping in mappings] if config.batch_header else None
    write_csv(stream, rows, header=header)
    return batch_file_name(run, config), stream.getvalue().encode("utf-8")


def batch_run_build(*, run: BatchRun) -> BatchRun:
    """Build and store the run's file, once; a template error is kept as the
    run's reason and the build is tried again with the next send."""
    if run.content is not None or run.config_id is None:
        return run
    config = FeedbackConfig.objects.select_related("source").get(pk=run.config_id)
    try:
        name, content = batch_file_build(run, config)
    except RequestError as exc:
        BatchRun.objects.filter(pk=run.pk).update(reason=str(exc)[:1000])
        run.reason = str(exc)[:1000]
        return run
    file = BatchFile(name=name, content=content)
    with transaction.atomic():
        # Only the first build is kept: the file never changes once stored.
        BatchRun.objects.filter(pk=run.pk, content__isnull=True).update(
            file_name=name,
            content=content,
            sha256=file.sha256,
            reason="",
            updated_at=timezone.now(),
        )
    run.refresh_from_db()
    return run


# Claiming and sending -------------------------------------------------------------


def batch_runs_claim_due(*, limit: int = 100) -> list[tuple[int, uuid.UUID]]:
    """Lease due runs for queueing, as (run id, token) pairs."""
    token, rows = leases_claim(
        BatchRun.objects.filter(due(timezone.now())),
        seconds=settings.LEADBACK_QUEUE_LEASE_S,
        limit=limit,
        order_by=["next_attempt_at"],
    )
    return [(pk, token) for (pk,) in rows]


def batch_runs_dispatch() -> int:
    """The beat task's work: create ended periods' runs, queue the due ones."""
    from feedback.forwarding.tasks import send_batch_run_task

    batch_runs_schedule()
    queued, failed = messages_send(
        batch_runs_claim_due(),
        lambda claim: send_batch_run_task.delay(claim[0], str(claim[1])),
        what="a batch run",
    )
    if failed:
        leases_release(BatchRun.objects.filter(pk__in=[pk for pk, _ in failed]))
    return len(queued)


def batch_runs_run_due() -> int:
    """Create and send due runs in this process (manage.py run_batches --once)."""
    batch_runs_schedule()
    sent = 0
    for run_id, token in batch_runs_claim_due():
        if batch_run_send(run_id=run_id, token=token) is not None:
            sent += 1
    return sent


def batch_run_send(*, run_id: int, token: uuid.UUID) -> BatchRun | None:
    """Send one claimed run's file and record the attempt; None if the claim is
    stale (another worker holds the run, or it is final)."""
    started = timezone.now()
    if not leases_take(
        BatchRun.objects.filter(pk=run_id),
        token=token,
        seconds=settings.LEADBACK_BATCH_LEASE_S,
        status=Status.SENDING,
    ):
        return None
    run = BatchRun.objects.select_related("config", "source").get(pk=run_id)
    config = run.config
    run = batch_run_build(run=run)
    clock = time.monotonic()

    def record(
        outcome: str, reason: str, error_class: str = "", destination: str = ""
    ) -> BatchRun:
        return _record(
            run,
            token,
            started=started,
            duration_ms=int((time.monotonic() - clock) * 1000),
            destination=destination,
            outcome=outcome,
            reason=reason,
            error_class=error_class,
        )

    if config is None or not config.enabled:
        reason = "The config was disabled or deleted before sending."
        return record("failure", reason, "ConfigDisabled")
    if run.content is None:
        return record("error", run.reason, "BuildError")
    file = BatchFile(
        name=run.file_name, content=bytes(run.content), message_id=run.public_id
    )

    def still_mine() -> bool:
        return BatchRun.objects.filter(
            pk=run_id, lease_token=token, status=Status.SENDING
        ).exists()

    destination = ""
    try:
        destination = batch_destination(config).describe()
        reason = batch_file_send(config=config, file=file, still_mine=still_mine)
    except TransportError as exc:
        outcome = "failure" if exc.permanent else "error"
        return record(outcome, exc.message, "TransportError", destination)
    except Exception as exc:
        # A bug, not the network: record it so the run follows the retry
        # schedule instead of being picked up again every lease, unseen.
        logger.exception("batch run %s: unexpected error", run.public_id)
        reason = f"Unexpected error ({type(exc).__name__}); see the worker's log."
        return record("error", reason, type(exc).__name__[:100], destination)
    return record("success", reason, "", destination)


def _record(
    run: BatchRun,
    token: uuid.UUID,
    *,
    started: datetime,
    duration_ms: int,
    destination: str,
    outcome: str,
    reason: str,
    error_class: str,
) -> BatchRun:
    now = timezone.now()
    with transaction.atomic():
        row = BatchRun.objects.select_for_update().get(pk=run.pk)
        number = row.attempt_count + 1
        BatchAttempt.objects.create(
            run=row,
            number=number,
            started_at=started,
            duration_ms=duration_ms,
            destination=destination[:1000],
            outcome=outcome,
            reason=reason[:1000],
            error_class=error_class,
        )
        row.attempt_count = number
        row.schedule_tries += 1
        fields = ["attempt_count", "schedule_tries", "updated_at"]
        if row.lease_token != token:
            row.save(update_fields=fields)  # someone else owns the run now
            return row
        row.reason = reason[:1000]
        row.lease_token = None
        row.lease_expires_at = None
        fields += ["reason", "lease_token", "lease_expires_at", "status"]
        fields += ["next_attempt_at", "sent_at"]
        if outcome == "success":
            row.status, row.next_attempt_at, row.sent_at = Status.SENT, None, now
            Notification.objects.filter(batch_run=row).update(
                finished_at=now, reason=f"Sent in {row.file_name}"[:1000]
            )
        elif outcome == "failure":
            row.status, row.next_attempt_at = Status.FAILED, None
        else:
            delay = retry_delay(row.schedule_tries)
            if delay is None:
                row.status, row.next_attempt_at = Status.DEAD, None
            else:
                row.status, row.next_attempt_at = Status.RETRYING, now + delay
        row.save(update_fields=fields)
    logger.info("batch run %s attempt %d: %s", row.public_id, number, outcome)
    return row


# Admin actions ----------------------------------------------------------------------


def batch_runs_resend(*, ids: Iterable[int]) -> int:
    """Send the same file again, from a fresh retry schedule, for runs that are
    final; runs being sent and empty runs are left alone. Returns how many."""
    now = timezone.now()
    with transaction.atomic():
        return BatchRun.objects.filter(
            pk__in=list(ids),
            status__in=[Status.SENT, Status.FAILED, Status.DEAD, Status.RETRYING],
        ).update(
            status=Status.PENDING,
            next_attempt_at=now,
            lease_token=None,
            lease_expires_at=None,
            schedule_tries=0,
            updated_at=now,
        )
