"""Webhook delivery's Celery tasks: thin adapters that take ids."""

import uuid

from celery import shared_task

from feedback.webhooks.delivery import webhook_messages_deliver, webhook_messages_sweep


@shared_task(name="feedback.tasks.deliver_webhook_messages_task", ignore_result=True)
def deliver_webhook_messages_task(claims: list[list[str | int]]) -> None:
    webhook_messages_deliver(
        claims=[(int(pk), uuid.UUID(str(token))) for pk, token in claims]
    )


@shared_task(name="feedback.tasks.sweep_webhook_messages_task", ignore_result=True)
def sweep_webhook_messages_task() -> int:
    return webhook_messages_sweep()
