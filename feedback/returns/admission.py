"""Returns at intake (DESIGN §10): the review state a new return request
starts in, the cap it must fit under, and the rows its acceptance writes (the
first review step, its credit when approved, the month's counter).

The intake calls `returns_admit` inside its transaction before inserting the
feedback, then `returns_record` after. `returns_admit` locks the counters of
the months it reads for capped buyers, so concurrent returns against one
allowance are admitted one after another and never past it.
"""

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import F

from feedback import months
from feedback.models import BuyerMonth, BuyerPolicy, Feedback
from feedback.returns.checks import check_variables
from feedback.returns.models import Credit, ReturnTransition
from feedback.variables import feedback_variables
from sources import rules
from sources.models import Kind

State = Feedback.ReviewState
Policies = dict[tuple[int | None, str], BuyerPolicy]

CAP_REACHED = "Return cap reached"
CENT = Decimal("0.01")


def policy_for(policies: Policies, flow_id: int, kind: str) -> BuyerPolicy:
    """The flow's policy for `kind`, else the buyer-wide one, else the defaults."""
    return (
        policies.get((flow_id, kind))
        or policies.get((None, kind))
        or BuyerPolicy(kind=kind, enabled=True)
    )


@dataclass
class Admission:
    """What admitting one return decided."""

    review_state: str = ""
    refused: str = ""  # why the cap refused it
    returns_remaining: int | None = None  # for a capped policy, after this one


def initial_state(policy: BuyerPolicy, feedback: Any) -> str:
    """The review state a new, accepted return starts in."""
    if policy.review == BuyerPolicy.Review.MANUAL:
        return State.PENDING
    if policy.review == BuyerPolicy.Review.RULES:
        if not policy.auto_approve:
            return State.PENDING
        variables = feedback_variables(feedback=feedback)
        if "check." in json.dumps(policy.auto_approve):
            variables["check"] = check_variables(feedback)
        failed = rules.evaluate(policy.auto_approve, variables)
        return State.PENDING if failed else State.APPROVED
    return State.APPROVED


def credit_amount(policy: BuyerPolicy, price: Decimal | None) -> Decimal:
    """The credit an approval grants by default: the price times credit_percent."""
    price = price or Decimal(0)
    amount = (price * Decimal(policy.credit_percent) / 100).quantize(
        CENT, rounding=ROUND_HALF_UP
    )
    return min(amount, price)


def allowance(policy: BuyerPolicy, deliveries: int) -> int:
    """max(min, floor(percent / 100 * deliveries)) (DESIGN §10)."""
    percent = Decimal(policy.cap_percent or 0)
    return max(policy.cap_min, math.floor(percent * deliveries / 100))


def cap_scope(policy: BuyerPolicy, own_flows: set[int], flow_ids: set[int]) -> set[int]:
    """The flows a return policy's cap counts: its own flow, or for the
    buyer-wide policy every flow without a return policy of its own
    (`own_flows`)."""
    if policy.flow_id is not None:
        return {policy.flow_id}
    return flow_ids - own_flows


def flows_with_own_return_policy(buyer_id: int) -> set[int]:
    return set(
        BuyerPolicy.objects.filter(
            buyer_id=buyer_id, kind=Kind.RETURN, flow__isnull=False
        ).values_list("flow_id", flat=True)
    )


def returns_admit(
    feedbacks: Sequence[Any], *, policies: Policies, buyer_id: int
) -> list[Admission | None]:
    """For each feedback (None for what is not an accepted return): its review
    state, or the cap's refusal. Sets `review_state` on the accepted ones.
    Runs inside the caller's transaction."""
    admissions: list[Admission | None] = []
    capped: list[tuple[int, BuyerPolicy, date]] = []
    for index, feedback in enumerate(feedbacks):
        if feedback.kind != Kind.RETURN or feedback.outcome != Feedback.Outcome.SUCCESS:
            admissions.append(None)
            continue
        policy = policy_for(policies, feedback.flow_id, Kind.RETURN)
        admission = Admission(review_state=initial_state(policy, feedback))
        admissions.append(admission)
        if policy.capped:
            capped.append(
                (index, policy, months.month_of(feedback.delivery.delivered_at))
            )
    if capped:
        _apply_caps(feedbacks, admissions, capped, policies=policies, buyer_id=buyer_id)
    for feedback, admitted in zip(feedbacks, admissions, strict=True):
        if admitted is not None and not admitted.refused:
            feedback.review_state = admitted.review_state
    return admissions


