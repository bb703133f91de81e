"""Monitoring in the admin: the alerts page (firing, then recent, with their
numbers, a sparkline and a link to the report), the monitors as configured,
and the alert actions with "Run again"."""

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.html import format_html
from django.utils.translation import ngettext

from feedback.adminkit import ReadOnlyAdmin, ReadOnlyInline
from monitoring.actions import format_value
from monitoring.models import Alert, AlertAction, Monitor
from monitoring.overview import alerts_overview, scope_text
from monitoring.selectors import monitor_list
from monitoring.services import alert_actions_resend, monitors_evaluate

STATE_BACKGROUNDS = {
    "firing": "var(--message-error-bg)",
    "resolved": "var(--message-success-bg)",
    "ok": "var(--message-success-bg)",
}


def state_badge(state: str, label: str) -> str:
    return format_html(
        '<span class="alert-state" style="background:{};padding:2px 6px;'
        'border-radius:3px">{}</span>',
        STATE_BACKGROUNDS.get(state, "transparent"),
        label,
    )


@admin.register(Monitor)
class MonitorAdmin(ReadOnlyAdmin[Monitor]):
    """Monitors are configured as code (`import_config`); here they are read
    and evaluated on demand."""

    list_display = (
        "name",
        "metric",
        "scope",
        "condition",
        "state_shown",
        "evaluated_at",
    )
    list_filter = ("state", "metric")
    search_fields = ("slug", "name")
    actions = ["evaluate_now"]
    fields = (
        "slug",
        "name",
        "metric",
        "scope",
        "condition",
        "actions_shown",
        "state_shown",
        "evaluated_at",
    )
    readonly_fields = fields

    @admin.display(description="actions")
    def actions_shown(self, obj: Monitor) -> str:
        # An Apprise URL carries the service's tokens: only its scheme is shown.
        parts = []
        for action in obj.actions:
            kind = action.get("type", "")
            if kind == "email":
                parts.append(f"email to {', '.join(action.get('to', []))}")
            elif kind == "notify":
                scheme = str(action.get("url", "")).split("://", 1)[0]
                parts.append(f"notify via {scheme}://…")
            else:
                parts.append(kind)
        return "; ".join(parts) or "none"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Monitor]:
        return monitor_list()

    @admin.display(description="scope")
    def scope(self, obj: Monitor) -> str:
        return scope_text(obj)

    @admin.display(description="condition")
    def condition(self, obj: Monitor) -> str:
        return (
            f"{obj.op} {format_value(obj.threshold, obj.metric)} over "
            f"{obj.window_days} days (sample at least {obj.min_sample}, "
            f"{obj.confidence:.0%} confidence)"
        )

    @admin.display(description="state", ordering="state")
    def state_shown(self, obj: Monitor) -> str:
        return state_badge(obj.state, obj.get_state_display())

    def has_evaluate_permission(self, request: HttpRequest) -> bool:
        # The page stays read-only (monitors are code); evaluating needs change.
        return request.user.has_perm("monitoring.change_monitor")

    @admin.action(
        description="Evaluate the selected monitors now", permissions=["evaluate"]
    )
    def evaluate_now(self, request: HttpRequest, queryset: QuerySet[Monitor]) -> None:
        result = monitors_evaluate(monitors=list(queryset))
        self.message_user(
            request,
            f"Evaluated {result.monitors} monitor(s): {result.fired} fired, "
            f"{result.resolved} resolved.",
            messages.SUCCESS,
        )


class AlertActionInline(ReadOnlyInline[AlertAction, Alert]):
    model = AlertAction
    fields = ("index", "type", "status", "attempt_count", "result", "last_error")
    readonly_fields = fields


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin[Alert]):
    """The alerts page replaces the list; one alert's page shows its actions."""

    list_select_related = ("monitor",)
    inlines = [AlertActionInline]
    fields = (
        "public_id",
        "monitor",
        "state",
        "value_shown",
        "interval",
        "sample",
        "threshold_shown",
        "window_start",
        "window_end",
        "at",
    )
    readonly_fields = fields

    @admin.display(description="value")
    def value_shown(self, obj: Alert) -> str:
        return format_value(obj.value, obj.monitor.metric)

    @admin.display(description="interval")
    def interval(self, obj: Alert) -> str:
        metric = obj.monitor.metric
        low, high = format_value(obj.low, metric), format_value(obj.high, metric)
        return f"{low} to {high} at {obj.monitor.confidence:.0%} confidence"

    @admin.display(description="threshold")
    def threshold_shown(self, obj: Alert) -> str:
        return f"{obj.monitor.op} {format_value(obj.threshold, obj.monitor.metric)}"

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "",
                self.admin_site.admin_view(self.alerts_view),
                name="monitoring_alerts",
            ),
            *super().get_urls(),
        ]

    def alerts_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        firing, recent = alerts_overview()
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "Alerts",
            "opts": self.model._meta,
            "firing": firing,
            "recent": recent,
            "monitor_count": Monitor.objects.count(),
        }
        return TemplateResponse(request, "admin/monitoring/alert/alerts.html", context)


@admin.register(AlertAction)
class AlertActionAdmin(ReadOnlyAdmin[AlertAction]):
    list_display = (
        "alert",
        "index",
        "type",
        "status",
        "attempt_count",
        "next_attempt_at",
        "last_error",
    )
    list_filter = ("status", "type")
    list_select_related = ("alert__monitor",)
    raw_id_fields = ("alert",)
    actions = ["run_again"]
    # The copy of the action may hold an Apprise URL with a service's token.
    exclude = ("spec",)

    def has_resend_permission(self, request: HttpRequest) -> bool:
        # The page stays read-only: running again needs the change permission.
        return request.user.has_perm("monitoring.change_alertaction")

    @admin.action(description="Run the selected actions again", permissions=["resend"])
    def run_again(self, request: HttpRequest, queryset: QuerySet[AlertAction]) -> None:
        count = alert_actions_resend(ids=queryset.values_list("pk", flat=True))
        self.message_user(
            request,
            ngettext(
                "%(count)d action will run again.",
                "%(count)d actions will run again.",
                count,
            )
            % {"count": count},
            messages.SUCCESS,
        )
