"""Daily rollups: the additive report measures, pre-aggregated per delivery day.

Billing's feedback counts are also kept per received day (dimensions
`received:<d>`), since billing counts events by their own date.

A year of a million feedback rows takes seconds to group live, because counting
by delivery date joins every feedback to its delivery. The rollups hold, per
delivery day and group, what the breakdowns and trends add up, so a year reads
a few thousand rows. They are exact (sums and distinct counts per day add up
across days, since a delivery has one delivery day) and serve the delivery-date
basis when at most the grouping dimension is filtered; everything else is
counted live (docs/reports.md).
"""

import datetime
import operator
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from functools import reduce
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import (
    BooleanField,
    Count,
    DateField,
    Exists,
    ExpressionWrapper,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import Trunc, TruncDate, TruncMonth, TruncYear
from django.utils import timezone

from feedback.bulk import chunked, instances_update
from feedback.forwarding.models import Notification, NotificationAttempt
from feedback.models import DeliveryEvent, Feedback, FeedbackCorrection
from reporting.measures import (
    ACCEPTED,
    CONTACT_CODES,
    DIMENSION_FIELDS,
    NO_CONTACT_CODES,
    ON_DELIVERY,
    feedback_measures,
    outcome_vocabulary,
)
from reporting.models import (
    DailyRollup,
    RollupState,
    SentCounted,
    SentRollup,
    TimingRollup,
)
from reporting.timing import binned, log_bin, log_bin_of
from sources.models import Kind

# Feedback committed late (a long transaction that took its id before the last
# refresh read the highest id) is caught if it commits within this time.
LATE_COMMIT_MARGIN = datetime.timedelta(minutes=10)
DAY = datetime.timedelta(days=1)
# The dimensions time to feedback is reported by, with a histogram per month.
TIMING_DIMENSIONS = ("source", "buyer")
# The timing histograms summed per calendar year, under this prefix and the
# year's first day: a year's percentiles merge one histogram a group, not twelve.
YEAR = "year:"
# Rows counted by received day (billing) rather than delivery day.
RECEIVED = "received:"
FEEDBACK_SIDE = (
    "received",
    "accepted",
    "refused",
    "revenue",
    "returned_cost",
    "quality_sum",
    "quality_count",
    "contacted",
    "not_contacted",
)
MEASURES = ("delivered", "cost", "covered", *FEEDBACK_SIDE)
# Accepted returns per delivery day, source and reason (the returns matrix):
# key "<source id>:<reason>", kind "return", the count in `accepted`.
SOURCE_REASON = "source-reason"
# Every dimension kept per delivery day, and per received day (billing).
DELIVERY_DIMENSIONS = (*DIMENSION_FIELDS, SOURCE_REASON)
RECEIVED_DIMENSIONS = tuple(
    RECEIVED + dimension for dimension in ("source", "flow", "buyer", "kind")
)
# Each dimension's rows summed per calendar month, under this prefix and the
# month's first day: a year of a group reads twelve rows, not 365
# (`rollup_days`). They change with their days' rows, in the same transaction.
MONTH = "month:"


def rollup_state() -> RollupState | None:
    """The state of built rollups, or None if they were never built."""
    return RollupState.objects.filter(refreshed_at__isnull=False).first()


def rollups_refresh(*, full: bool = False) -> int:
    """Bring the rollups up to date: add what new deliveries and new feedback
    count to their days' rows (every day rebuilt with `full`, or when the
    rollups were never built). Returns the number of rows written."""
    if not RollupState.objects.exists():
        # Two beats (one per node) may refresh at once: the one row is made
        # once, and the lock below lets one refresh run while the other waits
        # and then finds nothing new.
        RollupState.objects.get_or_create(pk=1)
    with transaction.atomic():
        state = RollupState.objects.select_for_update().order_by("pk")[0]
        if full or state.refreshed_at is None:
            written = _rebuild(state)
        else:
            written = _add_new(state)
        if written and connection.vendor == "postgresql":
            # Fresh statistics, or the planner sorts a year of rows on disk
            # until autovacuum gets round to the tables.
            with connection.cursor() as cursor:
                for model in (DailyRollup, TimingRollup, SentRollup):
                    cursor.execute(
                        f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}"
                    )
        state.refreshed_at = timezone.now()
        state.save(
            update_fields=[
                "last_feedback_id",
                "last_delivery_id",
                "gaps",
                "refreshed_at",
                "sent_read_at",
            ]
        )
    return written


def _rebuild(state: RollupState) -> int:
    """Every day's rows from the records."""
    state.last_feedback_id = Feedback.objects.aggregate(top=Max("pk"))["top"] or 0
    state.last_delivery_id = DeliveryEvent.objects.aggregate(top=Max("pk"))["top"] or 0
    state.gaps = {}
    DailyRollup.objects.all().delete()
    TimingRollup.objects.all().delete()
    written = 0
    span = _span(
        DeliveryEvent.objects.aggregate(
            first=Min("delivered_at"), last=Max("delivered_at")
        )
    )
    if span is not None:
        since, until = span
        rows = list(_build(start_of(since), start_of(until)))
        DailyRollup.objects.bulk_create(rows, batch_size=2000)
        written += len(rows)
        first, end = month_start(since), next_month(month_start(until - DAY))
        timing = list(_build_timing(first, end))
        TimingRollup.objects.bulk_create(timing, batch_size=5000)
        written += len(timing)
        years = list(_build_timing_years(TimingRollup.objects.all()))
        TimingRollup.objects.bulk_create(years, batch_size=5000)
        written += len(years)
    span = _span(
        Feedback.objects.aggregate(first=Min("received_at"), last=Max("received_at"))
    )
    if span is not None:
        since, until = span
        rows = list(_build_received(start_of(since), start_of(until)))
        DailyRollup.objects.bulk_create(rows, batch_size=2000)
        written += len(rows)
    months = list(_build_months(DailyRollup.objects.all()))
    DailyRollup.objects.bulk_create(months, batch_size=2000)
    return written + len(months) + _rebuild_sent(state)


