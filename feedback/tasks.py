"""Celery tasks: thin adapters that take ids and call a service."""

import logging
import uuid

from celery import shared_task

from feedback.delivery import Claim, notification_deliver, notifications_sweep
from feedback.imports import feedback_import_process, feedback_imports_sweep
from feedback.services import idempotency_keys_purge

logger = logging.getLogger(__name__)


@shared_task
def purge_idempotency_keys_task() -> int:
    deleted = idempotency_keys_purge()
    logger.info("purged %d expired idempotency keys", deleted)
    return deleted


@shared_task(ignore_result=True)
def deliver_notification_task(notification_id: int, token: str) -> None:
    notification_deliver(claim=Claim(notification_id, uuid.UUID(token)))


@shared_task(ignore_result=True)
def sweep_notifications_task() -> int:
    return notifications_sweep()


@shared_task(ignore_result=True)
def process_feedback_import_task(import_id: int) -> None:
    feedback_import_process(import_id=import_id)


@shared_task(ignore_result=True)
def sweep_feedback_imports_task() -> int:
    return feedback_imports_sweep()
