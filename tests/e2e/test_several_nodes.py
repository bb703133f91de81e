"""Two nodes on one RabbitMQ: two web processes, two workers, and beat on both.

Each node has its own var directory, as separate machines would. Feedback goes
in through both web processes, a CSV import through one; real-time forwarding,
the batch file, the import and the report rollups must each happen once, even
though both beats schedule every periodic task: the sweeps claim rows with
leases, a batch run is unique per config and period, an import is leased, and
the rollup refresh locks its one state row.
"""

import csv
import io
import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, timedelta
from pathlib import Path

import pytest
import requests
from django.db.models import Sum
from django.utils import timezone

from feedback.forwarding.models import BatchRun, Notification
from feedback.imports.models import FeedbackImport
from feedback.models import ApiKey, Feedback
from feedback.services import api_key_create
from reporting.models import DailyRollup, RollupState
from sources.models import FeedbackConfig, FieldMapping
from tests.e2e.processes import (
    PROJECT_DIR,
    WORKER_POOL_OPTIONS,
    CeleryProcess,
    CeleryWorker,
    free_port,
    session_database_url,
    this_process_publishes_to,
    wait_for,
)
from tests.factories import BuyerFactory, DeliveryEventFactory, SourceFactory
from tests.sources.file_servers import PASSWORD, USERNAME, FtpServer
from tests.sources.servers import RecordingServer, Reply

pytestmark = [pytest.mark.service, pytest.mark.django_db(transaction=True)]

CONVERSIONS = 40
RETURNS = 30


def rabbitmqctl(*args: str) -> None:
    result = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"rabbitmqctl {args}: {result.stderr}"


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A RabbitMQ virtual host of the test's own, so no other queue is touched."""
    vhost = f"leadback-nodes-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


