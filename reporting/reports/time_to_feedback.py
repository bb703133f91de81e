"""Time to feedback: median, p90 and buckets per source or buyer, from the
timing rollups for whole months and counted live at the edges."""

import datetime
from collections import defaultdict
from typing import Any, ClassVar

from django.db.models import (
    Aggregate,
    Count,
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    Value,
)

from feedback.models import Feedback
from reporting.models import TimingRollup
from reporting.reports.base import (
    Column,
    EpochSeconds,
    PercentileCont,
    Report,
    ReportTable,
    as_dicts,
    is_postgresql,
    percentile,
)
from reporting.reports.breakdowns import DIMENSIONS, Dimension, rollup_usable
from reporting.rollups import (
    month_start,
    next_month,
    start_of,
    timing_months,
)
from reporting.timing import TTF_BUCKETS, Histogram, binned


class TimeToFeedbackReport(Report):
    """From delivery to each feedback's arrival, per source or per buyer."""

    dimension: ClassVar[Dimension]

    def generate(self) -> ReportTable:
        rows_by_key = self._from_rollups()
        if rows_by_key is None:
            rows_by_key = self._live()
        labels = self.dimension.label_for(rows_by_key.keys())
        badge_for = self.dimension.badge_for
        badges = badge_for(rows_by_key.keys()) if badge_for else {}
        rows = [
            {
                "key": key,
                "label": labels.get(key, str(key)),
                "badge": badges.get(key),
                **values,
            }
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
        rollups = TimingRollup.objects.filter(timing_months(code, first, end))
        if own is not None:
            rollups = rollups.filter(key=own)
        found: dict[Any, Histogram] = {}
        # Merged here, not grouped in the database: a group's bins are added
        # up as they come, whichever rows (months, years) hold them.
        for key, bucket, log_bin, count in rollups.values_list(
            "key", "bucket", "bin", "count"
        ).order_by():
            histogram = found.get(key)
            if histogram is None:
                histogram = found[key] = Histogram()
            histogram.counts[(bucket, log_bin)] += count
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
            total, buckets, (median, p90) = histogram.summary(0.5, 0.9)
            result[key] = {
                "feedback": total,
                "median": median,
                "p90": p90,
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
        for values in as_dicts(
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
