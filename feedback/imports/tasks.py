"""CSV imports' Celery tasks: thin adapters that take ids and call a service.

Task names keep the `feedback.tasks.` prefix they were first published under,
so queued messages, the beat schedule and the import queue's route still match.
"""

import uuid

from celery import shared_task

from feedback.imports.services import (
    feedback_import_help,
    feedback_import_process,
    feedback_imports_sweep,
)


@shared_task(name="feedback.tasks.process_feedback_import_task", ignore_result=True)
def process_feedback_import_task(import_id: int) -> None:
    feedback_import_process(import_id=import_id)


@shared_task(name="feedback.tasks.help_feedback_import_task", ignore_result=True)
def help_feedback_import_task(import_id: int, token: str) -> None:
    feedback_import_help(import_id=import_id, token=uuid.UUID(token))


@shared_task(name="feedback.tasks.sweep_feedback_imports_task", ignore_result=True)
def sweep_feedback_imports_task() -> int:
    return feedback_imports_sweep()
