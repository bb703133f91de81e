"""Admin for configuration: flows, buyers and their policies and members, API
keys, outcome codes, and the stored Idempotency-Key replies."""

import logging
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import (
    HttpRequest,
)
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import ngettext

from feedback.adminkit import (
    count_of,
    pretty_json,
)
from feedback.models import (
    ApiKey,
    Buyer,
    BuyerMembership,
    BuyerPolicy,
    Flow,
    IdempotencyKey,
    OutcomeCode,
)
from feedback.services import (
    api_key_create,
    api_key_revoke,
)
from sources import rules
from sources.models import Kind
from sources.widgets import DEFAULT_SUGGESTIONS, RuleSetWidget

logger = logging.getLogger(__name__)


@admin.register(Flow)
class FlowAdmin(admin.ModelAdmin[Flow]):
    list_display = ("name", "slug", "created_at")
    search_fields = ("slug", "name")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at",)


# Returns resolution (DESIGN §10): read for return policies only.
RETURN_FIELDS = (
    "review",
    "auto_approve",
    "cap_percent",
    "cap_min",
    "credit_percent",
    "dispute_days",
)
# Auto-approve rules may also read the evidence checks (feedback/returns/checks.py).
AUTO_APPROVE_VARIABLES = (
    *DEFAULT_SUGGESTIONS,
    "check.phone_valid",
    "check.duplicate_of",
)
RETURNS_HELP = (
    "For return policies only. Review decides whether an accepted return is "
    "approved (and credited) at once or waits in the review queue; the cap "
    "refuses returns beyond a share of the month's deliveries."
)


def _default(name: str) -> Any:
    field = next(f for f in BuyerPolicy._meta.concrete_fields if f.name == name)
    return field.get_default()


class BuyerPolicyForm(forms.ModelForm[BuyerPolicy]):
    class Meta:
        model = BuyerPolicy
        fields = (
            "buyer",
            "kind",
            "flow",
            "enabled",
            "max_age_days",
            "retract_hours",
            "rules",
            *RETURN_FIELDS,
        )
        widgets = {
            "rules": RuleSetWidget(attrs={"rows": 4, "cols": 50}),
            "auto_approve": RuleSetWidget(
                attrs={"rows": 4, "cols": 50}, variables=AUTO_APPROVE_VARIABLES
            ),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Conversion and status rows leave them out, and so may older clients:
        # clean() puts the model's defaults back.
        for name in (*RETURN_FIELDS, "retract_hours"):
            if name in self.fields:
                self.fields[name].required = False

    def clean_rules(self) -> Any:
        return _checked_rule_set(self.cleaned_data.get("rules"))

    def clean_auto_approve(self) -> Any:
        return _checked_rule_set(self.cleaned_data.get("auto_approve"))

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean() or {}
        for name in (
            "review",
            "cap_min",
            "credit_percent",
            "dispute_days",
            "retract_hours",
        ):
            if name in cleaned_data and cleaned_data[name] in (None, ""):
                cleaned_data[name] = _default(name)
        kind = cleaned_data.get("kind")
        if kind and kind != Kind.RETURN:
            for name in RETURN_FIELDS:
                default = _default(name)
                if name in cleaned_data and cleaned_data[name] != default:
                    shown = "empty" if default is None else default
                    self.add_error(
                        name,
                        f"Only return policies use this: set it back to {shown}, "
                        "or make this a return policy.",
                    )
            return cleaned_data
        review = cleaned_data.get("review")
        if (
            review == BuyerPolicy.Review.RULES
            and not cleaned_data.get("auto_approve")
            and "auto_approve" not in self.errors
        ):
            self.add_error(
                "auto_approve",
                "Rules review needs auto-approve rules: without them every return "
                "waits for a decision, as with manual review.",
            )
        if review != BuyerPolicy.Review.RULES and cleaned_data.get("auto_approve"):
            self.add_error(
                "auto_approve",
                "Only rules review reads these: choose rules review, or clear them.",
            )
        if cleaned_data.get("cap_percent") is None and cleaned_data.get("cap_min"):
            self.add_error(
                "cap_min",
                "A floor needs a cap: set the percent (0 for a fixed number of "
                "returns a month), or leave both empty for no cap.",
            )
        return cleaned_data


def _checked_rule_set(rule_set: Any) -> Any:
    """A rule set as the rules engine checks it before it is saved."""
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


POLICY_FIELDSETS: Any = (
    (
        None,
        {
            "fields": (
                ("kind", "flow", "enabled"),
                ("max_age_days", "retract_hours"),
                "rules",
            )
        },
    ),
    (
        "Returns resolution",
        {
            "fields": (
                "review",
                "auto_approve",
                ("cap_percent", "cap_min"),
                ("credit_percent", "dispute_days"),
            ),
            # The buyer page's script hides it on rows of other kinds.
            "classes": ("returns-resolution",),
            "description": RETURNS_HELP,
        },
    ),
)


class BuyerPolicyInline(admin.StackedInline[BuyerPolicy, Buyer]):
    model = BuyerPolicy
    form = BuyerPolicyForm
    formset = BuyerPolicyFormSet
    fieldsets = POLICY_FIELDSETS
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
    change_form_template = "admin/feedback/buyer/change_form.html"

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
        "review",
        "cap",
    )
    list_filter = (
        "kind",
        "enabled",
        "review",
        ("flow", admin.EmptyFieldListFilter),
        "buyer",
    )
    list_select_related = ("buyer", "flow")
    search_fields = ("buyer__slug", "buyer__name", "flow__slug", "flow__name")
    autocomplete_fields = ("buyer", "flow")
    ordering = ("buyer__name", "kind")
    fieldsets = (
        (None, {"fields": ("buyer",)}),
        *POLICY_FIELDSETS,
    )
    change_form_template = "admin/feedback/buyerpolicy/change_form.html"

    @admin.display(description="applies to", ordering="flow__name")
    def applies_to(self, obj: BuyerPolicy) -> str:
        return str(obj.flow) if obj.flow_id else "All flows"

    @admin.display(description="rules", boolean=True)
    def has_rules(self, obj: BuyerPolicy) -> bool:
        return bool(obj.rules)

    @admin.display(description="return cap", ordering="cap_percent")
    def cap(self, obj: BuyerPolicy) -> str:
        if obj.kind != Kind.RETURN or not obj.capped:
            return ""
        percent = Decimal(obj.cap_percent or 0).normalize()
        return f"{percent:f} %, at least {obj.cap_min}"


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
        if obj.response_content is None:  # stored before the bytes were kept
            return pretty_json(obj.response_body)
        text = bytes(obj.response_content).decode("utf-8", errors="replace")
        return format_html("<pre>{}</pre>", text)
