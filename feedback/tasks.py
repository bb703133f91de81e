"""Celery tasks: thin adapters that take ids and call a service."""

import logging

from celery import shared_task

from feedback.services import idempotency_keys_purge

logger = logging.getLogger(__name__)


@shared_task
def purge_idempotency_keys_task() -> int:
    deleted = idempotency_keys_purge()
    logger.info("purged %d expired idempotency keys", deleted)
    return deleted
