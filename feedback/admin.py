"""The seller's admin: configuration (buyers, policies, keys, outcome codes) and a
read-only view of what happened (leads, deliveries, feedback, notifications)."""

import json
import logging
import re
from functools import partial
from typing import Any, ClassVar, TypeVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_permission_codename
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Exists, IntegerField, Model, OuterRef, Q, QuerySet
from django.db.models.expressions import Subquery
from django.db.models.fields.related import RelatedField
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import ngettext

from feedback import import_admin  # noqa: F401  (registers the imports' admin)
from feedback.delivery import (
    notifications_claim_due,
    notifications_enqueue,
    notifications_resend,
)
from feedback.models import (
    ApiKey,
    Buyer,
    BuyerMembership,
    BuyerPolicy,
    DeadNotification,
    DeliveryAttempt,
    DeliveryEvent,
    Feedback,
    Flow,
    IdempotencyKey,
    Lead,
    Notification,
    OutcomeCode,
)
from feedback.selectors import delivery_event_list, feedback_list
from feedback.services import (
    api_key_create,
    api_key_revoke,
    normalize_email,
    normalize_phone,
)
from sources import rules
from sources.models import FeedbackConfig
from sources.widgets import RuleSetWidget

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=Model)

# Helpers ----------------------------------------------------------------------


def count_of(model: type[Model], field: str, **filters: Any) -> Coalesce:
    """A per-row count of `model` rows pointing at the outer row through `field`.

    A correlated subquery rather than annotate(Count(join)): the changelist
    computes it only for the page it shows, and its count(*) query drops it.
    """
    rows = (
        model._default_manager.filter(**{field: OuterRef("pk")}, **filters)
        .order_by()
        .values(field)
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


PHONE_LIKE = re.compile(r"[\d\s()+.\-]+")


def contact_q(term: str, *, lead: str = "lead__") -> Q | None:
    """Exact matches on a lead's normalised email or phone, however it is typed.

    The admin's own search splits "(512) 789-1111" into words and compares them
    as typed; this compares the whole term in the stored (indexed) form.
    """
    term = term.strip()
    if "@" in term:
        return Q(**{f"{lead}email_normalized": normalize_email(term)})
    phone = normalize_phone(term)
    # Seven digits at least, so an id like "CRM-12" is not read as a phone.
    if PHONE_LIKE.fullmatch(term) and len(phone) >= 7:
        return Q(**{f"{lead}phone_normalized": phone})
    return None


def pretty_json(value: object) -> SafeString:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


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


def short_text(text: str, chars: int = 50) -> SafeString:
    """A long text cut for a list column; hovering shows all of it."""
    return format_html('<span title="{}">{}</span>', text, Truncator(text).chars(chars))


class ContactSearchAdmin(admin.ModelAdmin[M]):
    """Search on `search_fields`, plus the lead's email or phone (see contact_q)."""

    lead_path = "lead__"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[M], bool]:
        results, may_have_duplicates = super().get_search_results(
            request, queryset, search_term
        )
        contact = contact_q(search_term, lead=self.lead_path)
        if contact is not None:
            results = results | queryset.filter(contact)
        return results, may_have_duplicates


class ReadOnlyAdmin(admin.ModelAdmin[M]):
    """Records of what happened: they arrive through the API and stay as they are."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: M | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: M | None = None) -> bool:
        return False


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


class DeliveryAttemptInline(admin.TabularInline[DeliveryAttempt, Notification]):
    model = DeliveryAttempt
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
    extra = 0
    can_delete = False
    verbose_name = "delivery attempt"

    def has_add_permission(
        self, request: HttpRequest, obj: Notification | None = None
    ) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: Notification | None = None
    ) -> bool:
        return False

    def has_view_permission(
        self, request: HttpRequest, obj: Notification | None = None
    ) -> bool:
        # Attempts are part of the notification's record: whoever may open the
        # notification (the parent admin checks that) sees them.
        return True

    @admin.display(description="duration")
    def duration(self, obj: DeliveryAttempt) -> str:
        return f"{obj.duration_ms:,} ms"

    @admin.display(description="request")
    def request_line(self, obj: DeliveryAttempt) -> SafeString | str:
        if not obj.request_method:
            return "(not built)"
        return format_html(
            "<code>{} {}</code>",
            obj.request_method,
            obj.request_url,
        )

    @admin.display(description="request and response")
    def exchange(self, obj: DeliveryAttempt) -> SafeString:
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
    inlines = (DeliveryAttemptInline,)
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
            "Delivery",
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
    readonly_fields = (
        "public_id",
        "feedback_link",
        "status_column",
        "reason",
        "reference",
        "source",
        "config_link",
        "kind",
        "attempt_count",
        "next_attempt_at",
        "finished_at",
        "created_at",
        "updated_at",
        "schedule_tries",
        "lease_expires_at",
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


from feedback import batch_admin  # noqa: F401,E402 (registers BatchRunAdmin)
