"""Reasons: each reason's share of the returns (or conversions) in the filter,
against every delivery in it, with the money at stake; and returns by source
and reason. docs/reports.md, "By reason" and "Returns by source and reason"."""

from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum
from django.utils.safestring import SafeString

from feedback.models import Feedback
from feedback.returns.models import Credit
from reporting.charts import bar_chart
from reporting.filters import ReportFilters
from reporting.measures import ACCEPTED
from reporting.models import VIEW_BILLING, DailyRollup
from reporting.reports.base import (
    CHART_BARS,
    Column,
    Report,
    ReportTable,
    attach_previous,
    labels_for,
    rate,
)
from reporting.reports.breakdowns import (
    DIMENSIONS,
    breakdown_rows,
    deliveries_in,
    rollup_usable,
)
from reporting.rollups import SOURCE_REASON, rollup_days, source_reason_of
from sources.models import Kind, Source

# The accepted feedback a reason is counted by, per kind filtered (None: all).
MEASURES: dict[str | None, tuple[str, str]] = {
    Kind.RETURN: ("returns", "Returns"),
    Kind.CONVERSION: ("conversions", "Conversions"),
    Kind.STATUS: ("status_updates", "Status updates"),
    None: ("accepted", "Accepted feedback"),
}

# The reasons given a column of their own in the matrix; the rest are added up.
MATRIX_REASONS = 6


def credits_by_reason(filters: ReportFilters) -> dict[str, Decimal]:
    """The live (not voided) credits of the returns the filters count, by reason.

    A credit carries its return's source, flow, buyer and reason, so on the
    delivery basis the feedback table is not read (the rollups' page stays off it)."""
    if filters.kind not in (None, Kind.RETURN):
        return {}
    if filters.by_delivery:
        counted = Q(
            delivery__delivered_at__gte=filters.since,
            delivery__delivered_at__lt=filters.until,
        )
    else:
        counted = Q(
            feedback__received_at__gte=filters.since,
            feedback__received_at__lt=filters.until,
        )
    for name in ("source_id", "flow_id", "buyer_id"):
        if getattr(filters, name) is not None:
            counted &= Q(**{name: getattr(filters, name)})
    credits = Credit.objects.filter(counted, voided_at__isnull=True)
    return {
        row["reason"]: row["amount"]
        for row in credits.values("reason").annotate(amount=Sum("amount")).order_by()
    }


