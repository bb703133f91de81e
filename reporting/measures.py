"""What the live reports and the rollups both count, defined once."""

from django.db.models import Aggregate, Count, Q, Sum

from feedback.models import Feedback, OutcomeCode
from sources.models import Kind

ACCEPTED = Q(outcome=Feedback.Outcome.SUCCESS)
REFUSED = Q(outcome=Feedback.Outcome.FAILURE)

# Outcome codes that say whether the buyer reached the person (docs/reports.md).
CONTACT_CODES = ("contacted", "converted", "not_interested")
NO_CONTACT_CODES = ("no_contact", "bad_info")

# Dimension code: the field on Feedback (and on DeliveryEvent where it exists).
DIMENSION_FIELDS = {
    "reason": "reason",
    "source": "source_id",
    "flow": "flow_id",
    "buyer": "buyer_id",
    "kind": "kind",
}
# Dimensions a delivery has itself; reason and kind belong to feedback.
ON_DELIVERY = frozenset({"source", "flow", "buyer"})


def outcome_vocabulary() -> dict[str, int]:
    return dict(OutcomeCode.objects.values_list("code", "pk"))


def feedback_measures(vocabulary: dict[str, int]) -> dict[str, Aggregate]:
    """The feedback-side aggregates of the breakdowns, the scorecard and rollups."""
    contact = [vocabulary[c] for c in CONTACT_CODES if c in vocabulary]
    no_contact = [vocabulary[c] for c in NO_CONTACT_CODES if c in vocabulary]
    return {
        "received": Count("pk"),
        "accepted": Count("pk", filter=ACCEPTED),
        "refused": Count("pk", filter=REFUSED),
        "conversions": Count("pk", filter=ACCEPTED & Q(kind=Kind.CONVERSION)),
        "returns": Count("pk", filter=ACCEPTED & Q(kind=Kind.RETURN)),
        "refused_returns": Count("pk", filter=REFUSED & Q(kind=Kind.RETURN)),
        "status_updates": Count("pk", filter=ACCEPTED & Q(kind=Kind.STATUS)),
        "revenue": Sum("revenue", filter=ACCEPTED),
        # What the returned leads cost: one accepted return per delivery at most.
        "returned_cost": Sum("delivery__price", filter=ACCEPTED & Q(kind=Kind.RETURN)),
        "quality_sum": Sum("quality_score", filter=ACCEPTED),
        "quality_count": Count("quality_score", filter=ACCEPTED),
        "contacted": Count("pk", filter=ACCEPTED & Q(outcome_code_id__in=contact)),
        "not_contacted": Count(
            "pk", filter=ACCEPTED & Q(outcome_code_id__in=no_contact)
        ),
    }
