"""Report generators: each turns a filter into a table for HTML and CSV.

In the spirit of django-oscar's dashboard reports: one class per report, a
`generate()` that returns columns and rows, and no knowledge of HTML or CSV. Every
generator runs a fixed number of GROUP BY queries, whatever the number of groups:
labels are fetched in one query per dimension, never per row. docs/reports.md
defines every figure.
"""

import datetime
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from django.db import connection
from django.db.models import (
    Aggregate,
    Count,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    FloatField,
    Func,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Value,
)
from django.db.models.functions import TruncDate, TruncMonth
from django.utils import timezone
from django.utils.safestring import SafeString

from feedback.forwarding.models import Notification, NotificationAttempt
from feedback.models import Buyer, DeliveryEvent, Feedback, Flow
from reporting.charts import Series, bar_chart, line_chart
from reporting.filters import ReportFilters
from reporting.measures import (
    ACCEPTED,
    ON_DELIVERY,
    feedback_measures,
    outcome_vocabulary,
)
from reporting.models import DailyRollup, RollupState, TimingRollup
from reporting.rollups import (
    FEEDBACK_SIDE as ROLLUP_FEEDBACK_SIDE,
)
from reporting.rollups import (
    RECEIVED,
    distinct_deliveries,
    month_start,
    next_month,
    rollup_state,
    rollups_enabled,
    start_of,
)
from reporting.timing import TTF_BUCKETS, Histogram, binned, histograms
from sources.models import FeedbackConfig, Kind, Source

SUCCESS = Feedback.Outcome.SUCCESS
FAILURE = Feedback.Outcome.FAILURE


# Source scorecard: weights of each component (docs/reports.md, "Source scorecard").
SCORE_WEIGHTS = {"conversion": 40.0, "returns": 30.0, "contact": 20.0, "coverage": 10.0}
# A conversion rate at or above this earns the full conversion component.
SCORE_CONVERSION_TARGET = 0.25
# A return rate at or above this earns nothing for the returns component.
SCORE_RETURN_CEILING = 0.50


CHART_BARS = 15

# Columns and tables ------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column: `kind` says how to show it (count, money, rate, score, seconds,
    number, text, date, month)."""

    key: str
    label: str
    kind: str = "count"


@dataclass
class ReportTable:
    columns: list[Column]
    rows: list[dict[str, Any]]
    totals: dict[str, Any] | None = None

    def csv_rows(self) -> Iterable[list[Any]]:
        """Rows as CSV cells: rates as percentages, durations in seconds."""
        rows = list(self.rows)
        if self.totals is not None:
            rows.append(self.totals)
        for row in rows:
            yield [csv_value(column, row.get(column.key)) for column in self.columns]

    def csv_header(self) -> list[str]:
        return [csv_label(column) for column in self.columns]


def csv_label(column: Column) -> str:
    suffix = {"rate": " (%)", "seconds": " (seconds)"}.get(column.kind, "")
    return column.label + suffix


def csv_value(column: Column, value: Any) -> Any:
    if value is None:
        return None
    if column.kind == "rate":
        return round(value * 100, 2)
    if column.kind in ("seconds", "number", "score"):
        return round(value, 2)
    if column.kind == "month":
        return value.strftime("%Y-%m")
    return value


def rate(numerator: int | float, denominator: int | float) -> float | None:
    return numerator / denominator if denominator else None


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


class PercentileCont(Aggregate):
    """percentile_cont(fraction) WITHIN GROUP (ORDER BY expression): PostgreSQL."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, *, fraction: float, **extra: Any) -> None:
        # A float literal, never user input: formatted into the SQL as a number.
        super().__init__(expression, fraction=float(fraction), **extra)


class EpochSeconds(Func):
    """Seconds in an interval (PostgreSQL)."""

    template = "EXTRACT(EPOCH FROM %(expressions)s)"
    output_field = FloatField()


# Labels -------------------------------------------------------------------------------


def _names(model: type[Any], keys: Iterable[Any]) -> dict[Any, str]:
    ids = [key for key in keys if key is not None]
    if not ids:
        return {}
    return dict(model.objects.filter(pk__in=ids).values_list("pk", "name"))


