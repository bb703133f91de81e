"""CSV feedback imports (DESIGN §4.2, §6): upload, then chunked processing.

A file is checked on upload (csvfile.py) and stored in its import row; a worker
then sends it through the intake pipeline a chunk at a time with the FILE
strategy, so every row gets the verdict the API would give. A chunk's feedback,
notifications and per-row results commit in one transaction: a killed worker's
import resumes after the last chunk it recorded. The import row carries a lease
(feedback/leases.py); the periodic sweep recovers imports whose worker died. The
same bytes uploaded again answer with the first import, never a second copy.
"""

import hashlib
import logging
import uuid
from datetime import timedelta
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    transaction,
)
from django.db.models import F, Q
from django.utils import timezone

from feedback.bulk import chunked
from feedback.imports.csvfile import (
    FAILURE,
    SUCCESS,
    DataRow,
    Layout,
    clean_filename,
    decode,
    read_layout,
    read_upload,
    row_item,
)
from feedback.imports.models import FeedbackImport, FeedbackImportChunk
from feedback.imports.selectors import feedback_import_list
from feedback.intake.parse import ReceiveStatus
from feedback.intake.pipeline import FILE, feedback_receive_many
from feedback.leases import lease_until, leases_claim, messages_send
from feedback.models import (
    ApiKey,
    Buyer,
)

logger = logging.getLogger(__name__)

Status = FeedbackImport.Status

# Uploading ------------------------------------------------------------------------


def feedback_import_upload(
    *,
    buyer: Buyer,
    user: User | None,
    file: UploadedFile | bytes | IO[bytes],
    filename: str,
    channel: str = "csv",
    api_key: ApiKey | None = None,
) -> tuple[FeedbackImport, bool]:
    """Check and store a CSV of feedback and queue it; returns (import, created).

    Raises ValidationError naming the problem with the file. The same file
    uploaded again by the same buyer returns the earlier import (created False);
    a failed one is queued again and resumes where it stopped.
    """
    filename = clean_filename(filename)
    content = read_upload(file)
    text = decode(content)
    _, rows = read_layout(text)
    total = sum(1 for _ in rows)
    if total == 0:
        raise ValidationError("The file has a header but no rows.", code="empty")
    digest = hashlib.sha256(content).hexdigest()

    existing = _existing(buyer, digest)
    if existing is not None:
        return _reopen_if_failed(existing), False
    try:
        with transaction.atomic():
            feedback_import = FeedbackImport.objects.create(
                buyer=buyer,
                user=user,
                api_key=api_key,
                channel=channel,
                filename=filename,
                file_sha256=digest,
                file_size=len(content),
                content=content,
                total_rows=total,
                chunk_size=settings.LEADBACK_IMPORT_CHUNK_ROWS,
            )
            _enqueue_on_commit(feedback_import.pk)
    except IntegrityError:
        # The same file was uploaded twice at once: the other upload won.
        existing = _existing(buyer, digest)
        if existing is None:
            raise
        return existing, False
    # The bytes are in the database; nobody needs them in this object.
    feedback_import.content = b""
    return feedback_import, True


def feedback_import_create(
    *,
    buyer: Buyer,
    user: User | None,
    file: UploadedFile | bytes | IO[bytes],
    filename: str,
    channel: str = "csv",
    api_key: ApiKey | None = None,
) -> FeedbackImport:
    """Check, store and queue a CSV of feedback (see feedback_import_upload)."""
    feedback_import, _ = feedback_import_upload(
        buyer=buyer,
        user=user,
        file=file,
        filename=filename,
        channel=channel,
        api_key=api_key,
    )
    return feedback_import


def _existing(buyer: Buyer, digest: str) -> FeedbackImport | None:
    return feedback_import_list(buyer=buyer).filter(file_sha256=digest).first()