def _recount_months(months: Iterable[datetime.date]) -> int:
    """Sum the month rows of `months` again from their days' rows."""
    months = sorted(months)
    if not months:
        return 0
    DailyRollup.objects.filter(
        day__in=months, dimension__in=[MONTH + d for d in _daily_dimensions()]
    ).delete()
    within = Q()
    for month in months:
        within |= Q(day__gte=month, day__lt=next_month(month))
    rows = list(_build_months(DailyRollup.objects.filter(within)))
    DailyRollup.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def _daily_dimensions() -> tuple[str, ...]:
    return (*DELIVERY_DIMENSIONS, *RECEIVED_DIMENSIONS)


def _build_months(daily: QuerySet[DailyRollup]) -> Iterable[DailyRollup]:
    """The month rows of the daily rows in `daily`."""
    sums = {name: Sum(name) for name in MEASURES}
    for row in as_rows(
        daily.filter(dimension__in=_daily_dimensions())
        .annotate(month=TruncMonth("day"))
        .values("dimension", "month", "key", "kind")
        .annotate(**sums)
        .order_by()
    ):
        yield DailyRollup(
            dimension=MONTH + row["dimension"],
            day=_as_date(row["month"]),
            key=row["key"],
            kind=row["kind"],
            **{name: row[name] or 0 for name in MEASURES},
        )


def as_rows(rows: Iterable[Any]) -> Iterable[dict[str, Any]]:
    """values() rows as plain dicts, for annotations named in variables."""
    return rows


def timing_months(dimension: str, first: datetime.date, end: datetime.date) -> Q:
    """The timing rows of `dimension` that add up to the months [first, end):
    year rows for the whole years in it, month rows for the months around them."""
    years_from = first if first.month == 1 else datetime.date(first.year + 1, 1, 1)
    years_to = datetime.date(end.year, 1, 1)
    if years_from >= years_to:
        return Q(dimension=dimension, month__gte=first, month__lt=end)
    return (
        Q(dimension=YEAR + dimension, month__gte=years_from, month__lt=years_to)
        | Q(dimension=dimension, month__gte=first, month__lt=years_from)
        | Q(dimension=dimension, month__gte=years_to, month__lt=end)
    )


def rollup_days(
    dimension: str,
    start: datetime.date,
    end: datetime.date,
    *,
    field: str = "dimension",
) -> Q:
    """The rollup rows of `dimension` that add up to the days [start, end]:
    month rows for the whole months in it, daily rows for the days around them.
    `field` names the column holding the dimension ("basis" for SentRollup)."""
    first = start if start.day == 1 else next_month(month_start(start))
    # The first day of the month after the last whole month.
    stop = month_start(end + DAY)
    if first >= stop:
        return Q(**{field: dimension}, day__gte=start, day__lte=end)
    rows = Q(**{field: MONTH + dimension}, day__gte=first, day__lt=stop)
    if start < first:
        rows |= Q(**{field: dimension}, day__gte=start, day__lt=first)
    if stop <= end:
        rows |= Q(**{field: dimension}, day__gte=stop, day__lte=end)
    return rows


def rollup_periods(
    dimension: str, start: datetime.date, end: datetime.date, *, field: str
) -> Q:
    """As `rollup_days`, with year rows (`YEAR` + dimension, dated 1 January)
    for the whole calendar years in [start, end]: for rows summed over the
    range, not grouped by month."""
    first = (
        start
        if start == year_start(start)
        else start.replace(year=start.year + 1, month=1, day=1)
    )
    stop = year_start(end + DAY)
    if first >= stop:
        return rollup_days(dimension, start, end, field=field)
    rows = Q(**{field: YEAR + dimension}, day__gte=first, day__lt=stop)
    if start < first:
        rows |= rollup_days(dimension, start, first - DAY, field=field)
    if stop <= end:
        rows |= rollup_days(dimension, stop, end, field=field)
    return rows


def _span(bounds: dict[str, Any]) -> tuple[datetime.date, datetime.date] | None:
    """[first day, last day + 1) of aggregated first/last datetimes, or None."""
    if bounds["first"] is None:
        return None
    tz = timezone.get_current_timezone()
    first = bounds["first"].astimezone(tz).date()
    last = bounds["last"].astimezone(tz).date()
    return first, last + DAY


def _add_new(state: RollupState) -> int:
    """Add the rows inserted since the last refresh to the rollups.

    Every measure is a sum or a count of distinct deliveries; a delivery adds
    to a distinct count when its first feedback of the group arrives, so each
    new row is read once, with its delivery's earlier feedback, and nothing
    already counted is read again. The cost follows what is new, not the
    days it touches."""
    feedback_new, feedback_seen = _new_since(
        state, "feedback", Feedback, state.last_feedback_id
    )
    deliveries_new, _ = _new_since(
        state, "delivery", DeliveryEvent, state.last_delivery_id
    )
    written = 0
    if feedback_new is not None or deliveries_new is not None:
        written += _add_daily(
            _daily_increments(
                # Retracted feedback counts nowhere, new or seen.
                Feedback.objects.filter(
                    feedback_new or Q(pk__in=[]), retracted_at__isnull=True
                ),
                feedback_seen & Q(retracted_at__isnull=True),
                DeliveryEvent.objects.filter(deliveries_new or Q(pk__in=[])),
            )
        )
    if feedback_new is not None:
        written += _add_timing(Feedback.objects.filter(feedback_new))
    since = (state.refreshed_at or timezone.now()) - LATE_COMMIT_MARGIN
    written += _recount_corrected(since)
    written += _add_sent(state)
    return written