KIND_LABELS = dict(Kind.choices)


# Breakdowns ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Dimension:
    code: str
    label: str
    field: str  # on Feedback (and on DeliveryEvent when `on_delivery`)
    on_delivery: bool
    label_for: Callable[[Iterable[Any]], dict[Any, str]]


DIMENSIONS: dict[str, Dimension] = {
    "reason": Dimension(
        "reason",
        "Reason",
        "reason",
        False,
        lambda keys: {key: key or "(no reason)" for key in keys},
    ),
    "source": Dimension(
        "source", "Source", "source_id", True, lambda keys: _names(Source, keys)
    ),
    "flow": Dimension("flow", "Flow", "flow_id", True, lambda keys: _names(Flow, keys)),
    "buyer": Dimension(
        "buyer", "Buyer", "buyer_id", True, lambda keys: _names(Buyer, keys)
    ),
    "kind": Dimension(
        "kind",
        "Kind",
        "kind",
        False,
        lambda keys: {key: KIND_LABELS.get(key, key) for key in keys},
    ),
}


BREAKDOWN_COLUMNS = [
    Column("delivered", "Delivered"),
    Column("received", "Feedback received"),
    Column("accepted", "Accepted"),
    Column("refused", "Refused"),
    Column("conversions", "Conversions"),
    Column("returns", "Returns"),
    Column("status_updates", "Status updates"),
    Column("conversion_rate", "Conversion rate", "rate"),
    Column("return_rate", "Return rate", "rate"),
    Column("revenue", "Revenue", "money"),
    Column("cost", "Cost", "money"),
    Column("cost_per_conversion", "Cost per conversion", "money"),
    Column("avg_quality", "Average quality", "number"),
    Column("coverage", "Feedback coverage", "rate"),
]


def _finish_row(row: dict[str, Any]) -> dict[str, Any]:
    """Derived measures from the counted ones."""
    delivered = row.get("delivered") or 0
    row.setdefault("delivered", 0)
    row["cost"] = row.get("cost") or Decimal("0.00")
    row["revenue"] = row.get("revenue") or Decimal("0.00")
    for key in ("received", "accepted", "refused", "conversions", "returns"):
        row.setdefault(key, 0)
    row.setdefault("status_updates", 0)
    row.setdefault("covered", 0)
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
        row.get("contacted", 0), row.get("contacted", 0) + row.get("not_contacted", 0)
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
    rows = []
    for key, values in by_key.items():
        row = _finish_row({"key": key, "label": labels.get(key, str(key)), **values})
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
    """The same figures as the live count, summed from the daily rollups."""
    kinds = [filters.kind] if filters.kind else [k.value for k in Kind]
    rollups = DailyRollup.objects.filter(
        dimension=dimension.code,
        day__gte=filters.start,
        day__lte=filters.end,
        kind__in=["", *kinds],
    )
    own = getattr(filters, f"{dimension.code}_id", None)
    if own is not None:
        rollups = rollups.filter(key=str(own))
    sums = {
        name: Sum(name)
        for name in ("delivered", "cost", "covered", *ROLLUP_FEEDBACK_SIDE)
    }
    by_key: dict[Any, dict[str, Any]] = defaultdict(dict)
    for values in _dicts(rollups.values("key", "kind").annotate(**sums).order_by()):
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
        if filters.kind:
            # Narrowed to one kind: its own deliveries (reason, kind) and coverage.
            row["covered"] = values["covered"]
            if not dimension.on_delivery:
                row["delivered"] = values["covered"]
                row["cost"] = values["cost"]
    if filters.kind and not dimension.on_delivery:
        # Groups with no feedback of the kind have no deliveries to show.
        by_key = defaultdict(dict, {k: v for k, v in by_key.items() if "received" in v})
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
    feedback_about = Feedback.objects.filter(delivery=OuterRef("pk"))
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
    return _finish_row(summed)


# Report classes ----------------------------------------------------------------------


