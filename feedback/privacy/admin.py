"""The erasures in the admin: the receipts, read-only, and the form that
erases a person by email, phone or lead id (its "add" page)."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import InlineModelAdmin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from feedback.adminkit import ReadOnlyInline
from feedback.privacy.models import Erasure, ErasureNotice
from feedback.privacy.services import (
    MAX_IDENTIFIER_CHARS,
    ErasureInputError,
    ErasureRequest,
    erasure_request_clean,
    person_erase,
)
from feedback.suppression.models import SuppressionList


class ErasureForm(forms.Form):
    email = forms.CharField(
        required=False,
        max_length=MAX_IDENTIFIER_CHARS,
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )
    phone = forms.CharField(
        required=False,
        max_length=MAX_IDENTIFIER_CHARS,
        help_text="Any format: digits are compared, without the +1 prefix.",
    )
    lead_id = forms.CharField(
        label="Lead id",
        required=False,
        max_length=MAX_IDENTIFIER_CHARS,
        help_text="The seller's lead id, as recorded with its deliveries.",
    )
    suppression_list = forms.ModelChoiceField(
        queryset=SuppressionList.objects.all(),
        required=False,
        to_field_name="slug",
        empty_label="None",
        help_text="Also add the person's email and phone digests to this list, "
        "so they are not bought again.",
    )
    confirm = forms.BooleanField(
        label="I understand this cannot be undone",
        help_text="The personal data is removed everywhere Leadback keeps it.",
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        try:
            cleaned["request"] = erasure_request_clean(
                email=cleaned.get("email", ""),
                phone=cleaned.get("phone", ""),
                lead_id=cleaned.get("lead_id", ""),
            )
        except ErasureInputError as exc:
            raise forms.ValidationError(str(exc)) from None
        return cleaned


class ErasureNoticeInline(ReadOnlyInline[ErasureNotice, Erasure]):
    model = ErasureNotice
    fields = ["public_id", "source", "lead_id", "status", "reason", "attempt_count"]
    readonly_fields = ["public_id", "source", "lead_id", "status", "reason"]
    readonly_fields += ["attempt_count"]


@admin.register(Erasure)
class ErasureAdmin(admin.ModelAdmin[Erasure]):
    list_display = [
        "public_id",
        "created_column",
        "via",
        "requested_by",
        "leads",
        "notices",
        "list_column",
    ]
    list_filter = ["via"]
    search_fields = ["=public_id", "=email_sha256", "=phone_sha256"]
    readonly_fields = [
        "public_id",
        "created_at",
        "via",
        "requested_by",
        "user",
        "api_key",
        "email_sha256",
        "phone_sha256",
        "lead_id_sha256",
        "leads",
        "counts_table",
        "notices",
        "suppression_list",
    ]
    exclude = ["counts"]
    list_select_related = ["user", "api_key"]
    add_form_template = "admin/feedback/erasure/add_form.html"

    @admin.display(description="when", ordering="created_at")
    def created_column(self, obj: Erasure) -> str:
        return f"{timezone.localtime(obj.created_at):%Y-%m-%d %H:%M}"

    @admin.display(description="suppressed on", ordering="suppression_list")
    def list_column(self, obj: Erasure) -> str:
        return obj.suppression_list or "-"

    @admin.display(description="removed")
    def counts_table(self, obj: Erasure) -> SafeString:
        if not obj.counts:
            return format_html("{}", "nothing (no lead matched)")
        return format_html_join(
            format_html("<br>"),
            "{}: {}",
            ((kind.replace("_", " "), count) for kind, count in obj.counts.items()),
        )

    def get_inlines(
        self, request: HttpRequest, obj: Erasure | None
    ) -> list[type[InlineModelAdmin[Any, Any]]]:
        # The notices' table only where there are notices to show.
        return [ErasureNoticeInline] if obj is not None and obj.notices else []

    def has_change_permission(
        self, request: HttpRequest, obj: Erasure | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: Erasure | None = None
    ) -> bool:
        return False  # the receipt is the record that the request was honoured

    def add_view(
        self,
        request: HttpRequest,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Erase a person: the form checks what was entered, the service does
        the erasing, the receipt's page shows what was removed."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ErasureForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            wanted: ErasureRequest = form.cleaned_data["request"]
            chosen = form.cleaned_data.get("suppression_list")
            user = request.user if request.user.is_authenticated else None
            try:
                erasure = person_erase(
                    request=wanted,
                    via=Erasure.Via.ADMIN,
                    user=user,  # type: ignore[arg-type]
                    requested_by=user.get_username() if user else "",
                    suppression_list=chosen.slug if chosen else "",
                )
            except ErasureInputError as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(
                    request,
                    f"Erased {erasure.leads} lead(s); receipt {erasure.public_id}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:feedback_erasure_change", args=[erasure.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": "Erase a person's data",
            "opts": self.model._meta,
            "form": form,
            "media": self.media + form.media,
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.add_form_template, context)
