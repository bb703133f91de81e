"""Reports on running the hub: feedback-sent health and monthly billing counts."""

from collections import Counter, defaultdict
from typing import Any

from django.db.models import (
    Aggregate,
    Count,
    Exists,
    F,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import TruncMonth
from django.utils import timezone

from feedback.forwarding.models import Notification, NotificationAttempt
from feedback.models import Feedback
from reporting.measures import (
    ACCEPTED,
    ON_DELIVERY,
)
from reporting.models import VIEW_BILLING, VIEW_REPORTS, DailyRollup, SentRollup
from reporting.reports.base import (
    FAILURE,
    Column,
    PercentileCont,
    Report,
    ReportTable,
    as_dicts,
    is_postgresql,
    month_of,
    percentile,
    rate,
)
from reporting.rollups import (
    RECEIVED,
    SENT_COUNTS,
    next_month,
    rollup_days,
    rollup_periods,
    rollup_state,
    rollups_enabled,
)
from reporting.timing import whole_percentiles
from sources.models import FeedbackConfig


def sent_rollups(
    report: Report, basis: str, *, years: bool = False
) -> QuerySet[SentRollup] | None:
    """The sent rollup rows of `basis` that add up to the filters' range (with
    `years`, whole calendar years read from year rows: for totals over the
    range), narrowed to their source and kind; None when they cannot answer
    (rollups off or not built, a flow or a buyer filtered: those belong to the
    feedback). Sets the report's `rollups_as_of`."""
    filters = report.filters
    if filters.flow_id is not None or filters.buyer_id is not None:
        return None
    if not rollups_enabled():
        return None
    state = rollup_state()
    if state is None:
        return None
    if not SentRollup.objects.exists():
        # Built before these rows existed, or nothing sent yet: counted live
        # until the next refresh builds them.
        return None
    periods = rollup_periods if years else rollup_days
    rows = SentRollup.objects.filter(
        periods(basis, filters.start, filters.end, field="basis")
    )
    report.rollups_as_of = state.refreshed_at
    if filters.source_id is not None:
        rows = rows.filter(source_id=filters.source_id)
    if filters.kind:
        rows = rows.filter(kind=filters.kind)
    return rows


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

    def _from_rollups(self) -> dict[Any, dict[str, Any]] | None:
        """The counts and response times per config from the sent rollups, or
        None when they cannot answer these filters."""
        basis = "delivered" if self.filters.by_delivery else "created"
        rollups = sent_rollups(self, basis, years=True)
        if rollups is None:
            return None
        found: dict[Any, dict[str, Any]] = {}
        durations: dict[Any, Counter[int]] = defaultdict(Counter)
        fields = [name for name in SENT_COUNTS if name not in ("sent", "sent_5xx")]
        listed = list(rollups.values_list("config_id", *fields, "durations"))
        # A deleted config's notifications lose their config: counted live
        # under None, so here too.
        known = set(
            FeedbackConfig.objects.filter(
                pk__in={row[0] for row in listed if row[0] is not None}
            ).values_list("pk", flat=True)
        )
        for config_id, *counts, bins in listed:
            key = config_id if config_id in known else None
            row = found.get(key)
            if row is None:
                row = found[key] = dict.fromkeys(fields, 0)
            for name, count in zip(fields, counts, strict=True):
                row[name] += count
            for log_bin, count in bins.items():
                durations[key][int(log_bin)] += count
        for key, row in found.items():
            row["median_ms"], row["p95_ms"] = whole_percentiles(
                durations[key], 0.5, 0.95
            )
        return found

    def generate(self) -> ReportTable:
        rows: dict[Any, dict[str, Any]] = defaultdict(dict)
        counted = self._from_rollups()
        if counted is not None:
            for key, values in counted.items():
                rows[key].update(values)
        else:
            self._count_live(rows)

        now = timezone.now()
        for values in as_dicts(
            Notification.objects.filter(
                Q(status__in=Notification.OPEN_STATUSES) & self._dimensions_q()
            )
            .values("config_id")
            # COUNT(*), not of the id: the partial index of open rows by
            # config and age answers it without reading the table.
            .annotate(queue_depth=Count("*"), oldest=Min("created_at"))
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

    def _count_live(self, rows: dict[Any, dict[str, Any]]) -> None:
        """The counts and response times per config, counted from the records."""
        status = Notification.Status
        for values in as_dicts(
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
        for values in as_dicts(
            attempts.values("notification__config_id").annotate(**measures).order_by()
        ):
            rows[values.pop("notification__config_id")].update(values)
        if not is_postgresql():
            for key, median, p95 in self._response_times(attempts):
                rows[key].update(median_ms=median, p95_ms=p95)

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
    permissions = (VIEW_REPORTS, VIEW_BILLING)

    def describe_dates(self) -> str:
        f = self.filters
        return (
            f"Counted by the date of each event ({f.start.isoformat()} to "
            f"{f.end.isoformat()}): feedback by when it was received, sent feedback "
            "by when its notification was created. The date basis does not apply."
        )

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
            rollup_days(RECEIVED + dimension, f.start, f.end)
        )
        if f.kind:
            rollups = rollups.filter(kind=f.kind)
        if filtered:
            rollups = rollups.filter(key=str(getattr(f, f"{dimension}_id")))
        return as_dicts(
            rollups.annotate(month=TruncMonth("day"))
            .values("month")
            .annotate(
                received=Sum("received"),
                received_accepted=Sum("accepted"),
                received_refused=Sum("refused"),
            )
            .order_by()
        )

    def _sent(self, sent_dims: Q) -> list[dict[str, Any]]:
        """Notifications tried at least once per month of their creation, and
        those answered >= 500: from the sent rollups when they can answer."""
        rollups = sent_rollups(self, "created")
        if rollups is not None:
            return as_dicts(
                rollups.annotate(month=TruncMonth("day"))
                .values("month")
                .annotate(sent_total=Sum("sent"), sent_5xx=Sum("sent_5xx"))
                .order_by()
            )
        f = self.filters
        server_error = NotificationAttempt.objects.filter(
            notification=OuterRef("pk"), response_status__gte=500
        )
        return as_dicts(
            Notification.objects.filter(
                sent_dims,
                attempt_count__gt=0,
                created_at__gte=f.since,
                created_at__lt=f.until,
            )
            .annotate(
                month=TruncMonth("created_at", tzinfo=timezone.get_current_timezone())
            )
            .values("month")
            .annotate(
                sent_total=Count("pk"),
                sent_5xx=Count("pk", filter=Q(Exists(server_error))),
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
            received = as_dicts(
                Feedback.objects.filter(
                    dims,
                    received_at__gte=f.since,
                    received_at__lt=f.until,
                    retracted_at__isnull=True,
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
            months[month_of(values.pop("month"))].update(values)
        sent_dims = Q()
        if f.source_id is not None:
            sent_dims &= Q(source_id=f.source_id)
        if f.flow_id is not None:
            sent_dims &= Q(feedback__flow_id=f.flow_id)
        if f.buyer_id is not None:
            sent_dims &= Q(feedback__buyer_id=f.buyer_id)
        if f.kind:
            sent_dims &= Q(kind=f.kind)
        for values in self._sent(sent_dims):
            months[month_of(values.pop("month"))].update(values)

        # Every month of the range, those without events as zeros: an invoice
        # period with nothing to bill is still a period.
        month = month_of(f.start)
        while month <= f.end:
            months.setdefault(month, {})
            month = next_month(month)
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
