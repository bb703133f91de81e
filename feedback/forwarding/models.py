"""Forwarding's rows: notifications, their attempts, batch runs and theirs.

A notification is one feedback forwarded under one source config (DESIGN §5.4);
a batch run is one file of a batch config's notifications (§5.6). Registered
with the feedback app by `feedback.apps`.
"""

import secrets

from django.db import models
from django.db.models import Q
from django.utils import timezone

from feedback.leases import Scheduled
from feedback.models import Feedback, FeedbackCorrection
from sources.models import FeedbackConfig, Kind, Source


def new_notification_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


class Notification(Scheduled):
    """One feedback forwarded under one source config: a "feedback sent" event.

    The row is the source of truth for delivery (DESIGN §5.4): its status and
    `next_attempt_at` decide what is sent when; a queued message only says
    "look at row N with lease L". `public_id` is sent as `webhook-id` on every
    try so a source can drop duplicates of an at-least-once delivery.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Retrying"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed (refused by the source)"
        DEAD = "dead", "Dead (retries exhausted)"
        SKIPPED = "skipped", "Skipped (criteria)"
        BATCHED = "batched", "Batched"

    # Rows the engine still has to send; the rest are final.
    OPEN_STATUSES = (Status.PENDING, Status.SENDING, Status.RETRYING)

    public_id = models.CharField(
        "notification id",
        max_length=40,
        unique=True,
        default=new_notification_id,
        editable=False,
    )
    # feedback and source are indexed by the constraint and index they lead.
    feedback = models.ForeignKey(
        Feedback, on_delete=models.PROTECT, related_name="notifications", db_index=False
    )
    # Kept when a config is deleted: the history of what was sent stays.
    config = models.ForeignKey(
        FeedbackConfig,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="notifications",
    )
    source = models.ForeignKey(
        Source, on_delete=models.PROTECT, related_name="notifications", db_index=False
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # The delivery's delivered_at, copied when the row is written (it never
    # changes): reports counted by delivery date filter notifications on it
    # without joining feedback and deliveries.
    lead_delivered_at = models.DateTimeField(editable=False)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING
    )
    reason = models.CharField(max_length=1000, blank=True)
    reference = models.CharField(
        max_length=255, blank=True, help_text="The source's id for what it received."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # A batched notification's file: set once, in the UPDATE that builds a run,
    # so a notification can only ever be in one file.
    batch_run = models.ForeignKey(
        "BatchRun",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="notifications",
    )
    # A correction notice (DESIGN §12): the retraction or amendment it tells,
    # and the notification that first forwarded the feedback. Empty for the
    # feedback's own notifications.
    correction = models.ForeignKey(
        FeedbackCorrection,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="notifications",
    )
    original = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="corrections",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["feedback", "config"],
                condition=Q(correction__isnull=True),
                name="notification_one_per_config",
            ),
            models.UniqueConstraint(
                fields=["correction", "original"],
                condition=Q(correction__isnull=False),
                name="notification_one_notice_per_correction",
            ),
        ]
        indexes = [
            # The sweeper's query: open rows by due time.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "sending", "retrying"]),
                name="notification_due_idx",
            ),
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["source", "created_at"]),
            # The batch scheduler's query: a config's rows not yet in a file.
            models.Index(
                fields=["config", "created_at"],
                condition=Q(status="batched", batch_run__isnull=True),
                name="notification_unbatched_idx",
            ),
            # The report rollups' refresh: the rows changed since the last one,
            # then every row of the days they fall on, by either date.
            models.Index(fields=["updated_at"], name="notification_updated_idx"),
            models.Index(fields=["created_at"], name="notification_created_idx"),
            models.Index(
                fields=["lead_delivered_at"], name="notification_delivered_idx"
            ),
            # Delivery health's queue depth and oldest pending, per config, read
            # from the index alone.
            models.Index(
                fields=["config", "created_at"],
                condition=Q(status__in=["pending", "sending", "retrying"]),
                name="notification_open_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id


class NotificationAttempt(models.Model):
    """One try at sending a notification: what went out, what came back."""

    MAX_BODY_CHARS = 20_000

    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="attempts"
    )
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    request_method = models.CharField(max_length=10)
    request_url = models.CharField(max_length=2000)
    request_headers = models.JSONField(default=dict, blank=True)
    request_body = models.TextField(blank=True, help_text="Secrets redacted.")
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    response_body = models.TextField(blank=True, help_text="At most 20 KB.")
    outcome = models.CharField(max_length=20)
    reason = models.CharField(max_length=1000, blank=True)
    error_class = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["notification", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["notification", "number"], name="attempt_number_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.notification_id} #{self.number}: {self.outcome}"


class DeadNotification(Notification):
    """A notification whose retries ran out, for the admin's dead-letter view.

    A proxy: the same rows, shown apart so admins see what needs them.
    """

    class Meta:
        proxy = True
        verbose_name = "dead letter"
        verbose_name_plural = "dead letters"


def new_batch_run_id() -> str:
    return f"run_{secrets.token_hex(12)}"


class BatchRun(Scheduled):
    """One file of a batch config's notifications for one period (DESIGN §5.6).

    The notifications are tied to the run when it is created and the file is
    built once and stored, so every try (a retry, a resend, a worker that picks
    up after another was killed) sends the very same file.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Retrying"
        SENT = "sent", "Sent"
        EMPTY = "empty", "Empty (nothing to send)"
        FAILED = "failed", "Failed (refused)"
        DEAD = "dead", "Dead (retries exhausted)"

    OPEN_STATUSES = (Status.PENDING, Status.SENDING, Status.RETRYING)

    public_id = models.CharField(
        "run id", max_length=40, unique=True, default=new_batch_run_id, editable=False
    )
    # Kept when a config is deleted (or dropped by an import): the record of
    # what was sent stays, and an unsent run fails with the reason.
    config = models.ForeignKey(
        FeedbackConfig,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="batch_runs",
    )
    source = models.ForeignKey(
        Source, on_delete=models.PROTECT, related_name="batch_runs"
    )
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING
    )
    reason = models.CharField(max_length=1000, blank=True)
    row_count = models.PositiveIntegerField(default=0)
    file_name = models.CharField(max_length=500, blank=True)
    # The file as built: what every try sends. Null until built.
    content = models.BinaryField(null=True, blank=True, editable=False)
    sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-period_end", "-pk"]
        constraints = [
            # A period is run once: two schedulers racing create one run.
            models.UniqueConstraint(
                fields=["config", "period_end"], name="batchrun_one_per_period"
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "sending", "retrying"]),
                name="batchrun_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id


class BatchAttempt(models.Model):
    """One try at sending a batch run's file."""

    run = models.ForeignKey(BatchRun, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    destination = models.CharField(max_length=1000, blank=True)
    outcome = models.CharField(max_length=20)
    reason = models.CharField(max_length=1000, blank=True)
    error_class = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "number"], name="batchattempt_number_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run_id} #{self.number}: {self.outcome}"
