"""Time to feedback as mergeable histograms: exact bucket counts, percentiles
within 1%.

A percentile of a million durations means sorting a million values, and
percentiles of days do not add up to the percentile of a month. Counts per bin
do. Each duration falls in one of the report's buckets (< 1 h, 1-24 h, ...) and
in one log-scale bin: bin 0 holds durations under one second, bin b >= 1 holds
[GROWTH ** (b - 1), GROWTH ** b) seconds, a bin 2% wider than the one before. A
bin's midpoint is within 1% of any duration in it, so a percentile read from the
bins (the value at each rank replaced by its bin's midpoint, interpolated like
percentile_cont) is within 1% of the exact one. Bins straddling a bucket bound
are split by the bucket, so bucket counts stay exact.

About 1,000 bins cover ten years; a month of one source's feedback fills a few
hundred of them.
"""

import datetime
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from django.db.models import (
    Case,
    Count,
    F,
    FloatField,
    Func,
    IntegerField,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Cast, Floor, Ln

HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)
# The report's buckets: (column, lower bound, upper bound), the upper bound excluded.
TTF_BUCKETS: tuple[
    tuple[str, datetime.timedelta | None, datetime.timedelta | None], ...
] = (
    ("under_1h", None, HOUR),
    ("1h_24h", HOUR, DAY),
    ("1d_7d", DAY, 7 * DAY),
    ("7d_30d", 7 * DAY, 30 * DAY),
    ("over_30d", 30 * DAY, None),
)
# Bucket bounds in seconds: bucket i is [BOUNDS[i - 1], BOUNDS[i]).
BOUNDS = tuple(
    upper.total_seconds() for _, _, upper in TTF_BUCKETS if upper is not None
)
GROWTH = 1.02
# The largest relative distance from a bin's midpoint to a duration in the bin.
RELATIVE_ERROR = (GROWTH - 1) / 2


class SecondsBetween(Func):
    """`later - earlier` in seconds, to the microsecond on PostgreSQL and to
    the millisecond on SQLite (the precision of its julianday())."""

    arity = 2
    output_field = FloatField()
    template = "EXTRACT(EPOCH FROM %(expressions)s)"
    arg_joiner = " - "

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return super().as_sql(
            compiler,
            connection,
            template="ROUND((julianday(%(expressions)s)) * 86400.0, 3)",
            arg_joiner=") - julianday(",
            **extra,
        )


def binned(
    feedback: QuerySet[Any], *fields: str, delivered: str = "delivery__delivered_at"
) -> QuerySet[Any, dict[str, Any]]:
    """Per value of `fields`, bucket and bin: how many feedback (`count`)."""
    seconds = SecondsBetween(F("received_at"), F(delivered))
    bucket = Case(
        *(When(seconds__lt=bound, then=Value(i)) for i, bound in enumerate(BOUNDS)),
        default=Value(len(BOUNDS)),
        output_field=IntegerField(),
    )
    return (
        feedback.annotate(seconds=seconds)
        .annotate(bucket=bucket, bin=log_bin("seconds"))
        .values(*fields, "bucket", "bin")
        .annotate(count=Count("pk"))
        .order_by()
    )


def log_bin(field: str) -> Case:
    """The log-scale bin of the value of `field`: 0 under 1, b >= 1 for
    [GROWTH ** (b - 1), GROWTH ** b)."""
    return Case(
        When(**{f"{field}__lt": 1}, then=Value(0)),
        default=Cast(Floor(Ln(F(field)) / math.log(GROWTH)), IntegerField()) + 1,
        output_field=IntegerField(),
    )


def log_bin_of(value: float) -> int:
    """`log_bin` of one value, worked out here."""
    return 0 if value < 1 else math.floor(math.log(value) / math.log(GROWTH)) + 1


def bin_midpoint(log_bin: int) -> float:
    return 0.5 if log_bin == 0 else GROWTH ** (log_bin - 1) * (1 + GROWTH) / 2


def bin_value(bucket: int, log_bin: int) -> float:
    """The value that stands for every duration of a bin within a bucket: the
    bin's midpoint, kept inside the bucket."""
    value = bin_midpoint(log_bin)
    if bucket > 0:
        value = max(value, BOUNDS[bucket - 1])
    if bucket < len(BOUNDS):
        value = min(value, BOUNDS[bucket])
    return value


class Histogram:
    """Durations of one group, as counts per (bucket, bin)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[int, int]] = Counter()

    def add(self, bucket: int, log_bin: int, count: int) -> None:
        self.counts[(bucket, log_bin)] += count

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def bucket_counts(self) -> list[int]:
        found = [0] * len(TTF_BUCKETS)
        for (bucket, _), count in self.counts.items():
            found[bucket] += count
        return found

    def percentile(self, fraction: float) -> float | None:
        """percentile_cont's interpolation over the bins' values."""
        return self.summary(fraction)[2][0]

    def summary(self, *fractions: float) -> tuple[int, list[int], list[float | None]]:
        """The total, the bucket counts and `percentile` of each fraction, in
        one walk over the sorted bins: only the bins holding the ranks the
        fractions fall on are valued."""
        bins = sorted(item for item in self.counts.items() if item[1])
        buckets = [0] * len(TTF_BUCKETS)
        for (bucket, _), count in bins:
            buckets[bucket] += count
        total = sum(buckets)
        if not total:
            return total, buckets, [None for _ in fractions]
        valued = [
            (bin_value(bucket, log_bin), count) for (bucket, log_bin), count in bins
        ]
        return total, buckets, percentiles_of(valued, total, fractions)


def whole_percentiles(
    counts: Mapping[int, int], *fractions: float
) -> list[float | None]:
    """Percentiles of whole numbers (milliseconds) from their counts per log
    bin (`log_bin`): bin 0 holds only 0, which is exact; the others are valued
    at their midpoints, within 1%."""
    valued = [
        (0.0 if log_bin == 0 else bin_midpoint(log_bin), count)
        for log_bin, count in sorted(counts.items())
        if count
    ]
    total = sum(count for _, count in valued)
    if not total:
        return [None for _ in fractions]
    return percentiles_of(valued, total, fractions)


def percentiles_of(
    valued: list[tuple[float, int]], total: int, fractions: tuple[float, ...]
) -> list[float | None]:
    """percentile_cont's interpolation over (value, count) pairs in ascending
    order of value, `total` counts in all: only the values the ranks of the
    fractions fall on are looked at."""
    plan = []
    for fraction in fractions:
        position = fraction * (total - 1)
        lower = math.floor(position)
        plan.append((position, lower, min(lower + 1, total - 1)))
    ranks = sorted({rank for _, lower, upper in plan for rank in (lower, upper)})
    # A rank's value is that of the first bin whose running count exceeds it.
    value_at: dict[int, float] = {}
    seen = 0
    for value, count in valued:
        seen += count
        while len(value_at) < len(ranks) and ranks[len(value_at)] < seen:
            value_at[ranks[len(value_at)]] = value
        if len(value_at) == len(ranks):
            break
    return [
        value_at[lower] + (value_at[upper] - value_at[lower]) * (position - lower)
        for position, lower, upper in plan
    ]
