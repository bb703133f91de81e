"""Forwarding's Celery tasks: thin adapters that take ids and call the engine.

Task names keep the `feedback.tasks.` prefix they were first published under,
so messages queued by an earlier version and the beat schedule still find them.
"""

import uuid

from celery import shared_task

from feedback.forwarding.batches import batch_run_send, batch_runs_dispatch
from feedback.forwarding.engine import (
    Claim,
    notification_deliver,
    notifications_deliver,
    notifications_sweep,
)
from feedback.forwarding.publish import KeptProducerTask


# Queued once per forwarded feedback, from the intake's request: a kept producer.
@shared_task(
    base=KeptProducerTask,
    name="feedback.tasks.deliver_notifications_task",
    ignore_result=True,
)
def deliver_notifications_task(claims: list[list[str | int]]) -> None:
    notifications_deliver(
        claims=[Claim(int(pk), uuid.UUID(str(token))) for pk, token in claims]
    )


@shared_task(name="feedback.tasks.deliver_notification_task", ignore_result=True)
def deliver_notification_task(notification_id: int, token: str) -> None:
    # Messages of one row each, as queued before messages carried several.
    notification_deliver(claim=Claim(notification_id, uuid.UUID(token)))


@shared_task(name="feedback.tasks.sweep_notifications_task", ignore_result=True)
def sweep_notifications_task() -> int:
    return notifications_sweep()


@shared_task(name="feedback.tasks.run_batches_task", ignore_result=True)
def run_batches_task() -> int:
    return batch_runs_dispatch()


@shared_task(name="feedback.tasks.send_batch_run_task", ignore_result=True)
def send_batch_run_task(run_id: int, token: str) -> None:
    batch_run_send(run_id=run_id, token=uuid.UUID(token))