def _recount_corrected(since: datetime.datetime) -> int:
    """Count again, from the records, the days (and timing months) of the
    feedback retracted or amended since `since` (DESIGN §12): a retraction
    takes a row out and an amendment changes its revenue, which adding cannot
    do. Corrections are few; recounting a day twice (within the late-commit
    margin) gives the same rows."""
    corrected = list(
        FeedbackCorrection.objects.filter(created_at__gte=since).values_list(
            "feedback_id", flat=True
        )
    )
    if not corrected:
        return 0
    tz = timezone.get_current_timezone()
    delivered, received = set(), set()
    for delivered_at, received_at in Feedback.objects.filter(
        pk__in=corrected
    ).values_list("delivery__delivered_at", "received_at"):
        delivered.add(delivered_at.astimezone(tz).date())
        received.add(received_at.astimezone(tz).date())
    written = 0
    for day in sorted(delivered):
        DailyRollup.objects.filter(day=day, dimension__in=DELIVERY_DIMENSIONS).delete()
        rows = list(_build(start_of(day), start_of(day + DAY)))
        DailyRollup.objects.bulk_create(rows, batch_size=2000)
        written += len(rows)
    for day in sorted(received):
        DailyRollup.objects.filter(day=day, dimension__in=RECEIVED_DIMENSIONS).delete()
        rows = list(_build_received(start_of(day), start_of(day + DAY)))
        DailyRollup.objects.bulk_create(rows, batch_size=2000)
        written += len(rows)
    written += _recount_months({month_start(day) for day in delivered | received})
    months = sorted({month_start(day) for day in delivered})
    for month in months:
        TimingRollup.objects.filter(
            month=month, dimension__in=TIMING_DIMENSIONS
        ).delete()
        timing = list(_build_timing(month, next_month(month)))
        TimingRollup.objects.bulk_create(timing, batch_size=5000)
        written += len(timing)
    for year in sorted({month.replace(month=1) for month in months}):
        TimingRollup.objects.filter(
            month=year, dimension__in=[YEAR + d for d in TIMING_DIMENSIONS]
        ).delete()
        years = list(
            _build_timing_years(
                TimingRollup.objects.filter(
                    month__gte=year, month__lt=year.replace(year=year.year + 1)
                )
            )
        )
        TimingRollup.objects.bulk_create(years, batch_size=5000)
        written += len(years)
    return written


def _rebuild_sent(state: RollupState) -> int:
    """Every sent rollup row, from the notifications as they are now.

    What is counted of each notification is written down first, in one
    statement (one snapshot: a notification's attempts are committed with the
    `attempt_count` that numbers them); the rows are then summed from that,
    so a notification that moves on meanwhile is found changed by the next
    refresh and the difference added then."""
    SentRollup.objects.all().delete()
    SentCounted.objects.all().delete()
    state.sent_read_at = timezone.now()
    _count_all_notifications()
    written = 0
    for basis in SENT_BASES:
        rows = _build_sent(basis)
        SentRollup.objects.bulk_create(rows, batch_size=2000)
        months = _sent_totals(MONTH + basis, rows, month_start)
        years = _sent_totals(YEAR + basis, months, year_start)
        SentRollup.objects.bulk_create([*months, *years], batch_size=2000)
        written += len(rows) + len(months) + len(years)
    return written


