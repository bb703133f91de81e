"""What a monitor measures, per day of its window, read in bulk for many monitors.

The four feedback metrics are read from the reports' daily rollups
(reporting/rollups.py): a monitor scoped to one source, buyer or flow (or to
nothing) adds up at most `window_days` rows per kind, whatever the volume of
feedback. A monitor scoped to two of them at once has no rollup to read (the
rollups are kept per dimension), so it counts the window live, through the
deliveries' (source|flow|buyer, delivered_at) indexes.

The two forwarding metrics are counted from the notification rows, not from
rollups: a notification's status changes after it is written (pending, then
succeeded, failed or dead) while the rollups only follow rows that are
inserted, and a window of notifications is read through the
(source, created_at) and (status, created_at) indexes in one grouped query
per scope dimension.
"""

import datetime
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from feedback.forwarding.models import Notification
from feedback.models import DeliveryEvent, Feedback
from monitoring.models import Monitor
from monitoring.statistics import Interval, wilson_interval
from reporting.measures import ACCEPTED, DIMENSION_FIELDS
from reporting.models import DailyRollup
from reporting.rollups import start_of
from sources.models import Kind

Metric = Monitor.Metric
FEEDBACK_METRICS = frozenset(
    {
        Metric.RETURN_RATE,
        Metric.CONVERSION_RATE,
        Metric.AVERAGE_QUALITY,
        Metric.FEEDBACK_COVERAGE,
    }
)
NOTIFICATION_METRICS = frozenset(
    {Metric.FORWARDING_FAILURE_RATE, Metric.DEAD_NOTIFICATIONS}
)
SCOPE_DIMENSIONS = ("source", "buyer", "flow")
# Quality scores run from 1 to 5 (the feedback check constraint).
QUALITY_MIN, QUALITY_MAX = 1, 5
FINISHED = (
    Notification.Status.SUCCEEDED,
    Notification.Status.FAILED,
    Notification.Status.DEAD,
)
FAILURES = (Notification.Status.FAILED, Notification.Status.DEAD)
# A notification's scope by buyer or flow is its feedback's.
NOTIFICATION_FIELDS = {
    "source": "source_id",
    "buyer": "feedback__buyer_id",
    "flow": "feedback__flow_id",
}


@dataclass
class Counts:
    """Additive counts of one day (or a whole window) of one scope."""

    delivered: int = 0
    covered: int = 0
    returns: int = 0
    conversions: int = 0
    quality_sum: int = 0
    quality_count: int = 0
    notifications: int = 0
    finished: int = 0
    failures: int = 0
    dead: int = 0

    def add(self, other: "Counts") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(frozen=True)
class Reading:
    """A metric over a window: its value, the interval around it and the sample.

    `value` is None when the window holds nothing to measure."""

    value: float | None
    interval: Interval | None
    sample: int


@dataclass(frozen=True)
class Window:
    first: datetime.date
    last: datetime.date

    @classmethod
    def ending(cls, last: datetime.date, days: int) -> "Window":
        return cls(first=last - datetime.timedelta(days=days - 1), last=last)

    def days(self) -> list[datetime.date]:
        count = (self.last - self.first).days + 1
        return [self.first + datetime.timedelta(days=n) for n in range(count)]


@dataclass
class Series:
    """A monitor's counts per day of its window."""

    window: Window
    days: dict[datetime.date, Counts] = field(default_factory=dict)

    def total(self) -> Counts:
        total = Counts()
        for day, counts in self.days.items():
            if self.window.first <= day <= self.window.last:
                total.add(counts)
        return total


def today() -> datetime.date:
    return timezone.localdate()


def scope_of(monitor: Monitor) -> dict[str, int]:
    """The monitor's scope as {dimension: id}, empty for everything."""
    scope = {
        "source": monitor.source_id,
        "buyer": monitor.buyer_id,
        "flow": monitor.flow_id,
    }
    return {name: pk for name, pk in scope.items() if pk is not None}


