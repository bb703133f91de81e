"""The Celery app: configured from Django settings (CELERY_* names)."""

import os

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("leadback")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _drop_stale_connections(**kwargs: object) -> None:
    # With CELERY_DB_REUSE_MAX the fixup keeps connections between tasks; this
    # does for tasks what Django does around requests: drop a connection that
    # errored, failed its health check or outlived CONN_MAX_AGE.
    from django.db import close_old_connections

    close_old_connections()