def _reopen_if_failed(feedback_import: FeedbackImport) -> FeedbackImport:
    if feedback_import.status != Status.FAILED:
        return feedback_import
    with transaction.atomic():
        reopened = FeedbackImport.objects.filter(
            pk=feedback_import.pk, status=Status.FAILED
        ).update(
            status=Status.QUEUED,
            error="",
            finished_at=None,
            lease_token=None,
            lease_expires_at=None,
            updated_at=timezone.now(),
        )
        if reopened:
            _enqueue_on_commit(feedback_import.pk)
    feedback_import.refresh_from_db()
    return feedback_import


def feedback_import_requeue(*, feedback_import: FeedbackImport) -> bool:
    """Queue a failed or stalled import again; it resumes after the last chunk it
    recorded. Returns False for an import that is done or being processed."""
    if feedback_import.status == Status.FAILED:
        _reopen_if_failed(feedback_import)
        return True
    lease = feedback_import.lease_expires_at
    if feedback_import.status == Status.QUEUED or (
        feedback_import.status == Status.PROCESSING
        and (lease is None or lease < timezone.now())
    ):
        _enqueue_on_commit(feedback_import.pk)
        return True
    return False


def _enqueue_on_commit(import_id: int) -> None:
    transaction.on_commit(lambda: feedback_import_enqueue(import_id=import_id))


def feedback_import_enqueue(*, import_id: int) -> bool:
    """Queue processing; a broker that is down leaves it to the sweeper."""
    from feedback.imports.tasks import process_feedback_import_task

    queued, _ = messages_send(
        [import_id], process_feedback_import_task.delay, what="a feedback import"
    )
    return bool(queued)


# Processing -----------------------------------------------------------------------


class _LeaseLostError(Exception):
    """Another worker took the import over (ours ran out); stop quietly."""


def feedback_import_process(*, import_id: int) -> FeedbackImport | None:
    """Process an import's remaining chunks; returns it, or None if it was not
    ours to process (finished, unknown, or another worker holds its lease).

    On PostgreSQL the lease holder asks `LEADBACK_IMPORT_WORKERS - 1` other
    workers to help (`feedback_import_help`): each takes the next chunk no one
    holds, and the holder finishes whatever is left and marks the import done."""
    token = _claim(import_id)
    if token is None:
        return None
    try:
        _process(import_id, token, lead=True)
    except _LeaseLostError:
        logger.info("feedback import %s was taken over by another worker", import_id)
        return None
    except (OperationalError, InterfaceError):
        # The database went away: the lease runs out and the sweep resumes it.
        logger.warning("feedback import %s interrupted", import_id, exc_info=True)
        raise
    except Exception as exc:
        logger.exception("feedback import %s failed", import_id)
        _fail(import_id, token, f"Processing stopped: {type(exc).__name__}.")
    return FeedbackImport.objects.defer("content").get(pk=import_id)


def feedback_import_help(*, import_id: int, token: uuid.UUID) -> None:
    """Process chunks of an import beside the worker holding lease `token`,
    until none is left to take. Whatever this leaves undone (it stopped, or
    its worker died) the lease holder does; a chunk is written by one worker
    only (a lock per chunk, then its recorded result)."""
    try:
        written = _process(import_id, token, lead=False)
    except _LeaseLostError:
        logger.info("feedback import %s: helping stopped, lease moved", import_id)
    except Exception:
        # The lease holder meets the same chunk and reports it.
        logger.warning("feedback import %s: helping stopped", import_id, exc_info=True)
    else:
        logger.info("feedback import %s: helped with %d chunks", import_id, written)


def _call_helpers(import_id: int, token: uuid.UUID, chunks: int) -> None:
    helpers = min(settings.LEADBACK_IMPORT_WORKERS, chunks) - 1
    if helpers < 1 or connection.vendor != "postgresql":
        # SQLite writes one transaction at a time: helpers would only wait.
        return
    from feedback.imports.tasks import help_feedback_import_task

    for _ in range(helpers):
        try:
            help_feedback_import_task.delay(import_id, str(token))
        except Exception:  # the broker's errors vary by transport
            logger.warning("feedback import %s: processed by one worker", import_id)
            return


