"""Writes of the monitoring app: evaluating monitors, raising alerts, running
and resending their actions, and saving monitors from configuration."""

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from feedback.forwarding.schedule import retry_delay
from feedback.leases import due, leases_claim, messages_send
from feedback.models import Buyer, Flow
from monitoring import actions
from monitoring.metrics import Reading, Series, reading, series_many, today
from monitoring.models import Alert, AlertAction, Monitor
from monitoring.statistics import beyond, interval_beyond
from reporting.rollups import rollups_refresh
from sources.configuration.base import Document
from sources.models import Source
from sources.transports import TransportError

logger = logging.getLogger(__name__)

# How long a worker owns an action it took; an email or a chat message is
# seconds, so a row still "sending" after this was abandoned by a dead worker.
ACTION_LEASE_S = 300.0
Status = AlertAction.Status


@dataclass(frozen=True)
class Evaluation:
    monitors: int
    fired: int
    resolved: int


def monitor_save(*, item: Document) -> Monitor:
    """Create or update a monitor from its configuration document (normalised,
    validated: monitoring/configuration.py). Its state and alerts are kept."""
    scope = item.get("scope", {})
    condition = item["condition"]
    with transaction.atomic():
        monitor, _ = Monitor.objects.update_or_create(
            slug=item["slug"],
            defaults={
                "name": item["name"],
                "source": Source.objects.get(slug=scope["source"])
                if "source" in scope
                else None,
                "buyer": Buyer.objects.get(slug=scope["buyer"])
                if "buyer" in scope
                else None,
                "flow": Flow.objects.get(slug=scope["flow"])
                if "flow" in scope
                else None,
                "metric": item["metric"],
                "window_days": item["window_days"],
                "basis": item["basis"],
                "op": condition["op"],
                "threshold": float(condition["threshold"]),
                "min_sample": condition["min_sample"],
                "confidence": float(condition["confidence"]),
                "actions": item["actions"],
            },
        )
    return monitor


def monitor_decide(*, monitor: Monitor, value: Reading) -> str | None:
    """The alert a reading raises for the monitor in its current state, or None.

    It fires only when the sample reaches `min_sample` and the whole interval
    lies beyond the threshold; it resolves when the point estimate is back
    inside (at the threshold is inside). A window with nothing in it says
    nothing, and leaves the state as it is."""
    if value.value is None or value.interval is None:
        return None
    op, threshold = monitor.op, monitor.threshold
    if monitor.state == Monitor.State.OK:
        if value.sample >= monitor.min_sample and interval_beyond(
            value.interval, op=op, threshold=threshold
        ):
            return Alert.State.FIRING
        return None
    if not beyond(value.value, op=op, threshold=threshold):
        return Alert.State.RESOLVED
    return None


def monitors_evaluate(
    *,
    monitors: Sequence[Monitor] | None = None,
    last: date | None = None,
    refresh: bool = True,
) -> Evaluation:
    """Evaluate every monitor (or these) now, raising an alert for each change.

    With `refresh` the rollups are brought up to date first; beat leaves that
    to its own rollup refresh (LEADBACK_ROLLUP_INTERVAL_S), which runs anyway.
    The numbers of all monitors are then read in a few grouped queries
    (monitoring/metrics.py). `last` is the window's last day (today; a
    benchmark on old data names another)."""
    if refresh:
        rollups_refresh()
    if monitors is None:
        monitors = list(Monitor.objects.select_related("source", "buyer", "flow"))
    last = last or today()
    series = series_many(monitors, last=last)
    fired = resolved = 0
    for monitor in monitors:
        got = reading(monitor, series[monitor.pk].total())
        change = monitor_decide(monitor=monitor, value=got)
        if change is None:
            continue
        alert = alert_raise(
            monitor=monitor, state=change, value=got, series=series[monitor.pk]
        )
        if alert is not None:
            fired += change == Alert.State.FIRING
            resolved += change == Alert.State.RESOLVED
    now = timezone.now()
    Monitor.objects.filter(pk__in=[m.pk for m in monitors]).update(evaluated_at=now)
    return Evaluation(monitors=len(monitors), fired=fired, resolved=resolved)


def alert_raise(
    *, monitor: Monitor, state: str, value: Reading, series: Series
) -> Alert | None:
    """Record a change of the monitor's state, with one outbox row per action.

    Two evaluations may run at once (beat on two nodes): the monitor row is
    locked and its state read again, so a change is recorded once. Returns
    None when the other evaluation got there first."""
    expected = Monitor.State.OK if state == Alert.State.FIRING else Monitor.State.FIRING
    with transaction.atomic():
        locked = Monitor.objects.select_for_update().get(pk=monitor.pk)
        if locked.state != expected:
            return None
        interval = value.interval
        alert = Alert.objects.create(
            monitor=locked,
            state=state,
            value=value.value,
            low=interval.low if interval else None,
            high=interval.high if interval else None,
            sample=value.sample,
            threshold=locked.threshold,
            window_start=series.window.first,
            window_end=series.window.last,
        )
        locked.state = (
            Monitor.State.FIRING if state == Alert.State.FIRING else Monitor.State.OK
        )
        locked.save(update_fields=["state", "updated_at"])
        monitor.state = locked.state
        now = timezone.now()
        rows = AlertAction.objects.bulk_create(
            AlertAction(
                alert=alert,
                index=index,
                type=str(spec.get("type", "")),
                spec=spec,
                next_attempt_at=now,
            )
            for index, spec in enumerate(locked.actions or [])
        )
        if rows:
            transaction.on_commit(alert_actions_enqueue)
    logger.info(
        "monitor %s %s (value %s, sample %d)",
        monitor.slug,
        state,
        value.value,
        value.sample,
    )
    return alert


