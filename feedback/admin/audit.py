"""The audit log in the admin: read and filtered, never added to, changed or
deleted (rows go only when they are older than the retention)."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
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


class ActorUserFilter(admin.RelatedOnlyFieldListFilter):
    """The users (or keys) in the log; entries without one are under "actor"."""

    @property
    def include_empty_choice(self) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin[AuditEntry]):
    list_display = ("occurred_at", "kind", "what", "who", "via", "address", "rows")
    list_filter = (
        "kind",
        "via",
        ActorKindFilter,
        ("actor_user", ActorUserFilter),
        ("actor_key", ActorUserFilter),
        "occurred_at",
    )
    search_fields = ("actor", "subject", "object_repr", "object_id", "address")
    date_hierarchy = "occurred_at"
    list_per_page = 50
    show_full_result_count = False
    readonly_fields = (
        "occurred_at",
        "kind",
        "what",
        "changed_fields",
        "who",
        "via",
        "address",
        "filters",
        "row_count",
    )
    who_fieldset = ("Who and from where", {"fields": ("who", "via", "address")})
    change_fieldsets = (
        (None, {"fields": ("occurred_at", "kind", "what", "changed_fields")}),
        who_fieldset,
    )
    export_fieldsets = (
        (None, {"fields": ("occurred_at", "kind", "what")}),
        who_fieldset,
        (
            "Export",
            {
                "fields": ("filters", "row_count"),
                "description": "The filters of the download, with searched contact "
                "details withheld, and how many rows it held.",
            },
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEntry]:
        return audit_entry_list()

    def get_fieldsets(self, request: HttpRequest, obj: AuditEntry | None = None) -> Any:
        if obj is not None and obj.kind == AuditEntry.Kind.EXPORT:
            return self.export_fieldsets
        return self.change_fieldsets

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {"title": "Audit log", **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    @admin.display(description="what", ordering="subject")
    def what(self, obj: AuditEntry) -> SafeString:
        if obj.kind == AuditEntry.Kind.EXPORT:
            if obj.object_repr:
                return format_html("{} for {}", obj.subject, obj.object_repr)
            return format_html("{}", obj.subject)
        if obj.object_repr:
            return format_html("{} “{}”", obj.subject, obj.object_repr)
        if obj.object_id:
            return format_html("{} #{}", obj.subject, obj.object_id)
        return format_html("{}", obj.subject)

    @admin.display(description="actor", ordering="actor")
    def who(self, obj: AuditEntry) -> SafeString:
        """The actor as named then, linked to everything the same user or key
        did while it exists."""
        if obj.actor_user_id is not None:
            query = f"actor_user__id__exact={obj.actor_user_id}"
        elif obj.actor_key_id is not None:
            query = f"actor_key__id__exact={obj.actor_key_id}"
        else:
            return format_html("{}", obj.actor)
        url = f"{reverse('admin:feedback_auditentry_changelist')}?{query}"
        return format_html(
            '<a href="{}" title="Everything {} did">{}</a>', url, obj.actor, obj.actor
        )

    @admin.display(description="rows", ordering="row_count")
    def rows(self, obj: AuditEntry) -> str:
        return "" if obj.row_count is None else f"{obj.row_count:,}"

    @admin.display(description="fields changed")
    def changed_fields(self, obj: AuditEntry) -> str:
        return ", ".join(obj.fields) if obj.fields else "—"

    @admin.display(description="filters")
    def filters(self, obj: AuditEntry) -> SafeString | str:
        return short_text(obj.query, 400) if obj.query else "none: every row"
