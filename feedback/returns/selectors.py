"""Reading returns, their review steps, allowances and credits (DESIGN §10)."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from feedback import months
from feedback.models import BuyerMonth, BuyerPolicy, Feedback, Flow
from feedback.returns.admission import allowance, cap_scope
from feedback.returns.models import Credit, ReturnTransition
from feedback.selectors import feedback_list
from sources.models import Kind

State = Feedback.ReviewState
AWAITING = (State.PENDING, State.DISPUTED)


def returns_list(*, buyer_id: int | None = None) -> QuerySet[Feedback]:
    """Accepted returns (the ones with a review state), newest first; one
    buyer's when `buyer_id` is given."""
    queryset = (
        feedback_list()
        .filter(kind=Kind.RETURN, outcome=Feedback.Outcome.SUCCESS)
        .exclude(review_state="")
    )
    if buyer_id is not None:
        queryset = queryset.filter(buyer_id=buyer_id)
    return queryset.order_by("-received_at", "-pk")


def returns_awaiting_review() -> QuerySet[Feedback]:
    """Pending and disputed returns, oldest first: the review queue."""
    return (
        feedback_list().filter(review_state__in=AWAITING).order_by("received_at", "pk")
    )


def transitions_for(feedback: Feedback) -> QuerySet[ReturnTransition]:
    return feedback.transitions.select_related("user", "api_key").order_by(
        "created_at", "pk"
    )


def credits_list(
    *,
    buyer_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> QuerySet[Credit]:
    """Live (not voided) credits granted in [start, end), newest first."""
    queryset = Credit.objects.filter(voided_at__isnull=True).select_related(
        "buyer", "source", "flow", "delivery", "feedback", "decided_by"
    )
    if buyer_id is not None:
        queryset = queryset.filter(buyer_id=buyer_id)
    if start is not None:
        queryset = queryset.filter(created_at__gte=start)
    if end is not None:
        queryset = queryset.filter(created_at__lt=end)
    return queryset.order_by("-created_at", "-pk")


def credits_total(credits: QuerySet[Credit]) -> Decimal:
    """The sum of the amounts, to the cent (SQLite sums decimals as numbers)."""
    total = credits.order_by().aggregate(total=Sum("amount"))["total"]
    return Decimal(total or 0).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class Allowance:
    """One capped policy's allowance for one month."""

    scope: str  # "All flows" or the flow's name
    month: date
    deliveries: int
    allowed: int
    used: int

    @property
    def remaining(self) -> int:
        return max(self.allowed - self.used, 0)


def allowances_for(*, buyer_id: int, month_list: Iterable[date]) -> list[Allowance]:
    """The buyer's return allowance and use, per capped return policy and
    month (from the month counters, as the intake counts them)."""
    policies = {
        (p.flow_id, p.kind): p
        for p in BuyerPolicy.objects.filter(buyer_id=buyer_id, kind=Kind.RETURN)
    }
    capped = [p for p in policies.values() if p.capped and p.enabled]
    if not capped:
        return []
    wanted = sorted(set(month_list), reverse=True)
    counters = list(BuyerMonth.objects.filter(buyer_id=buyer_id, month__in=wanted))
    flow_names = dict(
        Flow.objects.filter(
            pk__in={p.flow_id for p in capped if p.flow_id}
        ).values_list("pk", "name")
    )
    result = []
    for month in wanted:
        rows = [c for c in counters if c.month == month]
        for policy in sorted(
            capped, key=lambda p: (p.flow_id is not None, p.flow_id or 0)
        ):
            own_flows = {flow for (flow, _) in policies if flow is not None}
            scope = cap_scope(policy, own_flows, {c.flow_id for c in rows})
            deliveries = sum(c.deliveries for c in rows if c.flow_id in scope)
            used = sum(c.returns for c in rows if c.flow_id in scope)
            result.append(
                Allowance(
                    scope=flow_names.get(policy.flow_id, "")
                    if policy.flow_id
                    else "All flows",
                    month=month,
                    deliveries=deliveries,
                    allowed=allowance(policy, deliveries),
                    used=used,
                )
            )
    return result


def recent_months(count: int = 3, *, now: datetime | None = None) -> list[date]:
    """This month and the `count - 1` before it, newest first."""
    current = months.month_of(now or timezone.now())
    result = [current]
    for _ in range(count - 1):
        previous = result[-1].replace(day=1)
        year, month = (
            (previous.year, previous.month - 1)
            if previous.month > 1
            else (
                previous.year - 1,
                12,
            )
        )
        result.append(date(year, month, 1))
    return result


def return_rates_this_month(buyer_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
    """(returns counted, deliveries) this month per buyer, from the counters."""
    month = months.month_of(timezone.now())
    rows = (
        BuyerMonth.objects.filter(buyer_id__in=set(buyer_ids), month=month)
        .values("buyer_id")
        .annotate(r=Sum("returns"), d=Sum("deliveries"))
    )
    return {row["buyer_id"]: (row["r"] or 0, row["d"] or 0) for row in rows}


def other_feedback(feedback: Feedback) -> QuerySet[Feedback]:
    """The lead's other feedback on the same delivery, oldest first."""
    return (
        Feedback.objects.filter(delivery_id=feedback.delivery_id)
        .exclude(pk=feedback.pk)
        .select_related("outcome_code")
        .order_by("received_at", "pk")
    )


def converted_before(feedback: Feedback) -> bool:
    """Whether an accepted conversion was reported on the delivery before this
    return: the review queue flags it."""
    return Feedback.objects.filter(
        Q(delivery_id=feedback.delivery_id),
        kind=Kind.CONVERSION,
        outcome=Feedback.Outcome.SUCCESS,
        received_at__lt=feedback.received_at,
    ).exists()
