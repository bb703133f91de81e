import logging

from celery import shared_task

from feedback.privacy.notices import erasure_notices_send_due
from feedback.privacy.services import retention_apply

logger = logging.getLogger(__name__)


@shared_task(name="feedback.tasks.apply_retention_task")
def apply_retention_task() -> dict[str, int]:
    counts = retention_apply()
    logger.info("retention applied: %s", counts)
    return counts


@shared_task(name="feedback.tasks.send_erasure_notices_task")
def send_erasure_notices_task() -> int:
    return erasure_notices_send_due()
