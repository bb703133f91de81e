"""Celery tasks of the monitors: thin adapters over the services."""

import logging

from celery import shared_task

from monitoring.services import alert_actions_run, monitors_evaluate

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def evaluate_monitors_task() -> int:
    # The rollups have their own beat (refresh-report-rollups): monitors read
    # them as that refresh left them, at most LEADBACK_ROLLUP_INTERVAL_S old.
    result = monitors_evaluate(refresh=False)
    logger.info(
        "monitors evaluated: %d, fired %d, resolved %d",
        result.monitors,
        result.fired,
        result.resolved,
    )
    return result.monitors


@shared_task(ignore_result=True)
def run_alert_actions_task() -> int:
    """Run the due alert actions: queued when an alert is raised, and by beat
    for retries and for actions a dead worker left behind."""
    return alert_actions_run()
