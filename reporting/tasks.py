"""Celery tasks of the reports: thin adapters over the services."""

import logging

from celery import shared_task

from reporting.rollups import rollups_refresh

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def refresh_rollups_task() -> int:
    written = rollups_refresh()
    logger.info("report rollups refreshed: %d rows written", written)
    return written


@shared_task(ignore_result=True)
def send_digests_task() -> int:
    from reporting.digests.services import digests_send_due

    sends = digests_send_due()
    for send in sends:
        logger.info(
            "digest %s for %s: %s", send.digest_id, send.period_start, send.status
        )
    return len(sends)
