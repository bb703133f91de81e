"""Serializers shared by several API classes. Input/Output pairs specific to one API
live nested in that API class."""

import functools
import ipaddress
import json
import re
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from feedback.forwarding.models import Notification
from feedback.intake.parse import (
    DATE_ONLY_MESSAGE,
    DATE_TIME_SEPARATOR,
    EARLIEST_MESSAGE,
)
from feedback.models import EVENT_ID_PATTERN, DeliveryEvent, Feedback, Lead
from feedback.safetext import find_problem
from feedback.services import EARLIEST_INSTANT, DeliveryInput, as_utc
from sources.models import Kind

MAX_LEAD_BYTES = 16 * 1024
CLOCK_SKEW = timedelta(minutes=5)


class ItemsInputSerializer(serializers.Serializer):
    """The envelope of a batch: {"items": [...]}, each item validated separately."""

    items = serializers.ListField(
        child=serializers.JSONField(), allow_empty=False, max_length=1000
    )


class InstantField(serializers.DateTimeField):
    """An ISO 8601 date and time, as the intake reads occurred_at: a date alone
    is refused rather than read as midnight."""

    def to_internal_value(self, value: Any) -> Any:
        parsed = super().to_internal_value(value)
        if isinstance(value, str) and not DATE_TIME_SEPARATOR.search(value):
            raise serializers.ValidationError(DATE_ONLY_MESSAGE)
        return parsed


class AsciiDecimalField(serializers.DecimalField):
    """A decimal in the digits 0-9, as the intake reads revenue: Decimal() alone
    would also take other scripts' digits and 1_000."""

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, str) and (not data.isascii() or "_" in data):
            raise serializers.ValidationError(
                "Must be a decimal number in the digits 0-9."
            )
        return super().to_internal_value(data)


