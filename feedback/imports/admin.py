"""The admin's view of CSV feedback imports: progress, counts, the refused rows."""

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import ngettext

from feedback.audit.models import AuditEntry
from feedback.audit.services import audit_export
from feedback.imports.models import FeedbackImport
from feedback.imports.selectors import feedback_import_list, feedback_import_refused_csv
from feedback.imports.services import feedback_import_requeue


@admin.register(FeedbackImport)
class FeedbackImportAdmin(admin.ModelAdmin[FeedbackImport]):
    list_display = (
        "public_id",
        "created_at",
        "buyer",
        "filename",
        "status",
        "progress",
        "succeeded_rows",
        "refused_rows",
        "channel",
    )
    list_filter = ("status", "channel", "buyer")
    list_select_related = ("buyer", "user")
    search_fields = ("public_id__exact", "filename", "file_sha256__exact")
    search_help_text = "Exact import id or file SHA-256, or part of the file name."
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    fields = (
        "public_id",
        "buyer",
        "user",
        "api_key",
        "channel",
        "filename",
        "file_size",
        "file_sha256",
        "status",
        "progress",
        "total_rows",
        "processed_rows",
        "succeeded_rows",
        "refused_rows",
        "refused_rows_link",
        "error",
        "chunk_size",
        "lease_expires_at",
        "created_at",
        "updated_at",
        "finished_at",
    )
    readonly_fields = fields
    actions = ("requeue",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[FeedbackImport]:
        # The stored files stay in the database: lists never load them.
        return feedback_import_list()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # imports are uploaded by buyers, through the portal or API

    def has_change_permission(
        self, request: HttpRequest, obj: FeedbackImport | None = None
    ) -> bool:
        return False

    @admin.display(description="progress")
    def progress(self, obj: FeedbackImport) -> str:
        return f"{obj.percent}% ({obj.processed_rows:,} of {obj.total_rows:,})"

    @admin.display(description="refused rows (CSV)")
    def refused_rows_link(self, obj: FeedbackImport) -> SafeString | str:
        if not obj.refused_rows:
            return "none"
        url = reverse("admin:feedback_feedbackimport_refused", args=[obj.pk])
        return format_html('<a href="{}">Download {} rows</a>', url, obj.refused_rows)

    # The pages stay read-only; queueing again needs the change permission.
    def has_requeue_permission(self, request: HttpRequest) -> bool:
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    @admin.action(
        description="Queue selected failed or stalled imports again",
        permissions=["requeue"],
    )
    def requeue(self, request: HttpRequest, queryset: QuerySet[FeedbackImport]) -> None:
        queued = sum(feedback_import_requeue(feedback_import=obj) for obj in queryset)
        skipped = queryset.count() - queued
        self.message_user(
            request,
            ngettext(
                "%(count)d import queued again.",
                "%(count)d imports queued again.",
                queued,
            )
            % {"count": queued},
            messages.SUCCESS if queued else messages.WARNING,
        )
        if skipped:
            self.message_user(
                request,
                f"{skipped} left alone: done, or a worker is on it.",
                messages.INFO,
            )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:object_id>/refused.csv",
                self.admin_site.admin_view(self.refused_csv_view),
                name="feedback_feedbackimport_refused",
            ),
            *super().get_urls(),
        ]

    def refused_csv_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        obj = self.get_queryset(request).filter(pk=object_id).first()
        if obj is None or not self.has_view_permission(request, obj):
            raise Http404("No such import.")
        response = HttpResponse(
            feedback_import_refused_csv(feedback_import=obj),
            content_type="text/csv; charset=utf-8",
        )
        audit_export(
            request=request,
            export=f"import {obj.public_id} refused rows",
            via=AuditEntry.Via.ADMIN,
            rows=obj.refused_rows,
            scope=obj.buyer,
        )
        response["Content-Disposition"] = (
            f'attachment; filename="{obj.public_id}-refused.csv"'
        )
        return response