def _count_all_notifications() -> None:
    """A SentCounted row for every notification, in one INSERT … SELECT."""
    answered_5xx = Exists(
        NotificationAttempt.objects.filter(
            notification=OuterRef("pk"),
            number__lte=OuterRef("attempt_count"),
            response_status__gte=500,
        )
    )
    select = Notification.objects.annotate(
        counted_5xx=ExpressionWrapper(answered_5xx, output_field=BooleanField())
    ).values_list("pk", "config_id", "status", "attempt_count", "counted_5xx")
    sql, params = select.order_by().query.sql_with_params()
    columns = ", ".join(
        connection.ops.quote_name(_column(SentCounted, name))
        for name in ("notification", "config_id", "status", "attempts", "answered_5xx")
    )
    table = connection.ops.quote_name(SentCounted._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({columns}) {sql}", params)
        if connection.vendor == "postgresql":
            # The rows are summed next: without statistics on a table this
            # new, the planner guesses its size.
            cursor.execute(f"ANALYZE {table}")


def _add_sent(state: RollupState) -> int:
    """Add to the sent rollups what changed in the notifications written or
    changed since the last refresh (or within the late-commit margin before
    it): each one's difference from what was counted of it, its new attempts
    included. Every change to what is counted moves `updated_at`
    (feedback/forwarding: the engine's record, resends, cancellations); the
    dates a notification is counted by never change, and a notification
    whose config was deleted since is moved, whole, to no config."""
    if state.sent_read_at is None or not SentCounted.objects.exists():
        # Never built, or built before what was counted was kept: build all.
        return _rebuild_sent(state)
    since = state.sent_read_at - LATE_COMMIT_MARGIN
    state.sent_read_at = timezone.now()
    changed = (
        Notification.objects.filter(updated_at__gte=since)
        .annotate(created=_day("created_at"), delivered=_day("lead_delivered_at"))
        .values_list(
            "pk",
            "config_id",
            "source_id",
            "kind",
            "created",
            "delivered",
            "status",
            "attempt_count",
        )
        .order_by("pk")
    )
    deltas: dict[tuple[Any, ...], _SentDelta] = {}
    for chunk in chunked(changed.iterator(chunk_size=5000), 5000):
        _add_sent_chunk(chunk, deltas)
    return _apply_sent(deltas)


class _SentDelta:
    """What a refresh adds to one sent rollup row (negative: takes away)."""

    __slots__ = ("counts", "durations")

    def __init__(self) -> None:
        self.counts = dict.fromkeys(SENT_COUNTS, 0)
        self.durations: Counter[str] = Counter()


def _add_sent_chunk(
    chunk: list[tuple[Any, ...]], deltas: dict[tuple[Any, ...], _SentDelta]
) -> None:
    ids = [row[0] for row in chunk]
    counted = SentCounted.objects.in_bulk(ids)
    # Attempts to add (numbered after those counted, up to `attempt_count` as
    # read: later ones come with a later change) or, for a notification whose
    # config changed, all of them, to move.
    wanted: dict[int, tuple[int, int]] = {}
    for pk, config_id, *_, attempt_count in chunk:
        before = counted.get(pk)
        moved = before is not None and before.config_id != config_id
        first = 0 if before is None or moved else before.attempts
        if attempt_count > first or moved:
            wanted[pk] = (first, attempt_count)
    attempts: dict[int, list[tuple[int, str, int | None, int]]] = {}
    if wanted:
        for pk, number, outcome, code, ms in NotificationAttempt.objects.filter(
            notification_id__in=list(wanted)
        ).values_list(
            "notification_id", "number", "outcome", "response_status", "duration_ms"
        ):
            attempts.setdefault(pk, []).append((number, outcome, code, ms))
    now_counted: list[SentCounted] = []
    for pk, config_id, source_id, kind, created, delivered, status, _ in chunk:
        before = counted.get(pk)
        days = {"created": _as_date(created), "delivered": _as_date(delivered)}
        own = attempts.get(pk, [])
        first, last = wanted.get(pk, (0, 0))
        new = [a for a in own if first < a[0] <= last]
        answered_5xx = any(code is not None and code >= 500 for _, _, code, _ in new)
        if before is not None:
            # Take away what was counted: the notification's figures, and
            # with a change of config its attempts too (`new` holds them
            # all, to add back under the new config).
            moved = before.config_id != config_id
            old = [a for a in own if a[0] <= before.attempts] if moved else []
            for basis, day in days.items():
                delta = _delta(deltas, basis, day, before.config_id, source_id, kind)
                _count_notification(delta, basis, before, -1)
                _count_attempts(delta, old, -1)
            answered_5xx = answered_5xx or (before.answered_5xx and not moved)
        now = SentCounted(
            notification_id=pk,
            config_id=config_id,
            status=status,
            attempts=max(last, 0 if before is None else before.attempts),
            answered_5xx=answered_5xx,
        )
        for basis, day in days.items():
            delta = _delta(deltas, basis, day, config_id, source_id, kind)
            _count_notification(delta, basis, now, 1)
            _count_attempts(delta, new, 1)
        now_counted.append(now)
    SentCounted.objects.bulk_create(
        now_counted,
        update_conflicts=True,
        unique_fields=["notification"],
        update_fields=["config_id", "status", "attempts", "answered_5xx"],
        batch_size=2000,
    )


def _delta(
    deltas: dict[tuple[Any, ...], _SentDelta],
    basis: str,
    day: datetime.date,
    config_id: int | None,
    source_id: int,
    kind: str,
) -> _SentDelta:
    key = (basis, day, config_id, source_id, kind)
    found = deltas.get(key)
    if found is None:
        found = deltas[key] = _SentDelta()
    return found


def _count_notification(
    delta: _SentDelta, basis: str, counted: SentCounted, sign: int
) -> None:
    """Add (or with sign -1 take away) one notification as counted."""
    status = Notification.Status
    counts = delta.counts
    counts["notifications"] += sign
    if counted.status == status.SUCCEEDED:
        counts["succeeded"] += sign
        if counted.attempts > 1:
            counts["retried_then_succeeded"] += sign
    elif counted.status == status.FAILED:
        counts["failed"] += sign
    elif counted.status == status.DEAD:
        counts["dead"] += sign
    if basis == "created" and counted.attempts > 0:
        counts["sent"] += sign
        if counted.answered_5xx:
            counts["sent_5xx"] += sign


def _count_attempts(
    delta: _SentDelta, attempts: list[tuple[int, str, int | None, int]], sign: int
) -> None:
    for _, outcome, _, duration_ms in attempts:
        delta.counts["attempts"] += sign
        if outcome == "error":
            delta.counts["errors"] += sign
        delta.durations[str(log_bin_of(duration_ms))] += sign


def _apply_sent(deltas: dict[tuple[Any, ...], _SentDelta]) -> int:
    """Add `deltas` to their daily rows and their months' and years' rows; a
    row left counting no notification goes."""
    for (basis, day, *group), delta in list(deltas.items()):
        for total in (
            _delta(deltas, MONTH + basis, month_start(day), *group),
            _delta(deltas, YEAR + basis, year_start(day), *group),
        ):
            for name, value in delta.counts.items():
                total.counts[name] += value
            total.durations.update(delta.durations)
    deltas = {
        key: delta
        for key, delta in deltas.items()
        if any(delta.counts.values()) or any(delta.durations.values())
    }
    if not deltas:
        return 0
    days: dict[str, set[datetime.date]] = {}
    for basis, day, *_ in deltas:
        days.setdefault(basis, set()).add(day)
    existing = SentRollup.objects.filter(
        reduce(
            operator.or_,
            (Q(basis=basis, day__in=sorted(found)) for basis, found in days.items()),
        )
    )
    rows: dict[tuple[Any, ...], SentRollup] = {
        (row.basis, row.day, row.config_id, row.source_id, row.kind): row
        for row in existing
        if (row.basis, row.day, row.config_id, row.source_id, row.kind) in deltas
    }
    replaced = [row.pk for row in rows.values()]
    written: list[SentRollup] = []
    for key, delta in deltas.items():
        row = rows.get(key)
        if row is None:
            basis, day, config_id, source_id, kind = key
            row = SentRollup(
                basis=basis,
                day=day,
                config_id=config_id,
                source_id=source_id,
                kind=kind,
                durations={},
            )
        for name, value in delta.counts.items():
            setattr(row, name, getattr(row, name) + value)
        durations = Counter(row.durations)
        durations.update(delta.durations)
        row.durations = {k: v for k, v in sorted(durations.items()) if v}
        if row.notifications:
            row.pk = None
            written.append(row)
    # Rewritten rather than updated: one DELETE and one INSERT whatever the
    # number of rows and fields.
    SentRollup.objects.filter(pk__in=replaced).delete()
    SentRollup.objects.bulk_create(written, batch_size=2000)
    return len(written)


# The sent rollups' bases: the date each notification is counted by.
SENT_BASES = {"delivered": "lead_delivered_at", "created": "created_at"}
SENT_COUNTS = (
    "notifications",
    "succeeded",
    "failed",
    "dead",
    "retried_then_succeeded",
    "attempts",
    "errors",
    "sent",
    "sent_5xx",
)


def _build_sent(basis: str) -> list[SentRollup]:
    """Every sent rollup row of `basis` from what is counted of each
    notification (SentCounted): per day, config, source and kind, the
    delivery-health counts, billing's sent counts ("created" only) and the
    attempt durations per log bin."""
    field = f"notification__{SENT_BASES[basis]}"
    status = Notification.Status
    counts: dict[str, Any] = {
        "notifications": Count("pk"),
        "succeeded": Count("pk", filter=Q(status=status.SUCCEEDED)),
        "failed": Count("pk", filter=Q(status=status.FAILED)),
        "dead": Count("pk", filter=Q(status=status.DEAD)),
        "retried_then_succeeded": Count(
            "pk", filter=Q(status=status.SUCCEEDED, attempts__gt=1)
        ),
    }
    if basis == "created":
        counts["sent"] = Count("pk", filter=Q(attempts__gt=0))
        counts["sent_5xx"] = Count("pk", filter=Q(attempts__gt=0, answered_5xx=True))
    rows: dict[tuple[Any, ...], SentRollup] = {}
    for found in as_rows(
        SentCounted.objects.annotate(
            day=_day(field),
            source_id=F("notification__source_id"),
            kind=F("notification__kind"),
        )
        .values("day", "config_id", "source_id", "kind")
        .annotate(**counts)
        .order_by()
    ):
        day = _as_date(found.pop("day"))
        rows[(day, found["config_id"], found["source_id"], found["kind"])] = SentRollup(
            basis=basis, day=day, **found
        )
    # The attempts counted: those numbered up to the count taken.
    attempts = NotificationAttempt.objects.filter(
        number__lte=F("notification__sent_counted__attempts")
    ).annotate(
        day=_day(f"notification__{SENT_BASES[basis]}"),
        config=F("notification__sent_counted__config_id"),
        source=F("notification__source_id"),
        group_kind=F("notification__kind"),
    )
    attempt_group = ("day", "config", "source", "group_kind")
    for found in as_rows(
        attempts.values(*attempt_group)
        .annotate(attempts=Count("pk"), errors=Count("pk", filter=Q(outcome="error")))
        .order_by()
    ):
        row = rows[(_as_date(found["day"]), *(found[k] for k in attempt_group[1:]))]
        row.attempts = found["attempts"]
        row.errors = found["errors"]
    for found in as_rows(
        attempts.annotate(bin=log_bin("duration_ms"))
        .values(*attempt_group, "bin")
        .annotate(count=Count("pk"))
        .order_by()
    ):
        row = rows[(_as_date(found["day"]), *(found[k] for k in attempt_group[1:]))]
        row.durations[str(found["bin"])] = found["count"]
    return list(rows.values())


def _sent_totals(
    basis: str,
    rows: Iterable[SentRollup],
    period: Callable[[datetime.date], datetime.date],
) -> list[SentRollup]:
    """The rows of `basis` (a month or a year basis) summing `rows` per
    `period` (the first day of a row's month or year)."""
    totals: dict[tuple[Any, ...], SentRollup] = {}
    for row in rows:
        first = period(row.day)
        group = (first, row.config_id, row.source_id, row.kind)
        total = totals.get(group)
        if total is None:
            total = totals[group] = SentRollup(
                basis=basis,
                day=first,
                config_id=row.config_id,
                source_id=row.source_id,
                kind=row.kind,
                durations={},
            )
        for name in SENT_COUNTS:
            setattr(total, name, getattr(total, name) + getattr(row, name))
        for log_bin_key, count in row.durations.items():
            total.durations[log_bin_key] = total.durations.get(log_bin_key, 0) + count
    return list(totals.values())


def _build_timing_years(months: QuerySet[TimingRollup]) -> Iterable[TimingRollup]:
    """The year rows of the month rows in `months`."""
    for row in as_rows(
        months.filter(dimension__in=TIMING_DIMENSIONS)
        .annotate(year=TruncYear("month"))
        .values("dimension", "year", "key", "bucket", "bin")
        .annotate(count=Sum("count"))
        .order_by()
    ):
        yield TimingRollup(
            dimension=YEAR + row["dimension"],
            month=_as_date(row["year"]),
            key=row["key"],
            bucket=row["bucket"],
            bin=row["bin"],
            count=row["count"],
        )


def _new_since(
    state: RollupState, name: str, model: type[Any], last: int
) -> tuple[Q | None, Q]:
    """The rows of `model` not yet counted (None when there are none) and the
    rows already counted, as filters; moves `state` past the new rows.

    New rows are those above `last` and those of the gaps below it that have
    appeared since. A gap is kept for LATE_COMMIT_MARGIN and then taken for a
    rollback."""
    now = time.time()
    gaps: list[list[Any]] = state.gaps.get(name, [])
    open_ids = [pk for _, ids in gaps for pk in ids]
    top = model.objects.aggregate(top=Max("pk"))["top"] or last
    found: set[int] = set()
    if open_ids:
        found = set(model.objects.filter(pk__in=open_ids).values_list("pk", flat=True))
    seen = Q(pk__lte=last) & ~Q(pk__in=open_ids) if open_ids else Q(pk__lte=last)
    missing: list[int] = []
    if top > last:
        present = model.objects.filter(pk__gt=last, pk__lte=top)
        if present.count() < top - last:
            ids = set(present.values_list("pk", flat=True))
            missing = [pk for pk in range(last + 1, top + 1) if pk not in ids]
    margin = LATE_COMMIT_MARGIN.total_seconds()
    kept = [
        [at, [pk for pk in ids if pk not in found]]
        for at, ids in gaps
        if now - at < margin
    ]
    kept = [entry for entry in kept if entry[1]]
    if missing:
        kept.append([now, missing])
    state.gaps = {**state.gaps, name: kept}
    setattr(state, f"last_{name}_id", top)
    parts = []
    if top > last:
        parts.append(Q(pk__gt=last, pk__lte=top))
    if found:
        parts.append(Q(pk__in=sorted(found)))
    if not parts:
        return None, seen
    new = parts[0]
    for part in parts[1:]:
        new |= part
    return new, seen


def _daily_increments(
    feedback: QuerySet[Feedback],
    seen: Q,
    deliveries: QuerySet[DeliveryEvent],
) -> dict[tuple[str, datetime.date, str, str], dict[str, Any]]:
    """What new feedback (with `seen`, the feedback already counted) and new
    deliveries add to each daily rollup row, by (dimension, day, key, kind).

    The new feedback is read once, with its delivery, and the earlier feedback
    of the same deliveries once; the sums and first-feedback counts of every
    dimension are taken here, as the full build's GROUP BYs take them."""
    sums: dict[tuple[str, datetime.date, str, str], list[Any]] = {}

    def row_of(dimension: str, day: datetime.date, key: str, kind: str) -> list[Any]:
        group = (dimension, day, key, kind)
        row = sums.get(group)
        if row is None:
            row = sums[group] = [0] * len(MEASURES)
        return row

    (
        delivered,
        cost,
        covered,
        received,
        accepted,
        refused,
        revenue,
        returned_cost,
        quality_sum,
        quality_count,
        contacted,
        not_contacted,
    ) = range(len(MEASURES))
    vocabulary = outcome_vocabulary()
    contact = {vocabulary[c] for c in CONTACT_CODES if c in vocabulary}
    no_contact = {vocabulary[c] for c in NO_CONTACT_CODES if c in vocabulary}
    dimensions = list(DIMENSION_FIELDS)
    fields = list(DIMENSION_FIELDS.values())
    on_delivery = [dimension in ON_DELIVERY for dimension in dimensions]
    received_at = [
        (dimension, fields.index(DIMENSION_FIELDS[dimension[len(RECEIVED) :]]))
        for dimension in RECEIVED_DIMENSIONS
    ]
    source_at, reason_at, kind_at = (
        fields.index(name) for name in ("source_id", "reason", "kind")
    )
    read = (
        "delivery_id",
        "day",
        "received_day",
        "delivery__price",
        "outcome",
        "revenue",
        "quality_score",
        "outcome_code_id",
        *fields,
    )
    new = list(
        feedback.annotate(
            day=_day("delivery__delivered_at"), received_day=_day("received_at")
        )
        .values_list(*read)
        .order_by()
    )
    # The groups each delivery already had feedback in, any kind and per kind.
    earlier: set[tuple[Any, ...]] = set()
    if new:
        for delivery_id, kind, *values in (
            Feedback.objects.filter(
                seen, delivery_id__in=feedback.values("delivery_id")
            )
            .values_list("delivery_id", "kind", *fields)
            .order_by()
        ):
            for dimension, value in zip(dimensions, values, strict=True):
                earlier.add((delivery_id, dimension, _key(value)))
                earlier.add((delivery_id, dimension, _key(value), kind))
    firsts: set[tuple[Any, ...]] = set()
    success, failure = Feedback.Outcome.SUCCESS, Feedback.Outcome.FAILURE
    for (
        delivery_id,
        day,
        received_day,
        price,
        outcome,
        amount,
        quality,
        code,
        *values,
    ) in new:
        day = _as_date(day)
        kind = values[kind_at]
        keys = [_key(value) for value in values]
        for n, dimension in enumerate(dimensions):
            key = keys[n]
            row = row_of(dimension, day, key, kind)
            row[received] += 1
            if outcome == success:
                row[accepted] += 1
                row[revenue] += amount or 0
                if kind == Kind.RETURN:
                    row[returned_cost] += price
                if quality is not None:
                    row[quality_sum] += quality
                    row[quality_count] += 1
                if code in contact:
                    row[contacted] += 1
                elif code in no_contact:
                    row[not_contacted] += 1
            elif outcome == failure:
                row[refused] += 1
            # A delivery counts once per group: with its first feedback there.
            for group, row_kind in (
                ((delivery_id, dimension, key, kind), kind),
                ((delivery_id, dimension, key), ""),
            ):
                if group in earlier or group in firsts:
                    continue
                firsts.add(group)
                row = row_of(dimension, day, key, row_kind)
                row[covered] += 1
                if not on_delivery[n]:
                    row[delivered] += 1
                    row[cost] += price
        if outcome == success and kind == Kind.RETURN:
            key = _source_reason_key(values[source_at], values[reason_at])
            row_of(SOURCE_REASON, day, key, Kind.RETURN)[accepted] += 1
        # Billing's counts by the day the feedback arrived.
        received_day = _as_date(received_day)
        for dimension, n in received_at:
            row = row_of(dimension, received_day, keys[n], kind)
            row[received] += 1
            if outcome == success:
                row[accepted] += 1
            elif outcome == failure:
                row[refused] += 1
    for dimension in ON_DELIVERY:
        field = DIMENSION_FIELDS[dimension]
        for found in (
            deliveries.annotate(day=_day("delivered_at"))
            .values("day", field)
            .annotate(delivered=Count("pk"), cost=Sum("price"))
            .order_by()
        ):
            row = row_of(dimension, _as_date(found["day"]), _key(found[field]), "")
            row[delivered] += found["delivered"]
            row[cost] += found["cost"] or 0
    return {
        group: {name: value for name, value in zip(MEASURES, row, strict=True) if value}
        for group, row in sums.items()
    }


def _add_daily(
    increments: dict[tuple[str, datetime.date, str, str], dict[str, Any]],
) -> int:
    """Add `increments` to the daily rollup rows and to their month rows,
    creating the rows missing."""
    with_months = dict(increments)
    for (dimension, day, key, kind), values in increments.items():
        row = with_months.setdefault(
            (MONTH + dimension, month_start(day), key, kind), {}
        )
        for name, value in values.items():
            row[name] = row.get(name, 0) + value
    return _add_rows(
        DailyRollup,
        ("dimension", "day", "key", "kind"),
        with_months,
        day__in={day for _, day, _, _ in with_months},
        dimension__in={dimension for dimension, _, _, _ in with_months},
    )


def _add_timing(feedback: QuerySet[Feedback]) -> int:
    """Add new feedback to the timing histograms of their delivery months."""
    increments: dict[tuple[Any, ...], dict[str, Any]] = {}
    fields = [DIMENSION_FIELDS[dimension] for dimension in TIMING_DIMENSIONS]
    # One pass over the new rows for every dimension: a day's feedback makes
    # far fewer groups than rows, and each is added to one row per dimension.
    for row in binned(_by_month(feedback), "month", *fields):
        month = _as_date(row["month"])
        year = month.replace(month=1)
        for dimension, field in zip(TIMING_DIMENSIONS, fields, strict=True):
            for name, first in ((dimension, month), (YEAR + dimension, year)):
                group = (name, first, row[field], row["bucket"], row["bin"])
                counts = increments.setdefault(group, {"count": 0})
                counts["count"] += row["count"]
    return _add_rows(
        TimingRollup,
        ("dimension", "month", "key", "bucket", "bin"),
        increments,
        month__in={group[1] for group in increments},
    )


def _add_rows(
    model: type[DailyRollup] | type[TimingRollup],
    key_fields: tuple[str, ...],
    increments: Mapping[tuple[Any, ...], dict[str, Any]],
    **narrow: Any,
) -> int:
    """Add each group's values to its row of `model` (found by `key_fields`
    among the rows `narrow` selects), creating the rows missing. Returns how
    many rows were written."""
    if not increments:
        return 0
    names = sorted({name for values in increments.values() for name in values})
    # Tuples, not instances: most rows of the days read are not changed.
    existing = {
        tuple(found[1 : 1 + len(key_fields)]): found
        for found in model.objects.filter(**narrow).values_list(
            "pk", *key_fields, *names
        )
    }
    changed: list[Any] = []
    created: list[Any] = []
    for group, values in increments.items():
        found = existing.get(group)
        row = model(**dict(zip(key_fields, group, strict=True)))
        if found is None:
            for name in values:
                setattr(row, name, getattr(row, name, None) or 0)
            created.append(row)
        else:
            row.pk = found[0]
            for name, value in zip(names, found[1 + len(key_fields) :], strict=True):
                setattr(row, name, value)
            changed.append(row)
        for name, value in values.items():
            setattr(row, name, getattr(row, name) + value)
    instances_update(changed, names)
    model.objects.bulk_create(created, batch_size=2000)
    return len(changed) + len(created)


def month_start(day: datetime.date) -> datetime.date:
    return day.replace(day=1)


def year_start(day: datetime.date) -> datetime.date:
    return day.replace(month=1, day=1)


def next_month(month: datetime.date) -> datetime.date:
    return (month.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)


def start_of(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(
        datetime.datetime.combine(day, datetime.time.min),
        timezone.get_current_timezone(),
    )


def _day(field: str) -> TruncDate:
    return TruncDate(field, tzinfo=timezone.get_current_timezone())


def _build_timing(first: datetime.date, end: datetime.date) -> Iterable[TimingRollup]:
    """The timing histograms of the delivery months [first, end)."""
    return _build_timing_from(
        Feedback.objects.filter(
            delivery__delivered_at__gte=start_of(first),
            delivery__delivered_at__lt=start_of(end),
        )
    )


def _build_timing_from(feedback: QuerySet[Feedback]) -> Iterable[TimingRollup]:
    """The timing histogram rows of `feedback`, by delivery month; retracted
    feedback counts nowhere."""
    feedback = _by_month(feedback)
    for dimension in TIMING_DIMENSIONS:
        field = DIMENSION_FIELDS[dimension]
        for row in binned(feedback, "month", field):
            yield TimingRollup(
                dimension=dimension,
                month=_as_date(row["month"]),
                key=row[field],
                bucket=row["bucket"],
                bin=row["bin"],
                count=row["count"],
            )


def _by_month(feedback: QuerySet[Feedback]) -> QuerySet[Feedback]:
    """`feedback` not retracted, with its delivery month as `month`."""
    return feedback.filter(retracted_at__isnull=True).annotate(
        month=Trunc(
            "delivery__delivered_at",
            "month",
            output_field=DateField(),
            tzinfo=timezone.get_current_timezone(),
        )
    )


def _build_received(
    since: datetime.datetime, until: datetime.datetime
) -> Iterable[DailyRollup]:
    """Feedback counts per received day, for billing: dimension `received:<d>`."""
    return _build_received_from(
        Feedback.objects.filter(received_at__gte=since, received_at__lt=until)
    )


def _build_received_from(feedback: QuerySet[Feedback]) -> Iterable[DailyRollup]:
    """The billing rows of `feedback`, by the day it arrived; retracted
    feedback counts nowhere."""
    feedback = feedback.filter(retracted_at__isnull=True).annotate(
        day=_day("received_at")
    )
    measures = feedback_measures({})
    counts = {name: measures[name] for name in ("received", "accepted", "refused")}
    for dimension in ("source", "flow", "buyer", "kind"):
        field = DIMENSION_FIELDS[dimension]
        for row in feedback.values("day", field, "kind").annotate(**counts).order_by():
            yield DailyRollup(
                dimension=RECEIVED + dimension,
                day=row["day"],
                key=_key(row[field]),
                kind=row["kind"],
                received=row["received"],
                accepted=row["accepted"],
                refused=row["refused"],
            )


def _build(since: datetime.datetime, until: datetime.datetime) -> Iterable[DailyRollup]:
    deliveries = DeliveryEvent.objects.filter(
        delivered_at__gte=since, delivered_at__lt=until
    )
    feedback = Feedback.objects.filter(
        delivery__delivered_at__gte=since,
        delivery__delivered_at__lt=until,
        retracted_at__isnull=True,
    ).annotate(day=_day("delivery__delivered_at"))
    measures = feedback_measures(outcome_vocabulary())
    side = {name: measures[name] for name in FEEDBACK_SIDE}
    for dimension, field in DIMENSION_FIELDS.items():
        # Feedback side, per kind.
        per_kind = {}
        for row in (
            feedback.values("day", field, "kind")
            .annotate(covered=Count("delivery_id", distinct=True), **side)
            .order_by()
        ):
            per_kind[(row["day"], row[field], row["kind"])] = DailyRollup(
                dimension=dimension,
                day=row["day"],
                key=_key(row[field]),
                kind=row["kind"],
                covered=row["covered"],
                **{name: row[name] or 0 for name in FEEDBACK_SIDE},
            )
        if dimension not in ON_DELIVERY:
            # Narrowed to a kind, a reason's deliveries are those with feedback
            # of that reason and kind, each counted and priced once.
            for group, (count, cost) in distinct_deliveries(
                feedback, ["day", field, "kind"]
            ).items():
                per_kind[group].delivered = count
                per_kind[group].cost = cost
        yield from per_kind.values()
        if dimension in ON_DELIVERY:
            any_feedback = Feedback.objects.filter(
                delivery=OuterRef("pk"), retracted_at__isnull=True
            )
            for row in (
                deliveries.annotate(day=_day("delivered_at"))
                .values("day", field)
                .annotate(
                    delivered=Count("pk"),
                    cost=Sum("price"),
                    covered=Count("pk", filter=Q(Exists(any_feedback))),
                )
                .order_by()
            ):
                yield DailyRollup(
                    dimension=dimension,
                    day=row["day"],
                    key=_key(row[field]),
                    kind="",
                    delivered=row["delivered"],
                    cost=row["cost"] or 0,
                    covered=row["covered"],
                )
        else:
            # Reason and kind belong to feedback: the deliveries of a group are
            # the distinct deliveries with feedback in it, any kind and per kind.
            for (day, key), (count, cost) in distinct_deliveries(
                feedback, ["day", field]
            ).items():
                yield DailyRollup(
                    dimension=dimension,
                    day=day,
                    key=_key(key),
                    kind="",
                    delivered=count,
                    cost=cost,
                    covered=count,
                )
    for row in _source_reason_counts(feedback):
        yield DailyRollup(
            dimension=SOURCE_REASON,
            day=_as_date(row["day"]),
            key=_source_reason_key(row["source_id"], row["reason"]),
            kind=Kind.RETURN,
            accepted=row["returns"],
        )


def _source_reason_counts(feedback: QuerySet[Feedback]) -> Iterable[dict[str, Any]]:
    """Accepted returns per day (an annotation of `feedback`), source and reason."""
    groups = ("day", "source_id", "reason")
    return (
        feedback.filter(ACCEPTED, kind=Kind.RETURN)
        .values(*groups)
        .annotate(returns=Count("pk"))
        .order_by()
    )


def _source_reason_key(source_id: Any, reason: str) -> str:
    return f"{source_id}:{reason}"


def source_reason_of(key: str) -> tuple[int, str]:
    """The source id and the reason a source-reason row's key stands for."""
    source_id, _, reason = key.partition(":")
    return int(source_id), reason


def _key(value: Any) -> str:
    return "" if value is None else str(value)


def distinct_deliveries(
    feedback: QuerySet[Feedback], groups: list[str]
) -> dict[tuple[Any, ...], tuple[int, Decimal]]:
    """Per group of `groups`, the number of distinct deliveries with feedback in
    `feedback` and the sum of their prices, each delivery once per group.

    A GROUP BY over a DISTINCT is the one statement the ORM cannot write; the
    inner query, with every filter, is the ORM's own."""
    pairs = feedback.values(*groups, "delivery_id").distinct().order_by()
    try:
        inner, params = pairs.query.sql_with_params()
    except EmptyResultSet:  # a filter that matches nothing (no new feedback)
        return {}
    quote = connection.ops.quote_name
    columns = ", ".join(f"pairs.{quote(_column(pairs.model, name))}" for name in groups)
    delivery_table = quote(DeliveryEvent._meta.db_table)
    sql = (
        f"SELECT {columns}, COUNT(*), SUM(d.price) "  # noqa: S608
        f"FROM ({inner}) pairs JOIN {delivery_table} d ON d.id = pairs.delivery_id "
        f"GROUP BY {columns}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        result = cursor.fetchall()
    price = DeliveryEvent._meta.get_field("price")
    converters = [_converter(pairs.model, name) for name in groups]
    return {
        tuple(
            convert(value) for convert, value in zip(converters, row[:-2], strict=True)
        ): (
            int(row[-2]),
            price.to_python(row[-1]) if row[-1] is not None else Decimal("0.00"),
        )
        for row in result
    }


def _column(model: Any, name: str) -> str:
    """The column a values() name selects: a field's column or an annotation."""
    try:
        field = model._meta.get_field(name)
    except Exception:  # an annotation (the day) is selected under its own name
        return name
    return str(field.get_attname_column()[1])


def _converter(model: Any, name: str) -> Any:
    if name == "day":
        return _as_date
    return lambda value: value


def _as_date(value: Any) -> datetime.date:
    # SQLite hands dates back as text from raw SQL; PostgreSQL as dates.
    return datetime.date.fromisoformat(value) if isinstance(value, str) else value


def rollups_enabled() -> bool:
    return bool(getattr(settings, "LEADBACK_REPORT_ROLLUPS", True))
