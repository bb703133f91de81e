"""Admin for what happened, read-only: leads, deliveries and feedback, with
where each feedback was forwarded."""

from typing import Any

from django.contrib import admin
from django.db.models import Exists, OuterRef, QuerySet
from django.http import (
    HttpRequest,
)
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from feedback.adminkit import (
    ContactSearchAdmin,
    ReadOnlyAdmin,
    ReadOnlyInline,
    count_of,
    pretty_json,
)
from feedback.forwarding.admin import status_badge
from feedback.forwarding.models import (
    Notification,
)
from feedback.models import (
    DeliveryEvent,
    Feedback,
    Lead,
)
from feedback.selectors import delivery_event_list, feedback_list


class HasFeedbackFilter(admin.SimpleListFilter):
    title = "feedback"
    parameter_name = "has_feedback"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, str]]:
        return [("yes", "Received"), ("no", "None")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> QuerySet[Any] | None:
        received = Exists(Feedback.objects.filter(delivery=OuterRef("pk")))
        if self.value() == "yes":
            return queryset.filter(received)
        if self.value() == "no":
            return queryset.filter(~received)
        return None


@admin.register(Lead)
class LeadAdmin(ContactSearchAdmin[Lead], ReadOnlyAdmin[Lead]):
    # Read-only: email_normalized and phone_normalized copy `data`, and only the
    # events API keeps them in step.
    list_display = (
        "public_id",
        "display_name",
        "email_normalized",
        "phone_normalized",
        "source",
        "flow",
        "received_at",
        "delivery_count",
    )
    list_filter = ("source", "flow")
    list_select_related = ("source", "flow")
    date_hierarchy = "received_at"
    search_fields = ("public_id__exact",)
    search_help_text = "Exact lead id, email or phone."
    lead_path = ""
    ordering = ("-received_at",)
    # Counting a table of millions on every page view is what makes big admins slow.
    show_full_result_count = False
    fields = (
        "public_id",
        "source",
        "flow",
        "received_at",
        "email_normalized",
        "phone_normalized",
        "lead_data",
        "created_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Lead]:
        return (
            super()
            .get_queryset(request)
            .select_related("source", "flow")
            .annotate(delivery_count=count_of(DeliveryEvent, "lead"))
        )

    @admin.display(description="name")
    def display_name(self, obj: Lead) -> str:
        return obj.display_name

    @admin.display(description="deliveries", ordering="delivery_count")
    def delivery_count(self, obj: Lead) -> int:
        return int(getattr(obj, "delivery_count", 0))

    @admin.display(description="data")
    def lead_data(self, obj: Lead) -> SafeString:
        return pretty_json(obj.data)


class FeedbackInline(ReadOnlyInline[Feedback, DeliveryEvent]):
    model = Feedback
    fields = (
        "received_at",
        "kind",
        "outcome",
        "outcome_code",
        "reason",
        "revenue",
        "channel",
    )
    readonly_fields = fields
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Feedback]:
        return super().get_queryset(request).select_related("outcome_code")

    def has_change_permission(
        self, request: HttpRequest, obj: DeliveryEvent | None = None
    ) -> bool:
        return False


@admin.register(DeliveryEvent)
class DeliveryEventAdmin(
    ContactSearchAdmin[DeliveryEvent], ReadOnlyAdmin[DeliveryEvent]
):
    list_display = (
        "event_id",
        "delivered_at",
        "buyer",
        "source",
        "flow",
        "reference",
        "lead_email",
        "price",
        "feedback_count",
    )
    list_filter = (HasFeedbackFilter, "buyer", "source", "flow")
    list_select_related = ("lead", "buyer", "source", "flow")
    date_hierarchy = "delivered_at"
    search_fields = ("event_id__exact", "reference__exact", "lead__public_id__exact")
    search_help_text = "Exact event id, reference, lead id, email or phone."
    ordering = ("-delivered_at",)
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("event_id", "delivered_at", "reference", "price")}),
        ("Routing", {"fields": ("lead", "buyer", "source", "flow", "step")}),
        ("Record", {"fields": ("payload_hash", "created_at")}),
    )
    readonly_fields = (
        "event_id",
        "delivered_at",
        "reference",
        "price",
        "lead",
        "buyer",
        "source",
        "flow",
        "step",
        "payload_hash",
        "created_at",
    )
    inlines = (FeedbackInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeliveryEvent]:
        return delivery_event_list().annotate(
            feedback_count=count_of(Feedback, "delivery")
        )

    @admin.display(description="lead email", ordering="lead__email_normalized")
    def lead_email(self, obj: DeliveryEvent) -> str:
        return obj.lead.email_normalized

    @admin.display(description="feedback", ordering="feedback_count")
    def feedback_count(self, obj: DeliveryEvent) -> int:
        return int(getattr(obj, "feedback_count", 0))


