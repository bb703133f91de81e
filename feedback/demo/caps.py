"""The capped demo buyer's returns as its cap would have admitted them (DESIGN
§10), with this month's allowance nearly used, so the cap shows at work.

The history is written in bulk, so the intake's cap never saw it. Here a capped
buyer's accepted returns are replayed in the order they arrived, each against
the allowance of its delivery's month as it stood then (the deliveries so far),
and a return past it is refused in the intake's words. Then this month is
trimmed or topped up to leave CAP_REMAINING returns: the demo is seeded on any
day of a month, and a fixed cap alone would leave anywhere from all to none.
"""

import bisect
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal

from feedback.demo.data import CAP_REMAINING, RETURN_CODES, SOURCES
from feedback.intake.judge import ALREADY_RETURNED_REASON
from feedback.models import BuyerPolicy, DeliveryEvent, Feedback
from feedback.months import month_of
from feedback.returns.admission import CAP_REACHED, allowance
from sources.models import Kind

# Adds one return row for a delivery, occurred at the given time; the row is
# refused when the demo's judge would refuse it.
AddReturn = Callable[..., Feedback]


def cap_refusal(
    policy: BuyerPolicy, *, month: date, used: int, allowed: int, deliveries: int
) -> str:
    """The intake's words for a return past the cap (admission._apply_caps);
    tests/feedback/test_seed_demo.py holds the two in step."""
    percent = f"{Decimal(policy.cap_percent or 0).normalize():f}%"
    return (
        f"{CAP_REACHED}: {used} of {allowed} returns allowed for {month:%B %Y} "
        f"deliveries are used ({percent} of {deliveries} deliveries, at least "
        f"{policy.cap_min})."
    )


def caps_apply(
    rows: list[Feedback],
    *,
    deliveries: list[DeliveryEvent],
    policy: BuyerPolicy,
    rng: random.Random,
    now: datetime,
    add_return: AddReturn,
) -> None:
    """Cap the buyer of `policy` (a buyer-wide, automatic one: every accepted
    return counts) in `rows`, the history's feedback, changed in place."""
    own = [d for d in deliveries if d.buyer_id == policy.buyer_id]
    delivered: dict[date, list[datetime]] = defaultdict(list)
    for delivery in own:
        delivered[month_of(delivery.delivered_at)].append(delivery.delivered_at)
    for moments in delivered.values():
        moments.sort()
    _replay(rows, policy=policy, delivered=delivered)
    _this_month(
        rows,
        policy=policy,
        delivered=delivered,
        deliveries=own,
        rng=rng,
        now=now,
        add_return=add_return,
    )


def _returns(rows: list[Feedback], buyer_id: int) -> list[Feedback]:
    """The buyer's return rows, in the order they arrived."""
    found = [r for r in rows if r.buyer_id == buyer_id and r.kind == Kind.RETURN]
    return sorted(found, key=lambda row: row.received_at)


def _accepted(row: Feedback) -> bool:
    return row.outcome == Feedback.Outcome.SUCCESS


def _replay(
    rows: list[Feedback], *, policy: BuyerPolicy, delivered: dict[date, list[datetime]]
) -> None:
    used: Counter[date] = Counter()
    refused: set[int] = set()
    for row in _returns(rows, policy.buyer_id):
        if row.delivery_id in refused and row.outcome_reason.endswith(
            ALREADY_RETURNED_REASON
        ):
            # A retry of a request the cap refused would be judged again, not
            # answered "already returned".
            rows.remove(row)
            continue
        if not _accepted(row):
            continue
        month = month_of(row.delivery.delivered_at)
        so_far = bisect.bisect_right(delivered[month], row.received_at)
        allowed = allowance(policy, so_far)
        if used[month] < allowed:
            used[month] += 1
            continue
        row.outcome = Feedback.Outcome.FAILURE
        row.outcome_reason = cap_refusal(
            policy, month=month, used=used[month], allowed=allowed, deliveries=so_far
        )[:500]
        refused.add(row.delivery_id)


def _this_month(
    rows: list[Feedback],
    *,
    policy: BuyerPolicy,
    delivered: dict[date, list[datetime]],
    deliveries: list[DeliveryEvent],
    rng: random.Random,
    now: datetime,
    add_return: AddReturn,
) -> None:
    month = month_of(now)
    target = max(allowance(policy, len(delivered[month])) - CAP_REMAINING, 0)
    returns = [
        row
        for row in _returns(rows, policy.buyer_id)
        if month_of(row.delivery.delivered_at) == month
    ]
    accepted = [row for row in returns if _accepted(row)]
    if len(accepted) > target:
        # Cut the month's tail: the requests from the first one over on never
        # came, so every cap decision before it stays as it was.
        cutoff = accepted[target].received_at
        dropped = {
            row.delivery_id
            for row in returns
            if row.received_at >= cutoff
            and (_accepted(row) or row.outcome_reason.startswith(CAP_REACHED))
        }
        rows[:] = [
            row
            for row in rows
            if not (row.kind == Kind.RETURN and row.delivery_id in dropped)
        ]
        return
    # Top up with returns that came in after everything else this month: the
    # allowance was already what it is now, and the count still under it.
    returned = {row.delivery_id for row in returns}
    accepting = {spec.slug: spec for spec in SOURCES if spec.accepts_return}
    candidates = [
        delivery
        for delivery in deliveries
        if month_of(delivery.delivered_at) == month
        and delivery.pk not in returned
        and delivery.source.slug in accepting
    ]
    start = max([*delivered[month], *(row.received_at for row in returns)], default=now)
    missing = target - len(accepted)
    for delivery in rng.sample(candidates, len(candidates)):
        if missing <= 0:
            break
        reason = rng.choice(accepting[delivery.source.slug].return_reasons)
        latest = now - timedelta(minutes=5)
        at = start + max(latest - start, timedelta(0)) * rng.uniform(0.1, 0.9)
        row = add_return(delivery, at=at, reason=reason, code=RETURN_CODES.get(reason))
        if _accepted(row):
            missing -= 1
