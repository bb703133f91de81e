"""The review side of the demo's returns (DESIGN §10).

The history is bulk-created (history.py), so its accepted returns start with no
review state. Here each gets the state its buyer's policy gives a new return,
with the rows the intake writes for it (`returns_record`: the first review
step, a credit when approved at once). A buyer on manual review then has the
decisions staff and the buyer made since, taken through the services the
admin, the portal and the API call, so their steps, credits and counts are the
product's own; only their times are moved back to when they would have been
made. A return with a review state is never touched again, so a second run
adds nothing.
"""

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth.models import User

from feedback.demo.data import (
    BATCH_SIZE,
    DISPUTE_APPROVED_NOTE,
    DISPUTE_COMMENTS,
    DISPUTE_REJECTED_NOTE,
    LEAD_ID_PREFIX,
    REJECT_NOTES,
    REVIEW_DISPUTE_RATE,
    REVIEW_OPEN_DISPUTES,
    REVIEW_PENDING_MAX,
    REVIEW_PENDING_SHARE,
    REVIEW_REJECT_RATE,
)
from feedback.models import Buyer, BuyerPolicy, Feedback
from feedback.returns.admission import (
    Admission,
    initial_state,
    policy_for,
    returns_record,
)
from feedback.returns.models import Credit, ReturnTransition
from feedback.returns.services import (
    APPROVE,
    REJECT,
    return_approve,
    return_decide,
    return_dispute,
    return_reject,
)
from sources.models import Kind

State = Feedback.ReviewState

# The steps a plan takes, in the services' words where they have them.
DISPUTE = "dispute"
SECOND_APPROVE = "second approve"
SECOND_REJECT = "second reject"


@dataclass
class _Plan:
    """What happened to one pending return, step by step, and when."""

    feedback: Feedback
    steps: list[tuple[str, datetime]] = field(default_factory=list)


def reviews_record(
    *,
    rng: random.Random,
    now: datetime,
    buyers: dict[str, Buyer],
    staff: User,
    users: dict[str, User],
) -> int:
    """Give the demo's accepted returns that have none a review state and its
    rows; return how many."""
    waiting = list(
        Feedback.objects.select_related("delivery")
        .filter(
            lead__public_id__startswith=LEAD_ID_PREFIX,
            kind=Kind.RETURN,
            outcome=Feedback.Outcome.SUCCESS,
            review_state="",
        )
        .order_by("received_at", "pk")
    )
    by_buyer: dict[int, list[Feedback]] = defaultdict(list)
    for feedback in waiting:
        by_buyer[feedback.buyer_id].append(feedback)
    for slug, buyer in buyers.items():
        returns = by_buyer.get(buyer.pk, [])
        if returns:
            pending, dispute_days = _admit(buyer, returns)
            plans = _plans(pending, rng=rng, now=now, dispute_days=dispute_days)
            for plan in plans:
                for action, _at in plan.steps:
                    _act(plan.feedback, action, staff=staff, buyer_user=users[slug])
            _backdate(plans)
    return len(waiting)


def _admit(buyer: Buyer, returns: list[Feedback]) -> tuple[list[Feedback], int]:
    """The state each return starts in and what the intake writes for it; the
    ones left pending, and the fewest days their policies allow to dispute a
    rejection."""
    policies = {
        (policy.flow_id, policy.kind): policy
        for policy in BuyerPolicy.objects.filter(buyer=buyer, kind=Kind.RETURN)
    }
    by_state: dict[str, list[int]] = defaultdict(list)
    for feedback in returns:
        policy = policy_for(policies, feedback.flow_id, Kind.RETURN)
        feedback.review_state = initial_state(policy, feedback)
        by_state[feedback.review_state].append(feedback.pk)
    for state, ids in by_state.items():
        for start in range(0, len(ids), BATCH_SIZE):
            Feedback.objects.filter(pk__in=ids[start : start + BATCH_SIZE]).update(
                review_state=state
            )
    returns_record(
        returns,
        [Admission(review_state=feedback.review_state) for feedback in returns],
        policies=policies,
    )
    pending = [f for f in returns if f.review_state == State.PENDING]
    dispute_days = min(
        (policy_for(policies, f.flow_id, Kind.RETURN).dispute_days for f in pending),
        default=0,
    )
    return pending, dispute_days


