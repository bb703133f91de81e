"""Correcting feedback (DESIGN §12): retraction, and amendment of a
conversion's revenue. One service each, for the API, the portal and the admin
alike; each runs in one transaction that locks the feedback, checks who may
correct it and until when, writes the `FeedbackCorrection` row (who, when,
why, what), and what the correction implies:

- a retracted return leaves the review (a step saying so), stops counting
  against the month's cap, frees the delivery's return slot, voids its credit
  and takes out the suppression entries it added;
- the feedback's own notifications not sent yet are skipped;
- each source whose config has a request for the correction (`on_retract`,
  `on_amend`) gets a notice through the engine, queued once it commits;
- a `feedback.retracted` or `feedback.amended` webhook event.

Reports skip retracted feedback and read the amended revenue; the rollup
refresh recounts the days of feedback corrected since it last ran.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from feedback.forwarding.engine import notifications_enqueue_on_commit
from feedback.forwarding.notifications import (
    correction_notices_create,
    notifications_cancel_unsent,
)
from feedback.intake.parse import revenue_parse
from feedback.models import ApiKey, BuyerPolicy, Feedback, FeedbackCorrection
from feedback.months import COUNTED_STATES
from feedback.returns.admission import policy_for, returns_counted
from feedback.returns.models import ReturnTransition
from feedback.returns.services import credits_void
from feedback.safetext import storable
from feedback.selectors import feedback_list
from feedback.suppression.services import suppression_remove_for_feedback
from feedback.webhooks.services import webhook_emit
from sources.models import Kind

Action = FeedbackCorrection.Action
REASON_MAX = 1000


class CorrectionRefused(Exception):
    """The feedback cannot be corrected now (HTTP 409): retracted already, not
    accepted, not a conversion, or the buyer's window has passed."""

    def __init__(self, message: str, *, feedback: Feedback) -> None:
        super().__init__(message)
        self.message = message
        self.feedback = feedback


