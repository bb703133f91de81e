"""Admin for forwarding: notifications, their attempts, the dead letters, and
batch runs (each file, its period, status, rows and tries; resending)."""

import json
import logging
from functools import partial
from typing import Any, ClassVar, TypeVar

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Model, QuerySet
from django.db.models.fields.related import RelatedField
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.http import content_disposition_header
from django.utils.safestring import SafeString
from django.utils.translation import ngettext

from feedback.adminkit import ReadOnlyAdmin, ReadOnlyInline, short_text
from feedback.audit.models import AuditEntry
from feedback.audit.services import audit_export
from feedback.forwarding.batches import batch_runs_resend
from feedback.forwarding.engine import (
    notifications_claim_due,
    notifications_enqueue,
    notifications_resend,
)
from feedback.forwarding.models import (
    BatchAttempt,
    BatchRun,
    DeadNotification,
    Notification,
    NotificationAttempt,
)
from sources.models import FeedbackConfig

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=Model)

Status = Notification.Status
# Admin CSS variables, so the badges follow the light and dark themes.
STATUS_BACKGROUNDS: dict[str, str] = {
    Status.SUCCEEDED: "var(--message-success-bg)",
    Status.FAILED: "var(--message-error-bg)",
    Status.DEAD: "var(--message-error-bg)",
    Status.RETRYING: "var(--message-warning-bg)",
    Status.SENDING: "var(--message-warning-bg)",
    Status.PENDING: "var(--selected-bg)",
    Status.BATCHED: "var(--selected-bg)",
    Status.SKIPPED: "var(--darkened-bg)",
}


def status_badge(notification: Notification, *, short: bool = False) -> SafeString:
    """The status as a coloured pill; `short` (for lists) names it in one word and
    keeps the explanation for hovering."""
    label = notification.get_status_display()
    return format_html(
        '<span class="notification-status status-{}" title="{}" style="background: '
        "{}; color: var(--body-fg); padding: 1px 8px; border-radius: 10px; "
        'white-space: nowrap">{}</span>',
        notification.status,
        label,
        STATUS_BACKGROUNDS.get(notification.status, "transparent"),
        notification.status.capitalize() if short else label,
    )


# Notifications: what was forwarded to sources, and the dead letters -------------


def notifications_resend_now(*, ids: list[int]) -> int:
    """Reset notifications for sending (the engine's resend) and, once that commits,
    queue them at once rather than at the sweeper's next pass. Returns how many
    were reset."""
    resent = notifications_resend(ids=ids)
    if resent:
        transaction.on_commit(partial(_queue_now, ids))
    return resent


def _queue_now(ids: list[int]) -> None:
    if not settings.LEADBACK_QUEUE_ON_COMMIT:
        return  # no worker reads the queue: the next sweep or cron run sends them
    try:
        notifications_enqueue(notifications_claim_due(ids=ids))
    except Exception:  # the database or broker is unwell: the sweeper covers
        logger.warning("could not queue resent notifications %s", ids, exc_info=True)


def body_excerpt(text: str) -> str:
    """A stored body as people read it: JSON indented, anything else as it came."""
    if not text:
        return "(empty)"
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if not isinstance(value, dict | list):
        return text
    return json.dumps(value, indent=2, ensure_ascii=False)


def headers_excerpt(headers: dict[str, Any]) -> str:
    if not headers:
        return "(none)"
    return "\n".join(f"{name}: {value}" for name, value in headers.items())


class ConfigListFilter(admin.RelatedFieldListFilter):
    """The config filter, naming each config (and its source) in one query."""

    def field_choices(
        self,
        field: RelatedField[Any, Any],
        request: HttpRequest,
        model_admin: admin.ModelAdmin[Any],
    ) -> list[tuple[str, Any]]:
        ordering = self.field_admin_ordering(field, request, model_admin)
        configs = FeedbackConfig.objects.select_related("source")
        if ordering:
            configs = configs.order_by(*ordering)
        return [(str(config.pk), str(config)) for config in configs]


