"""Per buyer, flow and calendar month counters (`BuyerMonth`, DESIGN §10).

A return cap needs the buyer's deliveries in a month and the return requests
about them that count (pending, disputed, approved). Counting them on every
return would read the whole month; instead the services that record
deliveries and decide returns add to these counters in the same statement or
transaction, and `months_recount` rebuilds them from the rows when needed.
"""

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from functools import cache

from django.db import connection, transaction
from django.db.models import Count
from django.db.models.functions import TruncMonth
from django.utils import timezone

from feedback.models import BuyerMonth, DeliveryEvent, Feedback

# A counter's key: (buyer id, flow id, the month's first day).
MonthKey = tuple[int, int, date]

# The review states a cap counts.
COUNTED_STATES = frozenset(
    {
        Feedback.ReviewState.PENDING,
        Feedback.ReviewState.DISPUTED,
        Feedback.ReviewState.APPROVED,
    }
)


def month_of(moment: datetime) -> date:
    """The first day of `moment`'s calendar month in TIME_ZONE."""
    return timezone.localtime(moment).date().replace(day=1)


def _table() -> str:
    return connection.ops.quote_name(BuyerMonth._meta.db_table)


@cache
def upsert_sql() -> str:
    """Add (deliveries, returns) to one counter, creating it when missing.
    PostgreSQL and SQLite read the same statement."""
    table = _table()
    return (
        f"INSERT INTO {table} (buyer_id, flow_id, month, deliveries, returns) "  # noqa: S608
        "VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (buyer_id, month, flow_id) DO UPDATE SET "
        f"deliveries = {table}.deliveries + excluded.deliveries, "
        f"returns = {table}.returns + excluded.returns"
    )


def months_add(counts: Mapping[MonthKey, tuple[int, int]]) -> None:
    """Add (deliveries, returns) to each counter, in key order so two writers
    of the same counters never wait on each other in a cycle."""
    rows = [
        (buyer_id, flow_id, month, deliveries, returns)
        for (buyer_id, flow_id, month), (deliveries, returns) in sorted(counts.items())
        if deliveries or returns
    ]
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.executemany(upsert_sql(), rows)


def deliveries_counted(events: Iterable[DeliveryEvent]) -> None:
    """Count newly recorded deliveries into their months."""
    counts: Counter[MonthKey] = Counter(
        (event.buyer_id, event.flow_id, month_of(event.delivered_at))
        for event in events
    )
    months_add({key: (n, 0) for key, n in counts.items()})


def months_recount(*, buyer_ids: Iterable[int] | None = None) -> int:
    """Rebuild the counters from the deliveries and returns (all buyers, or
    those named); returns how many counters were written."""
    deliveries = DeliveryEvent.objects.all()
    returns = Feedback.objects.filter(
        kind="return",
        outcome=Feedback.Outcome.SUCCESS,
        review_state__in=COUNTED_STATES,
        retracted_at__isnull=True,
    )
    existing = BuyerMonth.objects.all()
    if buyer_ids is not None:
        ids = list(buyer_ids)
        deliveries = deliveries.filter(buyer_id__in=ids)
        returns = returns.filter(buyer_id__in=ids)
        existing = existing.filter(buyer_id__in=ids)
    counts: dict[MonthKey, list[int]] = {}
    for row in (
        deliveries.annotate(month=TruncMonth("delivered_at"))
        .values("buyer_id", "flow_id", "month")
        .annotate(n=Count("id"))
    ):
        key = (row["buyer_id"], row["flow_id"], _as_date(row["month"]))
        counts.setdefault(key, [0, 0])[0] += row["n"]
    for row in (
        returns.annotate(month=TruncMonth("delivery__delivered_at"))
        .values("buyer_id", "flow_id", "month")
        .annotate(n=Count("id"))
    ):
        key = (row["buyer_id"], row["flow_id"], _as_date(row["month"]))
        counts.setdefault(key, [0, 0])[1] += row["n"]
    with transaction.atomic():
        existing.delete()
        BuyerMonth.objects.bulk_create(
            BuyerMonth(
                buyer_id=buyer_id,
                flow_id=flow_id,
                month=month,
                deliveries=deliveries_n,
                returns=returns_n,
            )
            for (buyer_id, flow_id, month), (deliveries_n, returns_n) in counts.items()
        )
    return len(counts)


def _as_date(value: date | datetime) -> date:
    if isinstance(value, datetime):
        return (
            timezone.localtime(value).date()
            if timezone.is_aware(value)
            else value.date()
        )
    return value
