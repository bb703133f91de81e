"""The audit trail of source status (DESIGN §11): one row per pause or resume."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from feedback.models import ApiKey
from sources.models import Source


class SourceStatusChange(models.Model):
    """A source paused or resumed: who, when, through what, and why.

    Written by `source_pause` and `source_resume` in the transaction that
    changes the source, never edited. `via` says which way in made the
    change: "api", "admin", or "monitor:<slug>" for a monitor's action.
    """

    class Action(models.TextChoices):
        PAUSED = "paused", "Paused"
        RESUMED = "resumed", "Resumed"

    source = models.ForeignKey(
        Source, on_delete=models.CASCADE, related_name="status_changes"
    )
    action = models.CharField(max_length=10, choices=Action.choices)
    reason = models.CharField(max_length=500, blank=True)
    via = models.CharField(max_length=120)
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
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["source", "-created_at"])]
        verbose_name = "source status change"

    def __str__(self) -> str:
        return f"{self.source_id} {self.action} via {self.via}"