def _reason_rows(filters: ReportFilters) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows of a reason breakdown and its totals, with the shares."""
    measure, _ = MEASURES[filters.kind]
    breakdown = breakdown_rows(filters, DIMENSIONS["reason"])
    delivered = deliveries_in(filters)
    credits = credits_by_reason(filters)
    rows = breakdown.rows
    counted = sum(row[measure] for row in rows)
    totals: dict[str, Any] = {"key": None, "label": "Total", "delivered_all": delivered}
    for row in rows:
        row["count"] = row[measure]
        row["credits"] = credits.get(row["key"]) if credits else None
    for name in ("count", "conversions", "returns", "status_updates", "refused"):
        totals[name] = sum(row[name] for row in rows)
    for name in ("revenue", "returned_cost"):
        totals[name] = sum((row[name] for row in rows), Decimal("0.00"))
    totals["credits"] = sum(credits.values(), Decimal("0.00")) if credits else None
    for row in (*rows, totals):
        row["share"] = rate(row["count"], counted)
        row["per_delivery"] = rate(row["count"], delivered)
    rows.sort(key=lambda r: (-r["count"], -r["refused"], r["label"]))
    return rows, totals


class ReasonBreakdownReport(Report):
    """Which reasons leads come back (or convert) for: each reason's share of
    them, against every delivery, and the money at stake. Narrowed to returns
    unless the filter asks for another kind or all of them."""

    code = "by-reason"
    name = "By reason"
    description = (
        "Why leads come back: each reason's share of the returns, against every "
        "delivery, and what the returned leads cost."
    )
    default_kind = Kind.RETURN

    def generate(self) -> ReportTable:
        filters = self.filters
        rows, totals = _reason_rows(filters)
        self.rollups_as_of = breakdown_rows_as_of(filters)
        previous = filters.previous()
        before, before_totals = _reason_rows(previous)
        attach_previous(rows, totals, before, before_totals)
        # Every total is 100 % of itself: nothing to compare.
        totals["previous"].pop("share", None)
        self.summary = (
            f"{totals['delivered_all']:,} deliveries in the filter; the rate on "
            "all deliveries divides a reason's count by them."
        )
        return ReportTable(self._columns(), rows, totals, previous=previous)

    def _columns(self) -> list[Column]:
        kind = self.filters.kind
        _, label = MEASURES[kind]
        noun = label.lower() if kind else "accepted feedback"
        columns = [Column("label", "Reason", "text")]
        if kind is None:
            columns += [
                Column("conversions", "Conversions", compare=True),
                Column("returns", "Returns", compare=True),
                Column("status_updates", "Status updates"),
            ]
        else:
            columns.append(Column("count", label, compare=True))
        columns += [
            Column("share", f"Share of {noun}", "rate", compare=True),
            Column("per_delivery", "Rate on all deliveries", "rate", compare=True),
            Column("refused", "Refused" if kind is None else f"Refused {noun}"),
        ]
        if kind in (None, Kind.CONVERSION):
            columns.append(Column("revenue", "Revenue", "money"))
        if kind in (None, Kind.RETURN):
            columns += [
                Column("returned_cost", "Cost of returned leads", "money"),
                Column("credits", "Credits", "money", permission=VIEW_BILLING),
            ]
        return columns

    def charts(self, table: ReportTable) -> list[SafeString]:
        _, label = MEASURES[self.filters.kind]
        counted = sorted(
            (row for row in table.rows if row["count"]),
            key=lambda row: (-row["count"], row["label"]),
        )[:CHART_BARS]
        return [
            bar_chart(
                [(row["label"], row["count"]) for row in counted],
                title=f"{label} by reason",
                description=f"{label} accepted per reason, largest first"
                + (f" (top {CHART_BARS})." if len(counted) == CHART_BARS else "."),
            )
        ]


def breakdown_rows_as_of(filters: ReportFilters) -> Any:
    state = rollup_usable(filters, "reason")
    return state.refreshed_at if state else None


class ReturnsMatrixReport(Report):
    """Accepted returns per source and reason: which sources come back for what."""

    code = "returns-by-source-and-reason"
    name = "Returns by source and reason"
    description = (
        "Accepted returns per source and reason, with each reason's share of the "
        "source's returns."
    )

    def generate(self) -> ReportTable:
        filters = self.filters
        counts = self._counts(filters)
        before = self._counts(filters.previous())
        by_reason: dict[str, int] = defaultdict(int)
        for (_, reason), n in counts.items():
            by_reason[reason] += n
        reasons = sorted(by_reason, key=lambda r: (-by_reason[r], r))
        own, others = reasons[:MATRIX_REASONS], reasons[MATRIX_REASONS:]
        columns = [Column("label", "Source", "text")]
        columns += [
            Column(f"reason_{n}", reason or "(no reason)", "count_share")
            for n, reason in enumerate(own)
        ]
        if others:
            columns.append(
                Column("other", f"Other reasons ({len(others)})", "count_share")
            )
        columns.append(Column("returns", "All returns", compare=True))
        slot = {reason: f"reason_{n}" for n, reason in enumerate(own)}
        sources = {source for source, _ in counts}
        labels = labels_for(Source, sources)
        rows: dict[Any, dict[str, Any]] = {
            source: {"key": source, "label": labels.get(source, str(source))}
            for source in sources
        }
        totals: dict[str, Any] = {"key": None, "label": "Total"}
        for (source, reason), n in counts.items():
            key = slot.get(reason, "other")
            for row in (rows[source], totals):
                row[key] = row.get(key, 0) + n
                row["returns"] = row.get("returns", 0) + n
        for row in (*rows.values(), totals):
            for column in columns[1:-1]:
                n = row.get(column.key, 0)
                row[column.key] = (n, rate(n, row["returns"]))
        before_rows: dict[Any, dict[str, Any]] = defaultdict(lambda: {"returns": 0})
        for (source, _), n in before.items():
            before_rows[source]["returns"] += n
        table_rows = sorted(rows.values(), key=lambda r: (-r["returns"], r["label"]))
        for row in table_rows:
            row["previous"] = before_rows.get(row["key"], {"returns": 0})
        totals["previous"] = {"returns": sum(before.values())}
        return ReportTable(
            columns, table_rows, totals if rows else None, previous=filters.previous()
        )

    def _counts(self, filters: ReportFilters) -> dict[tuple[Any, str], int]:
        """Accepted returns per (source, reason): from the source-reason
        rollups where they answer, else in one GROUP BY of the records."""
        if filters.kind not in (None, Kind.RETURN):
            return {}
        state = rollup_usable(filters, "source")
        if state is not None:
            self.rollups_as_of = state.refreshed_at
            rollups = DailyRollup.objects.filter(
                rollup_days(SOURCE_REASON, filters.start, filters.end)
            )
            if filters.source_id is not None:
                rollups = rollups.filter(key__startswith=f"{filters.source_id}:")
            found = {}
            for key, n in (
                rollups.values_list("key").annotate(n=Sum("accepted")).order_by()
            ):
                if n:
                    found[source_reason_of(key)] = n
            return found
        returns = Feedback.objects.filter(
            filters.feedback_q(), ACCEPTED & Q(kind=Kind.RETURN)
        )
        if filters.kind not in (None, Kind.RETURN):
            returns = returns.none()
        return {
            (row["source_id"], row["reason"]): row["n"]
            for row in returns.values("source_id", "reason")
            .annotate(n=Count("pk"))
            .order_by()
        }
