"""Celery tasks: thin adapters that take ids and call a service."""

import logging
import uuid

from celery import shared_task

from feedback.batches import batch_run_send, batch_runs_dispatch
from feedback.delivery import (
    Claim,
    notification_deliver,
    notifications_deliver,
    notifications_sweep,
)
from feedback.imports import (
    feedback_import_help,
    feedback_import_process,
    feedback_imports_sweep,
)
from feedback.services import idempotency_keys_purge

logger = logging.getLogger(__name__)


@shared_task
def purge_idempotency_keys_task() -> int:
    deleted = idempotency_keys_purge()
    logger.info("purged %d expired idempotency keys", deleted)
    return deleted


@shared_task(ignore_result=True)
def deliver_notifications_task(claims: list[list[str | int]]) -> None:
    notifications_deliver(
        claims=[Claim(int(pk), uuid.UUID(str(token))) for pk, token in claims]
    )


@shared_task(ignore_result=True)
def deliver_notification_task(notification_id: int, token: str) -> None:
    # Messages of one row each, as queued before messages carried several.
    notification_deliver(claim=Claim(notification_id, uuid.UUID(token)))


@shared_task(ignore_result=True)
def sweep_notifications_task() -> int:
    return notifications_sweep()


@shared_task(ignore_result=True)
def run_batches_task() -> int:
    return batch_runs_dispatch()


@shared_task(ignore_result=True)
def send_batch_run_task(run_id: int, token: str) -> None:
    batch_run_send(run_id=run_id, token=uuid.UUID(token))


@shared_task(ignore_result=True)
def process_feedback_import_task(import_id: int) -> None:
    feedback_import_process(import_id=import_id)


@shared_task(ignore_result=True)
def help_feedback_import_task(import_id: int, token: str) -> None:
    feedback_import_help(import_id=import_id, token=uuid.UUID(token))


@shared_task(ignore_result=True)
def sweep_feedback_imports_task() -> int:
    return feedback_imports_sweep()