@contextmanager
def web_process(env: dict[str, str], var: Path) -> Iterator[str]:
    port = free_port()
    log = (var / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi"],
        cwd=PROJECT_DIR,
        env=env | {"GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, (var / "gunicorn.log").read_text()
        try:
            return requests.get(f"{base}/healthz", timeout=2).ok
        except requests.RequestException:
            return False

    try:
        wait_for(up, timeout=60, what="gunicorn to serve")
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextmanager
def node(name: str, env: dict[str, str], var: Path) -> Iterator[tuple[str, ...]]:
    """One machine: gunicorn, a worker and beat, with its own var directory."""
    var.mkdir()
    node_env = env | {"LEADBACK_VAR_DIR": str(var)}
    worker = CeleryWorker(
        ["worker", "--loglevel=INFO", *WORKER_POOL_OPTIONS],
        env=node_env,
        name=f"worker-{name}",
    )
    beat = CeleryProcess(
        f"beat-{name}",
        ["beat", "--loglevel=INFO", f"--schedule={var / 'beat-schedule'}"],
        env=node_env,
    )
    try:
        worker.start()
        worker.wait_ready()
        beat.start()
        with web_process(node_env, var) as base:
            yield base, worker.log_path.name, beat.log_path.name
    finally:
        beat.stop()
        worker.stop()


def test_two_nodes_do_each_piece_of_work_once(tmp_path):
    buyer = BuyerFactory()
    source = SourceFactory()
    _, key = api_key_create(scope=ApiKey.Scope.BUYER, name="crm", buyer=buyer)
    converted = [
        DeliveryEventFactory(buyer=buyer, lead__source=source)
        for _ in range(CONVERSIONS)
    ]
    returned = [
        DeliveryEventFactory(buyer=buyer, lead__source=source) for _ in range(RETURNS)
    ]
    ftp_root = tmp_path / "ftp"
    (ftp_root / "in").mkdir(parents=True)

    with ExitStack() as stack:
        receiver = stack.enter_context(RecordingServer(Reply(200, b'{"ok": true}')))
        ftp = stack.enter_context(FtpServer(ftp_root))
        realtime = FeedbackConfig.objects.create(
            source=source,
            kind="conversion",
            method=FeedbackConfig.Method.JSON,
            url=receiver.url("/conversions"),
            timeout_s=5,
        )
        FieldMapping.objects.create(
            config=realtime, position=0, target="event", value="{{ event.id }}"
        )
        batch = FeedbackConfig.objects.create(
            source=source,
            kind="return",
            method=FeedbackConfig.Method.BATCH,
            batch_every=FeedbackConfig.BatchEvery.HOUR,
            batch_transport=FeedbackConfig.Transport.FTP,
            batch_host="127.0.0.1",
            batch_port=ftp.port,
            batch_username=USERNAME,
            batch_password=PASSWORD,
            batch_directory="/in",
            batch_file_name="returns-{{ run.id }}.csv",
        )
        FieldMapping.objects.create(
            config=batch, position=0, target="event_id", value="{{ event.id }}"
        )

        broker = stack.enter_context(rabbitmq_vhost())
        stack.enter_context(this_process_publishes_to(broker))
        env = {
            **os.environ,
            "DATABASE_URL": session_database_url(),
            "CELERY_BROKER_URL": broker,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "DEBUG": "false",
            "LEADBACK_HTTPS": "false",
            "ALLOWED_HOSTS": "127.0.0.1",
            "LEADBACK_OUTBOUND_ALLOWLIST": "127.0.0.1/32",
            "LEADBACK_SWEEP_INTERVAL_S": "1",
            "LEADBACK_BATCH_INTERVAL_S": "1",
            "LEADBACK_IMPORT_SWEEP_INTERVAL_S": "1",
            "LEADBACK_ROLLUP_INTERVAL_S": "1",
        }
        web_a, worker_a, beat_a = stack.enter_context(node("a", env, tmp_path / "a"))
        web_b, worker_b, beat_b = stack.enter_context(node("b", env, tmp_path / "b"))

        # Feedback through both web processes, alternately.
        statuses = [
            requests.post(
                f"{(web_a, web_b)[index % 2]}/api/v1/feedback",
                json={"event_id": delivery.event_id, "type": "conversion"},
                headers={"X-API-Key": key},
                timeout=30,
            ).status_code
            for index, delivery in enumerate(converted)
        ]
        assert statuses == [201] * CONVERSIONS

        # A CSV import of the returns through node b.
        body = "event_id,type,reason\n" + "".join(
            f"{d.event_id},return,Wrong number\n" for d in returned
        )
        upload = requests.post(
            f"{web_b}/api/v1/feedback/imports?filename=returns.csv",
            data=body.encode(),
            headers={"X-API-Key": key, "Content-Type": "text/csv"},
            timeout=30,
        )
        assert upload.status_code == 202, upload.text
        import_id = upload.json()["id"]

        def imported() -> bool:
            state = requests.get(
                f"{web_a}/api/v1/feedback/imports/{import_id}",
                headers={"X-API-Key": key},
                timeout=10,
            ).json()
            return state["status"] == "done"

        wait_for(imported, timeout=120, what="the CSV import")

        def forwarded() -> bool:
            return (
                Notification.objects.filter(
                    config=realtime, status=Notification.Status.SUCCEEDED
                ).count()
                == CONVERSIONS
            )

        wait_for(forwarded, timeout=120, what="real-time forwarding")

        # The day's file falls due in a few seconds: its period holds every
        # return, and both beats' next passes try to make its run.
        due = timezone.now() + timedelta(seconds=5)
        FeedbackConfig.objects.filter(pk=batch.pk).update(
            batch_every=FeedbackConfig.BatchEvery.DAY,
            batch_timezone="UTC",
            batch_at=due.astimezone(UTC).time(),
        )

        def batch_sent() -> bool:
            return BatchRun.objects.filter(
                config=batch, status=BatchRun.Status.SENT, row_count__gt=0
            ).exists()

        wait_for(batch_sent, timeout=120, what="the batch file")

        last_feedback = Feedback.objects.order_by("-pk").values_list("pk", flat=True)[0]

        def rolled_up() -> bool:
            state = RollupState.objects.first()
            return state is not None and state.last_feedback_id >= last_feedback

        wait_for(rolled_up, timeout=120, what="the rollup refresh")
        # A few more beats of every schedule on both nodes.
        wait_for(
            lambda: all(
                (tmp_path / n / log).read_text().count("Sending due task") >= 20
                for n, log in (("a", beat_a), ("b", beat_b))
            ),
            timeout=60,
            what="both beats to keep scheduling",
        )
        ftp_files = sorted(p.name for p in (ftp_root / "in").iterdir())

    # Real-time: each notification was sent once, by one try.
    paths = Counter(r.path for r in receiver.requests)
    assert paths == {"/conversions": CONVERSIONS}
    ids = Counter(r.header("webhook-id") for r in receiver.requests)
    assert len(ids) == CONVERSIONS
    assert set(ids.values()) == {1}
    assert set(
        Notification.objects.filter(config=realtime).values_list(
            "attempts__number", flat=True
        )
    ) == {1}

    # The import: every row once.
    feedback_import = FeedbackImport.objects.get(public_id=import_id)
    assert feedback_import.processed_rows == RETURNS
    assert Feedback.objects.filter(kind="return").count() == RETURNS

    # The batch: one run for the hour with every return, one file.
    runs = BatchRun.objects.filter(config=batch, row_count__gt=0)
    assert runs.count() == 1
    [run] = runs
    assert ftp_files == [run.file_name]
    rows = list(csv.reader(io.StringIO((ftp_root / "in" / run.file_name).read_text())))
    assert sorted(row[0] for row in rows[1:]) == sorted(d.event_id for d in returned)

    # The rollups: one state row, and the figures add up to the live counts.
    assert RollupState.objects.count() == 1
    accepted = DailyRollup.objects.filter(dimension="source").aggregate(
        total=Sum("accepted")
    )["total"]
    assert accepted == Feedback.objects.count() == CONVERSIONS + RETURNS

    # Both nodes' workers did some of the work, and both beats ran.
    for n, log in (("a", worker_a), ("b", worker_b)):
        assert " succeeded in " in (tmp_path / n / log).read_text()
