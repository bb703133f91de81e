"""Deciding returns (DESIGN §10): one service per transition, each in one
transaction that locks the return, checks its state, writes the step (from,
to, who, when, note) and what the step implies: a credit and the notifications
that waited for approval when approved, the month's cap count when a request
stops or starts counting.

    pending ──approve──▶ approved
       │
       └──reject──▶ rejected ──dispute (once, within dispute_days)──▶ disputed
                                                                        │
                              approved ◀──decide: approve──┬──decide: reject──▶ rejected
"""

from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from feedback.forwarding.engine import notifications_enqueue_on_commit
from feedback.forwarding.notifications import notifications_create, waits_approval
from feedback.models import ApiKey, BuyerPolicy, Feedback
from feedback.returns.admission import (
    credit_amount,
    policy_for,
    returns_counted,
)
from feedback.returns.models import Credit, ReturnTransition
from feedback.selectors import feedback_list
from feedback.suppression.services import suppression_add_for_feedback
from feedback.webhooks.services import webhook_emit
from sources.models import FeedbackConfig, Kind

State = Feedback.ReviewState
Actor = ReturnTransition.Actor
CENT = Decimal("0.01")

APPROVE, REJECT = "approve", "reject"


class TransitionRefused(Exception):
    """The return is not in a state the step starts from (HTTP 409)."""

    def __init__(self, message: str, *, feedback: Feedback) -> None:
        super().__init__(message)
        self.message = message
        self.feedback = feedback
        self.state = feedback.review_state


