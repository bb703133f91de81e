"""Webhooks in the admin: the seller's endpoints (what they receive, their
secret, enabled or not) and every message sent to them with its attempts,
resendable like a notification."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
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
from django.utils.translation import ngettext

from feedback.adminkit import ReadOnlyAdmin, ReadOnlyInline
from feedback.forwarding.admin import STATUS_BACKGROUNDS, body_excerpt, headers_excerpt
from feedback.webhooks.delivery import webhook_messages_resend
from feedback.webhooks.models import (
    EVENTS,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
)
from feedback.webhooks.services import webhook_endpoint_problems, webhook_endpoint_save
from sources.outbound.signing import generate_secret

Status = WebhookMessage.Status


def status_badge(message: WebhookMessage) -> SafeString:
    return format_html(
        '<span class="webhook-status status-{}" style="background: {}; '
        'padding: 1px 8px; border-radius: 10px; white-space: nowrap">{}</span>',
        message.status,
        STATUS_BACKGROUNDS.get(message.status, "transparent"),
        message.status.capitalize(),
    )


# Endpoints ----------------------------------------------------------------------


class WebhookEndpointForm(forms.ModelForm[WebhookEndpoint]):
    url = forms.URLField(
        label="URL",
        max_length=2000,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"class": "vURLField", "size": 70}),
        help_text="Where the events are POSTed, as JSON.",
    )
    events = forms.MultipleChoiceField(
        choices=EVENTS,
        widget=forms.CheckboxSelectMultiple,
        help_text="The events this endpoint receives.",
    )
    secret = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=False),
    )

    class Meta:
        model = WebhookEndpoint
        fields = (
            "slug",
            "url",
            "events",
            "secret",
            "enabled",
            "timeout_s",
            "description",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.secret:
            self.fields["secret"].help_text = (
                "A secret is stored; leave blank to keep it, or enter a new "
                "whsec_ secret to replace it."
            )
        else:
            self.fields["secret"].help_text = (
                "A whsec_ secret (Standard Webhooks). Leave blank to generate "
                "one: it is shown once, after saving."
            )

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean() or {}
        self.generated_secret = ""
        if not cleaned_data.get("secret"):
            if self.instance.secret:
                cleaned_data["secret"] = self.instance.secret
            else:
                cleaned_data["secret"] = self.generated_secret = generate_secret()
        problems = webhook_endpoint_problems(
            url=cleaned_data.get("url") or "",
            secret=cleaned_data["secret"],
            events=list(cleaned_data.get("events") or []),
        )
        for field, message in problems.items():
            if field not in self.errors:
                self.add_error(field, message)
        return cleaned_data


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin[WebhookEndpoint]):
    form = WebhookEndpointForm
    list_display = ("slug", "url", "event_list", "enabled", "disabled_reason")
    list_filter = ("enabled",)
    search_fields = ("slug", "url", "description")
    readonly_fields = ("disabled_reason", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("slug", "url", "events", "enabled", "disabled_reason")}),
        ("Signing and sending", {"fields": ("secret", "timeout_s")}),
        ("Notes", {"fields": ("description",)}),
        ("Record", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    def get_readonly_fields(
        self, request: HttpRequest, obj: WebhookEndpoint | None = None
    ) -> tuple[str, ...]:
        # The slug is the endpoint's name in the configuration document.
        fields = tuple(super().get_readonly_fields(request, obj))
        return (*fields, "slug") if obj is not None else fields

    @admin.display(description="events")
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events or [])

    def save_model(
        self,
        request: HttpRequest,
        obj: WebhookEndpoint,
        form: WebhookEndpointForm,  # type: ignore[override]
        change: bool,
    ) -> None:
        data = form.cleaned_data
        try:
            saved = webhook_endpoint_save(
                slug=data.get("slug") or obj.slug,
                url=data["url"],
                secret=data["secret"],
                events=list(data["events"]),
                enabled=data["enabled"],
                description=data.get("description") or "",
                timeout_s=data["timeout_s"],
            )
        except ValidationError as exc:  # the form checked the same: a race
            raise PermissionDenied(str(exc)) from exc
        obj.pk = saved.pk
        if form.generated_secret:
            self.message_user(
                request,
                f"Generated secret (shown once; give it to the receiver to verify "
                f"webhook-signature): {form.generated_secret}",
                level=messages.WARNING,
            )


# Messages -----------------------------------------------------------------------


class WebhookAttemptInline(ReadOnlyInline[WebhookAttempt, WebhookMessage]):
    model = WebhookAttempt
    fields = (
        "number",
        "started_at",
        "duration",
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
        self, request: HttpRequest, obj: WebhookMessage | None = None
    ) -> bool:
        return True  # part of the message's record, as for notifications

    @admin.display(description="duration")
    def duration(self, obj: WebhookAttempt) -> str:
        return f"{obj.duration_ms:,} ms"

    @admin.display(description="request and response")
    def exchange(self, obj: WebhookAttempt) -> SafeString:
        return format_html(
            '<details class="attempt-exchange"><summary>Show</summary>'
            "<h4>Request headers</h4><pre>{}</pre>"
            "<h4>Response headers</h4><pre>{}</pre>"
            "<h4>Response body (excerpt)</h4><pre>{}</pre></details>",
            headers_excerpt(obj.request_headers),
            headers_excerpt(obj.response_headers),
            body_excerpt(obj.response_body),
        )


@admin.register(WebhookMessage)
class WebhookMessageAdmin(ReadOnlyAdmin[WebhookMessage]):
    """Every webhook message: read-only, except for resending."""

    list_display = (
        "public_id",
        "event",
        "endpoint",
        "status_column",
        "attempt_count",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "event", "endpoint")
    list_select_related = ("endpoint",)
    search_fields = ("public_id",)
    date_hierarchy = "created_at"
    actions = ["resend"]
    inlines = [WebhookAttemptInline]
    fields = (
        "public_id",
        "event",
        "endpoint",
        "status_column",
        "reason",
        "attempt_count",
        "next_attempt_at",
        "created_at",
        "finished_at",
        "pretty_body",
    )
    readonly_fields = fields
    change_form_template = "admin/feedback/notification/change_form.html"

    @admin.display(description="status", ordering="status")
    def status_column(self, obj: WebhookMessage) -> SafeString:
        return status_badge(obj)

    @admin.display(description="body")
    def pretty_body(self, obj: WebhookMessage) -> SafeString:
        return format_html("<pre>{}</pre>", body_excerpt(obj.body))

    def has_resend_permission(
        self, request: HttpRequest, obj: WebhookMessage | None = None
    ) -> bool:
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    @admin.action(description="Resend selected messages", permissions=["resend"])
    def resend(self, request: HttpRequest, queryset: QuerySet[WebhookMessage]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        self._report(request, asked=len(ids), resent=webhook_messages_resend(ids=ids))

    def _report(self, request: HttpRequest, *, asked: int, resent: int) -> None:
        if resent:
            self.message_user(
                request,
                ngettext(
                    "Resent %d message: it is sent again within seconds.",
                    "Resent %d messages: they are sent again within seconds.",
                    resent,
                )
                % resent,
                level=messages.SUCCESS,
            )
        if asked > resent:
            self.message_user(
                request,
                f"{asked - resent} not resent: being sent right now.",
                level=messages.WARNING,
            )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/resend/",
                self.admin_site.admin_view(self.resend_view),
                name="feedback_webhookmessage_resend",
            ),
            *super().get_urls(),
        ]

    def resend_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No such message.")
        if not self.has_resend_permission(request, obj):
            raise PermissionDenied
        self._report(request, asked=1, resent=webhook_messages_resend(ids=[obj.pk]))
        return HttpResponseRedirect(
            reverse("admin:feedback_webhookmessage_change", args=[obj.pk])
        )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: WebhookMessage | None = None,
    ) -> HttpResponse:
        if (
            obj is not None
            and obj.status != Status.SENDING
            and self.has_resend_permission(request, obj)
        ):
            context["resend_url"] = reverse(
                "admin:feedback_webhookmessage_resend", args=[obj.pk]
            )
        return super().render_change_form(request, context, add, change, form_url, obj)