def reading(monitor: Monitor, counts: Counts) -> Reading:
    """The monitor's metric over `counts`, with its Wilson interval."""
    metric, confidence = monitor.metric, monitor.confidence
    if metric == Metric.DEAD_NOTIFICATIONS:
        # A count, not an estimate: what happened is known exactly, so the
        # interval is the count itself; the sample is the notifications.
        if not counts.notifications:
            return Reading(None, None, 0)
        exact = float(counts.dead)
        return Reading(exact, Interval(exact, exact), counts.notifications)
    if metric == Metric.AVERAGE_QUALITY:
        n = counts.quality_count
        if not n:
            return Reading(None, None, 0)
        mean = counts.quality_sum / n
        # A score bounded in [1, 5] with mean m varies at most as much as a
        # yes/no answer with rate (m - 1) / 4 (the bound is reached when every
        # score is 1 or 5), so the Wilson interval of the rescaled mean is a
        # conservative interval for the mean.
        span = QUALITY_MAX - QUALITY_MIN
        scaled = wilson_interval(
            (mean - QUALITY_MIN) / span * n, n, confidence=confidence
        )
        interval = Interval(
            QUALITY_MIN + scaled.low * span, QUALITY_MIN + scaled.high * span
        )
        return Reading(mean, interval, n)
    successes, trials = {
        Metric.RETURN_RATE: (counts.returns, counts.delivered),
        Metric.CONVERSION_RATE: (counts.conversions, counts.delivered),
        Metric.FEEDBACK_COVERAGE: (counts.covered, counts.delivered),
        Metric.FORWARDING_FAILURE_RATE: (counts.failures, counts.finished),
    }[Metric(metric)]
    if not trials:
        return Reading(None, None, 0)
    # A delivery may convert twice; a rate is read at most 100 %.
    successes = min(successes, trials)
    return Reading(
        successes / trials,
        wilson_interval(successes, trials, confidence=confidence),
        trials,
    )


def series_many(
    monitors: Sequence[Monitor], *, last: datetime.date | None = None
) -> dict[int, Series]:
    """Each monitor's counts per day of its window ending `last` (today), by pk.

    One query per scope dimension and source of numbers, not one per monitor;
    the monitors scoped to two or three dimensions at once share two live
    queries."""
    last = last or today()
    result = {m.pk: Series(window=Window.ending(last, m.window_days)) for m in monitors}
    for kind, metrics in (
        ("rollup", FEEDBACK_METRICS),
        ("notes", NOTIFICATION_METRICS),
    ):
        chosen = [m for m in monitors if m.metric in metrics]
        groups: dict[str, list[Monitor]] = defaultdict(list)
        combined: list[Monitor] = []
        for monitor in chosen:
            scope = scope_of(monitor)
            if len(scope) > 1 and kind == "rollup":
                combined.append(monitor)
                continue
            groups["*" if not scope else _key_dimension(scope)].append(monitor)
        if combined:
            first = min(result[m.pk].window.first for m in combined)
            live = _live_days(combined, Window(first=first, last=last))
            for monitor in combined:
                result[monitor.pk].days = live[monitor.pk]
        for dimension, members in groups.items():
            first = min(result[m.pk].window.first for m in members)
            if kind == "rollup":
                by_key = _rollup_days(dimension, members, first=first, last=last)
            else:
                by_key = _notification_days(dimension, members, first=first, last=last)
            for monitor in members:
                result[monitor.pk].days = by_key.get(_monitor_key(monitor), {})
    return result


def _key_dimension(scope: dict[str, int]) -> str:
    if len(scope) == 1:
        return next(iter(scope))
    # Notifications of a combined scope: one query per distinct combination.
    return "+".join(sorted(scope))


def _monitor_key(monitor: Monitor) -> Any:
    scope = scope_of(monitor)
    if not scope:
        return "*"
    if len(scope) == 1:
        return str(next(iter(scope.values())))
    return tuple(sorted(scope.items()))


DayMap = dict[datetime.date, Counts]


def _rollup_days(
    dimension: str,
    monitors: Sequence[Monitor],
    *,
    first: datetime.date,
    last: datetime.date,
) -> dict[Any, DayMap]:
    """Counts per day from the daily rollups, by monitor key."""
    rows = DailyRollup.objects.filter(day__gte=first, day__lte=last)
    columns = (
        "day",
        "kind",
        "delivered",
        "covered",
        "accepted",
        "quality_sum",
        "quality_count",
    )
    if dimension == "*":
        # Every delivery has one source: the source rows add up to everything.
        values: Iterable[tuple[Any, ...]] = (
            ("*", *row)
            for row in rows.filter(dimension="source")
            .values("day", "kind")
            .annotate(
                s_delivered=Sum("delivered"),
                s_covered=Sum("covered"),
                s_accepted=Sum("accepted"),
                s_quality_sum=Sum("quality_sum"),
                s_quality_count=Sum("quality_count"),
            )
            .values_list(
                "day",
                "kind",
                "s_delivered",
                "s_covered",
                "s_accepted",
                "s_quality_sum",
                "s_quality_count",
            )
            .order_by()
        )
    else:
        keys = {_monitor_key(m) for m in monitors}
        values = rows.filter(dimension=dimension, key__in=keys).values_list(
            "key", *columns
        )
    by_key: dict[Any, DayMap] = defaultdict(dict)
    for key, day, kind, delivered, covered, accepted, q_sum, q_count in values:
        counts = by_key[key].setdefault(day, Counts())
        if kind == "":
            counts.delivered += delivered or 0
            counts.covered += covered or 0
            continue
        if kind == Kind.RETURN:
            counts.returns += accepted or 0
        elif kind == Kind.CONVERSION:
            counts.conversions += accepted or 0
        counts.quality_sum += q_sum or 0
        counts.quality_count += q_count or 0
    return by_key