class Report:
    """A report: a code for URLs, a title, and a table from the filters."""

    code: ClassVar[str]
    name: ClassVar[str]
    description: ClassVar[str]
    # Whether the date basis applies; billing and queue depth ignore it.
    uses_basis: ClassVar[bool] = True
    # Templates list report classes: read their attributes, do not instantiate.
    do_not_call_in_templates: ClassVar[bool] = True

    def __init__(self, filters: ReportFilters) -> None:
        self.filters = filters
        # Set by generate() when the figures come from the daily rollups.
        self.rollups_as_of: datetime.datetime | None = None
        # Set by generate() when percentiles are read from histograms (within 1%).
        self.estimated = False

    def generate(self) -> ReportTable:
        raise NotImplementedError

    def charts(self, table: ReportTable) -> list[SafeString]:
        """Charts drawn from the table, shown above it."""
        return []

    def filename(self) -> str:
        return (
            f"leadback-{self.code}-{self.filters.start.isoformat()}-"
            f"{self.filters.end.isoformat()}.csv"
        )


class BreakdownReport(Report):
    dimension: ClassVar[Dimension]

    def generate(self) -> ReportTable:
        breakdown = breakdown_rows(self.filters, self.dimension)
        rows, totals = breakdown.rows, breakdown.totals
        self.rollups_as_of = breakdown.as_of
        columns = [Column("label", self.dimension.label, "text"), *BREAKDOWN_COLUMNS]
        return ReportTable(columns, rows, totals)


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


class ReasonBreakdownReport(
    _breakdown(  # type: ignore[misc]
        "reason", "Which reasons leads come back or convert for, and what they cost."
    )
):
    def charts(self, table: ReportTable) -> list[SafeString]:
        returned = sorted(
            (row for row in table.rows if row["returns"]),
            key=lambda row: (-row["returns"], row["label"]),
        )[:CHART_BARS]
        return [
            bar_chart(
                [(row["label"], row["returns"]) for row in returned],
                title="Returns by reason",
                description="Accepted returns per reason, largest first"
                + (f" (top {CHART_BARS})." if len(returned) == CHART_BARS else "."),
            )
        ]


SourceBreakdownReport = _breakdown(
    "source", "Which sources convert, which come back, and what they cost."
)
FlowBreakdownReport = _breakdown("flow", "The same measures per flow.")
BuyerBreakdownReport = _breakdown(
    "buyer", "Which buyers report, convert and return: who needs coaching."
)
KindBreakdownReport = _breakdown("kind", "Conversions, returns and status updates.")


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


