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
from functools import cache
from typing import Any

from django.db import connection
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
    # For a capped policy: the policy, the month it counts in and the flows
    # its cap counts besides (buyer-wide: those without a policy of their own).
    capped: BuyerPolicy | None = None
    month: date | None = None
    own_flows: frozenset[int] = frozenset()


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
    """For each feedback (None for what is not an accepted return): the review
    state it starts in, set on the feedback too. Whether a capped one fits
    under its cap is decided by `returns_cap`, at the end of the transaction."""
    admissions: list[Admission | None] = []
    own_flows: frozenset[int] | None = None
    for feedback in feedbacks:
        if feedback.kind != Kind.RETURN or feedback.outcome != Feedback.Outcome.SUCCESS:
            admissions.append(None)
            continue
        policy = policy_for(policies, feedback.flow_id, Kind.RETURN)
        admission = Admission(review_state=initial_state(policy, feedback))
        if policy.capped:
            admission.capped = policy
            admission.month = months.month_of(feedback.delivery.delivered_at)
            if policy.flow_id is None:
                # The intake may have read only the policies its items need.
                if own_flows is None:
                    own_flows = frozenset(flows_with_own_return_policy(buyer_id))
                admission.own_flows = own_flows
        feedback.review_state = admission.review_state
        admissions.append(admission)
    return admissions


def returns_cap(
    feedbacks: Sequence[Any], admissions: Sequence[Admission | None], *, buyer_id: int
) -> list[int]:
    """Fit the accepted returns under their caps and count them into their
    months; the indexes of those the cap refused.

    Called last in the intake's transaction, after the feedback and its rows are
    written: the counters of the months it reads are locked from here to the
    commit, so concurrent returns against one allowance are admitted one after
    another and never past it, and that wait is as short as it can be. A refused
    return's rows are taken back: the feedback becomes refused with the
    numbers, its review step and credit go."""
    capped = [
        (index, admission, admission.capped, admission.month)
        for index, admission in enumerate(admissions)
        if admission is not None
        and admission.capped is not None
        and admission.month is not None
    ]
    refused: list[int] = []
    if len(capped) == 1 and len(feedbacks) == 1 and _cap_one(feedbacks[0], capped[0]):
        return refused  # admitted and counted in one statement
    if capped:
        counters = list(
            BuyerMonth.objects.select_for_update()
            .filter(buyer_id=buyer_id, month__in={month for *_, month in capped})
            .order_by("month", "flow_id")
        )
        taken: dict[tuple[int | None, date], int] = {}
        for index, admission, policy, month in capped:
            rows = [c for c in counters if c.month == month]
            scope = cap_scope(
                policy, set(admission.own_flows), {c.flow_id for c in rows}
            )
            deliveries = sum(c.deliveries for c in rows if c.flow_id in scope)
            used = sum(c.returns for c in rows if c.flow_id in scope)
            used += taken.get((policy.flow_id, month), 0)
            allowed = allowance(policy, deliveries)
            if used >= allowed:
                admission.refused = (
                    f"{CAP_REACHED}: {used} of {allowed} returns allowed for "
                    f"{month:%B %Y} deliveries are used ({_percent(policy)} of "
                    f"{deliveries} deliveries, at least {policy.cap_min})."
                )
                admission.returns_remaining = max(allowed - used, 0)
                refused.append(index)
                continue
            taken[(policy.flow_id, month)] = taken.get((policy.flow_id, month), 0) + 1
            admission.returns_remaining = allowed - used - 1
    if refused:
        _take_back([feedbacks[i] for i in refused], [admissions[i] for i in refused])
    counts: dict[months.MonthKey, tuple[int, int]] = {}
    for feedback, admitted in zip(feedbacks, admissions, strict=True):
        if admitted is None or admitted.refused or feedback.pk is None:
            continue
        if feedback.outcome != Feedback.Outcome.SUCCESS:
            continue
        key = (
            feedback.buyer_id,
            feedback.flow_id,
            months.month_of(feedback.delivery.delivered_at),
        )
        counts[key] = (0, counts.get(key, (0, 0))[1] + 1)
    months.months_add(counts)
    return refused


@cache
def _cap_one_sql() -> str:
    table = connection.ops.quote_name(BuyerMonth._meta.db_table)
    return (
        f"WITH scope AS (SELECT deliveries, returns FROM {table} "  # noqa: S608
        "WHERE buyer_id = %(buyer)s AND month = %(month)s "
        "AND (%(scope_flow)s::bigint IS NULL OR flow_id = %(scope_flow)s) "
        "AND NOT (flow_id = ANY(%(own)s::bigint[])) "
        "ORDER BY flow_id FOR UPDATE), "
        "totals AS (SELECT coalesce(sum(deliveries), 0) AS d, "
        "coalesce(sum(returns), 0) AS r FROM scope) "
        f"UPDATE {table} AS t SET returns = t.returns + 1 FROM totals "
        "WHERE t.buyer_id = %(buyer)s AND t.flow_id = %(flow)s "
        "AND t.month = %(month)s "
        "AND totals.r < GREATEST(%(min)s, floor(%(percent)s * totals.d / 100)) "
        "RETURNING totals.d, totals.r"
    )


def _cap_one(feedback: Any, capped: tuple[int, Admission, BuyerPolicy, date]) -> bool:
    """The intake's common case on PostgreSQL, one return to a capped buyer:
    lock the cap's counters, check the allowance and count the return in one
    statement, so the counters stay locked for as little as can be before the
    commit. False when it did nothing (over the cap, or no counter yet): the
    general path then decides, with the numbers for the refusal."""
    if connection.vendor != "postgresql" or feedback.pk is None:
        return False
    _, admission, policy, month = capped
    with connection.cursor() as cursor:
        cursor.execute(
            _cap_one_sql(),
            {
                "buyer": feedback.buyer_id,
                "flow": feedback.flow_id,
                "month": month,
                "scope_flow": policy.flow_id,
                "own": sorted(admission.own_flows),
                "min": policy.cap_min,
                "percent": policy.cap_percent,
            },
        )
        row = cursor.fetchone()
    if row is None:
        return False
    deliveries, used = row
    admission.returns_remaining = allowance(policy, int(deliveries)) - int(used) - 1
    return True


def _take_back(feedbacks: list[Any], admissions: list[Admission | None]) -> None:
    """Undo what a return the cap refused wrote: it is stored refused."""
    ids = [f.pk for f in feedbacks if f.pk is not None]
    ReturnTransition.objects.filter(feedback_id__in=ids).delete()
    Credit.objects.filter(feedback_id__in=ids).delete()
    for feedback, admission in zip(feedbacks, admissions, strict=True):
        reason = admission.refused[:500] if admission else ""
        feedback.outcome = Feedback.Outcome.FAILURE
        feedback.outcome_reason = reason
        feedback.review_state = ""
        if feedback.pk is not None:
            Feedback.objects.filter(pk=feedback.pk).update(
                outcome=Feedback.Outcome.FAILURE, outcome_reason=reason, review_state=""
            )


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
    review step of each accepted return and a credit for each approved one
    (`returns_cap` counts them into their months)."""
    steps: list[ReturnTransition] = []
    credits: list[Credit] = []
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
    ReturnTransition.objects.bulk_create(steps)
    Credit.objects.bulk_create(credits)


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
