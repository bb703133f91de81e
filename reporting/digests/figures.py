"""A digest's numbers, counted by the reports' own code.

The figures are the source's row of the "By source" report and the returns of
the "By reason" report narrowed to the source and to returns, both on the
feedback-date basis, for the period's days in the digest's time zone: the
digest and the reports cannot disagree, because they are the same count.
"""

import dataclasses
import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from feedback.models import Feedback
from reporting.digests.periods import Period, zone_of
from reporting.filters import Basis, ReportFilters
from reporting.models import Digest
from reporting.reports.breakdowns import DIMENSIONS, breakdown_rows, finish_row
from sources.models import Kind

TOP_REASONS = 5


@dataclass(frozen=True)
class Measure:
    """One line of the digest: this period's value beside the previous one's."""

    key: str
    label: str
    kind: str  # count, rate or number
    current: float | int | None
    previous: float | int | None

    @property
    def shown(self) -> str:
        return show(self.kind, self.current)

    @property
    def shown_previous(self) -> str:
        return show(self.kind, self.previous)

    @property
    def change(self) -> str:
        """The difference from the previous period: counts as numbers, rates in
        percentage points; blank when either side has no value."""
        if self.current is None or self.previous is None:
            return ""
        delta = self.current - self.previous
        if self.kind == "rate":
            return f"{delta * 100:+.1f} pts"
        if self.kind == "number":
            return f"{delta:+.2f}"
        return f"{delta:+d}"


@dataclass(frozen=True)
class ReasonLine:
    reason: str
    returns: int
    share: float | None
    previous: int


@dataclass(frozen=True)
class ReturnLine:
    """One returned lead, as the CSV attachment lists it: ids the source already
    holds about its own leads, the reason and the date, nothing personal."""

    event_id: str
    lead_id: str
    reason: str
    outcome_code: str
    returned_on: datetime.date


@dataclass(frozen=True)
class DigestFigures:
    digest: Digest
    source_name: str
    period: Period
    previous_period: Period
    measures: list[Measure]
    top_reasons: list[ReasonLine]
    returns: list[ReturnLine]

    def measure(self, key: str) -> Measure:
        return next(m for m in self.measures if m.key == key)


MEASURES = (
    ("delivered", "Leads delivered", "count"),
    ("conversions", "Conversions", "count"),
    ("conversion_rate", "Conversion rate", "rate"),
    ("returns", "Returns", "count"),
    ("return_rate", "Return rate", "rate"),
    ("avg_quality", "Average quality (1-5)", "number"),
)


def show(kind: str, value: float | int | None) -> str:
    if value is None:
        return "\u2013"  # an en dash: no value
    if kind == "rate":
        return f"{value * 100:.1f}%"
    if kind == "number":
        return f"{value:.2f}"
    return f"{value:,}"


@contextmanager
def in_zone(digest: Digest) -> Iterator[None]:
    """The reports count days in the current time zone: make it the digest's."""
    with timezone.override(zone_of(digest.timezone)):
        yield


def period_filters(digest: Digest, period: Period) -> ReportFilters:
    """The report filters of one period: what a staff user would pick on the
    reports page (feedback date, the source, these days) to see the same
    numbers. Use inside `in_zone(digest)`."""
    return ReportFilters(
        start=period.start,
        end=period.end,
        basis=Basis.FEEDBACK,
        source_id=digest.source_id,
    )


def source_row(filters: ReportFilters) -> dict[str, Any]:
    """The source's row of the "By source" report (zeros when it had nothing)."""
    rows = breakdown_rows(filters, DIMENSIONS["source"]).rows
    for row in rows:
        if row["key"] == filters.source_id:
            return row
    return finish_row({"key": filters.source_id})


def return_reasons(filters: ReportFilters) -> dict[str, int]:
    """Accepted returns per reason label, from the "By reason" report narrowed
    to returns."""
    narrowed = dataclasses.replace(filters, kind=Kind.RETURN)
    rows = breakdown_rows(narrowed, DIMENSIONS["reason"]).rows
    return {row["label"]: row["returns"] for row in rows if row["returns"]}


def returned_leads(digest: Digest, filters: ReportFilters) -> list[ReturnLine]:
    """The accepted returns the "Returns" figure counts, oldest first."""
    narrowed = dataclasses.replace(filters, kind=Kind.RETURN)
    zone = zone_of(digest.timezone)
    found = (
        Feedback.objects.filter(narrowed.feedback_q(), outcome=Feedback.Outcome.SUCCESS)
        .select_related("delivery", "lead", "outcome_code")
        .order_by("received_at", "pk")
    )
    return [
        ReturnLine(
            event_id=feedback.delivery.event_id,
            lead_id=feedback.lead.public_id,
            reason=feedback.reason,
            outcome_code=feedback.outcome_code.code if feedback.outcome_code else "",
            returned_on=feedback.received_at.astimezone(zone).date(),
        )
        for feedback in found
    ]


def digest_figures(*, digest: Digest, period: Period) -> DigestFigures:
    """The digest of `period` and the period before it, counted as the reports
    count them."""
    previous_period = period.previous()
    with in_zone(digest):
        filters = period_filters(digest, period)
        before = period_filters(digest, previous_period)
        current_row, previous_row = source_row(filters), source_row(before)
        reasons, previous_reasons = return_reasons(filters), return_reasons(before)
        returns = returned_leads(digest, filters)
    measures = [
        Measure(key, label, kind, current_row.get(key), previous_row.get(key))
        for key, label, kind in MEASURES
    ]
    total = sum(reasons.values())
    top = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:TOP_REASONS]
    return DigestFigures(
        digest=digest,
        source_name=digest.source.name,
        period=period,
        previous_period=previous_period,
        measures=measures,
        top_reasons=[
            ReasonLine(
                reason,
                count,
                count / total if total else None,
                previous_reasons.get(reason, 0),
            )
            for reason, count in top
        ],
        returns=returns,
    )