def _apply_caps(
    feedbacks: Sequence[Any],
    admissions: list[Admission | None],
    capped: list[tuple[int, BuyerPolicy, date]],
    *,
    policies: Policies,
    buyer_id: int,
) -> None:
    counters = list(
        BuyerMonth.objects.select_for_update()
        .filter(buyer_id=buyer_id, month__in={month for _, _, month in capped})
        .order_by("month", "flow_id")
    )
    # The intake may have read only the policies that apply to its items.
    own_flows: set[int] = set()
    if any(policy.flow_id is None for _, policy, _ in capped):
        own_flows = flows_with_own_return_policy(buyer_id)
    taken: dict[tuple[int | None, date], int] = {}
    for index, policy, month in capped:
        rows = [c for c in counters if c.month == month]
        scope = cap_scope(policy, own_flows, {c.flow_id for c in rows})
        deliveries = sum(c.deliveries for c in rows if c.flow_id in scope)
        used = sum(c.returns for c in rows if c.flow_id in scope)
        used += taken.get((policy.flow_id, month), 0)
        allowed = allowance(policy, deliveries)
        admission = admissions[index]
        if admission is None:  # capped lists admitted returns only
            continue
        if used >= allowed:
            admission.refused = (
                f"{CAP_REACHED}: {used} of {allowed} returns allowed for "
                f"{month:%B %Y} deliveries are used ({_percent(policy)} of "
                f"{deliveries} deliveries, at least {policy.cap_min})."
            )
            admission.returns_remaining = max(allowed - used, 0)
            continue
        taken[(policy.flow_id, month)] = taken.get((policy.flow_id, month), 0) + 1
        admission.returns_remaining = allowed - used - 1


def _percent(policy: BuyerPolicy) -> str:
    value = Decimal(policy.cap_percent or 0).normalize()
    return f"{value:f}%"


def returns_record(
    feedbacks: Sequence[Any],
    admissions: Sequence[Admission | None],
    *,
    policies: Policies,
) -> None:
    """After the feedback is inserted, in the same transaction: the first
    review step of each accepted return, a credit for each approved one, and
    the months' counters."""
    steps: list[ReturnTransition] = []
    credits: list[Credit] = []
    counts: dict[months.MonthKey, tuple[int, int]] = {}
    for feedback, admission in zip(feedbacks, admissions, strict=True):
        if (
            admission is None
            or admission.refused
            or feedback.outcome != Feedback.Outcome.SUCCESS
            or feedback.pk is None
        ):
            continue
        actor, user = _requested_by(feedback)
        steps.append(
            ReturnTransition(
                feedback_id=feedback.pk,
                from_state="",
                to_state=feedback.review_state,
                actor=actor,
                user_id=user,
                api_key_id=feedback.api_key_id,
                note="Requested"
                if feedback.review_state == State.PENDING
                else "Approved at intake",
                created_at=feedback.received_at,
            )
        )
        if feedback.review_state == State.APPROVED:
            policy = policy_for(policies, feedback.flow_id, Kind.RETURN)
            credits.append(
                Credit(
                    buyer_id=feedback.buyer_id,
                    source_id=feedback.source_id,
                    flow_id=feedback.flow_id,
                    delivery_id=feedback.delivery_id,
                    feedback_id=feedback.pk,
                    reason=feedback.reason,
                    amount=credit_amount(policy, feedback.delivery.price),
                    # Decided by the policy: no person and no deciding key.
                    created_at=feedback.received_at,
                )
            )
        key = (
            feedback.buyer_id,
            feedback.flow_id,
            months.month_of(feedback.delivery.delivered_at),
        )
        counts[key] = (0, counts.get(key, (0, 0))[1] + 1)
    ReturnTransition.objects.bulk_create(steps)
    Credit.objects.bulk_create(credits)
    months.months_add(counts)


def _requested_by(feedback: Any) -> tuple[str, int | None]:
    if feedback.channel == Feedback.Channel.ADMIN:
        return ReturnTransition.Actor.STAFF, feedback.submitted_by_id
    return ReturnTransition.Actor.BUYER, feedback.submitted_by_id


def returns_counted(feedback: Feedback, delta: int) -> None:
    """Move one return in or out of its month's cap count."""
    key = (
        feedback.buyer_id,
        feedback.flow_id,
        months.month_of(feedback.delivery.delivered_at),
    )
    updated = BuyerMonth.objects.filter(
        buyer_id=key[0], flow_id=key[1], month=key[2]
    ).update(returns=F("returns") + delta)
    if not updated:
        months.months_add({key: (0, delta)})