class EventInputSerializer(serializers.Serializer):
    event_id = serializers.RegexField(
        EVENT_ID_PATTERN,
        required=False,
        error_messages={"invalid": "Must be 24 lowercase hexadecimal characters."},
    )
    delivered_at = InstantField(required=False)
    price = AsciiDecimalField(
        max_digits=12, decimal_places=2, min_value=0, required=False
    )
    buyer = serializers.SlugField(max_length=100)
    # `source` shadows Field.source in the type stubs, not at run time.
    source = serializers.SlugField(max_length=100)  # type: ignore[assignment]
    flow = serializers.SlugField(max_length=100)
    step = serializers.CharField(max_length=200, required=False, allow_blank=True)
    reference = serializers.CharField(max_length=200, required=False, allow_blank=True)
    lead = serializers.DictField(required=False)

    def validate_delivered_at(self, value: Any) -> Any:
        try:
            value = as_utc(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        if value > timezone.now() + CLOCK_SKEW:
            raise serializers.ValidationError("Cannot be in the future.")
        if value < EARLIEST_INSTANT:
            raise serializers.ValidationError(EARLIEST_MESSAGE)
        return value

    def validate_lead(self, value: dict[str, Any]) -> dict[str, Any]:
        # The JSON parser refuses these first; this holds for any other caller.
        problem = find_problem(value, depth=1)
        if problem is not None:
            raise serializers.ValidationError({problem.field: problem.message})
        if len(json.dumps(value)) > MAX_LEAD_BYTES:
            raise serializers.ValidationError(
                f"Lead data is larger than {MAX_LEAD_BYTES // 1024} KB."
            )
        lead_id = value.get("id")
        if lead_id is not None and (
            not isinstance(lead_id, str | int) or not str(lead_id).strip()
        ):
            raise serializers.ValidationError({"id": "Must be a non-empty string."})
        if lead_id is not None and len(str(lead_id)) > 64:
            raise serializers.ValidationError({"id": "At most 64 characters."})
        return value

    def to_delivery_input(self) -> DeliveryInput:
        return self.delivery_input(self.validated_data)

    @staticmethod
    def delivery_input(data: Any) -> DeliveryInput:
        """A validated event (this serializer's output) as the services take it."""
        lead = dict(data.get("lead") or {})
        lead_id = lead.pop("id", None)
        return DeliveryInput(
            event_id=data.get("event_id"),
            delivered_at=data.get("delivered_at"),
            price=data.get("price") or Decimal("0"),
            buyer=data["buyer"],
            source=data["source"],
            flow=data["flow"],
            step=data.get("step", ""),
            reference=data.get("reference", ""),
            lead_id=str(lead_id) if lead_id is not None else None,
            lead_data=lead,
        )


class EventOutputSerializer(serializers.ModelSerializer[DeliveryEvent]):
    buyer = serializers.CharField(source="buyer.slug", read_only=True)
    source = serializers.CharField(  # type: ignore[assignment]
        source="source.slug", read_only=True
    )
    flow = serializers.CharField(source="flow.slug", read_only=True)
    lead = serializers.SerializerMethodField()
    recorded_at = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = DeliveryEvent
        fields = [
            "event_id",
            "delivered_at",
            "price",
            "buyer",
            "source",
            "flow",
            "step",
            "reference",
            "lead",
            "recorded_at",
        ]

    def get_lead(self, event: DeliveryEvent) -> dict[str, Any]:
        return {"id": event.lead.public_id, **event.lead.data}


LEAD_SUMMARY_FIELDS = ("first_name", "last_name", "email", "phone_1")


def lead_summary(lead: Lead) -> dict[str, Any]:
    """The lead as LeadConduit's feedback response shows it."""
    summary: dict[str, Any] = {"id": lead.public_id}
    for name in LEAD_SUMMARY_FIELDS:
        if lead.data.get(name) not in (None, ""):
            summary[name] = lead.data[name]
    return summary


class FeedbackInputSerializer(serializers.Serializer):
    """The contract of one feedback. Values are checked by feedback_receive, which
    every channel shares; this class documents them and refuses unknown fields."""

    event_id = serializers.CharField(
        required=False, help_text="The delivery's event id (or send reference)."
    )
    reference = serializers.CharField(
        required=False, help_text="Your own id for the lead, stored on the delivery."
    )
    type = serializers.ChoiceField(
        choices=Kind.choices, required=False, help_text="Or send outcome_code."
    )
    outcome_code = serializers.CharField(
        required=False, help_text="A code from the vocabulary; implies the type."
    )
    reason = serializers.CharField(required=False, allow_blank=True, max_length=255)
    revenue = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=0, required=False, allow_null=True
    )
    quality_score = serializers.IntegerField(
        min_value=1, max_value=5, required=False, allow_null=True
    )
    occurred_at = serializers.DateTimeField(required=False, allow_null=True)
    custom = serializers.DictField(required=False, help_text="JSON object, ≤ 4 KB.")
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class FeedbackItemsInputSerializer(serializers.Serializer):
    items = FeedbackInputSerializer(many=True)


URL_PATTERN = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)
# Candidates only: each is kept unless ipaddress reads it as an address.
ADDRESS_PATTERN = re.compile(
    r"[0-9a-f]*:[0-9a-f:.]*:[0-9a-f:.]*|\d+(?:\.\d+){3}", re.IGNORECASE
)


def notification_reason_for_buyer(notification: Notification) -> str:
    """The notification's reason without what only the seller should see.

    A reason can quote the engine's view of the source: its URL (which may carry
    a token), host name, resolved addresses or a secret echoed back. The buyer
    gets the sentence with those taken out.
    """
    reason = notification.reason
    config = notification.config
    if config is not None:
        for secret in (config.auth_secret, config.signing_secret, config.url):
            if secret:
                reason = reason.replace(secret, "[redacted]")
    reason = URL_PATTERN.sub("[URL]", reason)
    if config is not None:
        parts = urlsplit(config.url)
        for host in (parts.netloc, parts.hostname):
            if host:
                whole = rf"(?<![\w.-]){re.escape(host)}(?![\w-])"
                reason = re.sub(whole, "the source", reason, flags=re.IGNORECASE)
    return ADDRESS_PATTERN.sub(_address_redacted, reason)


def _address_redacted(match: re.Match[str]) -> str:
    try:
        ipaddress.ip_address(match.group().strip("."))
    except ValueError:
        return match.group()
    return "[address]"


