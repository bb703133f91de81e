"""Digests in the admin: schedule and channel, past sends, a preview of the last
complete period and a test send to an address staff type."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from feedback.adminkit import ReadOnlyInline
from reporting.digests.periods import (
    digest_last_complete_period,
    digest_next_send_time,
    zone_of,
)
from reporting.digests.services import (
    DigestError,
    digest_preview,
    digest_problems,
    digest_save,
    digest_send_test,
)
from reporting.models import Digest, DigestSend


class DigestForm(forms.ModelForm[Digest]):
    class Meta:
        model = Digest
        fields = [
            "slug",
            "source",
            "enabled",
            "every",
            "weekday",
            "at",
            "timezone",
            "channel",
            "recipients",
        ]
        widgets = {"at": forms.TimeInput(format="%H:%M")}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for field, message in digest_problems(
            source=cleaned.get("source"),
            channel=cleaned.get("channel", ""),
            timezone_name=cleaned.get("timezone", ""),
            recipients=cleaned.get("recipients"),
        ):
            if field in self.fields and field not in self.errors:
                self.add_error(field, message)
        return cleaned


class SendTestForm(forms.Form):
    to = forms.EmailField(
        label="Send a test to",
        help_text="The digest of the last complete period, by email whatever the "
        "channel; nothing is recorded as sent.",
    )


class DigestSendInline(ReadOnlyInline[DigestSend, Digest]):
    model = DigestSend
    fields = readonly_fields = (
        "period_start",
        "period_end",
        "channel",
        "status",
        "tries",
        "sent_at",
        "detail",
    )
    ordering = ["-period_start"]
    verbose_name = "send"
    verbose_name_plural = "sends (one per period)"


@admin.register(Digest)
class DigestAdmin(admin.ModelAdmin[Digest]):
    form = DigestForm
    list_display = [
        "slug",
        "source",
        "schedule",
        "channel_text",
        "enabled",
        "next_send",
        "preview_link",
    ]
    list_filter = ["enabled", "every", "channel"]
    list_select_related = ["source"]
    search_fields = ["slug", "source__name", "source__slug"]
    autocomplete_fields = ["source"]
    inlines = [DigestSendInline]
    fieldsets = [
        (None, {"fields": ["slug", "source", "enabled"]}),
        ("Schedule", {"fields": ["every", "weekday", "at", "timezone"]}),
        ("Channel", {"fields": ["channel", "recipients"]}),
    ]
    change_form_template = "admin/reporting/digest/change_form.html"
    preview_template = "admin/reporting/digest/preview.html"

    @admin.display(description="Schedule")
    def schedule(self, obj: Digest) -> str:
        when = obj.at.strftime("%H:%M")
        if obj.every == Digest.Every.WEEK:
            day = Digest.Weekday(obj.weekday).label
            return f"{day}s at {when} {obj.timezone}"
        return f"Daily at {when} {obj.timezone}"

    @admin.display(description="Channel", ordering="channel")
    def channel_text(self, obj: Digest) -> str:
        if obj.channel == Digest.Channel.BATCH:
            return "Batch files"
        count = len(obj.recipients or [])
        return f"Email, {count} recipient{'s' if count != 1 else ''}"

    @admin.display(description="Next send (UTC)")
    def next_send(self, obj: Digest) -> str:
        if not obj.enabled:
            return "off"
        try:
            moment = digest_next_send_time(obj, now=timezone.now())
        except ValueError:
            return "unknown time zone"
        return moment.strftime("%Y-%m-%d %H:%M")

    def save_model(
        self, request: HttpRequest, obj: Digest, form: Any, change: bool
    ) -> None:
        saved = digest_save(
            digest=obj if change else None,
            slug=obj.slug,
            source=obj.source,
            enabled=obj.enabled,
            every=obj.every,
            weekday=obj.weekday,
            at=obj.at,
            timezone_name=obj.timezone,
            channel=obj.channel,
            recipients=list(obj.recipients or []),
        )
        obj.pk = saved.pk

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:object_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="reporting_digest_preview",
            ),
            path(
                "<int:object_id>/preview/returns.csv",
                self.admin_site.admin_view(self.preview_csv_view),
                name="reporting_digest_preview_csv",
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The digest of the last complete period as it would be sent; POST
        sends it to the address typed."""
        digest = get_object_or_404(
            Digest.objects.select_related("source"), pk=object_id
        )
        if not self.has_view_permission(request, digest):
            return HttpResponse(status=403)
        form = SendTestForm(request.POST or None)
        if request.method == "POST":
            if not self.has_change_permission(request, digest):
                return HttpResponse(status=403)
            if form.is_valid():
                try:
                    result = digest_send_test(digest=digest, to=form.cleaned_data["to"])
                except DigestError as exc:
                    form.add_error("to", str(exc))
                else:
                    self.message_user(
                        request,
                        f"Test digest sent to {form.cleaned_data['to']}: {result}",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(request.path)
        try:
            zone_of(digest.timezone)
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(
                reverse("admin:reporting_digest_change", args=[digest.pk])
            )
        rendered = digest_preview(digest=digest)
        period = digest_last_complete_period(digest, now=timezone.now())
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": digest,
            "title": f"Preview: {digest}",
            "rendered": rendered,
            "period": period,
            "form": form,
            "can_send": self.has_change_permission(request, digest),
            "csv_url": reverse("admin:reporting_digest_preview_csv", args=[digest.pk]),
        }
        return TemplateResponse(request, self.preview_template, context)

    def preview_csv_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        digest = get_object_or_404(
            Digest.objects.select_related("source"), pk=object_id
        )
        if not self.has_view_permission(request, digest):
            return HttpResponse(status=403)
        rendered = digest_preview(digest=digest)
        response = HttpResponse(
            rendered.returns_csv, content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = (
            f'attachment; filename="{rendered.returns_name}"'
        )
        return response

    @admin.display(description="Preview")
    def preview_link(self, obj: Digest) -> SafeString:
        url = reverse("admin:reporting_digest_preview", args=[obj.pk])
        return format_html('<a href="{}">Preview</a>', url)