class DecisionInvalid(Exception):
    """A decision's value is wrong (HTTP 400), naming the field."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _locked(feedback: Feedback) -> Feedback:
    """The return read again under a row lock, with what the steps read."""
    return (
        feedback_list()
        .select_for_update(of=("self",))
        .get(pk=feedback.pk, kind=Kind.RETURN, outcome=Feedback.Outcome.SUCCESS)
    )


def _actor(user: User | None, api_key: ApiKey | None) -> str:
    if api_key is not None:
        if api_key.scope == ApiKey.Scope.INTEGRATION:
            return Actor.INTEGRATION
        return Actor.BUYER
    if user is not None and user.is_staff:
        return Actor.STAFF
    if user is not None:
        return Actor.BUYER
    return Actor.SYSTEM


def _step(
    feedback: Feedback,
    to: str,
    *,
    user: User | None,
    api_key: ApiKey | None,
    note: str,
    evidence: UploadedFile | None = None,
) -> ReturnTransition:
    step = ReturnTransition(
        feedback=feedback,
        from_state=feedback.review_state,
        to_state=to,
        actor=_actor(user, api_key),
        user=user,
        api_key=api_key,
        note=note,
    )
    if evidence is not None:
        step.evidence_name = (evidence.name or "evidence")[:200]
        step.evidence_type = (evidence.content_type or "")[:50]
        step.evidence.save(evidence.name or "evidence", evidence, save=False)
    step.save()
    feedback.review_state = to
    feedback.save(update_fields=["review_state"])
    return step


def _policy(feedback: Feedback) -> BuyerPolicy:
    policies = {
        (p.flow_id, p.kind): p
        for p in BuyerPolicy.objects.filter(
            buyer_id=feedback.buyer_id, kind=Kind.RETURN
        )
    }
    return policy_for(policies, feedback.flow_id, Kind.RETURN)


def _amount(value: Any, price: Decimal) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise DecisionInvalid(
            "Must be an amount such as 12.50.", field="credit_amount"
        ) from None
    if not amount.is_finite() or amount < 0:
        raise DecisionInvalid(
            "Must be an amount of zero or more.", field="credit_amount"
        )
    if amount != amount.quantize(CENT):
        raise DecisionInvalid("At most two decimals.", field="credit_amount")
    amount = amount.quantize(CENT)
    if amount > price:
        raise DecisionInvalid(
            f"Cannot be more than the delivery's price, {price}.", field="credit_amount"
        )
    return amount


def _approve(
    feedback: Feedback,
    *,
    user: User | None,
    api_key: ApiKey | None,
    note: str,
    amount: Any,
) -> None:
    price = feedback.delivery.price or Decimal(0)
    chosen = _amount(amount, price)
    if chosen is None:
        chosen = credit_amount(_policy(feedback), price)
    _step(feedback, State.APPROVED, user=user, api_key=api_key, note=note)
    Credit.objects.create(
        buyer_id=feedback.buyer_id,
        source_id=feedback.source_id,
        flow_id=feedback.flow_id,
        delivery_id=feedback.delivery_id,
        feedback=feedback,
        reason=feedback.reason,
        amount=chosen,
        decided_by=user,
        api_key=api_key,
    )
    suppression_add_for_feedback([feedback])
    _forward_approved(feedback)


def _forward_approved(feedback: Feedback) -> None:
    """Create the notifications of the source's return configs that waited for
    approval (DESIGN §10), queued once the decision commits."""
    configs = [
        config
        for config in FeedbackConfig.objects.filter(
            enabled=True, source_id=feedback.source_id, kind=Kind.RETURN
        ).order_by("pk")
        if waits_approval(config)
    ]
    if not configs:
        return
    created = notifications_create(
        feedbacks=[feedback],
        configs={(feedback.source_id, Kind.RETURN): configs},
        queue=True,
    )
    notifications_enqueue_on_commit(created)


def _reject(
    feedback: Feedback, *, user: User | None, api_key: ApiKey | None, note: str
) -> None:
    _step(feedback, State.REJECTED, user=user, api_key=api_key, note=note)
    returns_counted(feedback, -1)


def _decide(
    feedback: Feedback,
    *,
    states: tuple[str, ...],
    decision: str,
    wanted: str,
    user: User | None,
    api_key: ApiKey | None,
    note: str,
    credit_amount: Any = None,
) -> Feedback:
    """Approve or reject a return that is in one of `states`, under its lock."""
    with transaction.atomic():
        locked = _locked(feedback)
        if locked.review_state not in states:
            raise TransitionRefused(_not_from(locked, wanted), feedback=locked)
        disputed = locked.review_state == State.DISPUTED
        if decision == APPROVE:
            _approve(
                locked, user=user, api_key=api_key, note=note, amount=credit_amount
            )
        else:
            _reject(locked, user=user, api_key=api_key, note=note)
        webhook_emit(
            event="return.decided",
            payload=return_decided_data(
                locked, note=note, final=disputed, actor=_actor(user, api_key)
            ),
        )
    return locked


def return_decided_data(
    feedback: Feedback, *, note: str, final: bool, actor: str
) -> dict[str, Any]:
    """The `data` of a return.decided webhook: the return, the decision and
    its credit. No contact details of the lead."""
    credit = (
        Credit.objects.filter(feedback=feedback, voided_at__isnull=True)
        .values_list("amount", flat=True)
        .first()
    )
    return {
        "feedback_id": str(feedback.public_id),
        "event_id": feedback.delivery.event_id,
        "reference": feedback.delivery.reference,
        "buyer": feedback.buyer.slug,
        "source": feedback.source.slug,
        "flow": feedback.flow.slug,
        "reason": feedback.reason,
        "review_state": feedback.review_state,
        "decision_reason": note,
        "after_dispute": final,
        "decided_by": actor,
        "credit_amount": None if credit is None else f"{credit.quantize(CENT):f}",
        "decided_at": timezone.now(),
    }


def return_approve(
    *,
    feedback: Feedback,
    user: User | None = None,
    api_key: ApiKey | None = None,
    note: str = "",
    credit_amount: Any = None,
) -> Feedback:
    """Approve a pending return; it is credited and forwarded where a config
    waits for approval."""
    return _decide(
        feedback,
        states=(State.PENDING,),
        decision=APPROVE,
        wanted="approved",
        user=user,
        api_key=api_key,
        note=note,
        credit_amount=credit_amount,
    )


def return_reject(
    *,
    feedback: Feedback,
    user: User | None = None,
    api_key: ApiKey | None = None,
    note: str = "",
) -> Feedback:
    """Reject a pending return: it stops counting against the cap, and the
    buyer may dispute it within the policy's dispute_days."""
    return _decide(
        feedback,
        states=(State.PENDING,),
        decision=REJECT,
        wanted="rejected",
        user=user,
        api_key=api_key,
        note=note,
    )


def return_dispute(
    *,
    feedback: Feedback,
    comment: str,
    user: User | None = None,
    api_key: ApiKey | None = None,
    evidence: UploadedFile | None = None,
) -> Feedback:
    """The buyer contests a rejection, once, within dispute_days of it; the
    return counts against the cap again while it waits."""
    stored: list[ReturnTransition] = []
    try:
        return _dispute(feedback, comment, user, api_key, evidence, stored)
    except BaseException:
        # The evidence file was written inside the transaction that failed:
        # nothing refers to it now.
        for step in stored:
            if step.evidence.name:
                step.evidence.storage.delete(step.evidence.name)
        raise


