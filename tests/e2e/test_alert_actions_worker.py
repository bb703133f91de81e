"""Alert actions on a real Celery worker and broker: an alert's action runs once
however many messages ask for it, and an action whose worker is killed mid-way
is finished by the next run once its lease is out."""

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from django.utils import timezone

from monitoring.models import Alert, AlertAction
from monitoring.services import (
    alert_actions_enqueue,
    alert_actions_run,
    monitors_evaluate,
)
from tests.factories import SourceFactory
from tests.monitoring.test_evaluate import deliver, make_monitor
from tests.sources.servers import RecordingServer, Reply

pytestmark = pytest.mark.service
Status = AlertAction.Status


@pytest.fixture
def allow_local(monkeypatch, settings):
    # The worker process reads the environment; this process the settings.
    monkeypatch.setenv("LEADBACK_OUTBOUND_ALLOWLIST", "127.0.0.1/32")
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]


def wait_for(check, *, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def kill_with_children(pid: int) -> None:
    """SIGKILL a worker and its pool processes, as a machine losing power would."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    for victim in [pid, *children]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def test_actions_run_once_and_survive_a_killed_worker(
    allow_local, celery_worker_process
):
    with RecordingServer() as receiver:
        source = SourceFactory(slug="bluesky-leads")
        deliver(100, returned=40, lead__source=source)
        make_monitor(
            source=source,
            actions=[{"type": "notify", "url": f"json://127.0.0.1:{receiver.port}/a"}],
        )

        monitors_evaluate()  # fires; the commit queues the action for the worker
        firing = AlertAction.objects.get()
        wait_for(
            lambda: AlertAction.objects.get(pk=firing.pk).status == Status.SUCCEEDED
        )
        for _ in range(3):  # duplicate and late messages find nothing to do
            alert_actions_enqueue()
        time.sleep(3)
        assert len(receiver.requests) == 1
        firing.refresh_from_db()
        assert firing.attempt_count == 1

        # The service answers slowly; the worker is killed while it waits.
        receiver.reply = Reply(delay_s=30)
        deliver(300, lead__source=source)
        monitors_evaluate()  # resolves
        resolved = AlertAction.objects.exclude(pk=firing.pk).get()
        wait_for(lambda: len(receiver.requests) == 2)
        kill_with_children(celery_worker_process.pid)
        celery_worker_process.wait(timeout=10)
        resolved.refresh_from_db()
        assert resolved.status == Status.SENDING  # abandoned mid-way

        # Nobody may take it while the dead worker's lease runs...
        receiver.reply = Reply()
        assert alert_actions_run() == 0
        # ...and once it has run out, the next run finishes it.
        AlertAction.objects.filter(pk=resolved.pk).update(
            lease_expires_at=timezone.now()
        )
        assert alert_actions_run() == 1
        resolved.refresh_from_db()
        assert (resolved.status, resolved.attempt_count) == (Status.SUCCEEDED, 1)
        assert Alert.objects.get(pk=resolved.alert_id).state == Alert.State.RESOLVED
        # A message cut off after the service took it is sent again (at least
        # once, docs/configuration.md); nothing runs a third time.
        assert alert_actions_run() == 0
        assert len(receiver.requests) == 3
