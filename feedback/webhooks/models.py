"""Webhooks to the seller's systems (DESIGN §11): endpoints, the messages sent
to them and each try.

A message is one event for one endpoint. It is claimed, leased, tried and
retried like a notification (`feedback.leases.Scheduled`, the retry schedule
of `feedback.forwarding.schedule`), and its tries are attempt rows like a
notification's. Registered with the feedback app by `feedback.apps`.

Rows of their own on the shared `Scheduled` base, as batch runs are, rather
than notifications aimed at an endpoint: a notification is a "feedback sent"
event (its feedback, source, kind and delivery date are what the reports, the
delivery-health figures and the monitors count), and a webhook message has
none of them. Making those columns optional would put a webhook into every
forwarding figure unless each query remembered to leave it out.
"""

import json
import secrets
from typing import Any

from django.core.validators import MaxValueValidator, MinValueValidator, validate_slug
from django.db import models
from django.db.models import Q
from django.utils import timezone

from feedback.leases import Scheduled

# The events Leadback sends; an endpoint subscribes to some of them.
EVENTS = (
    ("alert.firing", "A monitor fired"),
    ("alert.resolved", "A monitor resolved"),
    ("source.paused", "A source was paused"),
    ("source.resumed", "A source was resumed"),
    ("return.decided", "A return was approved or rejected"),
    ("feedback.retracted", "A buyer or staff retracted feedback"),
    ("feedback.amended", "A conversion's revenue was amended"),
)
EVENT_TYPES = tuple(event for event, _ in EVENTS)


def new_webhook_message_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


class WebhookEndpoint(models.Model):
    """A URL of the seller's that receives the events it subscribes to, signed
    with its `whsec_` secret (Standard Webhooks)."""

    slug = models.SlugField(max_length=100, unique=True, validators=[validate_slug])
    url = models.URLField("URL", max_length=2000)
    secret = models.CharField(
        max_length=200,
        help_text="A Standard Webhooks secret (whsec_ followed by base64); the "
        "receiver verifies each request's webhook-signature with it.",
    )
    events = models.JSONField(
        default=list, help_text='The event types it receives, e.g. ["source.paused"].'
    )
    enabled = models.BooleanField(default=True)
    timeout_s = models.FloatField(
        "timeout (seconds)",
        default=10.0,
        validators=[MinValueValidator(0.5), MaxValueValidator(60.0)],
    )
    description = models.CharField(max_length=500, blank=True)
    # Set when the receiver answered 410 Gone and the endpoint was disabled.
    disabled_reason = models.CharField(max_length=500, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return self.slug


class WebhookMessage(Scheduled):
    """One event for one endpoint: the body is built once, when the event is
    emitted, so every try sends the same bytes under the same webhook-id."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Retrying"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed (refused by the receiver)"
        DEAD = "dead", "Dead (retries exhausted)"
        SKIPPED = "skipped", "Skipped (endpoint disabled or deleted)"

    OPEN_STATUSES = (Status.PENDING, Status.SENDING, Status.RETRYING)

    public_id = models.CharField(
        "message id",
        max_length=40,
        unique=True,
        default=new_webhook_message_id,
        editable=False,
    )
    # Kept when an endpoint is deleted: the record of what was sent stays.
    endpoint = models.ForeignKey(
        WebhookEndpoint,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
    )
    event = models.CharField(max_length=50)
    body = models.TextField(editable=False)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING
    )
    reason = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "webhook message"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "sending", "retrying"]),
                name="webhookmessage_due_idx",
            ),
            models.Index(fields=["status", "-created_at"]),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


class WebhookAttempt(models.Model):
    """One try at sending a webhook message: what went out, what came back."""

    MAX_BODY_CHARS = 20_000

    message = models.ForeignKey(
        WebhookMessage, on_delete=models.CASCADE, related_name="attempts"
    )
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    request_url = models.CharField(max_length=2000)
    request_headers = models.JSONField(default=dict, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    response_body = models.TextField(blank=True, help_text="At most 20 KB.")
    outcome = models.CharField(max_length=20)
    reason = models.CharField(max_length=1000, blank=True)
    error_class = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["message", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["message", "number"], name="webhookattempt_number_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} #{self.number}: {self.outcome}"