class NotificationInline(ReadOnlyInline[Notification, Feedback]):
    """Where a feedback was forwarded, and how that went."""

    model = Notification
    # Each row is titled with its notification id, linked to its page.
    fields = (
        "config",
        "status_column",
        "attempt_count",
        "next_attempt_at",
        "reason",
        "updated_at",
    )
    readonly_fields = fields
    ordering = ("created_at", "pk")
    show_change_link = True
    verbose_name = "notification to the source"
    verbose_name_plural = "notifications to the source"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        return super().get_queryset(request).select_related("config__source")

    @admin.display(description="status")
    def status_column(self, obj: Notification) -> SafeString:
        return status_badge(obj)


@admin.register(Feedback)
class FeedbackAdmin(ContactSearchAdmin[Feedback], ReadOnlyAdmin[Feedback]):
    list_display = (
        "received_at",
        "kind",
        "outcome",
        "outcome_code",
        "reason",
        "delivery",
        "buyer",
        "source",
        "channel",
        "revenue",
    )
    list_filter = (
        "kind",
        "outcome",
        "review_state",
        "channel",
        "outcome_code",
        "buyer",
        "source",
        "flow",
    )
    list_select_related = ("delivery", "outcome_code", "buyer", "source")
    date_hierarchy = "received_at"
    search_fields = (
        "delivery__event_id__exact",
        "delivery__reference__exact",
        "lead__public_id__exact",
    )
    search_help_text = "Exact event id, reference, lead id, email or phone."
    ordering = ("-received_at",)
    show_full_result_count = False
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "public_id",
                    "delivery",
                    "kind",
                    "outcome",
                    "outcome_reason",
                    "review",
                )
            },
        ),
        (
            "Reported",
            {
                "fields": (
                    "outcome_code",
                    "reason",
                    "revenue",
                    "quality_score",
                    "occurred_at",
                    "custom_data",
                    "note",
                )
            },
        ),
        ("Lead", {"fields": ("lead", "buyer", "source", "flow")}),
        (
            "Submission",
            {"fields": ("channel", "received_at", "api_key", "submitted_by")},
        ),
    )
    readonly_fields = (
        "public_id",
        "delivery",
        "kind",
        "outcome",
        "outcome_reason",
        "review",
        "outcome_code",
        "reason",
        "revenue",
        "quality_score",
        "occurred_at",
        "custom_data",
        "note",
        "lead",
        "buyer",
        "source",
        "flow",
        "channel",
        "received_at",
        "api_key",
        "submitted_by",
    )

    inlines = (NotificationInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Feedback]:
        return feedback_list()

    @admin.display(description="custom")
    def custom_data(self, obj: Feedback) -> SafeString:
        return pretty_json(obj.custom)

    @admin.display(description="return review")
    def review(self, obj: Feedback) -> SafeString | str:
        if not obj.review_state:
            return "—"
        return format_html(
            '{} · <a href="{}">review page</a>',
            obj.get_review_state_display(),
            reverse("admin:feedback_returnreview_change", args=[obj.pk]),
        )
