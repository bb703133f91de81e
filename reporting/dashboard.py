"""The front door (`/`): staff land on this month against the last, with links
into the reports that explain each figure; buyers land in the portal; visitors
who are not signed in get the login page."""

import datetime
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from feedback.forwarding.models import Notification
from feedback.models import Feedback
from feedback.returns.models import Credit
from reporting.filters import ReportFilters
from reporting.models import VIEW_BILLING, VIEW_REPORTS
from reporting.reports import Column
from reporting.reports.breakdowns import BuyerBreakdownReport
from reporting.templatetags.reporting_tags import cell


def front_door(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not user.is_staff:
        return redirect("portal:delivery-list")
    return dashboard(request)


@dataclass(frozen=True)
class Figure:
    """One line of the dashboard: this month so far against the last."""

    label: str
    kind: str  # count, money or rate
    current: Any
    previous: Any
    link: str
    # Whether a rise is good news (conversions) or bad (returns, cost).
    rise_is_good: bool = True

    @property
    def change(self) -> float | None:
        if self.current is None or self.previous in (None, 0):
            return None
        return (float(self.current) - float(self.previous)) / float(self.previous)

    @property
    def current_text(self) -> str:
        return cell({"value": self.current}, Column("value", self.label, self.kind))

    @property
    def previous_text(self) -> str:
        return cell({"value": self.previous}, Column("value", self.label, self.kind))

    @property
    def change_text(self) -> str:
        change = self.change
        return "" if change is None else f"{change * 100:+.0f} %"

    @property
    def trend(self) -> str:
        """ "good", "bad" or "" for the change's colour."""
        change = self.change
        if change is None or abs(change) < 0.005:
            return ""
        return "good" if (change > 0) == self.rise_is_good else "bad"


def month_bounds(today: datetime.date) -> tuple[ReportFilters, ReportFilters]:
    """This month up to today, and the same days of the month before (up to
    its last day), so counts and money compare like with like."""
    first = today.replace(day=1)
    last_month_end = first - datetime.timedelta(days=1)
    last_month_start = last_month_end.replace(day=1)
    same_day = last_month_start.replace(day=min(today.day, last_month_end.day))
    return (
        ReportFilters(start=first, end=today),
        ReportFilters(start=last_month_start, end=same_day),
    )


def _report_link(code: str, filters: ReportFilters) -> str:
    return (
        reverse("reporting:report-detail", args=[code])
        + f"?start={filters.start:%Y-%m-%d}&end={filters.end:%Y-%m-%d}"
    )


def _credits(filters: ReportFilters) -> Decimal:
    total = Credit.objects.filter(
        voided_at__isnull=True,
        created_at__gte=filters.since,
        created_at__lt=filters.until,
    ).aggregate(total=Sum("amount"))["total"]
    return total or Decimal("0.00")


def dashboard(request: HttpRequest) -> HttpResponse:
    user = request.user
    today = timezone.localdate()
    current, previous = month_bounds(today)
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "current": current,
        "previous": previous,
        "can_report": user.has_perm(VIEW_REPORTS),
    }
    if context["can_report"]:
        now = BuyerBreakdownReport(current).generate().totals or {}
        before = BuyerBreakdownReport(previous).generate().totals or {}
        link = _report_link("by-buyer", current)
        figures = [
            Figure(
                "Delivered",
                "count",
                now.get("delivered"),
                before.get("delivered"),
                link,
            ),
            Figure(
                "Conversions",
                "count",
                now.get("conversions"),
                before.get("conversions"),
                link,
            ),
            Figure(
                "Conversion rate",
                "rate",
                now.get("conversion_rate"),
                before.get("conversion_rate"),
                link,
            ),
            Figure(
                "Returns",
                "count",
                now.get("returns"),
                before.get("returns"),
                _report_link("by-reason", current),
                rise_is_good=False,
            ),
            Figure(
                "Return rate",
                "rate",
                now.get("return_rate"),
                before.get("return_rate"),
                _report_link("by-reason", current),
                rise_is_good=False,
            ),
            Figure("Revenue", "money", now.get("revenue"), before.get("revenue"), link),
            Figure(
                "Cost",
                "money",
                now.get("cost"),
                before.get("cost"),
                link,
                rise_is_good=False,
            ),
        ]
        if user.has_perm(VIEW_BILLING):
            figures.append(
                Figure(
                    "Credits",
                    "money",
                    _credits(current),
                    _credits(previous),
                    _report_link("returns-resolution", current),
                    rise_is_good=False,
                )
            )
        context["figures"] = figures
        context["forwarding"] = _forwarding()
        context["health_link"] = _report_link("delivery-health", current)
    context["review_link"] = _review_link(request)
    return TemplateResponse(request, "reporting/dashboard.html", context)


def _forwarding() -> dict[str, int]:
    """Notifications of the last 24 hours by what became of them."""
    since = timezone.now() - datetime.timedelta(hours=24)
    Status = Notification.Status
    counts = Notification.objects.filter(created_at__gte=since).aggregate(
        sent=Count("pk", filter=Q(status=Status.SUCCEEDED)),
        waiting=Count(
            "pk",
            filter=Q(status__in=(Status.PENDING, Status.SENDING, Status.RETRYING)),
        ),
        refused=Count("pk", filter=Q(status=Status.FAILED)),
        dead=Count("pk", filter=Q(status=Status.DEAD)),
        batched=Count("pk", filter=Q(status=Status.BATCHED)),
    )
    return {key: value or 0 for key, value in counts.items()}


def _review_link(request: HttpRequest) -> dict[str, Any] | None:
    """Returns waiting for a decision, when the user may see the queue."""
    if not request.user.has_perm("feedback.view_returnreview"):
        return None
    waiting = Feedback.objects.filter(review_state__in=("pending", "disputed")).count()
    return {
        "count": waiting,
        "url": reverse("admin:feedback_returnreview_changelist"),
    }
