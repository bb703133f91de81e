"""The seller's admin: configuration (buyers, policies, keys, outcome codes) and a
read-only view of what happened (leads, deliveries, feedback, notifications)."""

import logging
from typing import Any, TypeVar

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.db.models import Exists, Model, OuterRef, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import (
    HttpRequest,
)
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import ngettext

from feedback.adminkit import (
    ContactSearchAdmin,
    ReadOnlyAdmin,
    count_of,
    pretty_json,
)
from feedback.forwarding import admin as forwarding_admin
from feedback.forwarding.admin import status_badge
from feedback.forwarding.models import (
    Notification,
)
from feedback.imports import admin as imports_admin
from feedback.models import (
    ApiKey,
    Buyer,
    BuyerMembership,
    BuyerPolicy,
    DeliveryEvent,
    Feedback,
    Flow,
    IdempotencyKey,
    Lead,
    OutcomeCode,
)
from feedback.selectors import delivery_event_list, feedback_list
from feedback.services import (
    api_key_create,
    api_key_revoke,
)
from sources import rules
from sources.widgets import RuleSetWidget

# The forwarding and imports admins register their models when imported.
__all__ = ["forwarding_admin", "imports_admin"]

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=Model)

# Flows and buyers -------------------------------------------------------------


@admin.register(Flow)
class FlowAdmin(admin.ModelAdmin[Flow]):
    list_display = ("name", "slug", "created_at")
    search_fields = ("slug", "name")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at",)


class BuyerPolicyForm(forms.ModelForm[BuyerPolicy]):
    class Meta:
        model = BuyerPolicy
        fields = ("buyer", "kind", "flow", "enabled", "max_age_days", "rules")
        widgets = {"rules": RuleSetWidget(attrs={"rows": 4, "cols": 50})}

    def clean_rules(self) -> Any:
        rule_set = self.cleaned_data.get("rules")
        if rule_set is not None:
            problems = rules.validate_rule_set(rule_set)
            if problems:
                raise forms.ValidationError(problems)
        return rule_set


class BuyerPolicyFormSet(
    BaseInlineFormSet[BuyerPolicy, Buyer, forms.ModelForm[BuyerPolicy]]
):
    def clean(self) -> None:
        super().clean()
        # The database allows one row per kind and flow; two new rows for the same
        # pair would each pass their own form's check, so compare them here.
        seen: set[tuple[str, int | None]] = set()
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data or data.get("DELETE") or not data.get("kind"):
                continue
            flow = data.get("flow")
            pair = (data["kind"], flow.pk if flow else None)
            if pair in seen:
                scope = f"flow {flow}" if flow else "all flows"
                raise forms.ValidationError(
                    f"There are two {data['kind']} policies for {scope}."
                )
            seen.add(pair)


class BuyerPolicyInline(admin.TabularInline[BuyerPolicy, Buyer]):
    model = BuyerPolicy
    form = BuyerPolicyForm
    formset = BuyerPolicyFormSet
    fields = ("kind", "flow", "enabled", "max_age_days", "rules")
    autocomplete_fields = ("flow",)
    extra = 0


class BuyerMembershipInline(admin.TabularInline[BuyerMembership, Buyer]):
    model = BuyerMembership
    fields = ("user", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)
    extra = 0
    verbose_name = "portal user"
    verbose_name_plural = "portal users"


@admin.register(Buyer)
class BuyerAdmin(admin.ModelAdmin[Buyer]):
    list_display = (
        "name",
        "slug",
        "is_active",
        "member_count",
        "active_key_count",
        "created_at",
    )
    list_filter = ("is_active",)
    search_fields = ("slug", "name")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at", "updated_at")
    fields = ("name", "slug", "is_active", "created_at", "updated_at")
    inlines = (BuyerPolicyInline, BuyerMembershipInline)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Buyer]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                member_count=count_of(BuyerMembership, "buyer"),
                active_key_count=count_of(ApiKey, "buyer", revoked_at__isnull=True),
            )
        )

    @admin.display(description="portal users", ordering="member_count")
    def member_count(self, obj: Buyer) -> int:
        return int(getattr(obj, "member_count", 0))

    @admin.display(description="active API keys", ordering="active_key_count")
    def active_key_count(self, obj: Buyer) -> int:
        return int(getattr(obj, "active_key_count", 0))


@admin.register(BuyerPolicy)
class BuyerPolicyAdmin(admin.ModelAdmin[BuyerPolicy]):
    form = BuyerPolicyForm
    list_display = (
        "buyer",
        "kind",
        "applies_to",
        "enabled",
        "max_age_days",
        "has_rules",
    )
    list_filter = (
        "kind",
        "enabled",
        ("flow", admin.EmptyFieldListFilter),
        "buyer",
    )
    list_select_related = ("buyer", "flow")
    search_fields = ("buyer__slug", "buyer__name", "flow__slug", "flow__name")
    autocomplete_fields = ("buyer", "flow")
    ordering = ("buyer__name", "kind")

    @admin.display(description="applies to", ordering="flow__name")
    def applies_to(self, obj: BuyerPolicy) -> str:
        return str(obj.flow) if obj.flow_id else "All flows"

    @admin.display(description="rules", boolean=True)
    def has_rules(self, obj: BuyerPolicy) -> bool:
        return bool(obj.rules)


# API keys -----------------------------------------------------------------------


