"""Reads for the feedback app. Anything a buyer can reach is scoped here."""

import uuid
from collections import Counter

from django.contrib.auth.models import User
from django.db.models import Exists, F, OuterRef, QuerySet

from feedback.models import ApiKey, Buyer, DeliveryEvent, Feedback, Flow
from feedback.rows import Columns, default_connection
from feedback.services import hash_api_key
from sources.models import Kind, Source

_KEY = Columns(ApiKey, "k")
_KEY_BUYER = Columns(Buyer, "b")


def api_key_get_active(*, raw_key: str) -> ApiKey | None:
    """The active key matching `raw_key`, with its buyer, or None.

    Every API request runs this, so it is written out (feedback/rows.py):
    compiling the queryset cost twice what PostgreSQL takes to answer.
    """
    if not raw_key:
        return None
    sql = (
        f"SELECT {_KEY.sql}, {_KEY_BUYER.sql} FROM {_KEY.table} "  # noqa: S608 - names from _meta
        f"LEFT JOIN {_KEY_BUYER.table} ON b.id = k.buyer_id "
        "WHERE k.key_hash = %s AND k.revoked_at IS NULL "
        "AND (b.id IS NULL OR b.is_active)"  # integration keys have no buyer
    )
    db = default_connection()
    with db.cursor() as cursor:
        cursor.execute(sql, [hash_api_key(raw_key)])
        row = cursor.fetchone()
    if row is None:
        return None
    api_key = _KEY.load(row, db=db)
    if api_key is not None and api_key.buyer_id is not None:
        api_key.buyer = _KEY_BUYER.load(row, len(_KEY), db=db)
    return api_key


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


# Portal ---------------------------------------------------------------------


def buyer_list_for_user(*, user: User) -> QuerySet[Buyer]:
    """The active buyers a portal user works for, by name."""
    return Buyer.objects.filter(memberships__user=user, is_active=True).order_by(
        "name", "pk"
    )


def _feedback_of_delivery() -> QuerySet[Feedback]:
    return Feedback.objects.filter(delivery=OuterRef("pk"))


def delivery_feedback_status_annotations() -> dict[str, Exists]:
    """EXISTS subqueries that tell a delivery's feedback status in the same query.

    The portal's list shows and filters on them, so a page costs one query
    whatever its size, and no count of the table is needed.
    """
    success = Feedback.Outcome.SUCCESS
    return {
        "has_feedback": Exists(_feedback_of_delivery()),
        # Retracted feedback no longer converts or returns the lead (§12).
        "is_converted": Exists(
            _feedback_of_delivery().filter(
                kind=Kind.CONVERSION, outcome=success, retracted_at__isnull=True
            )
        ),
        "is_returned": Exists(
            _feedback_of_delivery().filter(
                kind=Kind.RETURN, outcome=success, retracted_at__isnull=True
            )
        ),
        "is_refused": Exists(_feedback_of_delivery().exclude(outcome=success)),
    }


def delivery_list_for_buyer(*, buyer: Buyer) -> QuerySet[DeliveryEvent]:
    """The buyer's deliveries, newest first, with their feedback status."""
    return (
        DeliveryEvent.objects.filter(buyer=buyer)
        .select_related("lead", "source", "flow")
        .annotate(**delivery_feedback_status_annotations())
        .order_by("-delivered_at", "-event_id")
    )


def source_list_for_buyer(*, buyer: Buyer) -> QuerySet[Source]:
    """Sources the buyer has received leads from, by name."""
    delivered = DeliveryEvent.objects.filter(buyer=buyer, source=OuterRef("pk"))
    return Source.objects.filter(Exists(delivered)).order_by("name")


def flow_list_for_buyer(*, buyer: Buyer) -> QuerySet[Flow]:
    """Flows the buyer has received leads through (for the portal's filter)."""
    delivered = DeliveryEvent.objects.filter(buyer=buyer, flow=OuterRef("pk"))
    return Flow.objects.filter(Exists(delivered)).order_by("name")


# How many of the buyer's latest returns are read to suggest usual reasons.
USUAL_REASONS_WINDOW = 2000


def feedback_usual_reasons(*, buyer: Buyer, kind: str, limit: int = 12) -> list[str]:
    """The reasons the buyer gave most often lately for `kind`, most used first."""
    recent = (
        Feedback.objects.filter(buyer=buyer, kind=kind)
        .exclude(reason="")
        .order_by("-received_at")
        .values_list("reason", flat=True)[:USUAL_REASONS_WINDOW]
    )
    return [reason for reason, _ in Counter(recent).most_common(limit)]


def api_key_list_for_buyer(*, buyer: Buyer) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(buyer=buyer, scope=ApiKey.Scope.BUYER).order_by(
        F("revoked_at").desc(nulls_first=True), "-created_at"
    )


def get_api_key_for_buyer(*, buyer: Buyer, public_id: uuid.UUID) -> ApiKey:
    """The buyer's own key; another buyer's raises DoesNotExist like an unknown."""
    return api_key_list_for_buyer(buyer=buyer).get(public_id=public_id)
