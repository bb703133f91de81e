"""What the alerts page shows: firing alerts, then recent ones, each with its
numbers, a link to the report over its scope and window, and a sparkline of
the metric per day of that window."""

import copy
import datetime
from dataclasses import dataclass
from urllib.parse import urlencode

from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils.safestring import SafeString

from monitoring.actions import format_value
from monitoring.metrics import NOTIFICATION_METRICS, day_values, series_many, today
from monitoring.models import Alert, Monitor
from monitoring.selectors import alert_list
from monitoring.sparklines import sparkline

RECENT = 50
# The longest window a sparkline reads (a year and a day, as the rollups keep).
MAX_SPARK_DAYS = 366


@dataclass(frozen=True)
class AlertRow:
    alert: Alert
    value: str
    low: str
    high: str
    threshold: str
    scope: str
    report_url: str
    sparkline: SafeString


def report_url(monitor: Monitor, alert: Alert) -> str:
    """The report that shows the alert's numbers over its window, narrowed to
    its scope: the breakdown by its scope's dimension (by source when it has
    none), whose rows carry the rates; delivery health for forwarding."""
    if monitor.metric in NOTIFICATION_METRICS:
        code = "delivery-health"
    elif monitor.source_id is None and monitor.buyer_id is not None:
        code = "by-buyer"
    elif monitor.source_id is None and monitor.flow_id is not None:
        code = "by-flow"
    else:
        code = "by-source"
    params = {
        "start": alert.window_start.isoformat(),
        "end": alert.window_end.isoformat(),
        "basis": "delivery",
    }
    for name in ("source", "buyer", "flow"):
        pk = getattr(monitor, f"{name}_id")
        if pk is not None:
            params[name] = str(pk)
    return f"{reverse('reporting:report-detail', args=[code])}?{urlencode(params)}"


def scope_text(monitor: Monitor) -> str:
    parts = [
        f"{name} {getattr(monitor, name).name}"
        for name in ("source", "buyer", "flow")
        if getattr(monitor, f"{name}_id") is not None
    ]
    return ", ".join(parts) or "everything"


def alerts_overview(
    *, last: datetime.date | None = None
) -> tuple[list[AlertRow], list[AlertRow]]:
    """(firing, recent): the latest alert of each firing monitor, and the most
    recent alerts of any state. The sparklines of all of them come from one
    read per scope dimension (monitoring/metrics.py)."""
    last = last or today()
    latest_firing = Alert.objects.filter(
        monitor=OuterRef("monitor"), state=Alert.State.FIRING
    ).order_by("-at", "-id")
    firing = list(
        alert_list()
        .filter(monitor__state=Monitor.State.FIRING, state=Alert.State.FIRING)
        .filter(pk=Subquery(latest_firing.values("pk")[:1]))
    )
    recent = list(alert_list()[:RECENT])
    # One stand-in per monitor whose window reaches back to its oldest alert
    # shown, so one read covers every alert's own window.
    reach: dict[int, Monitor] = {}
    for alert in [*firing, *recent]:
        days = min(MAX_SPARK_DAYS, (last - alert.window_start).days + 1)
        stand_in = reach.get(alert.monitor_id)
        if stand_in is None:
            stand_in = reach[alert.monitor_id] = copy.copy(alert.monitor)
            stand_in.window_days = max(1, days)
        stand_in.window_days = max(stand_in.window_days, days)
    series = series_many(list(reach.values()), last=last)

    def row(alert: Alert) -> AlertRow:
        monitor = alert.monitor
        values = [
            (day, value)
            for day, value in day_values(monitor, series[monitor.pk])
            if alert.window_start <= day <= alert.window_end
        ]
        metric = monitor.metric
        label = Monitor.Metric(metric).label
        said = ", ".join(
            f"{day:%b %d}: {format_value(value, metric)}" for day, value in values
        )
        return AlertRow(
            alert=alert,
            value=format_value(alert.value, metric),
            low=format_value(alert.low, metric),
            high=format_value(alert.high, metric),
            threshold=f"{monitor.op} {format_value(alert.threshold, metric)}",
            scope=scope_text(monitor),
            report_url=report_url(monitor, alert),
            sparkline=sparkline(
                values,
                threshold=alert.threshold,
                title=f"{label} per day, {monitor.name}",
                describe=said,
            ),
        )

    return [row(a) for a in firing], [row(a) for a in recent]
