"""The rows of returns resolution (DESIGN §10): each review transition, as an
audit row, and each credit an approval grants."""

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.db import models
from django.db.models import Q
from django.utils import timezone

from feedback.models import ApiKey, Buyer, DeliveryEvent, Feedback, Flow
from sources.models import Source


class EvidenceStorage(FileSystemStorage):
    """Dispute evidence lives under the var directory, outside anything the web
    server serves; a view hands it to the buyer who sent it and to staff. The
    directory is read from the settings when a file is stored or read, not
    when the models load."""

    def __init__(self) -> None:
        super().__init__(base_url=None)

    @property  # type: ignore[override]
    def base_location(self) -> str:
        return str(Path(settings.VAR_DIR) / "evidence")

    @property  # type: ignore[override]
    def location(self) -> str:
        return str(Path(self.base_location).resolve())


def evidence_storage() -> FileSystemStorage:
    return EvidenceStorage()


def _evidence_path(instance: Any, filename: str) -> str:
    # The stored name says nothing about the file's content; the buyer's name
    # for it is kept in evidence_name.
    suffix = Path(filename).suffix.lower()[:8]
    now = timezone.now()
    return f"{now:%Y/%m}/{instance.feedback_id}-{now:%d%H%M%S%f}{suffix}"


class ReturnTransition(models.Model):
    """One change of a return's review state: who, when, from what to what and
    why. Written by the service that makes the change, never edited."""

    class Actor(models.TextChoices):
        BUYER = "buyer", "Buyer"
        STAFF = "staff", "Staff"
        INTEGRATION = "integration", "Integration key"
        SYSTEM = "system", "Leadback"

    # Indexed by the (feedback, created_at) index in Meta.
    feedback = models.ForeignKey(
        Feedback, on_delete=models.CASCADE, related_name="transitions", db_index=False
    )
    from_state = models.CharField(
        max_length=10, choices=Feedback.ReviewState.choices, blank=True
    )
    # Empty when the return left the review (a sync source refused it).
    to_state = models.CharField(
        max_length=10, choices=Feedback.ReviewState.choices, blank=True
    )
    actor = models.CharField(max_length=12, choices=Actor.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    note = models.TextField(blank=True)
    evidence = models.FileField(
        storage=evidence_storage, upload_to=_evidence_path, blank=True, max_length=200
    )
    evidence_name = models.CharField(max_length=200, blank=True)
    evidence_type = models.CharField(max_length=50, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "return review step"
        ordering = ["created_at", "pk"]
        indexes = [
            models.Index(fields=["feedback", "created_at"]),
            # The decisions of a period, for the returns report.
            models.Index(
                fields=["created_at"],
                condition=Q(to_state__in=["approved", "rejected"]),
                name="return_step_decisions",
            ),
        ]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.from_state or 'requested'} → {self.to_state}"


class Credit(models.Model):
    """What an approved return credits the buyer: one row per approval, voided
    when the approval is undone."""

    buyer = models.ForeignKey(
        Buyer, on_delete=models.PROTECT, related_name="credits", db_index=False
    )
    # Copied from the return so reports group without joins.
    source = models.ForeignKey(
        Source, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    flow = models.ForeignKey(Flow, on_delete=models.PROTECT, related_name="+")
    delivery = models.ForeignKey(
        DeliveryEvent, on_delete=models.PROTECT, related_name="credits"
    )
    feedback = models.ForeignKey(
        Feedback, on_delete=models.PROTECT, related_name="credits", db_index=False
    )
    reason = models.CharField(max_length=255, blank=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=255, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["feedback"],
                condition=Q(voided_at__isnull=True),
                name="credit_one_live_per_return",
            ),
            models.CheckConstraint(
                condition=Q(amount__gte=0), name="credit_amount_not_negative"
            ),
        ]
        indexes = [
            models.Index(fields=["buyer", "created_at"]),
            models.Index(fields=["source", "created_at"]),
            models.Index(fields=["created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.amount} to {self.buyer_id} for {self.delivery_id}"
