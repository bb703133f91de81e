"""Intake, step three: judging each feedback against its delivery (DESIGN §4.4).

The buyer's policy for the kind, the return window, the source's kinds and
reasons, the buyer's rule set, and one successful return per delivery, in that
order. Pure: what it needs from the database comes in `Known`.
"""

from datetime import datetime, timedelta

from feedback.intake.parse import (
    FieldError,
    Parsed,
    ReceiveResult,
    ReceiveStatus,
    join_errors,
)
from feedback.models import BuyerPolicy, DeliveryEvent, Feedback
from feedback.returns.admission import policy_for
from feedback.variables import feedback_variables
from sources import rules
from sources.models import Kind

FORBIDDEN_REASON = "Your account may not send this kind of feedback."


ALREADY_RETURNED_REASON = "This lead was already returned."


def judge(
    item: Parsed,
    feedback: Feedback,
    *,
    policies: dict[tuple[int | None, str], BuyerPolicy],
    returned: set[int],
    now: datetime,
) -> ReceiveResult:
    """Decide the outcome of one feedback, in the order of DESIGN §4.4."""
    delivery = feedback.delivery
    policy = policy_for(policies, delivery.flow_id, item.kind)
    status = ReceiveStatus.REFUSED
    if not policy.enabled:
        status, errors = ReceiveStatus.FORBIDDEN, [FieldError("type", FORBIDDEN_REASON)]
    else:
        errors = [
            *item.errors,
            *_check_against_delivery(item, delivery, policy=policy, now=now),
        ]
        allowed = delivery.source.allowed_reasons(item.kind)
        if allowed and item.reason and not any(e.field == "reason" for e in errors):
            canonical = {reason.lower(): reason for reason in allowed}
            if item.reason.lower() in canonical:
                feedback.reason = canonical[item.reason.lower()]
            else:
                errors.append(
                    FieldError(
                        "reason",
                        f"“{item.reason}” is not a {item.kind} reason "
                        f"{delivery.source.name} accepts. It accepts: "
                        f"{', '.join(allowed)}.",
                    )
                )
        if not errors and policy.rules:
            # The buyer's own rule set ("advanced mode"), read against the
            # feedback as it would be stored.
            failed = rules.evaluate(policy.rules, feedback_variables(feedback=feedback))
            if failed:
                errors.append(FieldError("rules", f"Your rules refused it: {failed}"))
        if not errors and item.kind == Kind.RETURN and delivery.pk in returned:
            status = ReceiveStatus.ALREADY_RETURNED
            errors = [FieldError("event_id", ALREADY_RETURNED_REASON)]
    if errors:
        feedback.outcome = Feedback.Outcome.FAILURE
        feedback.outcome_reason = join_errors(errors)[:500]
        return ReceiveResult(status, feedback=feedback, errors=errors)
    if item.kind == Kind.RETURN:
        returned.add(delivery.pk)
    return ReceiveResult(ReceiveStatus.ACCEPTED, feedback=feedback)


def _check_against_delivery(
    item: Parsed, delivery: DeliveryEvent, *, policy: BuyerPolicy, now: datetime
) -> list[FieldError]:
    errors: list[FieldError] = []
    source = delivery.source
    if not source.accepts(item.kind):
        errors.append(
            FieldError("type", f"{source.name} does not accept {item.kind} feedback.")
        )
    if item.kind == Kind.RETURN:
        age = now - delivery.delivered_at
        if age > timedelta(days=policy.max_age_days):
            errors.append(
                FieldError(
                    "type",
                    f"The return window of {policy.max_age_days} days after delivery "
                    "has passed.",
                )
            )
    if item.occurred_at is not None and item.occurred_at < delivery.delivered_at:
        errors.append(FieldError("occurred_at", "Cannot be before the delivery."))
    return errors
