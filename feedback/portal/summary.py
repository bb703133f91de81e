"""The buyer's own summary: their conversions, returns and rates by month and
by flow, counted by the month each lead was delivered (as the reports' default
basis), accepted feedback only."""

import datetime
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncMonth
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from feedback.models import Buyer, DeliveryEvent, Feedback, Flow
from feedback.portal.context import buyer_required
from sources.models import Kind

MONTHS = 12


@dataclass
class Line:
    """One row: a month or a flow."""

    label: str
    delivered: int = 0
    conversions: int = 0
    returns: int = 0

    @property
    def conversion_rate(self) -> Decimal | None:
        return _rate(self.conversions, self.delivered)

    @property
    def return_rate(self) -> Decimal | None:
        return _rate(self.returns, self.delivered)


def _rate(part: int, whole: int) -> Decimal | None:
    if not whole:
        return None
    return (Decimal(100) * part / whole).quantize(Decimal("0.1"))


def _day(value: datetime.date | datetime.datetime) -> datetime.date:
    """A month truncated by the database: a local datetime, or a date."""
    if isinstance(value, datetime.datetime):
        return (
            timezone.localtime(value).date()
            if timezone.is_aware(value)
            else value.date()
        )
    return value


def _months(first: datetime.date, count: int) -> list[datetime.date]:
    months, month = [], first
    for _ in range(count):
        months.append(month)
        month = (month + datetime.timedelta(days=32)).replace(day=1)
    return months


def summary_for_buyer(
    *, buyer: Buyer, today: datetime.date | None = None
) -> tuple[list[Line], list[Line], Line]:
    """(by month, oldest first with empty months, by flow, total) for the last
    MONTHS months including this one."""
    today = today or timezone.localdate()
    first = today.replace(day=1)
    for _ in range(MONTHS - 1):
        first = (first - datetime.timedelta(days=1)).replace(day=1)
    start = timezone.make_aware(datetime.datetime.combine(first, datetime.time()))
    deliveries: QuerySet[DeliveryEvent] = DeliveryEvent.objects.filter(
        buyer=buyer, delivered_at__gte=start
    )
    accepted = Q(
        feedback__outcome=Feedback.Outcome.SUCCESS, feedback__retracted_at__isnull=True
    )
    counts = {
        "delivered": Count("pk", distinct=True),
        "conversions": Count(
            "pk", distinct=True, filter=accepted & Q(feedback__kind=Kind.CONVERSION)
        ),
        "returns": Count(
            "pk", distinct=True, filter=accepted & Q(feedback__kind=Kind.RETURN)
        ),
    }
    rows = cast(
        list[dict[str, Any]],
        list(
            deliveries.annotate(month=TruncMonth("delivered_at"))
            .values("month")
            .annotate(**counts)
        ),
    )
    by_month = {_day(row["month"]): row for row in rows}
    months = []
    for month in _months(first, MONTHS):
        row = by_month.get(month, {})
        months.append(
            Line(
                month.strftime("%B %Y"),
                row.get("delivered", 0),
                row.get("conversions", 0),
                row.get("returns", 0),
            )
        )
    names = dict(Flow.objects.values_list("pk", "name"))
    flows = sorted(
        (
            Line(
                names[row["flow_id"]],
                row["delivered"],
                row["conversions"],
                row["returns"],
            )
            for row in cast(
                list[dict[str, Any]],
                list(deliveries.values("flow_id").annotate(**counts)),
            )
        ),
        key=lambda line: (-line.delivered, line.label),
    )
    total = Line(
        "All",
        sum(m.delivered for m in months),
        sum(m.conversions for m in months),
        sum(m.returns for m in months),
    )
    return months, flows, total


@require_GET
@buyer_required
def summary(request: HttpRequest) -> HttpResponse:
    buyer = request.buyer  # type: ignore[attr-defined]
    months, flows, total = summary_for_buyer(buyer=buyer)
    return render(
        request,
        "portal/summary.html",
        {"months": months, "flows": flows, "total": total, "nav": "summary"},
    )