class NotificationOutputSerializer(serializers.ModelSerializer[Notification]):
    """Where a feedback was forwarded and how that went; no endpoint details."""

    id = serializers.CharField(source="public_id", read_only=True)
    source = serializers.CharField(  # type: ignore[assignment]
        source="source.slug", read_only=True
    )
    # A plain string like FeedbackOutput's `type`: a second enum of the same
    # choices would need an ENUM_NAME_OVERRIDES entry to name it once.
    kind = serializers.CharField(read_only=True)
    status = serializers.ChoiceField(
        choices=Notification.Status.choices, read_only=True
    )
    attempts = serializers.IntegerField(source="attempt_count", read_only=True)
    reason = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = [
            "id",
            "source",
            "kind",
            "status",
            "attempts",
            "reason",
            "reference",
            "next_attempt_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_reason(self, notification: Notification) -> str:
        return notification_reason_for_buyer(notification)


class FeedbackOutputSerializer(serializers.ModelSerializer[Feedback]):
    feedback_id = serializers.UUIDField(source="public_id", read_only=True)
    event_id = serializers.CharField(source="delivery.event_id", read_only=True)
    reference = serializers.CharField(source="delivery.reference", read_only=True)
    type = serializers.CharField(source="kind", read_only=True)
    outcome_code: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="code", read_only=True
    )
    lead = serializers.SerializerMethodField()
    review_state = serializers.SerializerMethodField(
        help_text="A return's review state; null for other feedback and refusals."
    )
    notifications = NotificationOutputSerializer(many=True, read_only=True)
    retracted_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="When the buyer or staff retracted it; null while it counts.",
    )

    class Meta:
        model = Feedback
        fields = [
            "feedback_id",
            "event_id",
            "reference",
            "type",
            "outcome_code",
            "reason",
            "revenue",
            "quality_score",
            "occurred_at",
            "received_at",
            "custom",
            "note",
            "channel",
            "outcome",
            "outcome_reason",
            "review_state",
            "retracted_at",
            "lead",
            "notifications",
        ]

    def get_lead(self, feedback: Feedback) -> dict[str, Any]:
        return lead_summary(feedback.lead)

    @extend_schema_field(
        serializers.ChoiceField(choices=Feedback.ReviewState.choices, allow_null=True)
    )
    def get_review_state(self, feedback: Feedback) -> str | None:
        return feedback.review_state or None


@functools.cache
def _output_fields() -> dict[str, Any]:
    return dict(FeedbackOutputSerializer().fields)


def feedback_outputs(feedbacks: Sequence[Feedback]) -> list[dict[str, Any]]:
    """`FeedbackOutputSerializer(feedbacks, many=True).data`, for the intake's
    answers: DRF's machinery around each field cost about as much as checking
    the feedback. The fields that format (revenue, times, notifications) are the
    serializer's own; a test holds the two answers equal."""
    fields = _output_fields()
    revenue = fields["revenue"]
    occurred_at = fields["occurred_at"]
    received_at = fields["received_at"]
    notifications = fields["notifications"]
    outputs = []
    for feedback in feedbacks:
        delivery = feedback.delivery
        code = feedback.outcome_code
        listed = feedback.notifications.all()
        outputs.append(
            {
                "feedback_id": str(feedback.public_id),
                "event_id": delivery.event_id,
                "reference": delivery.reference,
                "type": str(feedback.kind),
                "outcome_code": code.code if code is not None else None,
                "reason": feedback.reason,
                "revenue": None
                if feedback.revenue is None
                else revenue.to_representation(feedback.revenue),
                "quality_score": feedback.quality_score,
                "occurred_at": occurred_at.to_representation(feedback.occurred_at),
                "received_at": received_at.to_representation(feedback.received_at),
                "custom": feedback.custom,
                "note": feedback.note,
                "channel": str(feedback.channel),
                "outcome": str(feedback.outcome),
                "outcome_reason": feedback.outcome_reason,
                "review_state": feedback.review_state or None,
                "retracted_at": None
                if feedback.retracted_at is None
                else received_at.to_representation(feedback.retracted_at),
                "lead": lead_summary(feedback.lead),
                "notifications": notifications.to_representation(listed)
                if listed
                else [],
            }
        )
    return outputs