class TimeToFeedbackReport(Report):
    """From delivery to each feedback's arrival, per source or per buyer."""

    dimension: ClassVar[Dimension]

    def generate(self) -> ReportTable:
        rows_by_key = self._from_rollups()
        if rows_by_key is None:
            rows_by_key = self._live()
        labels = self.dimension.label_for(rows_by_key.keys())
        rows = [
            {"key": key, "label": labels.get(key, str(key)), **values}
            for key, values in rows_by_key.items()
        ]
        rows.sort(key=lambda r: (-r["feedback"], r["label"]))
        columns = [
            Column("label", self.dimension.label, "text"),
            Column("feedback", "Feedback"),
            Column("median", "Median", "seconds"),
            Column("p90", "90th percentile", "seconds"),
            Column("under_1h", "< 1 h"),
            Column("1h_24h", "1-24 h"),
            Column("1d_7d", "1-7 d"),
            Column("7d_30d", "7-30 d"),
            Column("over_30d", "> 30 d"),
        ]
        return ReportTable(columns, rows)

    def _from_rollups(self) -> dict[Any, dict[str, Any]] | None:
        """Whole delivery months from the timing rollups, the days around them
        counted live into the same bins; None where the rollups cannot answer
        (then every figure is counted live and exact)."""
        f = self.filters
        code = self.dimension.code
        if f.kind:
            return None  # the histograms hold every kind together
        first = f.start if f.start.day == 1 else next_month(month_start(f.start))
        end = month_start(f.end + datetime.timedelta(days=1))
        if first >= end:
            return None  # no whole month in the range
        state = rollup_usable(f, code)
        if state is None:
            return None
        own = getattr(f, f"{code}_id")
        rollups = TimingRollup.objects.filter(
            dimension=code, month__gte=first, month__lt=end
        )
        if own is not None:
            rollups = rollups.filter(key=own)
        rows = list(
            rollups.values("key", "bucket", "bin")
            .annotate(count=Sum("count"))
            .order_by()
        )
        found = histograms(rows, "key")
        edges = Q()
        if f.since < start_of(first):
            edges |= Q(
                delivery__delivered_at__gte=f.since,
                delivery__delivered_at__lt=start_of(first),
            )
        if start_of(end) < f.until:
            edges |= Q(
                delivery__delivered_at__gte=start_of(end),
                delivery__delivered_at__lt=f.until,
            )
        if edges:
            feedback = Feedback.objects.filter(edges & f.feedback_q())
            for row in binned(feedback, self.dimension.field):
                histogram = found.setdefault(row[self.dimension.field], Histogram())
                histogram.add(row["bucket"], row["bin"], row["count"])
        self.rollups_as_of = state.refreshed_at
        self.estimated = True
        result = {}
        for key, histogram in found.items():
            buckets = histogram.bucket_counts()
            result[key] = {
                "feedback": histogram.total,
                "median": histogram.percentile(0.5),
                "p90": histogram.percentile(0.9),
                **{name: buckets[i] for i, (name, _, _) in enumerate(TTF_BUCKETS)},
            }
        return result

    def _live(self) -> dict[Any, dict[str, Any]]:
        field = self.dimension.field
        feedback = Feedback.objects.filter(self.filters.feedback_q())
        delivered = F("delivery__delivered_at")
        buckets: dict[str, Aggregate] = {}
        for key, lower, upper in TTF_BUCKETS:
            q = Q()
            if lower is not None:
                q &= Q(received_at__gte=_plus(delivered, lower))
            if upper is not None:
                q &= Q(received_at__lt=_plus(delivered, upper))
            buckets[key] = Count("pk", filter=q)
        if is_postgresql():
            # Percentiles in the same pass as the buckets: one scan of the join.
            seconds = EpochSeconds(F("received_at") - F("delivery__delivered_at"))
            buckets["median"] = PercentileCont(seconds, fraction=0.5)
            buckets["p90"] = PercentileCont(seconds, fraction=0.9)
        rows_by_key: dict[Any, dict[str, Any]] = {}
        for values in _dicts(
            feedback.values(field).annotate(feedback=Count("pk"), **buckets).order_by()
        ):
            rows_by_key[values.pop(field)] = values
        if not is_postgresql():
            for key, median, p90 in self._percentiles(feedback, field):
                rows_by_key.setdefault(key, {}).update(median=median, p90=p90)
        return rows_by_key

    @staticmethod
    def _percentiles(
        feedback: QuerySet[Feedback], field: str
    ) -> list[tuple[Any, float | None, float | None]]:
        """SQLite has no percentile_cont: one query for the pairs, the rest here."""
        durations: dict[Any, list[float]] = defaultdict(list)
        for key, received, delivered in feedback.values_list(
            field, "received_at", "delivery__delivered_at"
        ).iterator(chunk_size=5000):
            durations[key].append((received - delivered).total_seconds())
        return [
            (key, percentile(values, 0.5), percentile(values, 0.9))
            for key, values in durations.items()
        ]


def _plus(expression: F, delta: datetime.timedelta) -> Any:
    return ExpressionWrapper(
        expression + Value(delta, output_field=DurationField()),
        output_field=DateTimeField(),
    )


class SourceTimeToFeedbackReport(TimeToFeedbackReport):
    code = "time-to-feedback-by-source"
    name = "Time to feedback by source"
    description = "How long after delivery feedback arrives, per source."
    dimension = DIMENSIONS["source"]


class BuyerTimeToFeedbackReport(TimeToFeedbackReport):
    code = "time-to-feedback-by-buyer"
    name = "Time to feedback by buyer"
    description = "How long each buyer takes to report."
    dimension = DIMENSIONS["buyer"]


