"""Admin for batch runs: each file, its period, status, rows and tries; the file
itself to download; resending a run."""

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_permission_codename
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.http import content_disposition_header
from django.utils.translation import ngettext

from feedback.batches import batch_runs_resend
from feedback.models import BatchAttempt, BatchRun


class BatchAttemptInline(admin.TabularInline[BatchAttempt, BatchRun]):
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
    extra = 0
    can_delete = False

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
        run = BatchRun.objects.only("file_name", "content").get(pk=obj.pk)
        if run.content is None:
            raise Http404("This run's file has not been built.")
        response = HttpResponse(bytes(run.content), content_type="text/csv")
        response["Content-Disposition"] = content_disposition_header(
            as_attachment=True, filename=run.file_name
        )
        return response