def _claim(import_id: int) -> uuid.UUID | None:
    """Lease the import unless it is finished or another worker's lease on it
    still runs. Waits for a chunk in flight (its transaction holds the row)."""
    now = timezone.now()
    held = Q(status=Status.PROCESSING, lease_expires_at__gt=now)
    token, rows = leases_claim(
        FeedbackImport.objects.filter(
            pk=import_id, status__in=FeedbackImport.OPEN_STATUSES
        ).exclude(held),
        seconds=settings.LEADBACK_IMPORT_LEASE_S,
        skip_locked=False,
        status=Status.PROCESSING,
        updated_at=now,
    )
    return token if rows else None


def _process(import_id: int, token: uuid.UUID, *, lead: bool) -> int:
    """Process the chunks no other worker holds; the lead (the lease holder)
    then waits for the chunks others hold, does any they left, and marks the
    import done. Returns the number of chunks this call wrote."""
    feedback_import = FeedbackImport.objects.select_related(
        "buyer", "user", "api_key"
    ).get(pk=import_id)
    if feedback_import.lease_token != token:
        raise _LeaseLostError
    layout, rows = read_layout(decode(bytes(feedback_import.content)))
    feedback_import.content = b""
    done = set(
        FeedbackImportChunk.objects.filter(feedback_import_id=import_id).values_list(
            "index", flat=True
        )
    )
    if lead:
        size = feedback_import.chunk_size
        chunks = -(-feedback_import.total_rows // size) - len(done)
        _call_helpers(import_id, token, chunks)
    held_elsewhere = []
    written = 0
    for index, chunk in enumerate(chunked(rows, feedback_import.chunk_size)):
        if index in done:
            continue
        outcome = _process_chunk(feedback_import, token, layout, index, chunk)
        if outcome is None:
            held_elsewhere.append((index, chunk))
        written += bool(outcome)
    if not lead:
        return written
    for index, chunk in held_elsewhere:
        written += bool(
            _process_chunk(feedback_import, token, layout, index, chunk, wait=True)
        )
    with transaction.atomic():
        _hold_lease(import_id, token)
        FeedbackImport.objects.filter(pk=import_id).update(
            status=Status.DONE,
            finished_at=timezone.now(),
            lease_token=None,
            lease_expires_at=None,
            updated_at=timezone.now(),
        )
    return written


def _hold_lease(import_id: int, token: uuid.UUID, *, shared: bool = False) -> None:
    """Lock the import row for this transaction; raise if the lease is not ours.

    Every chunk's transaction takes this lock, so a worker that took the import
    over (a claim locks the row for update) waits for the chunks in flight, and
    a worker whose lease was taken stops before it writes anything. Chunks take
    it shared (FOR KEY SHARE, which their own counter updates do not conflict
    with), so the workers of one lease write chunks side by side."""
    if shared and connection.vendor == "postgresql":
        table = connection.ops.quote_name(FeedbackImport._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT lease_token FROM {table} WHERE id = %s FOR KEY SHARE",  # noqa: S608
                [import_id],
            )
            found = cursor.fetchone()
        held = found[0] if found else None
    else:
        held = (
            FeedbackImport.objects.select_for_update()
            .filter(pk=import_id)
            .values_list("lease_token", flat=True)
            .first()
        )
    if held != token:
        raise _LeaseLostError


def _lock_chunk(import_id: int, index: int, *, wait: bool) -> bool:
    """Take chunk `index` for this transaction: False if another worker holds
    it (not waiting). SQLite runs one write transaction at a time: always True."""
    if connection.vendor != "postgresql":
        return True
    function = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
    with connection.cursor() as cursor:
        # The two-key form, a space apart from the one-key idempotency locks.
        cursor.execute(f"SELECT {function}(%s, %s)", [import_id % 2**31, index])
        return cursor.fetchone()[0] is not False


def _process_chunk(
    feedback_import: FeedbackImport,
    token: uuid.UUID,
    layout: Layout,
    index: int,
    chunk: list[DataRow],
    *,
    wait: bool = False,
) -> bool | None:
    """Import one chunk: True if this call wrote it, False if it was recorded
    already, None if another worker holds it (only when not waiting for it)."""
    with transaction.atomic():
        _hold_lease(feedback_import.pk, token, shared=True)
        if not _lock_chunk(feedback_import.pk, index, wait=wait):
            return None
        if connection.vendor == "postgresql":
            # A chunk lost to a database crash is lost whole (feedback, results
            # and counters commit together) and imported again on resume, so it
            # need not wait for its WAL to reach the disk. Nothing leaves the
            # building first: sending starts with a claim, whose synchronous
            # commit flushes the WAL before it, this chunk's included.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
        if FeedbackImportChunk.objects.filter(
            feedback_import_id=feedback_import.pk, index=index
        ).exists():
            return False
        prepared = [row_item(layout, row.cells) for row in chunk]
        received = iter(
            feedback_receive_many(
                buyer=feedback_import.buyer,
                items=[item for item, problem in prepared if not problem],
                channel=feedback_import.channel,
                api_key=feedback_import.api_key,
                user=feedback_import.user,
                strategy=FILE,
            )
        )
        results: list[list[Any]] = []
        succeeded = 0
        for row, (item, problem) in zip(chunk, prepared, strict=True):
            event_id = item.get("event_id", "").strip()
            reference = item.get("reference", "").strip()
            if problem:
                results.append(
                    [
                        row.number,
                        FAILURE,
                        ReceiveStatus.INVALID.value,
                        problem,
                        None,
                        event_id,
                        reference,
                    ]
                )
                continue
            result = next(received)
            accepted = result.status == ReceiveStatus.ACCEPTED
            succeeded += accepted
            feedback = result.feedback
            results.append(
                [
                    row.number,
                    SUCCESS if accepted else FAILURE,
                    result.status.value,
                    "" if accepted else result.reason,
                    str(feedback.public_id) if feedback is not None else None,
                    event_id,
                    reference,
                ]
            )
        FeedbackImportChunk.objects.create(
            feedback_import_id=feedback_import.pk,
            index=index,
            first_row=chunk[0].number,
            row_count=len(chunk),
            succeeded=succeeded,
            results=results,
        )
        FeedbackImport.objects.filter(pk=feedback_import.pk).update(
            processed_rows=F("processed_rows") + len(chunk),
            succeeded_rows=F("succeeded_rows") + succeeded,
            refused_rows=F("refused_rows") + len(chunk) - succeeded,
            lease_expires_at=lease_until(settings.LEADBACK_IMPORT_LEASE_S),
            updated_at=timezone.now(),
        )
    return True


def _fail(import_id: int, token: uuid.UUID, message: str) -> None:
    with transaction.atomic():
        FeedbackImport.objects.filter(pk=import_id, lease_token=token).update(
            status=Status.FAILED,
            error=message,
            finished_at=timezone.now(),
            lease_token=None,
            lease_expires_at=None,
            updated_at=timezone.now(),
        )


def feedback_imports_sweep(*, limit: int = 100) -> int:
    """Queue imports the fast path lost: queued for longer than the queue lease
    (message lost, broker flushed) or processing with an expired lease (worker
    killed). Returns how many were queued."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.LEADBACK_QUEUE_LEASE_S)
    ids = list(
        FeedbackImport.objects.filter(
            Q(status=Status.QUEUED, updated_at__lt=stale)
            | Q(status=Status.PROCESSING, lease_expires_at__lt=now)
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(feedback_import_enqueue(import_id=pk) for pk in ids)