def source_score(row: dict[str, Any]) -> float | None:
    """The 0-100 score of docs/reports.md from a by-source row; None without
    deliveries. A component without data (contact rate with no coded feedback)
    is left out and the others are scaled up to 100."""
    if not row["delivered"]:
        return None
    components = {
        "conversion": min((row["conversion_rate"] or 0) / SCORE_CONVERSION_TARGET, 1.0),
        "returns": max(0.0, 1 - (row["return_rate"] or 0) / SCORE_RETURN_CEILING),
        "contact": row["contact_rate"],
        "coverage": row["coverage"],
    }
    present = {k: v for k, v in components.items() if v is not None}
    weight = sum(SCORE_WEIGHTS[k] for k in present)
    return 100 * sum(SCORE_WEIGHTS[k] * v for k, v in present.items()) / weight


class ScorecardReport(Report):
    code = "scorecard"
    name = "Source scorecard"
    description = "Sources ranked by a 0-100 score, with the numbers behind it."

    def generate(self) -> ReportTable:
        breakdown = breakdown_rows(self.filters, DIMENSIONS["source"])
        rows = breakdown.rows
        self.rollups_as_of = breakdown.as_of
        scored = []
        for row in rows:
            row["score"] = source_score(row)
            if row["score"] is not None:
                scored.append(row)
        scored.sort(key=lambda r: (-r["score"], r["label"]))
        for rank, row in enumerate(scored, 1):
            row["rank"] = rank
        columns = [
            Column("rank", "Rank"),
            Column("label", "Source", "text"),
            Column("score", "Score", "score"),
            Column("delivered", "Delivered"),
            Column("conversions", "Conversions"),
            Column("conversion_rate", "Conversion rate", "rate"),
            Column("returns", "Returns"),
            Column("return_rate", "Return rate", "rate"),
            Column("contacted", "Contacted"),
            Column("not_contacted", "Not contacted"),
            Column("contact_rate", "Contact rate", "rate"),
            Column("covered", "With feedback"),
            Column("coverage", "Feedback coverage", "rate"),
        ]
        return ReportTable(columns, scored)