class CorrectionInvalid(Exception):
    """A correction's value is wrong (HTTP 400), naming the field."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def correction_hours(feedback: Feedback) -> int:
    """The buyer's correction window, in hours, for this feedback's kind and
    flow (the policy's `retract_hours`)."""
    return correction_hours_of([feedback])[feedback.pk]


def correction_hours_of(feedbacks: Sequence[Feedback]) -> dict[int, int]:
    """`correction_hours` of each feedback (one buyer's), by pk, in one query."""
    if not feedbacks:
        return {}
    policies = {
        (p.flow_id, p.kind): p
        for p in BuyerPolicy.objects.filter(
            buyer_id=feedbacks[0].buyer_id, kind__in={f.kind for f in feedbacks}
        )
    }
    return {
        f.pk: policy_for(policies, f.flow_id, f.kind).retract_hours for f in feedbacks
    }


def correction_deadline(feedback: Feedback, *, hours: int | None = None) -> datetime:
    """Until when the buyer may retract or amend the feedback."""
    if hours is None:
        hours = correction_hours(feedback)
    return feedback.received_at + timedelta(hours=hours)


def correction_refusal(
    feedback: Feedback,
    *,
    action: str,
    staff: bool,
    now: datetime | None = None,
    hours: int | None = None,
) -> str:
    """Why `action` cannot be taken on the feedback by the buyer (or, with
    `staff`, by staff), as a sentence; "" when it can. `hours`: the window,
    when the caller read it already."""
    if feedback.retracted_at is not None:
        return "This feedback was retracted already."
    if feedback.outcome != Feedback.Outcome.SUCCESS:
        return "Only accepted feedback can be corrected; this one was refused."
    if action == Action.AMEND and feedback.kind != Kind.CONVERSION:
        return "Only a conversion's revenue can be amended."
    if not staff:
        if hours is None:
            hours = correction_hours(feedback)
        if (now or timezone.now()) > correction_deadline(feedback, hours=hours):
            return (
                f"The {hours} hours to correct this feedback have passed; "
                "ask the seller to correct it."
            )
    return ""


def _reason(value: Any, *, required: bool) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise CorrectionInvalid("Say why, in a few words.", field="reason")
        return ""
    if not isinstance(value, str):
        raise CorrectionInvalid("Must be text.", field="reason")
    text = value.strip()
    if len(text) > REASON_MAX:
        raise CorrectionInvalid(f"At most {REASON_MAX} characters.", field="reason")
    if storable(text) != text:
        raise CorrectionInvalid(
            "Must not contain NUL characters or lone surrogates.", field="reason"
        )
    return text


def _revenue(value: Any) -> Decimal:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise CorrectionInvalid("Enter the new revenue, e.g. 225.00.", field="revenue")
    amount, problem = revenue_parse(value)
    if amount is None:
        raise CorrectionInvalid(problem, field="revenue")
    return amount


def _locked(feedback: Feedback) -> Feedback:
    return feedback_list().select_for_update(of=("self",)).get(pk=feedback.pk)


def _channel(user: User | None, api_key: ApiKey | None, channel: str | None) -> str:
    if channel:
        return channel
    if api_key is not None:
        return Feedback.Channel.API
    return Feedback.Channel.ADMIN if user is not None and user.is_staff else "portal"


def feedback_retract(
    *,
    feedback: Feedback,
    reason: Any,
    staff: bool = False,
    user: User | None = None,
    api_key: ApiKey | None = None,
    channel: str | None = None,
) -> FeedbackCorrection:
    """Retract a feedback: the buyer within its policy's `retract_hours` of
    sending it, staff (`staff`) at any time. The row stays, with
    `retracted_at`; see the module for what follows."""
    text = _reason(reason, required=True)
    with transaction.atomic():
        locked = _locked(feedback)
        refusal = correction_refusal(locked, action=Action.RETRACT, staff=staff)
        if refusal:
            raise CorrectionRefused(refusal, feedback=locked)
        now = timezone.now()
        correction = FeedbackCorrection.objects.create(
            feedback=locked,
            action=Action.RETRACT,
            reason=text,
            channel=_channel(user, api_key, channel),
            user=user,
            api_key=api_key,
            created_at=now,
        )
        if locked.kind == Kind.RETURN and locked.review_state:
            _return_withdrawn(locked, text, user=user, api_key=api_key, staff=staff)
        locked.retracted_at = now
        locked.save(update_fields=["retracted_at", "review_state"])
        notifications_cancel_unsent(
            feedback=locked, reason="The feedback was retracted before it was sent."
        )
        notices = correction_notices_create(feedback=locked, correction=correction)
        notifications_enqueue_on_commit(notices)
        webhook_emit(
            event="feedback.retracted", payload=correction_data(locked, correction)
        )
    return correction


def _return_withdrawn(
    feedback: Feedback,
    reason: str,
    *,
    user: User | None,
    api_key: ApiKey | None,
    staff: bool,
) -> None:
    """A retracted return leaves the review: a step says so, it stops counting
    against the cap, its credit is voided and its suppression entries go."""
    state = feedback.review_state
    if state == Feedback.ReviewState.APPROVED:
        suppression_remove_for_feedback(feedback)
    ReturnTransition.objects.create(
        feedback=feedback,
        from_state=state,
        to_state="",
        actor=_actor(user, api_key, staff=staff),
        user=user,
        api_key=api_key,
        note=f"Retracted: {reason}"[:REASON_MAX],
    )
    credits_void(feedback=feedback, reason=f"Return retracted: {reason}")
    if state in COUNTED_STATES:
        returns_counted(feedback, -1)
    feedback.review_state = ""


def _actor(user: User | None, api_key: ApiKey | None, *, staff: bool) -> str:
    if api_key is not None:
        return ReturnTransition.Actor.BUYER
    return ReturnTransition.Actor.STAFF if staff else ReturnTransition.Actor.BUYER


def feedback_amend(
    *,
    feedback: Feedback,
    revenue: Any,
    reason: Any = "",
    staff: bool = False,
    user: User | None = None,
    api_key: ApiKey | None = None,
    channel: str | None = None,
) -> FeedbackCorrection:
    """Amend a conversion's revenue, under the same rules as a retraction. The
    feedback holds the latest value (what reports read); each amendment is a
    history row with the value before and after."""
    amount = _revenue(revenue)
    text = _reason(reason, required=False)
    with transaction.atomic():
        locked = _locked(feedback)
        refusal = correction_refusal(locked, action=Action.AMEND, staff=staff)
        if refusal:
            raise CorrectionRefused(refusal, feedback=locked)
        correction = FeedbackCorrection.objects.create(
            feedback=locked,
            action=Action.AMEND,
            reason=text,
            previous_revenue=locked.revenue,
            revenue=amount,
            channel=_channel(user, api_key, channel),
            user=user,
            api_key=api_key,
        )
        locked.revenue = amount
        locked.save(update_fields=["revenue"])
        notices = correction_notices_create(feedback=locked, correction=correction)
        notifications_enqueue_on_commit(notices)
        webhook_emit(
            event="feedback.amended", payload=correction_data(locked, correction)
        )
    return correction


def correction_data(
    feedback: Feedback, correction: FeedbackCorrection
) -> dict[str, Any]:
    """A correction as the API answers it and webhooks carry it: no contact
    details of the lead."""
    return {
        "correction_id": str(correction.public_id),
        "feedback_id": str(feedback.public_id),
        "event_id": feedback.delivery.event_id,
        "buyer": feedback.buyer.slug,
        "source": feedback.source.slug,
        "kind": feedback.kind,
        "action": correction.action,
        "reason": correction.reason,
        "previous_revenue": _amount(correction.previous_revenue),
        "revenue": _amount(feedback.revenue),
        "retracted_at": feedback.retracted_at,
        "corrected_at": correction.created_at,
    }


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:f}"