def _plans(
    pending: list[Feedback], *, rng: random.Random, now: datetime, dispute_days: int
) -> list[_Plan]:
    """Oldest first: decided (mostly approved; some rejected, of which some
    were disputed and decided again), then a few disputes waiting for their
    second decision, then the newest, still pending (no plan)."""
    count = len(pending)
    waiting = min(max(round(count * REVIEW_PENDING_SHARE), 1), REVIEW_PENDING_MAX)
    older = pending[: count - waiting]
    # A dispute comes within the policy's days of the rejection, or not at all.
    window = dispute_days * 24 - 1
    open_disputes = min(REVIEW_OPEN_DISPUTES, max(len(older) // 10, 1))
    disputed = older[-open_disputes:] if window > 6 else []
    decided = older[: len(older) - len(disputed)]
    rejected = set(
        rng.sample(range(len(decided)), round(len(decided) * REVIEW_REJECT_RATE))
    )
    if decided and not rejected:
        rejected = {rng.randrange(len(decided))}
    contested = rng.sample(sorted(rejected), int(len(rejected) * REVIEW_DISPUTE_RATE))
    if window <= 6:
        contested = []
    # Half the disputes win the second time.
    second = {
        index: SECOND_APPROVE if n % 2 == 0 else SECOND_REJECT
        for n, index in enumerate(sorted(contested))
    }
    latest = now - timedelta(minutes=5)
    plans = []
    for index, feedback in enumerate(decided):
        plan = _Plan(feedback)
        decided_at = _later(rng, feedback.received_at, latest, hours=(2, 48))
        plan.steps.append((REJECT if index in rejected else APPROVE, decided_at))
        if index in second:
            disputed_at = _later(rng, decided_at, latest, hours=(6, min(72, window)))
            plan.steps.append((DISPUTE, disputed_at))
            plan.steps.append(
                (second[index], _later(rng, disputed_at, latest, hours=(2, 48)))
            )
        plans.append(plan)
    for feedback in disputed:
        plan = _Plan(feedback)
        rejected_at = _later(rng, feedback.received_at, latest, hours=(6, 72))
        disputed_at = _later(rng, rejected_at, latest, hours=(6, min(144, window)))
        plan.steps.append((REJECT, rejected_at))
        plan.steps.append((DISPUTE, disputed_at))
        plans.append(plan)
    return plans


def _later(
    rng: random.Random, start: datetime, latest: datetime, *, hours: tuple[int, int]
) -> datetime:
    """A moment some hours after `start`, squeezed in before `latest`."""
    lag = timedelta(hours=rng.uniform(*hours))
    if start + lag > latest:
        lag = max(latest - start, timedelta(0)) * rng.uniform(0.2, 0.9)
    return start + lag


def _act(feedback: Feedback, action: str, *, staff: User, buyer_user: User) -> None:
    reason = feedback.reason
    if action == APPROVE:
        return_approve(feedback=feedback, user=staff)
    elif action == REJECT:
        return_reject(feedback=feedback, user=staff, note=REJECT_NOTES.get(reason, ""))
    elif action == DISPUTE:
        return_dispute(
            feedback=feedback,
            user=buyer_user,
            comment=DISPUTE_COMMENTS.get(reason, "We could not reach this lead."),
        )
    elif action == SECOND_APPROVE:
        return_decide(
            feedback=feedback, decision=APPROVE, user=staff, note=DISPUTE_APPROVED_NOTE
        )
    else:
        return_decide(
            feedback=feedback, decision=REJECT, user=staff, note=DISPUTE_REJECTED_NOTE
        )


def _backdate(plans: list[_Plan]) -> None:
    """Move the steps and credits the services wrote just now to the times the
    plans give them, in bulk."""
    when = {plan.feedback.pk: [at for _action, at in plan.steps] for plan in plans}
    steps = list(
        ReturnTransition.objects.filter(feedback__in=[p.feedback for p in plans])
        .exclude(from_state="")  # the intake's step keeps the request's time
        .order_by("feedback_id", "pk")
    )
    done: dict[int, int] = defaultdict(int)
    for step in steps:
        step.created_at = when[step.feedback_id][done[step.feedback_id]]
        done[step.feedback_id] += 1
    ReturnTransition.objects.bulk_update(steps, ["created_at"], batch_size=BATCH_SIZE)
    credits = list(Credit.objects.filter(feedback__in=[p.feedback for p in plans]))
    for credit in credits:
        credit.created_at = when[credit.feedback_id][-1]
    Credit.objects.bulk_update(credits, ["created_at"], batch_size=BATCH_SIZE)