class NotificationAttemptInline(ReadOnlyInline[NotificationAttempt, Notification]):
    model = NotificationAttempt
    fields = (
        "number",
        "started_at",
        "duration",
        "request_line",
        "response_status",
        "outcome",
        "reason",
        "error_class",
        "exchange",
    )
    readonly_fields = fields
    ordering = ("number",)
    verbose_name = "attempt"

    def has_view_permission(
        self, request: HttpRequest, obj: Notification | None = None
    ) -> bool:
        # Attempts are part of the notification's record: whoever may open the
        # notification (the parent admin checks that) sees them.
        return True

    @admin.display(description="duration")
    def duration(self, obj: NotificationAttempt) -> str:
        return f"{obj.duration_ms:,} ms"

    @admin.display(description="request")
    def request_line(self, obj: NotificationAttempt) -> SafeString | str:
        if not obj.request_method:
            return "(not built)"
        return format_html(
            "<code>{} {}</code>",
            obj.request_method,
            obj.request_url,
        )

    @admin.display(description="request and response")
    def exchange(self, obj: NotificationAttempt) -> SafeString:
        return format_html(
            '<details class="attempt-exchange"><summary>Show</summary>'
            "<h4>Request headers</h4><pre>{}</pre>"
            "<h4>Request body</h4><pre>{}</pre>"
            "<h4>Response headers</h4><pre>{}</pre>"
            "<h4>Response body (excerpt)</h4><pre>{}</pre></details>",
            headers_excerpt(obj.request_headers),
            body_excerpt(obj.request_body),
            headers_excerpt(obj.response_headers),
            body_excerpt(obj.response_body),
        )


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin[Notification]):
    """Every feedback forwarded to a source: read-only, except for resending."""

    list_display: tuple[str, ...] = (
        "public_id",
        "feedback_link",
        "source",
        "kind",
        "status_short",
        "attempts",
        "next_attempt_at",
        "reason_column",
        "created_at",
    )
    list_filter: ClassVar[tuple[Any, ...]] = (
        "status",
        "source",
        "kind",
        ("config", ConfigListFilter),
    )
    list_select_related = ("feedback__delivery", "source")
    search_fields = ("public_id__exact", "feedback__delivery__event_id__exact")
    search_help_text = "Exact notification id or event id."
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-pk")
    show_full_result_count = False
    actions = ("resend",)
    inlines = (NotificationAttemptInline,)
    change_form_template = "admin/feedback/notification/change_form.html"
    change_list_template = "admin/feedback/notification/change_list.html"
    # The list links to the dead letters, with their count.
    dead_letter_link = True
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "public_id",
                    "feedback_link",
                    "status_column",
                    "reason",
                    "reference",
                )
            },
        ),
        (
            "Forwarding",
            {
                "fields": (
                    "source",
                    "config_link",
                    "kind",
                    "attempt_count",
                    "next_attempt_at",
                    "finished_at",
                )
            },
        ),
        (
            "Record",
            {
                "fields": (
                    "created_at",
                    "updated_at",
                    "schedule_tries",
                    "lease_expires_at",
                ),
                "classes": ("collapse",),
            },
        ),
    )
    # Every field shown is read-only: the page is a record; resending is a button.
    readonly_fields = tuple(
        str(name) for _, options in fieldsets for name in options["fields"]
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        return (
            super()
            .get_queryset(request)
            .select_related("feedback__delivery", "source", "config__source")
        )

    # Columns

    @admin.display(description="feedback (event id)")
    def feedback_link(self, obj: Notification) -> SafeString:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:feedback_feedback_change", args=[obj.feedback_id]),
            obj.feedback.delivery.event_id,
        )

    @admin.display(description="status", ordering="status")
    def status_column(self, obj: Notification) -> SafeString:
        return status_badge(obj)

    @admin.display(description="status", ordering="status")
    def status_short(self, obj: Notification) -> SafeString:
        return status_badge(obj, short=True)

    @admin.display(description="attempts", ordering="attempt_count")
    def attempts(self, obj: Notification) -> int:
        return obj.attempt_count

    @admin.display(description="reason", ordering="reason")
    def reason_column(self, obj: Notification) -> SafeString:
        return short_text(obj.reason)

    @admin.display(description="feedback config")
    def config_link(self, obj: Notification) -> SafeString | str:
        if obj.config is None:
            return "(deleted)"
        return format_html(
            '<a href="{}">{}</a>{}',
            reverse("admin:sources_feedbackconfig_change", args=[obj.config_id]),
            obj.config,
            "" if obj.config.enabled else " (disabled)",
        )

    # Resending: the page stays read-only, resending needs the change permission.

    def has_resend_permission(
        self, request: HttpRequest, obj: Notification | None = None
    ) -> bool:
        opts = self.opts
        codename = get_permission_codename("change", opts)
        return request.user.has_perm(f"{opts.app_label}.{codename}")

    @admin.action(description="Resend selected notifications", permissions=["resend"])
    def resend(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        resent = notifications_resend_now(ids=ids)
        self._report_resent(request, asked=len(ids), resent=resent)

    def _report_resent(self, request: HttpRequest, *, asked: int, resent: int) -> None:
        if resent:
            self.message_user(
                request,
                ngettext(
                    "Resent %d notification: it is queued for sending.",
                    "Resent %d notifications: they are queued for sending.",
                    resent,
                )
                % resent,
                level=messages.SUCCESS,
            )
        if asked > resent:
            left = asked - resent
            self.message_user(
                request,
                ngettext(
                    "%d notification was not resent: it is in a batch file or "
                    "being sent right now.",
                    "%d notifications were not resent: they are in a batch file "
                    "or being sent right now.",
                    left,
                )
                % left,
                level=messages.WARNING,
            )

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_resend"
        return [
            path(
                "<path:object_id>/resend/",
                self.admin_site.admin_view(self.resend_view),
                name=name,
            ),
            *super().get_urls(),
        ]

    def resend_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The change page's Resend button: one notification, by POST."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No such notification.")
        if not self.has_resend_permission(request, obj):
            raise PermissionDenied
        resent = notifications_resend_now(ids=[obj.pk])
        self._report_resent(request, asked=1, resent=resent)
        # Not back to a dead-letter page: a resent notification has left it.
        return HttpResponseRedirect(
            reverse("admin:feedback_notification_change", args=[obj.pk])
        )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Notification | None = None,
    ) -> HttpResponse:
        if (
            obj is not None
            and obj.status not in (Status.BATCHED, Status.SENDING)
            and self.has_resend_permission(request, obj)
        ):
            context["resend_url"] = reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_resend",
                args=[obj.pk],
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if self.dead_letter_link:
            dead = Notification.objects.filter(status=Status.DEAD).count()
            extra_context = {"dead_letter_count": dead, **(extra_context or {})}
        return super().changelist_view(request, extra_context)


