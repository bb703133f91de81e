"""CSV imports of feedback: the uploaded file and the results of its chunks.

Registered with the feedback app by `feedback.apps`.
"""

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from feedback.leases import Leased
from feedback.models import ApiKey, Buyer, Feedback


def new_import_id() -> str:
    return f"imp_{secrets.token_hex(12)}"


class FeedbackImport(Leased):
    """A CSV file of feedback uploaded by a buyer, processed in chunks by a worker.

    The file is kept in the row itself (`content`): every worker reaches the
    database, not necessarily a shared disk, and the file and the import commit
    together. A buyer's file is imported once: the same bytes uploaded again
    answer with this import instead of writing the feedback twice.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    OPEN_STATUSES = (Status.QUEUED, Status.PROCESSING)

    public_id = models.CharField(
        "import id",
        max_length=40,
        unique=True,
        default=new_import_id,
        editable=False,
    )
    buyer = models.ForeignKey(
        Buyer, on_delete=models.CASCADE, related_name="feedback_imports"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    api_key = models.ForeignKey(
        ApiKey,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    channel = models.CharField(
        max_length=20, choices=Feedback.Channel.choices, default=Feedback.Channel.CSV
    )
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.QUEUED
    )
    filename = models.CharField(max_length=255)
    file_sha256 = models.CharField(max_length=64, editable=False)
    file_size = models.PositiveIntegerField(default=0, editable=False)
    # Never loaded by lists (selectors defer it); only the worker and the
    # refused-rows report read it.
    content = models.BinaryField(editable=False)
    total_rows = models.PositiveIntegerField(default=0)
    # Fixed at upload: a resumed import must cut the file into the same chunks
    # it recorded before, whatever the setting says by then.
    chunk_size = models.PositiveIntegerField(default=2000, editable=False)
    processed_rows = models.PositiveIntegerField(default=0)
    succeeded_rows = models.PositiveIntegerField(default=0)
    refused_rows = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "feedback import"
        constraints = [
            models.UniqueConstraint(
                fields=["buyer", "file_sha256"], name="feedback_import_once_per_file"
            ),
            models.CheckConstraint(
                condition=Q(processed_rows__lte=models.F("total_rows")),
                name="feedback_import_processed_within_total",
            ),
        ]
        indexes = [
            models.Index(fields=["buyer", "-created_at"]),
            # The sweeper's query: imports that are not finished.
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status__in=["queued", "processing"]),
                name="feedback_import_open_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.filename})"

    @property
    def percent(self) -> int:
        """Progress from 0 to 100; a finished import is 100 even with no rows."""
        if self.status == self.Status.DONE:
            return 100
        if not self.total_rows:
            return 0
        return min(100, self.processed_rows * 100 // self.total_rows)

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)


class FeedbackImportChunk(models.Model):
    """The per-row results of one chunk of an import, as one compact JSON list.

    One row per chunk (not per CSV row) keeps a 100,000-row import to a few dozen
    inserts. It is written in the transaction that stores the chunk's feedback,
    so a chunk is either wholly imported and recorded here or not at all: a
    resumed import skips exactly the chunks found here.
    """

    feedback_import = models.ForeignKey(
        FeedbackImport, on_delete=models.CASCADE, related_name="chunks"
    )
    index = models.PositiveIntegerField()
    first_row = models.PositiveIntegerField()
    row_count = models.PositiveIntegerField()
    succeeded = models.PositiveIntegerField(default=0)
    # [[row_number, outcome, reason, feedback_id, event_id, reference], ...]
    results = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["feedback_import", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["feedback_import", "index"],
                name="feedback_import_chunk_once",
            )
        ]

    def __str__(self) -> str:
        return f"{self.feedback_import_id} chunk {self.index}"
