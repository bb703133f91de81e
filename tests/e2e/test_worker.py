"""The Celery configuration runs a real worker on the real broker."""

import pytest

from config.celery import app

pytestmark = pytest.mark.service


def test_worker_answers_on_the_broker_with_delivery_safety_settings(
    celery_worker_process,
):
    replies = app.control.ping(timeout=2.0)
    assert replies, "no worker answered"

    stats = app.control.inspect(timeout=2.0).conf() or {}
    raw_conf = next(iter(stats.values()))
    # Django-configured apps report their settings under the CELERY_ namespace.
    conf = {key.lower().removeprefix("celery_"): v for key, v in raw_conf.items()}
    assert conf["task_acks_late"] is True
    assert conf["task_reject_on_worker_lost"] is True
    assert conf["worker_prefetch_multiplier"] == 1
