"""Breakdowns by reason, source, flow, buyer and kind; the trend; the source
scorecard. Counted from the daily rollups where they can serve the filters,
live otherwise."""

import datetime
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from django.db.models import (
    Count,
    Exists,
    OuterRef,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.safestring import SafeString

from feedback.models import Buyer, DeliveryEvent, Feedback, Flow
from reporting.charts import Series, line_chart
from reporting.filters import ReportFilters
from reporting.measures import (
    ACCEPTED,
    ON_DELIVERY,
    feedback_measures,
    outcome_vocabulary,
)
from reporting.models import DailyRollup, RollupState
from reporting.reports.base import (
    KIND_LABELS,
    Column,
    Report,
    ReportTable,
    as_dicts,
    attach_previous,
    labels_for,
    rate,
    source_badges,
)
from reporting.rollups import (
    FEEDBACK_SIDE as ROLLUP_FEEDBACK_SIDE,
)
from reporting.rollups import (
    distinct_deliveries,
    rollup_days,
    rollup_state,
    rollups_enabled,
)
from sources.models import Kind, Source

# Source scorecard: weights of each component (docs/reports.md, "Source scorecard").
SCORE_WEIGHTS = {"conversion": 40.0, "returns": 30.0, "contact": 20.0, "coverage": 10.0}


# A conversion rate at or above this earns the full conversion component.
SCORE_CONVERSION_TARGET = 0.25


# A return rate at or above this earns nothing for the returns component.
SCORE_RETURN_CEILING = 0.50


@dataclass(frozen=True)
class Dimension:
    code: str
    label: str
    field: str  # on Feedback (and on DeliveryEvent when `on_delivery`)
    on_delivery: bool
    label_for: Callable[[Iterable[Any]], dict[Any, str]]
    # A word shown beside some groups' labels ("Paused"), read in one query.
    badge_for: Callable[[Iterable[Any]], dict[Any, str]] | None = None


DIMENSIONS: dict[str, Dimension] = {
    "reason": Dimension(
        "reason",
        "Reason",
        "reason",
        False,
        lambda keys: {key: key or "(no reason)" for key in keys},
    ),
    "source": Dimension(
        "source",
        "Source",
        "source_id",
        True,
        lambda keys: labels_for(Source, keys),
        source_badges,
    ),
    "flow": Dimension(
        "flow", "Flow", "flow_id", True, lambda keys: labels_for(Flow, keys)
    ),
    "buyer": Dimension(
        "buyer", "Buyer", "buyer_id", True, lambda keys: labels_for(Buyer, keys)
    ),
    "kind": Dimension(
        "kind",
        "Kind",
        "kind",
        False,
        lambda keys: {key: KIND_LABELS.get(key, key) for key in keys},
    ),
}


# Shown by default: what fits a 1366 px screen; the chooser offers the rest.
BREAKDOWN_COLUMNS = [
    Column("delivered", "Delivered"),
    Column("received", "Feedback received", default=False),
    Column("accepted", "Accepted", default=False),
    Column("refused", "Refused", default=False),
    Column("conversions", "Conversions", compare=True),
    Column("returns", "Returns", compare=True),
    Column("status_updates", "Status updates", default=False),
    Column("conversion_rate", "Conversion rate", "rate", compare=True),
    Column("return_rate", "Return rate", "rate", compare=True),
    Column("revenue", "Revenue", "money"),
    Column("cost", "Cost", "money"),
    Column("cost_per_conversion", "Cost per conversion", "money"),
    Column("avg_quality", "Average quality", "number", default=False),
    Column("coverage", "Feedback coverage", "rate", default=False),
]


def finish_row(row: dict[str, Any]) -> dict[str, Any]:
    """Derived measures from the counted ones."""
    delivered = row.get("delivered") or 0
    row.setdefault("delivered", 0)
    row["cost"] = row.get("cost") or Decimal("0.00")
    row["revenue"] = row.get("revenue") or Decimal("0.00")
    row["returned_cost"] = row.get("returned_cost") or Decimal("0.00")
    for key in (
        "received",
        "accepted",
        "refused",
        "conversions",
        "returns",
        "refused_returns",
    ):
        row.setdefault(key, 0)
    row.setdefault("status_updates", 0)
    row.setdefault("covered", 0)
    # A group with deliveries but no (coded) feedback counted none, not blank.
    row.setdefault("contacted", 0)
    row.setdefault("not_contacted", 0)
    row["conversion_rate"] = rate(row["conversions"], delivered)
    row["return_rate"] = rate(row["returns"], delivered)
    row["coverage"] = rate(row["covered"], delivered)
    row["cost_per_conversion"] = (
        (row["cost"] / row["conversions"]).quantize(Decimal("0.01"))
        if row["conversions"]
        else None
    )
    quality_count = row.get("quality_count") or 0
    row["avg_quality"] = (
        (row.get("quality_sum") or 0) / quality_count if quality_count else None
    )
    row["contact_rate"] = rate(
        row["contacted"], row["contacted"] + row["not_contacted"]
    )
    return row


def breakdown_rows(filters: ReportFilters, dimension: Dimension) -> "Breakdown":
    """One row per group of `dimension`, and a totals row where groups do not
    overlap (source, flow, buyer: a delivery belongs to exactly one)."""
    state = rollup_usable(filters, dimension.code)
    if state is not None:
        by_key = _rollup_breakdown(filters, dimension)
    else:
        by_key = _live_breakdown(filters, dimension)
    labels = dimension.label_for(by_key.keys())
    badges = dimension.badge_for(by_key.keys()) if dimension.badge_for else {}
    rows = []
    for key, values in by_key.items():
        row = finish_row({"key": key, "label": labels.get(key, str(key)), **values})
        row["badge"] = badges.get(key)
        rows.append(row)
    rows.sort(key=lambda r: (-r["delivered"], -r["received"], r["label"]))
    totals = None
    if dimension.on_delivery:
        totals = _totals(rows)
    return Breakdown(rows, totals, state.refreshed_at if state else None)


@dataclass
class Breakdown:
    rows: list[dict[str, Any]]
    totals: dict[str, Any] | None
    # When the rollups the figures come from were refreshed; None: counted live.
    as_of: datetime.datetime | None


def rollup_usable(filters: ReportFilters, dimension: str) -> RollupState | None:
    """The rollups' state if the daily rollups of `dimension` answer these filters
    exactly: delivery-date basis, no filter on another of source, flow and
    buyer, and rollups built (one query). Else None."""
    if not (rollups_enabled() and filters.by_delivery):
        return None
    for name in ON_DELIVERY:
        if name != dimension and getattr(filters, f"{name}_id") is not None:
            return None
    return rollup_state()


def _rollup_breakdown(
    filters: ReportFilters, dimension: Dimension
) -> dict[Any, dict[str, Any]]:
    """The same figures as the live count, summed from the daily rollups.

    Each group has a row per kind and an all-kinds row (kind ""). Narrowed to a
    kind, a reason's (or a kind's) deliveries and cost are those of its row of
    that kind, so the all-kinds row is not read at all: which of the two the
    database returned last must not decide the figure."""
    kinds = [filters.kind] if filters.kind else [k.value for k in Kind]
    own_rows_only = filters.kind and not dimension.on_delivery
    wanted = kinds if own_rows_only else ["", *kinds]
    rollups = DailyRollup.objects.filter(
        rollup_days(dimension.code, filters.start, filters.end), kind__in=wanted
    )
    own = getattr(filters, f"{dimension.code}_id", None)
    if own is not None:
        rollups = rollups.filter(key=str(own))
    sums = {
        name: Sum(name)
        for name in ("delivered", "cost", "covered", *ROLLUP_FEEDBACK_SIDE)
    }
    by_key: dict[Any, dict[str, Any]] = defaultdict(dict)
    for values in as_dicts(rollups.values("key", "kind").annotate(**sums).order_by()):
        key = int(values["key"]) if dimension.on_delivery else values["key"]
        row = by_key[key]
        if values["kind"] == "":
            row["delivered"] = values["delivered"]
            row["cost"] = values["cost"]
            if not filters.kind:
                row["covered"] = values["covered"]
            continue
        for name in ROLLUP_FEEDBACK_SIDE:
            row[name] = (row.get(name) or 0) + (values[name] or 0)
        accepted = values["accepted"] or 0
        measure = {
            Kind.CONVERSION: "conversions",
            Kind.RETURN: "returns",
            Kind.STATUS: "status_updates",
        }[values["kind"]]
        row[measure] = row.get(measure, 0) + accepted
        if values["kind"] == Kind.RETURN:
            row["refused_returns"] = values["refused"] or 0
        if filters.kind:
            # Narrowed to one kind: its own deliveries (reason, kind) and coverage.
            row["covered"] = values["covered"]
            if not dimension.on_delivery:
                row["delivered"] = values["covered"]
                row["cost"] = values["cost"]
    return by_key


def _live_breakdown(
    filters: ReportFilters, dimension: Dimension
) -> dict[Any, dict[str, Any]]:
    vocabulary = outcome_vocabulary()
    feedback = Feedback.objects.filter(filters.feedback_q())
    by_key: dict[Any, dict[str, Any]] = defaultdict(dict)
    for values in (
        feedback.values(dimension.field)
        .annotate(**feedback_measures(vocabulary))
        .order_by()
    ):
        by_key[values.pop(dimension.field)].update(values)

    if dimension.on_delivery:
        for values in _delivery_side(filters, dimension.field):
            by_key[values.pop(dimension.field)].update(values)
    else:
        distinct = distinct_deliveries(feedback, [dimension.field])
        for (key,), (delivered, cost) in distinct.items():
            # Every delivery counted here has feedback in the group, by definition.
            by_key[key].update(delivered=delivered, cost=cost, covered=delivered)
    return by_key


def _delivery_side(filters: ReportFilters, field: str) -> QuerySet[Any, dict[str, Any]]:
    """Delivered, cost and covered deliveries per group, from the delivery table."""
    feedback_about = Feedback.objects.filter(
        delivery=OuterRef("pk"), retracted_at__isnull=True
    )
    if not filters.by_delivery:
        feedback_about = feedback_about.filter(
            received_at__gte=filters.since, received_at__lt=filters.until
        )
    if filters.kind:
        feedback_about = feedback_about.filter(kind=filters.kind)
    return (
        DeliveryEvent.objects.filter(filters.delivery_q())
        .values(field)
        .annotate(
            delivered=Count("pk"),
            cost=Sum("price"),
            covered=Count("pk", filter=Q(Exists(feedback_about))),
        )
        .order_by()
    )


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    summed: dict[str, Any] = {"key": None, "label": "Total"}
    additive = (
        "delivered",
        "received",
        "accepted",
        "refused",
        "conversions",
        "returns",
        "refused_returns",
        "status_updates",
        "covered",
        "contacted",
        "not_contacted",
        "quality_sum",
        "quality_count",
    )
    for key in additive:
        summed[key] = sum(row.get(key) or 0 for row in rows)
    summed["revenue"] = sum((row["revenue"] for row in rows), Decimal("0.00"))
    summed["cost"] = sum((row["cost"] for row in rows), Decimal("0.00"))
    summed["returned_cost"] = sum(
        (row["returned_cost"] for row in rows), Decimal("0.00")
    )
    return finish_row(summed)


class BreakdownReport(Report):
    dimension: ClassVar[Dimension]

    def generate(self) -> ReportTable:
        breakdown = breakdown_rows(self.filters, self.dimension)
        rows, totals = breakdown.rows, breakdown.totals
        self.rollups_as_of = breakdown.as_of
        previous = self.filters.previous()
        before = breakdown_rows(previous, self.dimension)
        attach_previous(rows, totals, before.rows, before.totals)
        columns = [Column("label", self.dimension.label, "text"), *BREAKDOWN_COLUMNS]
        return ReportTable(columns, rows, totals, previous=previous)


def _breakdown(code: str, description: str) -> type[BreakdownReport]:
    dimension = DIMENSIONS[code]
    return type(
        f"{dimension.label}BreakdownReport",
        (BreakdownReport,),
        {
            "code": f"by-{code}",
            "name": f"By {dimension.label.lower()}",
            "description": description,
            "dimension": dimension,
        },
    )


SourceBreakdownReport = _breakdown(
    "source", "Which sources convert, which come back, and what they cost."
)


FlowBreakdownReport = _breakdown("flow", "The same measures per flow.")


BuyerBreakdownReport = _breakdown(
    "buyer", "Which buyers report, convert and return: who needs coaching."
)


class KindBreakdownReport(BreakdownReport):
    """By kind, a kind's deliveries are those with feedback of that kind, so
    conversions over them say nothing (a second conversion of a lead took the
    rate past 100 %): the rates are on every delivery in the filter."""

    code = "by-kind"
    name = "By kind"
    description = (
        "Conversions, returns and status updates, with rates on every delivery in "
        "the filter."
    )
    dimension = DIMENSIONS["kind"]

    def generate(self) -> ReportTable:
        breakdown = breakdown_rows(self.filters, self.dimension)
        self.rollups_as_of = breakdown.as_of
        previous = self.filters.previous()
        before = breakdown_rows(previous, self.dimension)
        for rows, filters in ((breakdown.rows, self.filters), (before.rows, previous)):
            everyone = deliveries_in(filters)
            for row in rows:
                row["conversion_rate"] = rate(row["conversions"], everyone)
                row["return_rate"] = rate(row["returns"], everyone)
        attach_previous(breakdown.rows, breakdown.totals, before.rows, before.totals)
        columns = [
            Column("label", self.dimension.label, "text"),
            *(
                Column("delivered", "Leads with this kind")
                if column.key == "delivered"
                else column
                for column in BREAKDOWN_COLUMNS
            ),
        ]
        return ReportTable(columns, breakdown.rows, breakdown.totals, previous=previous)


def deliveries_in(filters: ReportFilters) -> int:
    """Every delivery the filters count (the kind does not narrow deliveries):
    from the daily rollups where they answer, else counted live."""
    dimension = next(
        (
            name
            for name in ("source", "flow", "buyer")
            if getattr(filters, f"{name}_id")
        ),
        "source",
    )
    if rollup_usable(filters, dimension) is not None:
        rollups = DailyRollup.objects.filter(
            rollup_days(dimension, filters.start, filters.end), kind=""
        )
        own = getattr(filters, f"{dimension}_id")
        if own is not None:
            rollups = rollups.filter(key=str(own))
        return rollups.aggregate(n=Sum("delivered"))["n"] or 0
    return DeliveryEvent.objects.filter(filters.delivery_q()).count()


class TrendReport(Report):
    """Daily accepted conversions and returns, by the basis date."""

    code = "trends"
    name = "Daily trends"
    description = "Accepted conversions and returns per day."

    def generate(self) -> ReportTable:
        by_day = self._from_rollups()
        if by_day is None:
            by_day = self._live()
        rows = []
        for day in self.filters.days:
            found: dict[str, Any] = by_day.get(day, {})
            rows.append(
                {
                    "day": day,
                    "conversions": found.get("conversions", 0),
                    "returns": found.get("returns", 0),
                }
            )
        columns = [
            Column("day", "Day", "date"),
            Column("conversions", "Conversions"),
            Column("returns", "Returns"),
        ]
        totals = {
            "day": "Total",
            "conversions": sum(r["conversions"] for r in rows),
            "returns": sum(r["returns"] for r in rows),
        }
        return ReportTable(columns, rows, totals)

    def _from_rollups(self) -> dict[Any, dict[str, Any]] | None:
        """Per day from the rollups of the one filtered dimension (or of kind),
        or None when they cannot answer."""
        f = self.filters
        filtered = [name for name in ON_DELIVERY if getattr(f, f"{name}_id")]
        if len(filtered) > 1:
            return None
        dimension = filtered[0] if filtered else "kind"
        state = rollup_usable(f, dimension)
        if state is None:
            return None
        self.rollups_as_of = state.refreshed_at
        kinds = [k for k in (Kind.CONVERSION, Kind.RETURN) if f.kind in (None, k)]
        rollups = DailyRollup.objects.filter(
            dimension=dimension,
            day__gte=f.start,
            day__lte=f.end,
            kind__in=[k.value for k in kinds],
        )
        if filtered:
            rollups = rollups.filter(key=str(getattr(f, f"{dimension}_id")))
        by_day: dict[Any, dict[str, Any]] = defaultdict(dict)
        for row in rollups.values("day", "kind").annotate(n=Sum("accepted")).order_by():
            measure = "conversions" if row["kind"] == Kind.CONVERSION else "returns"
            by_day[row["day"]][measure] = row["n"] or 0
        return by_day

    def _live(self) -> dict[Any, dict[str, Any]]:
        day_field = (
            "delivery__delivered_at" if self.filters.by_delivery else "received_at"
        )
        counted = (
            Feedback.objects.filter(self.filters.feedback_q())
            .annotate(day=TruncDate(day_field, tzinfo=timezone.get_current_timezone()))
            .values("day")
            .annotate(
                conversions=Count("pk", filter=ACCEPTED & Q(kind=Kind.CONVERSION)),
                returns=Count("pk", filter=ACCEPTED & Q(kind=Kind.RETURN)),
            )
            .order_by()
        )
        return {row["day"]: dict(row) for row in counted}

    def charts(self, table: ReportTable) -> list[SafeString]:
        return [
            line_chart(
                [row["day"] for row in table.rows],
                [
                    Series("Conversions", [row["conversions"] for row in table.rows]),
                    Series("Returns", [row["returns"] for row in table.rows]),
                ],
                title="Daily conversions and returns",
                description="Accepted conversions and returns per day; the table "
                "below has every value.",
            )
        ]


def source_score(row: dict[str, Any], *, takes_returns: bool = True) -> float | None:
    """The 0-100 score of docs/reports.md from a by-source row; None without
    deliveries. A component without data (contact rate with no coded feedback,
    the return rate of a source that takes no returns) is left out and the
    others are scaled up to 100."""
    if not row["delivered"]:
        return None
    components = {
        "conversion": min((row["conversion_rate"] or 0) / SCORE_CONVERSION_TARGET, 1.0),
        # A source that refuses every return has a 0 % return rate that says
        # nothing about its leads: it must not earn the component for it.
        "returns": (
            max(0.0, 1 - (row["return_rate"] or 0) / SCORE_RETURN_CEILING)
            if takes_returns
            else None
        ),
        "contact": row["contact_rate"],
        "coverage": row["coverage"],
    }
    present = {k: v for k, v in components.items() if v is not None}
    weight = sum(SCORE_WEIGHTS[k] for k in present)
    return 100 * sum(SCORE_WEIGHTS[k] * v for k, v in present.items()) / weight


NO_RETURNS_NOTE = "Takes no returns: scored without the return rate"


def sources_refusing_returns(keys: Iterable[Any]) -> set[Any]:
    """The sources among `keys` that take no returns (`accepts_return` off: the
    intake refuses every return about their leads), in one query."""
    ids = [key for key in keys if key is not None]
    if not ids:
        return set()
    refusing = Source.objects.filter(pk__in=ids, accepts_return=False)
    return set(refusing.values_list("pk", flat=True))


class ScorecardReport(Report):
    code = "scorecard"
    name = "Source scorecard"
    description = "Sources ranked by a 0-100 score, with the numbers behind it."

    def generate(self) -> ReportTable:
        breakdown = breakdown_rows(self.filters, DIMENSIONS["source"])
        rows = breakdown.rows
        self.rollups_as_of = breakdown.as_of
        refusing = sources_refusing_returns(row["key"] for row in rows)
        scored = []
        for row in rows:
            takes_returns = row["key"] not in refusing
            row["score"] = source_score(row, takes_returns=takes_returns)
            row["note"] = "" if takes_returns else NO_RETURNS_NOTE
            if not takes_returns:
                # Its 0 % says nothing: shown as no rate, like the score ignores it.
                row["return_rate"] = None
            if row["score"] is not None:
                scored.append(row)
        scored.sort(key=lambda r: (-r["score"], r["label"]))
        for rank, row in enumerate(scored, 1):
            row["rank"] = rank
        previous = self.filters.previous()
        before = breakdown_rows(previous, DIMENSIONS["source"]).rows
        for row in before:
            takes_returns = row["key"] not in refusing
            row["score"] = source_score(row, takes_returns=takes_returns)
            if not takes_returns:
                row["return_rate"] = None
        attach_previous(scored, None, before, None)
        columns = [
            Column("label", "Source", "text"),
            Column("rank", "Rank"),
            Column("score", "Score", "score", compare=True),
            Column("delivered", "Delivered"),
            Column("conversions", "Conversions"),
            Column("conversion_rate", "Conversion rate", "rate", compare=True),
            Column("returns", "Returns"),
            Column("return_rate", "Return rate", "rate", compare=True),
            Column("refused_returns", "Refused returns"),
            Column("contacted", "Contacted", default=False),
            Column("not_contacted", "Not contacted", default=False),
            Column("contact_rate", "Contact rate", "rate"),
            Column("covered", "With feedback", default=False),
            Column("coverage", "Feedback coverage", "rate"),
            Column("note", "Note", "text"),
        ]
        return ReportTable(columns, scored, previous=previous)