def alert_actions_enqueue() -> None:
    """Ask a worker to run the due actions now; the beat sweep runs them if
    the broker is down."""
    from monitoring.tasks import run_alert_actions_task

    messages_send(
        [None], lambda _: run_alert_actions_task.delay(), what="alert actions"
    )


def alert_actions_run(*, limit: int | None = None) -> int:
    """Claim the due actions (new, to retry, or abandoned by a dead worker),
    run each, and record how it went. Returns how many were run."""
    now = timezone.now()
    token, rows = leases_claim(
        AlertAction.objects.filter(due(now)),
        seconds=ACTION_LEASE_S,
        limit=limit or settings.LEADBACK_SWEEP_BATCH,
        order_by=("next_attempt_at", "pk"),
        status=Status.SENDING,
    )
    for (pk,) in rows:
        alert_action_run(action_id=pk, token=token)
    return len(rows)


def alert_action_run(*, action_id: int, token: uuid.UUID) -> str:
    """Run one claimed action and record the outcome; returns its status.

    Row-only actions run inside the transaction that marks them, so they
    happen once; outside actions run first and are marked after."""
    action = (
        AlertAction.objects.select_related(
            "alert__monitor__source", "alert__monitor__buyer", "alert__monitor__flow"
        )
        .filter(pk=action_id, lease_token=token, status=Status.SENDING)
        .first()
    )
    if action is None:
        return "stale"
    runner = actions.RUNNERS.get(action.type)
    if runner is None:
        unknown = TransportError(
            f"Unknown action type {action.type!r}.", permanent=True
        )
        return _failed(action, token=token, error=unknown)
    if action.type in actions.IN_TRANSACTION:
        try:
            with transaction.atomic():
                if not _still_mine(action_id, token):
                    return "stale"
                result = _guarded(runner, action)
                _finish(action, status=Status.SUCCEEDED, result=result)
                return Status.SUCCEEDED
        except TransportError as exc:
            return _failed(action, token=token, error=exc)
    try:
        result = _guarded(runner, action)
    except TransportError as exc:
        return _failed(action, token=token, error=exc)
    with transaction.atomic():
        if not _still_mine(action_id, token):
            # Another worker took the row over after our lease ran out; it
            # will record its own try.
            return "stale"
        _finish(action, status=Status.SUCCEEDED, result=result)
    return Status.SUCCEEDED


def _guarded(runner: Callable[[AlertAction], str], action: AlertAction) -> str:
    """Run an action; an error the runner did not expect is a transient one
    (retried on the schedule), not a crash that strands the row."""
    try:
        return runner(action)
    except TransportError:
        raise
    except Exception as exc:  # a library's own errors, a missing service
        logger.exception("alert action %s failed", action.pk)
        raise TransportError(f"{type(exc).__name__}: {exc}") from exc


def _still_mine(action_id: int, token: uuid.UUID) -> bool:
    return (
        AlertAction.objects.select_for_update()
        .filter(pk=action_id, lease_token=token, status=Status.SENDING)
        .exists()
    )


def _finish(action: AlertAction, *, status: str, result: str = "") -> None:
    action.status = status
    action.result = result[:1000]
    action.attempt_count += 1
    action.schedule_tries += 1
    action.finished_at = timezone.now()
    action.next_attempt_at = None
    action.lease_token = None
    action.lease_expires_at = None
    if status == Status.SUCCEEDED:
        action.last_error = ""
    action.save(
        update_fields=[
            "status",
            "result",
            "attempt_count",
            "schedule_tries",
            "finished_at",
            "next_attempt_at",
            "lease_token",
            "lease_expires_at",
            "last_error",
        ]
    )


def _failed(action: AlertAction, *, token: uuid.UUID, error: TransportError) -> str:
    """Schedule a retry of a failed action, or give it up."""
    with transaction.atomic():
        if not _still_mine(action.pk, token):
            return "stale"
        action.last_error = error.message[:1000]
        delay = None if error.permanent else retry_delay(action.schedule_tries)
        if delay is None:
            status = Status.FAILED if error.permanent else Status.DEAD
            _finish(action, status=status)
            return status
        now = timezone.now()
        action.status = Status.RETRYING
        action.attempt_count += 1
        action.schedule_tries += 1
        action.next_attempt_at = now + delay
        action.lease_token = None
        action.lease_expires_at = None
        action.save(
            update_fields=[
                "status",
                "attempt_count",
                "schedule_tries",
                "next_attempt_at",
                "lease_token",
                "lease_expires_at",
                "last_error",
            ]
        )
    logger.warning("alert action %s: %s", action.pk, error.message)
    return Status.RETRYING


def alert_actions_resend(*, ids: Iterable[int], now: datetime | None = None) -> int:
    """Run finished actions again (staff, after fixing what made them fail):
    their retry schedule starts over. Actions still open are left alone."""
    with transaction.atomic():
        count = (
            AlertAction.objects.filter(pk__in=list(ids))
            .exclude(status__in=AlertAction.OPEN_STATUSES)
            .update(
                status=Status.PENDING,
                next_attempt_at=now or timezone.now(),
                schedule_tries=0,
                finished_at=None,
                lease_token=None,
                lease_expires_at=None,
            )
        )
        if count:
            transaction.on_commit(alert_actions_enqueue)
    return int(count)
