"""Several workers on one CSV import: each chunk written once, by one of them,
and the lease holder finishing whatever the others leave."""

import re
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from feedback.imports import services as imports
from feedback.imports.models import FeedbackImport, FeedbackImportChunk
from feedback.imports.selectors import feedback_import_results
from feedback.imports.services import (
    feedback_import_create,
    feedback_import_help,
    feedback_import_process,
)
from feedback.models import Feedback
from tests.factories import DeliveryEventFactory
from tests.feedback.test_imports import csv_bytes

ROWS = 60
CHUNK = 6


@pytest.fixture
def chunked(settings):
    settings.LEADBACK_IMPORT_CHUNK_ROWS = CHUNK
    settings.LEADBACK_IMPORT_WORKERS = 2


def upload_conversions(buyer, rows=ROWS):
    deliveries = DeliveryEventFactory.create_batch(
        rows, buyer=buyer, delivered_at=timezone.now() - timedelta(days=2)
    )
    content = csv_bytes(
        ["event_id", "type", "revenue"],
        [[d.event_id, "conversion", "10.00"] for d in deliveries],
    )
    return feedback_import_create(
        buyer=buyer, user=None, file=content, filename="shared.csv"
    )


class ChunkLog:
    """Which thread wrote which chunk, in order."""

    def __init__(self, monkeypatch):
        self.entries: list[tuple[int, str]] = []
        original = FeedbackImportChunk.objects.create

        def create(**kwargs):
            self.entries.append((kwargs["index"], threading.current_thread().name))
            return original(**kwargs)

        monkeypatch.setattr(FeedbackImportChunk.objects, "create", create)

    @property
    def indexes(self) -> list[int]:
        return [index for index, _ in self.entries]


def in_thread(target, name):
    def run():
        try:
            target()
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


def assert_imported_once(feedback_import, rows=ROWS):
    feedback_import.refresh_from_db()
    assert feedback_import.status == FeedbackImport.Status.DONE
    assert (feedback_import.processed_rows, feedback_import.succeeded_rows) == (
        rows,
        rows,
    )
    assert Feedback.objects.count() == rows
    assert Feedback.objects.values("delivery_id").distinct().count() == rows
    numbers = [
        r.row_number for r in feedback_import_results(feedback_import=feedback_import)
    ]
    assert numbers == list(range(2, rows + 2))


@pytest.mark.service
@pytest.mark.django_db(transaction=True)
def test_two_workers_share_an_import_and_write_each_row_once(
    buyer, chunked, monkeypatch
):
    feedback_import = upload_conversions(buyer)
    log = ChunkLog(monkeypatch)
    original = imports.feedback_receive_many

    def slow(**kwargs):
        time.sleep(0.05)  # long enough for the helper to take its share
        return original(**kwargs)

    monkeypatch.setattr(imports, "feedback_receive_many", slow)
    helpers = []

    def call_helper(import_id, token, chunks):
        assert chunks == ROWS // CHUNK
        helpers.append(
            in_thread(
                lambda: feedback_import_help(import_id=import_id, token=token),
                "helper",
            )
        )

    monkeypatch.setattr(imports, "_call_helpers", call_helper)

    feedback_import_process(import_id=feedback_import.pk)
    for thread in helpers:
        thread.join(timeout=30)

    assert_imported_once(feedback_import)
    assert sorted(log.indexes) == list(range(ROWS // CHUNK))
    writers = {name for _, name in log.entries}
    assert writers == {"MainThread", "helper"}


@pytest.mark.service
@pytest.mark.django_db(transaction=True)
def test_the_lease_holder_does_a_chunk_another_worker_held_and_dropped(
    buyer, chunked, monkeypatch
):
    feedback_import = upload_conversions(buyer)
    log = ChunkLog(monkeypatch)
    holding = threading.Event()

    def hold_chunk_zero_then_die():
        # A helper that took chunk 0 and died before writing it.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", [feedback_import.pk, 0]
            )
            holding.set()
            time.sleep(0.5)

    def call_helper(import_id, token, chunks):
        helpers.append(in_thread(hold_chunk_zero_then_die, "helper"))
        assert holding.wait(timeout=10)

    helpers: list[threading.Thread] = []
    monkeypatch.setattr(imports, "_call_helpers", call_helper)

    feedback_import_process(import_id=feedback_import.pk)
    for thread in helpers:
        thread.join(timeout=30)

    assert_imported_once(feedback_import)
    # Chunk 0 was skipped while held, then written last by the lease holder.
    assert log.indexes == [*range(1, ROWS // CHUNK), 0]
    assert {name for _, name in log.entries} == {"MainThread"}


def test_a_helper_of_another_lease_writes_nothing(buyer, chunked):
    feedback_import = upload_conversions(buyer)
    FeedbackImport.objects.filter(pk=feedback_import.pk).update(
        status=FeedbackImport.Status.PROCESSING, lease_token=uuid.uuid4()
    )

    feedback_import_help(import_id=feedback_import.pk, token=uuid.uuid4())

    assert not FeedbackImportChunk.objects.exists()
    assert not Feedback.objects.exists()


def test_helpers_are_asked_for_on_postgresql_only(
    buyer, chunked, monkeypatch, settings
):
    settings.LEADBACK_IMPORT_WORKERS = 3
    from feedback.imports import tasks

    queued = []
    monkeypatch.setattr(
        tasks.help_feedback_import_task, "delay", lambda *args: queued.append(args)
    )
    feedback_import = upload_conversions(buyer)

    feedback_import_process(import_id=feedback_import.pk)

    expected = 2 if connection.vendor == "postgresql" else 0
    assert len(queued) == expected
    assert all(args[0] == feedback_import.pk for args in queued)
    assert_imported_once(feedback_import)


@pytest.mark.service
@pytest.mark.parametrize("celery_worker_process", [2], indirect=True)
def test_a_worker_of_two_processes_shares_an_import(
    buyer, settings, celery_worker_process, tmp_path
):
    settings.LEADBACK_IMPORT_CHUNK_ROWS = 4  # stored on the import at upload
    rows = 400  # 100 chunks: long enough for the second process to join in
    feedback_import = upload_conversions(buyer, rows)  # queued on commit

    deadline = time.monotonic() + 60
    finished = (FeedbackImport.Status.DONE, FeedbackImport.Status.FAILED)
    while not FeedbackImport.objects.filter(
        pk=feedback_import.pk, status__in=finished
    ).exists():
        assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
        time.sleep(0.1)

    assert_imported_once(feedback_import, rows)
    log = (tmp_path / "worker.log").read_text()
    helped = [int(n) for n in re.findall(r"helped with (\d+) chunks", log)]
    # The second process took part: it wrote some of the chunks, not all.
    assert len(helped) == 1, log
    assert 0 < helped[0] < rows // 4
