"""A batch upload cut off by SIGKILL, then resumed: PostgreSQL, Redis, real Celery
worker and beat processes, and a local FTP server that stalls the upload.

The server must end with exactly one complete file holding every row once: no
second copy, no leftover `.part`, no row missing or repeated.
"""

import csv
import io
import os
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from feedback.forwarding.models import BatchRun, Notification
from feedback.intake.parse import ReceiveStatus
from feedback.intake.pipeline import feedback_receive_many
from feedback.models import Feedback
from sources.models import FeedbackConfig, FieldMapping
from tests.e2e.processes import (
    WORKER_POOL_OPTIONS,
    CeleryProcess,
    CeleryWorker,
    session_database_url,
    this_process_publishes_to,
)
from tests.factories import BuyerFactory, DeliveryEventFactory, SourceFactory
from tests.sources.file_servers import PASSWORD, USERNAME, FtpServer

pytestmark = pytest.mark.service

ROWS = 120
# Long enough that a live upload is never taken over, short enough to wait out.
LEASE_S = 8


@pytest.fixture
def broker_url(transactional_db) -> Iterator[str]:
    url = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith(("redis://", "rediss://")):
        pytest.skip("this test flushes its Redis database: needs redis://")
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        with this_process_publishes_to(url):
            yield url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def env(broker_url, tmp_path) -> dict[str, str]:
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    return {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "CELERY_BROKER_URL": broker_url,
        "LEADBACK_VAR_DIR": str(var_dir),
        "LEADBACK_BATCH_INTERVAL_S": "1",
        "LEADBACK_BATCH_LEASE_S": str(LEASE_S),
        "LEADBACK_BATCH_TIMEOUT_S": "30",
        "LEADBACK_RETRY_SCHEDULE_S": "0,1,1,2,2,3,3,5,5,5",
        "LEADBACK_OUTBOUND_ALLOWLIST": "127.0.0.1/32",
    }


@pytest.fixture
def worker(env) -> Iterator[CeleryWorker]:
    worker = CeleryWorker(["worker", "--loglevel=INFO", *WORKER_POOL_OPTIONS], env=env)
    try:
        worker.start()
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def beat(env, tmp_path) -> Iterator[CeleryProcess]:
    beat = CeleryProcess(
        "beat",
        ["beat", "--loglevel=WARNING", f"--schedule={tmp_path / 'beat-schedule'}"],
        env=env,
    )
    try:
        beat.start()
        yield beat
    finally:
        beat.stop()


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    processes: tuple[CeleryProcess, ...],
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    logs = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in processes)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def test_a_killed_upload_resumes_into_exactly_one_complete_file(tmp_path, worker, beat):
    root = tmp_path / "ftp"
    (root / "in").mkdir(parents=True)
    with FtpServer(root) as ftp:
        ftp.throttle(1500)  # bytes a second: the upload takes several seconds
        buyer = BuyerFactory()
        source = SourceFactory()
        config = FeedbackConfig.objects.create(
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
        for position, (target, value) in enumerate(
            [
                ("event_id", "{{ event.id }}"),
                ("reason", "{{ feedback.reason }}"),
                ("feedback_id", "{{ feedback.id }}"),
            ]
        ):
            FieldMapping.objects.create(
                config=config, position=position, target=target, value=value
            )
        deliveries = [DeliveryEventFactory(buyer=buyer, lead__source=source)]
        deliveries += [
            DeliveryEventFactory(buyer=buyer, lead=deliveries[0].lead)
            for _ in range(ROWS - 1)
        ]
        results = feedback_receive_many(
            buyer=buyer,
            items=[
                {"event_id": d.event_id, "type": "return", "reason": "Wrong number"}
                for d in deliveries
            ],
            channel=Feedback.Channel.API,
        )
        assert [r.status for r in results] == [ReceiveStatus.ACCEPTED] * ROWS
        # Received in the hour that has just ended, so beat's next pass runs it.
        Notification.objects.filter(config=config).update(
            created_at=timezone.now() - timedelta(hours=1)
        )
        processes = (worker, beat)

        def part_growing() -> bool:
            parts = list((root / "in").glob("*.part"))
            return bool(parts) and parts[0].stat().st_size > 0

        wait_until(
            part_growing, timeout_s=60, what="the upload to start", processes=processes
        )
        run = BatchRun.objects.get(config=config, row_count=ROWS)
        assert run.status == BatchRun.Status.SENDING
        [part] = list((root / "in").glob("*.part"))
        assert part.name == f"{run.file_name}.part"
        assert part.stat().st_size < len(run.content)  # cut off mid-upload

        worker.kill()
        ftp.throttle(0)  # the next try goes at full speed
        time.sleep(1)  # the dead client's data connection drains and closes
        assert not (root / "in" / run.file_name).exists()
        worker.start()
        worker.wait_ready()

        def sent() -> bool:
            run.refresh_from_db()
            return run.status == BatchRun.Status.SENT

        wait_until(sent, timeout_s=90, what="the run to be sent", processes=processes)

    assert worker.kills == 1
    assert sorted(p.name for p in (root / "in").iterdir()) == [run.file_name]
    content = (root / "in" / run.file_name).read_bytes()
    assert content == bytes(run.content)
    rows = list(csv.reader(io.StringIO(content.decode(), newline="")))
    assert rows[0] == ["event_id", "reason", "feedback_id"]
    feedback_ids = [row[2] for row in rows[1:]]
    assert len(feedback_ids) == ROWS
    assert sorted(feedback_ids) == sorted(str(r.feedback.public_id) for r in results)
    assert BatchRun.objects.filter(config=config, row_count__gt=0).count() == 1
    assert set(
        Notification.objects.filter(config=config).values_list("batch_run", flat=True)
    ) == {run.pk}
    # The killed try left no attempt behind; the resumed one is on record.
    assert [a.outcome for a in run.attempts.all()] == ["success"]