class DeliveryHealthReport(Report):
    """Feedback sent to sources, per source config."""

    code = "delivery-health"
    name = "Feedback sent: delivery health"
    description = (
        "Per source config: outcomes, response times, retries, queue depth and age."
    )

    def _notifications_q(self, prefix: str = "") -> Q:
        f = self.filters
        date = f"{prefix}lead_delivered_at" if f.by_delivery else f"{prefix}created_at"
        q = Q(**{f"{date}__gte": f.since, f"{date}__lt": f.until})
        return q & self._dimensions_q(prefix)

    def _dimensions_q(self, prefix: str = "") -> Q:
        f = self.filters
        q = Q()
        if f.source_id is not None:
            q &= Q(**{f"{prefix}source_id": f.source_id})
        if f.flow_id is not None:
            q &= Q(**{f"{prefix}feedback__flow_id": f.flow_id})
        if f.buyer_id is not None:
            q &= Q(**{f"{prefix}feedback__buyer_id": f.buyer_id})
        if f.kind:
            q &= Q(**{f"{prefix}kind": f.kind})
        return q

    def generate(self) -> ReportTable:
        status = Notification.Status
        rows: dict[Any, dict[str, Any]] = defaultdict(dict)
        for values in _dicts(
            Notification.objects.filter(self._notifications_q())
            .values("config_id")
            .annotate(
                notifications=Count("pk"),
                succeeded=Count("pk", filter=Q(status=status.SUCCEEDED)),
                failed=Count("pk", filter=Q(status=status.FAILED)),
                dead=Count("pk", filter=Q(status=status.DEAD)),
                retried_then_succeeded=Count(
                    "pk", filter=Q(status=status.SUCCEEDED, attempt_count__gt=1)
                ),
            )
            .order_by()
        ):
            rows[values.pop("config_id")].update(values)

        # One join: the notification's own columns filter and group its attempts.
        attempts = NotificationAttempt.objects.filter(
            self._notifications_q("notification__")
        )
        measures: dict[str, Aggregate] = {
            "attempts": Count("pk"),
            "errors": Count("pk", filter=Q(outcome="error")),
        }
        if is_postgresql():
            measures["median_ms"] = PercentileCont(F("duration_ms"), fraction=0.5)
            measures["p95_ms"] = PercentileCont(F("duration_ms"), fraction=0.95)
        for values in _dicts(
            attempts.values("notification__config_id").annotate(**measures).order_by()
        ):
            rows[values.pop("notification__config_id")].update(values)
        if not is_postgresql():
            for key, median, p95 in self._response_times(attempts):
                rows[key].update(median_ms=median, p95_ms=p95)

        now = timezone.now()
        for values in _dicts(
            Notification.objects.filter(
                Q(status__in=Notification.OPEN_STATUSES) & self._dimensions_q()
            )
            .values("config_id")
            .annotate(queue_depth=Count("pk"), oldest=Min("created_at"))
            .order_by()
        ):
            key = values.pop("config_id")
            oldest = values.pop("oldest")
            rows[key].update(
                queue_depth=values["queue_depth"],
                oldest_pending_s=(now - oldest).total_seconds(),
            )

        configs = FeedbackConfig.objects.select_related("source").in_bulk(
            [key for key in rows if key is not None]
        )
        result = []
        for key, found in rows.items():
            config = configs.get(key) if key is not None else None
            row = {
                "key": key,
                "label": str(config) if config else "(deleted config)",
                "notifications": 0,
                "succeeded": 0,
                "failed": 0,
                "dead": 0,
                "retried_then_succeeded": 0,
                "attempts": 0,
                "errors": 0,
                "queue_depth": 0,
                "oldest_pending_s": None,
                "median_ms": None,
                "p95_ms": None,
                **found,
            }
            finished = row["succeeded"] + row["failed"] + row["dead"]
            row["success_rate"] = rate(row["succeeded"], finished)
            result.append(row)
        result.sort(key=lambda r: (-r["notifications"], r["label"]))
        columns = [
            Column("label", "Source config", "text"),
            Column("notifications", "Notifications"),
            Column("succeeded", "Success"),
            Column("failed", "Failure"),
            Column("errors", "Errors (tries)"),
            Column("dead", "Dead"),
            Column("success_rate", "Success rate", "rate"),
            Column("median_ms", "Median response (ms)", "number"),
            Column("p95_ms", "p95 response (ms)", "number"),
            Column("retried_then_succeeded", "Retries that later succeeded"),
            Column("queue_depth", "Queue depth now"),
            Column("oldest_pending_s", "Oldest pending", "seconds"),
        ]
        return ReportTable(columns, result)

    @staticmethod
    def _response_times(
        attempts: QuerySet[NotificationAttempt],
    ) -> list[tuple[Any, float | None, float | None]]:
        """Median and p95 computed here, for SQLite."""
        key = "notification__config_id"
        durations: dict[Any, list[float]] = defaultdict(list)
        for config_id, duration in attempts.values_list(key, "duration_ms").iterator(
            chunk_size=5000
        ):
            durations[config_id].append(float(duration))
        return [
            (config_id, percentile(values, 0.5), percentile(values, 0.95))
            for config_id, values in durations.items()
        ]


