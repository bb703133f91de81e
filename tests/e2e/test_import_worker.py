"""A CSV import survives a killed worker: PostgreSQL, Redis, real worker and beat.

A file of a few thousand rows is uploaded through the service; the on-commit
message reaches a real worker, which is SIGKILLed (its whole process group: no
warm shutdown, no ack) once part of the file is in. A new worker is started; the
import's lease runs out and beat's sweep queues it again. Every row must then be
processed exactly once: one feedback per row, the per-row results complete and
contiguous, nothing written twice by the chunk the kill interrupted.
"""

import csv
import io
import os
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
from django.utils import timezone

from feedback.imports.models import FeedbackImport
from feedback.imports.selectors import feedback_import_results
from feedback.imports.services import feedback_import_create
from feedback.models import DeliveryEvent, Feedback, Lead
from sources.models import Kind
from tests.e2e.processes import (
    WORKER_POOL_OPTIONS,
    CeleryProcess,
    CeleryWorker,
    redis_url_with_db,
    session_database_url,
    this_process_publishes_to,
)
from tests.factories import BuyerFactory, FlowFactory, SourceFactory

pytestmark = pytest.mark.service

REDIS_DB = 14
ROWS = 4000
CHUNK_ROWS = 50
LEASE_S = 3


@pytest.fixture
def broker_url(transactional_db) -> Iterator[str]:
    base = os.environ.get("CELERY_BROKER_URL", "")
    if not base.startswith(("redis://", "rediss://")):
        pytest.skip("this test flushes Redis: CELERY_BROKER_URL must be redis://")
    url = redis_url_with_db(base, REDIS_DB)
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
        "LEADBACK_IMPORT_LEASE_S": str(LEASE_S),
        "LEADBACK_IMPORT_SWEEP_INTERVAL_S": "1",
    }


@pytest.fixture
def processes(env, tmp_path) -> Iterator[tuple[CeleryWorker, CeleryProcess]]:
    worker = CeleryWorker(["worker", "--loglevel=INFO", *WORKER_POOL_OPTIONS], env=env)
    beat = CeleryProcess(
        "beat",
        ["beat", "--loglevel=WARNING", f"--schedule={tmp_path / 'beat-schedule'}"],
        env=env,
    )
    try:
        yield worker, beat
    finally:
        worker.stop()
        beat.stop()


def seed_deliveries(count: int) -> list[DeliveryEvent]:
    buyer = BuyerFactory(slug="import-buyer")
    source, flow = SourceFactory(), FlowFactory()
    delivered_at = timezone.now() - timedelta(days=2)
    leads = Lead.objects.bulk_create(
        Lead(public_id=f"import-lead-{n}", source=source, flow=flow, data={})
        for n in range(count)
    )
    return DeliveryEvent.objects.bulk_create(
        DeliveryEvent(
            event_id=f"{n + 1:024x}",
            lead=lead,
            buyer=buyer,
            source=source,
            flow=flow,
            reference=f"CRM-{n}",
            price=Decimal("20.00"),
            delivered_at=delivered_at,
        )
        for n, lead in enumerate(leads)
    )


def build_file(deliveries: list[DeliveryEvent]) -> bytes:
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\r\n")
    writer.writerow(["event_id", "type", "revenue", "notes"])
    for n, delivery in enumerate(deliveries):
        kind = Kind.RETURN if n % 4 == 0 else Kind.CONVERSION
        writer.writerow([delivery.event_id, kind, "" if n % 4 == 0 else "10", "x"])
    return stream.getvalue().encode()


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.01):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_worker_resumes_the_import_without_duplicates(processes, settings):
    settings.LEADBACK_IMPORT_CHUNK_ROWS = CHUNK_ROWS
    worker, beat = processes
    deliveries = seed_deliveries(ROWS)
    buyer = deliveries[0].buyer
    worker.start()
    worker.wait_ready()

    feedback_import = feedback_import_create(
        buyer=buyer, user=None, file=build_file(deliveries), filename="big.csv"
    )
    imports = FeedbackImport.objects.defer("content").filter(pk=feedback_import.pk)

    # Kill the worker once a good part, but not all, of the file is in.
    wait_for(
        lambda: imports.get().processed_rows >= ROWS // 5,
        60,
        "the worker to start importing",
    )
    worker.kill()
    killed = imports.get()
    assert killed.status == FeedbackImport.Status.PROCESSING, worker.log_tail()
    assert 0 < killed.processed_rows < ROWS, "the import finished before the kill"
    # What was committed before the kill is whole chunks, nothing more.
    assert killed.processed_rows % CHUNK_ROWS == 0
    assert Feedback.objects.filter(channel="csv").count() == killed.processed_rows

    worker.start()
    worker.wait_ready()
    beat.start()
    done = wait_for(
        lambda: (i := imports.get()).status == FeedbackImport.Status.DONE and i,
        120,
        "the sweep to resume the import",
        interval_s=0.2,
    )

    assert (done.processed_rows, done.succeeded_rows, done.refused_rows) == (
        ROWS,
        ROWS,
        0,
    )
    per_delivery = Counter(
        Feedback.objects.filter(channel="csv").values_list("delivery_id", flat=True)
    )
    assert len(per_delivery) == ROWS
    assert set(per_delivery.values()) == {1}
    results = feedback_import_results(feedback_import=done)
    assert [r.row_number for r in results] == list(range(2, ROWS + 2))
    feedback_ids = [r.feedback_id for r in results]
    assert len(set(feedback_ids)) == ROWS
    assert Feedback.objects.filter(public_id__in=feedback_ids).count() == ROWS
    assert worker.starts == 2
    assert worker.kills == 1
