"""Celery tasks: thin adapters that take ids and call a service.

Celery's autodiscovery imports this module only; the forwarding and import
tasks live with their concern and are imported here so workers register them.
"""

import logging

from celery import shared_task

from feedback.audit.services import audit_expire
from feedback.forwarding import tasks as forwarding_tasks
from feedback.imports import tasks as import_tasks
from feedback.services import idempotency_keys_purge
from feedback.suppression.services import suppression_entries_expire
from feedback.webhooks import tasks as webhook_tasks

__all__ = [
    "expire_audit_entries_task",
    "expire_suppression_entries_task",
    "forwarding_tasks",
    "import_tasks",
    "purge_idempotency_keys_task",
    "webhook_tasks",
]

logger = logging.getLogger(__name__)


@shared_task
def purge_idempotency_keys_task() -> int:
    deleted = idempotency_keys_purge()
    logger.info("purged %d expired idempotency keys", deleted)
    return deleted


@shared_task
def expire_suppression_entries_task() -> int:
    deleted = suppression_entries_expire()
    logger.info("expired %d suppression entries", deleted)
    return deleted


@shared_task
def expire_audit_entries_task() -> int:
    deleted = audit_expire()
    logger.info("expired %d audit log entries", deleted)
    return deleted