def _day(name: str) -> TruncDate:
    return TruncDate(name, tzinfo=timezone.get_current_timezone())


def _live_days(monitors: Sequence[Monitor], window: Window) -> dict[int, DayMap]:
    """Counts per delivery day of scopes the rollups do not keep (two or three
    dimensions at once), counted live over the window, by monitor pk: one
    grouped query for the deliveries and one for the feedback of them all."""
    since = start_of(window.first)
    until = start_of(window.last + datetime.timedelta(days=1))
    scopes = {m.pk: scope_of(m) for m in monitors}
    match = Q()
    for scope in scopes.values():
        match |= Q(**{DIMENSION_FIELDS[name]: pk for name, pk in scope.items()})
    group = [DIMENSION_FIELDS[name] for name in SCOPE_DIMENSIONS]
    rows: dict[tuple[Any, ...], Counts] = defaultdict(Counts)
    any_feedback = Feedback.objects.filter(
        delivery=OuterRef("pk"), retracted_at__isnull=True
    )
    for row in (
        DeliveryEvent.objects.filter(
            match, delivered_at__gte=since, delivered_at__lt=until
        )
        .annotate(day=_day("delivered_at"))
        .values(*group, "day")
        .annotate(n=Count("pk"), covered=Count("pk", filter=Q(Exists(any_feedback))))
        .order_by()
    ):
        counts = rows[(*(row[g] for g in group), row["day"])]
        counts.delivered = row["n"]
        counts.covered = row["covered"]
    for side in (
        Feedback.objects.filter(
            match,
            delivery__delivered_at__gte=since,
            delivery__delivered_at__lt=until,
            retracted_at__isnull=True,
        )
        .annotate(day=_day("delivery__delivered_at"))
        .values(*group, "day")
        .annotate(
            returns=Count("pk", filter=ACCEPTED & Q(kind=Kind.RETURN)),
            conversions=Count("pk", filter=ACCEPTED & Q(kind=Kind.CONVERSION)),
            quality_sum=Sum("quality_score", filter=ACCEPTED),
            quality_count=Count("quality_score", filter=ACCEPTED),
        )
        .order_by()
    ):
        counts = rows[(*(side[g] for g in group), side["day"])]
        counts.returns = side["returns"]
        counts.conversions = side["conversions"]
        counts.quality_sum = side["quality_sum"] or 0
        counts.quality_count = side["quality_count"]
    result: dict[int, DayMap] = {pk: {} for pk in scopes}
    for (*ids, day), counts in rows.items():
        values = dict(zip(SCOPE_DIMENSIONS, ids, strict=True))
        for pk, scope in scopes.items():
            if all(values[name] == wanted for name, wanted in scope.items()):
                result[pk].setdefault(day, Counts()).add(counts)
    return result


def _notification_days(
    dimension: str,
    monitors: Sequence[Monitor],
    *,
    first: datetime.date,
    last: datetime.date,
) -> dict[Any, DayMap]:
    """Notification counts per day created, by monitor key."""
    rows: QuerySet[Notification] = Notification.objects.filter(
        created_at__gte=start_of(first),
        created_at__lt=start_of(last + datetime.timedelta(days=1)),
    )
    if dimension == "*":
        group: list[str] = []
    else:
        group = [NOTIFICATION_FIELDS[name] for name in dimension.split("+")]
        scopes = [scope_of(m) for m in monitors]
        if len(group) == 1:
            rows = rows.filter(**{f"{group[0]}__in": [s[dimension] for s in scopes]})
        else:
            match = Q()
            for scope in scopes:
                match |= Q(**{NOTIFICATION_FIELDS[n]: pk for n, pk in scope.items()})
            rows = rows.filter(match)
    by_key: dict[Any, DayMap] = defaultdict(dict)
    names = dimension.split("+")
    for row in (
        rows.annotate(day=_day("created_at"))
        .values(*group, "day", "status")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        if dimension == "*":
            key: Any = "*"
        elif len(group) == 1:
            key = str(row[group[0]])
        else:
            key = tuple(sorted(zip(names, (row[g] for g in group), strict=True)))
        counts = by_key[key].setdefault(row["day"], Counts())
        status, n = row["status"], row["n"]
        counts.notifications += n
        if status in FINISHED:
            counts.finished += n
        if status in FAILURES:
            counts.failures += n
        if status == Notification.Status.DEAD:
            counts.dead += n
    return by_key


def day_values(
    monitor: Monitor, series: Series
) -> list[tuple[datetime.date, float | None]]:
    """The metric of each day of the window on its own, for a sparkline."""
    return [
        (day, reading(monitor, series.days.get(day, Counts())).value)
        for day in series.window.days()
    ]