@admin.register(DeadNotification)
class DeadNotificationAdmin(NotificationAdmin):
    """The dead-letter view: notifications whose retries ran out, to fix and resend."""

    list_display = (
        "public_id",
        "feedback_link",
        "source",
        "kind",
        "attempts",
        "reason_column",
        "died_at",
        "created_at",
    )
    list_filter = ("source", "kind", ("config", ConfigListFilter))
    ordering = ("-finished_at", "-pk")
    change_list_template = "admin/feedback/deadnotification/change_list.html"
    dead_letter_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        return super().get_queryset(request).filter(status=Status.DEAD)

    @admin.display(description="died at", ordering="finished_at")
    def died_at(self, obj: Notification) -> Any:
        return obj.finished_at


class BatchAttemptInline(ReadOnlyInline[BatchAttempt, BatchRun]):
    model = BatchAttempt
    fields = (
        "number",
        "started_at",
        "duration_ms",
        "destination",
        "outcome",
        "reason",
        "error_class",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(BatchRun)
class BatchRunAdmin(admin.ModelAdmin[BatchRun]):
    """Batch files: read-only records, except for resending."""

    list_display = (
        "public_id",
        "source",
        "config",
        "period_start",
        "period_end",
        "status",
        "row_count",
        "attempt_count",
        "next_attempt_at",
        "download",
    )
    list_filter = ("status", "source")
    list_select_related = ("source", "config__source")
    search_fields = ("public_id__exact", "file_name")
    search_help_text = "Exact run id, or part of the file name."
    date_hierarchy = "period_end"
    actions = ("resend",)
    inlines = (BatchAttemptInline,)
    fields = (
        "public_id",
        "source",
        "config",
        "period_start",
        "period_end",
        "status",
        "reason",
        "row_count",
        "file_name",
        "download",
        "sha256",
        "attempt_count",
        "next_attempt_at",
        "sent_at",
        "created_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[BatchRun]:
        # The file's bytes are only read by the download view.
        return super().get_queryset(request).defer("content")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_resend_permission(self, request: HttpRequest) -> bool:
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    @admin.display(description="file")
    def download(self, obj: BatchRun) -> str:
        if not obj.file_name or not obj.sha256:
            return "—"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:feedback_batchrun_download", args=[obj.pk]),
            obj.file_name,
        )

    @admin.action(description="Resend selected runs", permissions=["resend"])
    def resend(self, request: HttpRequest, queryset: QuerySet[BatchRun]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        resent = batch_runs_resend(ids=ids)
        if resent:
            self.message_user(
                request,
                ngettext(
                    "Resent %d run: its file is queued for sending again.",
                    "Resent %d runs: their files are queued for sending again.",
                    resent,
                )
                % resent,
                level=messages.SUCCESS,
            )
        if len(ids) > resent:
            left = len(ids) - resent
            self.message_user(
                request,
                ngettext(
                    "%d run was not resent: it is empty, pending or being sent.",
                    "%d runs were not resent: they are empty, pending or being sent.",
                    left,
                )
                % left,
                level=messages.WARNING,
            )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/download/",
                self.admin_site.admin_view(self.download_view),
                name="feedback_batchrun_download",
            ),
            *super().get_urls(),
        ]

    def download_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The run's file exactly as it was (or will be) sent."""
        obj = self.get_object(request, unquote(object_id))
        if obj is None or not self.has_view_permission(request, obj):
            raise Http404("No such batch run.")
        run = BatchRun.objects.only("file_name", "content", "row_count").get(pk=obj.pk)
        if run.content is None:
            raise Http404("This run's file has not been built.")
        audit_export(
            request=request,
            export=f"batch file {run.file_name}",
            via=AuditEntry.Via.ADMIN,
            rows=run.row_count,
        )
        response = HttpResponse(bytes(run.content), content_type="text/csv")
        response["Content-Disposition"] = content_disposition_header(
            as_attachment=True, filename=run.file_name
        )
        return response
