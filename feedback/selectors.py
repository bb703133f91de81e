"""Reads for the feedback app. Anything a buyer can reach is scoped here."""

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