class ApiKeyCreateForm(forms.ModelForm[ApiKey]):
    """The add form: what the key is for. The key itself is generated on save."""

    class Meta:
        model = ApiKey
        fields = ("name", "scope", "buyer")

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned_data = self.cleaned_data
        scope = cleaned_data.get("scope")
        buyer = cleaned_data.get("buyer")
        if scope == ApiKey.Scope.BUYER and buyer is None:
            self.add_error("buyer", "A buyer key needs a buyer.")
        elif scope == ApiKey.Scope.INTEGRATION and buyer is not None:
            self.add_error(
                "buyer", "An integration key belongs to no buyer: leave this empty."
            )
        return cleaned_data


class ApiKeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "revoked"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, str]]:
        return [("no", "Active"), ("yes", "Revoked")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> QuerySet[Any] | None:
        if self.value() == "no":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(revoked_at__isnull=False)
        return None


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    list_display = (
        "name",
        "prefix",
        "scope",
        "buyer",
        "is_active",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("scope", ApiKeyStatusFilter, "buyer")
    list_select_related = ("buyer",)
    search_fields = ("name", "prefix", "buyer__slug", "buyer__name")
    autocomplete_fields = ("buyer",)
    radio_fields = {"scope": admin.VERTICAL}
    ordering = ("-created_at",)
    actions = ("revoke_keys",)
    add_fieldsets = ((None, {"fields": ("name", "scope", "buyer")}),)
    # Only the name can change: a key's scope and owner are what it was issued for.
    change_fieldsets = (
        (None, {"fields": ("name", "scope", "buyer")}),
        (
            "Key",
            {
                "fields": (
                    "prefix",
                    "public_id",
                    "created_by",
                    "created_at",
                    "last_used_at",
                    "revoked_at",
                    "key_hash",
                )
            },
        ),
    )
    change_readonly_fields = (
        "scope",
        "buyer",
        "prefix",
        "public_id",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
        "key_hash",
    )

    def get_fieldsets(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        return self.add_fieldsets if obj is None else self.change_fieldsets

    def get_readonly_fields(
        self, request: HttpRequest, obj: ApiKey | None = None
    ) -> tuple[str, ...]:
        return () if obj is None else self.change_readonly_fields

    def get_form(
        self,
        request: HttpRequest,
        obj: ApiKey | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> type[forms.ModelForm[ApiKey]]:
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
        return super().get_form(request, obj, change, **kwargs)

    def save_model(
        self, request: HttpRequest, obj: ApiKey, form: Any, change: bool
    ) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        api_key, raw_key = api_key_create(
            scope=obj.scope,
            name=obj.name,
            buyer=obj.buyer,
            created_by=request.user if isinstance(request.user, User) else None,
        )
        # The admin goes on to log and redirect with `obj`: make it the stored row.
        obj.pk = api_key.pk
        obj._state.adding = False
        obj.refresh_from_db()
        self.message_user(
            request,
            format_html(
                "The new API key is <code>{}</code>. Copy it now: it will not be "
                "shown again.",
                raw_key,
            ),
            level=messages.WARNING,
        )

    @admin.display(description="active", boolean=True, ordering="revoked_at")
    def is_active(self, obj: ApiKey) -> bool:
        return obj.is_active

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        active = list(queryset.filter(revoked_at__isnull=True))
        for api_key in active:
            api_key_revoke(api_key=api_key)
        self.message_user(
            request,
            ngettext("Revoked %d API key.", "Revoked %d API keys.", len(active))
            % len(active),
            level=messages.SUCCESS,
        )


# Leads, deliveries and feedback: records, read-only ----------------------------


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


class FeedbackInline(admin.TabularInline[Feedback, DeliveryEvent]):
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
    extra = 0
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Feedback]:
        return super().get_queryset(request).select_related("outcome_code")

    def has_add_permission(
        self, request: HttpRequest, obj: DeliveryEvent | None = None
    ) -> bool:
        return False

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


class NotificationInline(admin.TabularInline[Notification, Feedback]):
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
    extra = 0
    can_delete = False
    verbose_name = "notification to the source"
    verbose_name_plural = "notifications to the source"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        return super().get_queryset(request).select_related("config__source")

    def has_add_permission(
        self, request: HttpRequest, obj: Feedback | None = None
    ) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: Feedback | None = None
    ) -> bool:
        return False

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


# Vocabularies and plumbing ------------------------------------------------------


@admin.register(OutcomeCode)
class OutcomeCodeAdmin(admin.ModelAdmin[OutcomeCode]):
    list_display = ("code", "label", "kind", "is_active", "position")
    list_editable = ("is_active", "position")
    list_filter = ("kind", "is_active")
    search_fields = ("code", "label")


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin[IdempotencyKey]):
    # Stored replies to Idempotency-Key requests. Deleting one lets a client retry
    # a request afresh; editing one would replay something never sent.
    list_display = ("key", "owner", "status_code", "created_at")
    list_filter = ("status_code",)
    search_fields = ("=owner", "=key")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    fields = (
        "owner",
        "key",
        "request_hash",
        "status_code",
        "content_type",
        "response",
        "created_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: IdempotencyKey | None = None
    ) -> bool:
        return False

    @admin.display(description="response body")
    def response(self, obj: IdempotencyKey) -> SafeString:
        return pretty_json(obj.response_body)