def _dispute(
    feedback: Feedback,
    comment: str,
    user: User | None,
    api_key: ApiKey | None,
    evidence: UploadedFile | None,
    stored: list[ReturnTransition],
) -> Feedback:
    with transaction.atomic():
        locked = _locked(feedback)
        if locked.review_state != State.REJECTED:
            raise TransitionRefused(_not_from(locked, "disputed"), feedback=locked)
        if locked.transitions.filter(to_state=State.DISPUTED).exists():
            raise TransitionRefused(
                "This return was disputed once already; the second decision is final.",
                feedback=locked,
            )
        deadline = dispute_deadline(locked)
        if deadline is not None and timezone.now() > deadline:
            days = _policy(locked).dispute_days
            raise TransitionRefused(
                f"The {days} days to dispute this rejection have passed.",
                feedback=locked,
            )
        step = _step(
            locked,
            State.DISPUTED,
            user=user,
            api_key=api_key,
            note=comment,
            evidence=evidence,
        )
        if step.evidence:
            stored.append(step)
        # Back in the cap's count while it waits, even past the allowance: the
        # request was admitted under the cap when it was made.
        returns_counted(locked, +1)
    return locked


def dispute_deadline(feedback: Feedback) -> datetime | None:
    """Until when a rejected return may be disputed; None when it cannot be
    (not rejected, or disputed once already)."""
    if feedback.review_state != State.REJECTED:
        return None
    steps = list(feedback.transitions.order_by("created_at", "pk"))
    if any(step.to_state == State.DISPUTED for step in steps):
        return None
    rejected = [step for step in steps if step.to_state == State.REJECTED]
    if not rejected:
        return None
    return rejected[-1].created_at + timedelta(days=_policy(feedback).dispute_days)


def return_decide_dispute(
    *,
    feedback: Feedback,
    decision: str,
    user: User | None = None,
    api_key: ApiKey | None = None,
    note: str = "",
    credit_amount: Any = None,
) -> Feedback:
    """The second, final decision on a disputed return."""
    return _decide(
        feedback,
        states=(State.DISPUTED,),
        decision=decision,
        wanted="decided as a dispute",
        user=user,
        api_key=api_key,
        note=note,
        credit_amount=credit_amount,
    )


def return_decide(
    *,
    feedback: Feedback,
    decision: str,
    user: User | None = None,
    api_key: ApiKey | None = None,
    note: str = "",
    credit_amount: Any = None,
) -> Feedback:
    """Approve or reject a return waiting for a decision, pending or disputed
    (for a disputed one this is the second, final decision)."""
    if decision not in (APPROVE, REJECT):
        raise DecisionInvalid('Must be "approve" or "reject".', field="decision")
    if credit_amount not in (None, "") and decision == REJECT:
        raise DecisionInvalid(
            "Only an approval grants a credit.", field="credit_amount"
        )
    return _decide(
        feedback,
        states=(State.PENDING, State.DISPUTED),
        decision=decision,
        wanted="approved" if decision == APPROVE else "rejected",
        user=user,
        api_key=api_key,
        note=note,
        credit_amount=credit_amount,
    )


def _not_from(feedback: Feedback, wanted: str) -> str:
    state = feedback.review_state or "not under review"
    return f"This return is {state}; it cannot be {wanted}."


def credits_void(*, feedback: Feedback, reason: str) -> int:
    """Void a return's live credit (when its approval is undone); how many."""
    return Credit.objects.filter(feedback=feedback, voided_at__isnull=True).update(
        voided_at=timezone.now(), void_reason=reason[:255]
    )


def return_refused_after_acceptance(*, feedback: Feedback, reason: str) -> None:
    """A sync source refused a return the intake had accepted: it leaves the
    review (no state, no credit, no longer counted), with a step saying why.
    Called by the intake after it marked the feedback refused."""
    if feedback.kind != Kind.RETURN or not feedback.review_state:
        return
    with transaction.atomic():
        counted = feedback.review_state
        ReturnTransition.objects.create(
            feedback=feedback,
            from_state=counted,
            to_state="",
            actor=Actor.SYSTEM,
            note=reason[:1000],
        )
        credits_void(feedback=feedback, reason=reason)
        returns_counted(feedback, -1)
        feedback.review_state = ""
        feedback.save(update_fields=["review_state"])