class BillingReport(Report):
    """Feedback events per month, by when each event happened."""

    code = "billing"
    name = "Billing: events per month"
    description = "Feedback received and feedback sent events, per calendar month."
    uses_basis = False

    def _received_from_rollups(self) -> list[dict[str, Any]] | None:
        """Feedback received per month from the received-day rollups, or None when
        they cannot answer (rollups off or not built, more than one of source, flow
        and buyer filtered)."""
        f = self.filters
        filtered = [name for name in ON_DELIVERY if getattr(f, f"{name}_id")]
        if len(filtered) > 1 or not rollups_enabled():
            return None
        state = rollup_state()
        if state is None:
            return None
        self.rollups_as_of = state.refreshed_at
        dimension = filtered[0] if filtered else "kind"
        rollups = DailyRollup.objects.filter(
            dimension=RECEIVED + dimension, day__gte=f.start, day__lte=f.end
        )
        if f.kind:
            rollups = rollups.filter(kind=f.kind)
        if filtered:
            rollups = rollups.filter(key=str(getattr(f, f"{dimension}_id")))
        return _dicts(
            rollups.annotate(month=TruncMonth("day"))
            .values("month")
            .annotate(
                received=Sum("received"),
                received_accepted=Sum("accepted"),
                received_refused=Sum("refused"),
            )
            .order_by()
        )

    def generate(self) -> ReportTable:
        f = self.filters
        tz = timezone.get_current_timezone()
        dims = Q()
        for name in ("source_id", "flow_id", "buyer_id"):
            if getattr(f, name) is not None:
                dims &= Q(**{name: getattr(f, name)})
        if f.kind:
            dims &= Q(kind=f.kind)
        months: dict[Any, dict[str, Any]] = defaultdict(dict)
        received = self._received_from_rollups()
        if received is None:
            received = _dicts(
                Feedback.objects.filter(
                    dims, received_at__gte=f.since, received_at__lt=f.until
                )
                .annotate(month=TruncMonth("received_at", tzinfo=tz))
                .values("month")
                .annotate(
                    received=Count("pk"),
                    received_accepted=Count("pk", filter=ACCEPTED),
                    received_refused=Count("pk", filter=Q(outcome=FAILURE)),
                )
                .order_by()
            )
        for values in received:
            months[_month(values.pop("month"))].update(values)
        sent_dims = Q()
        if f.source_id is not None:
            sent_dims &= Q(source_id=f.source_id)
        if f.flow_id is not None:
            sent_dims &= Q(feedback__flow_id=f.flow_id)
        if f.buyer_id is not None:
            sent_dims &= Q(feedback__buyer_id=f.buyer_id)
        if f.kind:
            sent_dims &= Q(kind=f.kind)
        server_error = NotificationAttempt.objects.filter(
            notification=OuterRef("pk"), response_status__gte=500
        )
        for values in _dicts(
            Notification.objects.filter(
                sent_dims,
                attempt_count__gt=0,
                created_at__gte=f.since,
                created_at__lt=f.until,
            )
            .annotate(month=TruncMonth("created_at", tzinfo=tz))
            .values("month")
            .annotate(
                sent_total=Count("pk"),
                sent_5xx=Count("pk", filter=Q(Exists(server_error))),
            )
            .order_by()
        ):
            months[_month(values.pop("month"))].update(values)

        rows: list[dict[str, Any]] = []
        for month in sorted(months):
            values = months[month]
            total = values.get("sent_total", 0)
            failed = values.get("sent_5xx", 0)
            rows.append(
                {
                    "month": month,
                    "received": values.get("received", 0),
                    "received_accepted": values.get("received_accepted", 0),
                    "received_refused": values.get("received_refused", 0),
                    "sent": total - failed,
                    "sent_5xx": failed,
                }
            )
        columns = [
            Column("month", "Month", "month"),
            Column("received", "Feedback received"),
            Column("received_accepted", "of which accepted"),
            Column("received_refused", "of which refused"),
            Column("sent", "Feedback sent"),
            Column("sent_5xx", "Sent, answered 5xx"),
        ]
        totals: dict[str, Any] = {"month": None, "label": "Total"}
        for column in columns[1:]:
            totals[column.key] = sum(row[column.key] for row in rows)
        return ReportTable(columns, rows, totals)


def _dicts(queryset: Iterable[Any]) -> list[dict[str, Any]]:
    """Rows of a values() queryset as plain dicts (typed, and safe to pop)."""
    return [dict(row) for row in queryset]


def _month(value: datetime.date | datetime.datetime) -> datetime.date:
    return datetime.date(value.year, value.month, 1)


REPORTS: dict[str, type[Report]] = {
    report.code: report
    for report in (
        TrendReport,
        ReasonBreakdownReport,
        SourceBreakdownReport,
        FlowBreakdownReport,
        BuyerBreakdownReport,
        KindBreakdownReport,
        SourceTimeToFeedbackReport,
        BuyerTimeToFeedbackReport,
        ScorecardReport,
        DeliveryHealthReport,
        BillingReport,
    )
}
