"""The receipt of an erasure (DESIGN §12): what was asked, by whom, and how
much was removed, kept as digests so the receipt itself holds no personal
data. Registered with the feedback app by `feedback.apps`."""

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from feedback.leases import Scheduled
from feedback.models import ApiKey
from sources.models import FeedbackConfig, Source


def new_erasure_id() -> str:
    return f"era_{secrets.token_hex(12)}"


class Erasure(models.Model):
    """One erasure request, carried out: written in the transaction that
    removed the data, never edited."""

    class Via(models.TextChoices):
        API = "api", "API"
        COMMAND = "command", "Command"
        ADMIN = "admin", "Admin"

    public_id = models.CharField(
        "erasure id",
        max_length=40,
        unique=True,
        default=new_erasure_id,
        editable=False,
    )
    via = models.CharField(max_length=10, choices=Via.choices)
    # SHA-256 of the normalised identifiers asked for (as suppression lists
    # keep them); empty when that identifier was not given.
    email_sha256 = models.CharField("email SHA-256", max_length=64, blank=True)
    phone_sha256 = models.CharField("phone SHA-256", max_length=64, blank=True)
    lead_id_sha256 = models.CharField("lead id SHA-256", max_length=64, blank=True)
    leads = models.PositiveIntegerField(default=0, help_text="Leads erased.")
    # Rows and files changed, by kind: {"leads": 1, "attempts": 4, ...}.
    counts = models.JSONField(default=dict, blank=True)
    notices = models.PositiveIntegerField(
        default=0, help_text="Erasure notices queued to sources."
    )
    suppression_list = models.CharField(
        max_length=100, blank=True, help_text="The list the digests were added to."
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
        verbose_name="API key",
    )
    # Who, in words: a user name, an API key's name, or the command's operator.
    requested_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "erasure"

    def __str__(self) -> str:
        return self.public_id


def new_notice_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


class ErasureNotice(Scheduled):
    """An erasure notice to a source whose config has an `on_erase` mapping:
    the lead's id and event ids, never its data. Claimed, tried and retried
    like a notification (the retry schedule of `feedback.forwarding`)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Retrying"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed (refused by the source)"
        DEAD = "dead", "Dead (retries exhausted)"

    OPEN_STATUSES = (Status.PENDING, Status.SENDING, Status.RETRYING)

    public_id = models.CharField(
        "notice id", max_length=40, unique=True, default=new_notice_id, editable=False
    )
    erasure = models.ForeignKey(
        Erasure, on_delete=models.CASCADE, related_name="erasure_notices"
    )
    config = models.ForeignKey(
        FeedbackConfig,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="+")
    lead_id = models.CharField("lead id", max_length=64)
    event_ids = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING
    )
    reason = models.CharField(max_length=1000, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "erasure notice"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "sending", "retrying"]),
                name="erasurenotice_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id
