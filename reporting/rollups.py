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
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    Count,
    DateField,
    Exists,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import Trunc, TruncDate
from django.utils import timezone

from feedback.models import DeliveryEvent, Feedback, FeedbackCorrection
from reporting.measures import (
    DIMENSION_FIELDS,
    ON_DELIVERY,
    feedback_measures,
    outcome_vocabulary,
)
from reporting.models import DailyRollup, RollupState, TimingRollup
from reporting.timing import binned

# Feedback committed late (a long transaction that took its id before the last
# refresh read the highest id) is caught by looking this far back again.
LATE_COMMIT_MARGIN = datetime.timedelta(minutes=10)
DAY = datetime.timedelta(days=1)
# The dimensions time to feedback is reported by, with a histogram per month.
TIMING_DIMENSIONS = ("source", "buyer")
# Rows counted by received day (billing) rather than delivery day.
RECEIVED = "received:"
FEEDBACK_SIDE = (
    "received",
    "accepted",
    "refused",
    "revenue",
    "quality_sum",
    "quality_count",
    "contacted",
    "not_contacted",
)


def rollup_state() -> RollupState | None:
    """The state of built rollups, or None if they were never built."""
    return RollupState.objects.filter(refreshed_at__isnull=False).first()


def rollups_refresh(*, full: bool = False) -> int:
    """Recompute the rollups of every delivery day that got new deliveries or new
    feedback since the last refresh (all days with `full`). Returns the number of
    rows written."""
    if not RollupState.objects.exists():
        # Two beats (one per node) may refresh at once: the one row is made
        # once, and the lock below lets one refresh run while the other waits
        # and then finds nothing new.
        RollupState.objects.get_or_create(pk=1)
    with transaction.atomic():
        state = RollupState.objects.select_for_update().order_by("pk")[0]
        full = full or state.refreshed_at is None
        top_feedback = Feedback.objects.aggregate(top=Max("pk"))["top"] or 0
        top_delivery = DeliveryEvent.objects.aggregate(top=Max("pk"))["top"] or 0
        written = 0
        span = _changed_span(state, full=full)
        if span is not None:
            since, until = span
            DailyRollup.objects.filter(day__gte=since, day__lt=until).exclude(
                dimension__startswith=RECEIVED
            ).delete()
            rows = list(_build(start_of(since), start_of(until)))
            DailyRollup.objects.bulk_create(rows, batch_size=2000)
            written += len(rows)
            first, end = month_start(since), next_month(month_start(until - DAY))
            TimingRollup.objects.filter(month__gte=first, month__lt=end).delete()
            timing = list(_build_timing(first, end))
            TimingRollup.objects.bulk_create(timing, batch_size=5000)
            written += len(timing)
        span = _changed_received_span(state, full=full)
        if span is not None:
            since, until = span
            DailyRollup.objects.filter(
                day__gte=since, day__lt=until, dimension__startswith=RECEIVED
            ).delete()
            rows = list(_build_received(start_of(since), start_of(until)))
            DailyRollup.objects.bulk_create(rows, batch_size=2000)
            written += len(rows)
        if written and connection.vendor == "postgresql":
            # Fresh statistics, or the planner sorts a year of rows on disk
            # until autovacuum gets round to the tables.
            with connection.cursor() as cursor:
                for model in (DailyRollup, TimingRollup):
                    cursor.execute(
                        f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}"
                    )
        state.last_feedback_id = top_feedback
        state.last_delivery_id = top_delivery
        state.refreshed_at = timezone.now()
        state.save(
            update_fields=["last_feedback_id", "last_delivery_id", "refreshed_at"]
        )
    return written


def month_start(day: datetime.date) -> datetime.date:
    return day.replace(day=1)


def next_month(month: datetime.date) -> datetime.date:
    return (month.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)


def start_of(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(
        datetime.datetime.combine(day, datetime.time.min),
        timezone.get_current_timezone(),
    )


def _day(field: str) -> TruncDate:
    return TruncDate(field, tzinfo=timezone.get_current_timezone())


def _changed_span(
    state: RollupState, *, full: bool
) -> tuple[datetime.date, datetime.date] | None:
    """The delivery days to recompute, as [first, last + 1 day), or None."""
    deliveries = DeliveryEvent.objects.all()
    feedback = Feedback.objects.all()
    if not full:
        margin = (state.refreshed_at or timezone.now()) - LATE_COMMIT_MARGIN
        deliveries = deliveries.filter(
            Q(pk__gt=state.last_delivery_id) | Q(created_at__gte=margin)
        )
        feedback = feedback.filter(
            Q(pk__gt=state.last_feedback_id)
            | Q(received_at__gte=margin)
            | Q(pk__in=corrected_since(margin))
        )
    bounds = [
        deliveries.aggregate(first=Min("delivered_at"), last=Max("delivered_at")),
        feedback.aggregate(
            first=Min("delivery__delivered_at"), last=Max("delivery__delivered_at")
        ),
    ]
    firsts = [b["first"] for b in bounds if b["first"] is not None]
    lasts = [b["last"] for b in bounds if b["last"] is not None]
    if not firsts:
        return None
    tz = timezone.get_current_timezone()
    first = min(firsts).astimezone(tz).date()
    last = max(lasts).astimezone(tz).date()
    return first, last + datetime.timedelta(days=1)


def _changed_received_span(
    state: RollupState, *, full: bool
) -> tuple[datetime.date, datetime.date] | None:
    """The received days to recompute, as [first, last + 1 day), or None."""
    feedback = Feedback.objects.all()
    if not full:
        margin = (state.refreshed_at or timezone.now()) - LATE_COMMIT_MARGIN
        feedback = feedback.filter(
            Q(pk__gt=state.last_feedback_id)
            | Q(received_at__gte=margin)
            | Q(pk__in=corrected_since(margin))
        )
    bounds = feedback.aggregate(first=Min("received_at"), last=Max("received_at"))
    if bounds["first"] is None:
        return None
    tz = timezone.get_current_timezone()
    first = bounds["first"].astimezone(tz).date()
    last = bounds["last"].astimezone(tz).date()
    return first, last + datetime.timedelta(days=1)


def corrected_since(moment: datetime.datetime) -> QuerySet[FeedbackCorrection, int]:
    """The feedback retracted or amended since `moment`: their days are counted
    again, without them or with the new revenue (DESIGN §12)."""
    return FeedbackCorrection.objects.filter(created_at__gte=moment).values_list(
        "feedback_id", flat=True
    )


def _build_timing(first: datetime.date, end: datetime.date) -> Iterable[TimingRollup]:
    """The timing histograms of the delivery months [first, end)."""
    feedback = Feedback.objects.filter(
        delivery__delivered_at__gte=start_of(first),
        delivery__delivered_at__lt=start_of(end),
        retracted_at__isnull=True,
    ).annotate(
        month=Trunc(
            "delivery__delivered_at",
            "month",
            output_field=DateField(),
            tzinfo=timezone.get_current_timezone(),
        )
    )
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


def _build_received(
    since: datetime.datetime, until: datetime.datetime
) -> Iterable[DailyRollup]:
    """Feedback counts per received day, for billing: dimension `received:<d>`."""
    feedback = Feedback.objects.filter(
        received_at__gte=since, received_at__lt=until, retracted_at__isnull=True
    ).annotate(day=_day("received_at"))
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
    inner, params = pairs.query.sql_with_params()
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
