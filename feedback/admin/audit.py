"""The audit log in the admin: read and filtered, never added to, changed or
deleted (rows go only when they are older than the retention)."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from feedback.adminkit import ReadOnlyAdmin, short_text
from feedback.audit.models import AuditEntry
from feedback.audit.selectors import audit_entry_list


class ActorKindFilter(admin.SimpleListFilter):
    title = "actor"
    parameter_name = "actor_kind"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[AuditEntry]
    ) -> list[tuple[str, str]]:
        return [
            ("user", "a user"),
            ("key", "an API key"),
            ("command", "a command or the system"),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[AuditEntry]
    ) -> QuerySet[AuditEntry] | None:
        if self.value() == "user":
            return queryset.filter(actor_user__isnull=False)
        if self.value() == "key":
            return queryset.filter(actor_key__isnull=False)
        if self.value() == "command":
            return queryset.filter(actor_user__isnull=True, actor_key__isnull=True)
        return None


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin[AuditEntry]):
    list_display = (
        "occurred_at",
        "kind",
        "what",
        "actor",
        "via",
        "address",
        "rows",
    )
    list_filter = (
        "kind",
        "via",
        ActorKindFilter,
        ("actor_user", admin.RelatedOnlyFieldListFilter),
        "occurred_at",
    )
    search_fields = ("actor", "subject", "object_repr", "object_id", "address")
    date_hierarchy = "occurred_at"
    list_per_page = 50
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("occurred_at", "kind", "what", "changed_fields")}),
        (
            "Who",
            {"fields": ("actor", "actor_user", "actor_key", "via", "address")},
        ),
        (
            "Export",
            {
                "fields": ("filters", "row_count"),
                "description": "For exports: the filters of the download, with "
                "searched contact details withheld, and how many rows it held.",
            },
        ),
    )
    readonly_fields = (
        "occurred_at",
        "kind",
        "what",
        "changed_fields",
        "actor",
        "actor_user",
        "actor_key",
        "via",
        "address",
        "filters",
        "row_count",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEntry]:
        return audit_entry_list()

    @admin.display(description="what", ordering="subject")
    def what(self, obj: AuditEntry) -> SafeString:
        if obj.object_repr:
            return format_html("{} “{}”", obj.subject, obj.object_repr)
        if obj.object_id:
            return format_html("{} #{}", obj.subject, obj.object_id)
        return format_html("{}", obj.subject)

    @admin.display(description="rows", ordering="row_count")
    def rows(self, obj: AuditEntry) -> str:
        return "" if obj.row_count is None else f"{obj.row_count:,}"

    @admin.display(description="fields changed")
    def changed_fields(self, obj: AuditEntry) -> SafeString | str:
        if not obj.fields:
            return "—"
        return format_html(
            "<ul class='audit-fields'>{}</ul>",
            format_html_join("", "<li>{}</li>", ((name,) for name in obj.fields)),
        )

    @admin.display(description="filters")
    def filters(self, obj: AuditEntry) -> SafeString | str:
        if not obj.query:
            return "none" if obj.kind == AuditEntry.Kind.EXPORT else "—"
        return short_text(obj.query, 400)
