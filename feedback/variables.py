"""The variables a feedback exposes to templates and rules (DESIGN §5.2)."""

from typing import Any

from feedback.models import Feedback, FeedbackCorrection
from feedback.selectors import feedback_list


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


def correction_variables(
    *,
    feedback: Feedback,
    correction: FeedbackCorrection,
    notification_id: str,
    original_id: str,
) -> dict[str, Any]:
    """The variables of a retraction or amendment notice (DESIGN §12): the
    feedback's, with its revenue as amended, and `notification.*` and
    `correction.*` (sources.variables.CORRECTION_VARIABLE_NAMES)."""
    variables = feedback_variables(feedback=feedback)
    amend = correction.action == FeedbackCorrection.Action.AMEND
    variables["notification"] = {"id": notification_id, "original_id": original_id}
    variables["correction"] = {
        "id": str(correction.public_id),
        "type": "amendment" if amend else "retraction",
        "reason": correction.reason,
        "previous_revenue": _amount(correction.previous_revenue),
        "revenue": _amount(correction.revenue),
        "timestamp": _iso(correction.created_at),
    }
    return variables


def _amount(value: Any) -> str:
    return "" if value is None else str(value)


def feedback_variables_for_event(*, event_id: str, kind: str) -> dict[str, Any] | None:
    """The variables of the latest feedback of `kind` (else of any kind) on one
    delivery, for previews; None when the delivery has no feedback."""
    latest = (
        feedback_list().filter(delivery__event_id=event_id).order_by("-received_at")
    )
    feedback = latest.filter(kind=kind).first() or latest.first()
    return None if feedback is None else feedback_variables(feedback=feedback)
