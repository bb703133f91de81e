"""Reads of forwarding: feedback with how each one was forwarded."""

from django.db.models import Prefetch, QuerySet

from feedback.forwarding.models import Notification
from feedback.models import DeliveryEvent, Feedback, FeedbackCorrection


def feedback_history_for_delivery(*, delivery: DeliveryEvent) -> QuerySet[Feedback]:
    """A delivery's feedback, newest first, with each one's notifications."""
    notifications = Prefetch(
        "notifications",
        queryset=Notification.objects.select_related(
            "source", "config", "correction"
        ).order_by("created_at", "pk"),
    )
    return (
        Feedback.objects.filter(delivery=delivery)
        .select_related("outcome_code", "submitted_by", "api_key")
        .prefetch_related(
            notifications,
            Prefetch(
                "corrections",
                queryset=FeedbackCorrection.objects.select_related(
                    "user", "api_key"
                ).order_by("created_at", "pk"),
            ),
        )
        .order_by("-received_at", "-pk")
    )
