"""Reads for the feedback app. Anything a buyer can reach is scoped here."""

from typing import Any

from django.db.models import QuerySet

from feedback.models import ApiKey, Buyer, DeliveryEvent, Feedback
from feedback.services import hash_api_key


def api_key_get_active(*, raw_key: str) -> ApiKey | None:
    """The active key matching `raw_key`, with its buyer, or None."""
    if not raw_key:
        return None
    return (
        ApiKey.objects.select_related("buyer")
        .filter(key_hash=hash_api_key(raw_key), revoked_at__isnull=True)
        .exclude(buyer__is_active=False)
        .first()
    )


def delivery_event_list() -> QuerySet[DeliveryEvent]:
    return DeliveryEvent.objects.select_related("lead", "buyer", "source", "flow")


def get_delivery_for_buyer(*, buyer: Buyer, event_id: str) -> DeliveryEvent:
    """The buyer's own delivery; another buyer's raises DoesNotExist like an unknown."""
    return delivery_event_list().get(buyer=buyer, event_id=event_id)


def get_delivery_for_key(*, api_key: ApiKey, event_id: str) -> DeliveryEvent:
    """A delivery as `api_key` may see it: all for integrations, own for buyers."""
    if api_key.scope == ApiKey.Scope.INTEGRATION:
        return delivery_event_list().get(event_id=event_id)
    # A buyer key always has a buyer (constraint api_key_scope_matches_buyer); the
    # filter on buyer_id still holds if that were ever broken: NULL matches nothing.
    return delivery_event_list().get(buyer__api_keys=api_key, event_id=event_id)


def feedback_list() -> QuerySet[Feedback]:
    return Feedback.objects.select_related(
        "delivery", "lead", "outcome_code", "buyer", "source", "flow"
    )


def feedback_list_for_key(*, api_key: ApiKey) -> QuerySet[Feedback]:
    """Feedback the key may read: its buyer's, or all for integration keys."""
    queryset = feedback_list()
    if api_key.scope == ApiKey.Scope.INTEGRATION:
        return queryset
    return queryset.filter(buyer_id=api_key.buyer_id or 0)


def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z") if value is not None else ""


def feedback_variables(*, feedback: Feedback) -> dict[str, Any]:
    """The variables of DESIGN §5.2 for one feedback, as templates and rules see them.

    Expects `delivery`, `lead`, `buyer`, `source`, `flow` and `outcome_code`
    loaded (feedback_list() does that). Numbers are strings, as they would be
    in a form post; times are ISO 8601 in UTC.
    """
    delivery = feedback.delivery
    lead = feedback.lead
    event = {
        "id": delivery.event_id,
        "reference": delivery.reference,
        "price": "" if delivery.price is None else str(delivery.price),
        "delivered_at": _iso(delivery.delivered_at),
    }
    return {
        "lead": {**(lead.data or {}), "id": lead.public_id},
        "event": event,
        "event_id": delivery.event_id,
        "buyer": {"name": feedback.buyer.name, "slug": feedback.buyer.slug},
        "source": {"name": feedback.source.name, "slug": feedback.source.slug},
        "flow": {"name": feedback.flow.name, "slug": feedback.flow.slug},
        "feedback": {
            "id": str(feedback.public_id),
            "type": feedback.kind,
            "kind": feedback.kind,
            "reason": feedback.reason,
            "outcome_code": feedback.outcome_code.code if feedback.outcome_code else "",
            "revenue": "" if feedback.revenue is None else str(feedback.revenue),
            "quality_score": (
                "" if feedback.quality_score is None else str(feedback.quality_score)
            ),
            "timestamp": _iso(feedback.occurred_at),
            "received_at": _iso(feedback.received_at),
            "note": feedback.note,
            "custom": dict(feedback.custom or {}),
        },
    }
