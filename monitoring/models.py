"""Monitors, the alerts they raise, and the actions each alert runs."""

import secrets

from django.db import models
from django.db.models import Q
from django.utils import timezone

from feedback.leases import Scheduled
from feedback.models import Buyer, Flow
from sources.models import Source


def new_alert_id() -> str:
    return f"alr_{secrets.token_hex(12)}"


class Monitor(models.Model):
    """A rate watched over a rolling window of days, with a threshold and what
    to do when it is crossed (DESIGN §11). Configured as code (`monitors`)."""

    class Metric(models.TextChoices):
        RETURN_RATE = "return_rate", "Return rate"
        CONVERSION_RATE = "conversion_rate", "Conversion rate"
        AVERAGE_QUALITY = "average_quality", "Average quality"
        FEEDBACK_COVERAGE = "feedback_coverage", "Feedback coverage"
        FORWARDING_FAILURE_RATE = "forwarding_failure_rate", "Forwarding failure rate"
        DEAD_NOTIFICATIONS = "dead_notifications", "Dead notifications"

    class Op(models.TextChoices):
        ABOVE = "above", "above"
        BELOW = "below", "below"

    class Basis(models.TextChoices):
        DELIVERY = "delivery", "Delivery date"

    class State(models.TextChoices):
        OK = "ok", "OK"
        FIRING = "firing", "Firing"

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    # The scope: any of source, buyer and flow, or none (everything).
    source = models.ForeignKey(
        Source, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    buyer = models.ForeignKey(
        Buyer, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    flow = models.ForeignKey(
        Flow, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    metric = models.CharField(max_length=30, choices=Metric.choices)
    window_days = models.PositiveSmallIntegerField(default=14)
    basis = models.CharField(max_length=20, choices=Basis.choices, default="delivery")
    op = models.CharField(max_length=10, choices=Op.choices, default=Op.ABOVE)
    threshold = models.FloatField()
    min_sample = models.PositiveIntegerField(default=50)
    confidence = models.FloatField(default=0.95)
    # [{"type": "email", "to": [...]}, {"type": "webhook"},
    #  {"type": "notify", "url": "<Apprise URL>"}, {"type": "pause_source"}]
    actions = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OK)
    evaluated_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name


class Alert(models.Model):
    """One change of a monitor's state, with the numbers that made it.

    The row is also the outbox of the change's actions: they are written with
    it, in the same transaction, and run from their own rows (`AlertAction`)."""

    class State(models.TextChoices):
        FIRING = "firing", "Firing"
        RESOLVED = "resolved", "Resolved"

    public_id = models.CharField(
        "alert id", max_length=40, unique=True, default=new_alert_id, editable=False
    )
    monitor = models.ForeignKey(
        Monitor, on_delete=models.CASCADE, related_name="alerts"
    )
    state = models.CharField(max_length=10, choices=State.choices)
    value = models.FloatField(null=True, blank=True)
    low = models.FloatField(null=True, blank=True)
    high = models.FloatField(null=True, blank=True)
    sample = models.PositiveIntegerField(default=0)
    # The rule as it was when the alert was raised (the monitor may change).
    threshold = models.FloatField()
    # The window the numbers were read over, as calendar days (both inclusive).
    window_start = models.DateField()
    window_end = models.DateField()
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["-at", "-id"], name="alert_newest_idx"),
            models.Index(fields=["monitor", "-at"], name="alert_monitor_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.monitor} {self.state} at {self.at:%Y-%m-%d %H:%M}"


class AlertAction(Scheduled):
    """One action of one alert: the outbox row a worker claims, runs and marks.

    Written with the alert, so a change never loses its actions; leased like
    notifications (feedback/leases.py), so a worker that dies mid-action
    leaves a row another worker takes over once the lease runs out."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Retrying"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed (refused)"
        DEAD = "dead", "Dead (retries exhausted)"

    OPEN_STATUSES = (Status.PENDING, Status.SENDING, Status.RETRYING)

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="actions")
    # The action's position in the monitor's list and a copy of it, so what
    # runs is what the monitor said when the alert was raised.
    index = models.PositiveSmallIntegerField()
    type = models.CharField(max_length=20)
    spec = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING
    )
    last_error = models.CharField(max_length=1000, blank=True)
    result = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["alert", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "index"], name="alert_action_one_per_index"
            )
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "sending", "retrying"]),
                name="alert_action_due_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} (action {self.index + 1}): {self.get_status_display()}"
