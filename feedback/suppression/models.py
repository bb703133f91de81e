"""Suppression lists (DESIGN §11): contacts the distribution system should not
buy again, kept as digests of the normalised email and phone, never as text."""

from django.db import models
from django.db.models import Q
from django.utils import timezone


class SuppressionList(models.Model):
    """A named list and the feedback that adds to it (config-as-code
    `suppression_lists`)."""

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    ttl_days = models.PositiveIntegerField(
        "TTL (days)",
        null=True,
        blank=True,
        help_text="Entries expire this many days after they were last added; "
        "empty: never.",
    )
    # The kinds of accepted feedback (a return once approved) that add the
    # lead, and the reasons that do; empty reasons: any.
    add_kinds = models.JSONField(default=list, blank=True)
    add_reasons = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name or self.slug


class SuppressionEntry(models.Model):
    """One contact on one list: the SHA-256 and MD5 hex digests of its
    normalised email or phone. The check looks entries up by digest first,
    hence the unique index's column order."""

    class Field(models.TextChoices):
        EMAIL = "email", "Email"
        PHONE = "phone", "Phone"

    class Origin(models.TextChoices):
        FEEDBACK = "feedback", "Feedback"
        MANUAL = "manual", "Added by hand"

    # Indexed by the unique constraint's third column and the (list, added_at)
    # index in Meta.
    list = models.ForeignKey(
        SuppressionList,
        on_delete=models.CASCADE,
        related_name="entries",
        db_index=False,
    )
    field = models.CharField(max_length=5, choices=Field.choices)
    sha256 = models.CharField("SHA-256", max_length=64)
    md5 = models.CharField("MD5", max_length=32)
    origin = models.CharField(
        max_length=10, choices=Origin.choices, default=Origin.FEEDBACK
    )
    added_at = models.DateTimeField(default=timezone.now)
    # added_at + the list's ttl_days; null when the list keeps entries forever.
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "suppression entries"
        constraints = [
            models.UniqueConstraint(
                fields=["sha256", "field", "list"], name="suppression_entry_unique"
            )
        ]
        indexes = [
            models.Index(fields=["list", "added_at"], name="suppression_entry_list"),
            models.Index(
                fields=["expires_at"],
                name="suppression_entry_expires",
                condition=Q(expires_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.field} {self.sha256[:12]}…"
