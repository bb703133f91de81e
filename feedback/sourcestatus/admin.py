"""Source status in the admin: a badge in the source list, the status and its
history on the source page, and pause and resume as buttons there and as list
actions. Each change goes through `source_pause` / `source_resume`.

The sources app cannot import feedback, so its SourceAdmin is registered
again here with these additions.
"""

from collections.abc import Sequence
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from feedback.sourcestatus.selectors import source_status_changes
from feedback.sourcestatus.services import (
    MAX_REASON_LENGTH,
    source_pause,
    source_resume,
)
from sources.admin import SourceAdmin
from sources.models import Source

PAUSE, RESUME = "pause", "resume"
HISTORY_SHOWN = 10


def paused_badge(source: Source) -> SafeString:
    """The "Paused" pill, with the reason on hover; nothing for an active source."""
    if source.status != Source.Status.PAUSED:
        return mark_safe("")
    return format_html(
        '<span class="source-paused-badge" title="{}">Paused</span>',
        source.paused_reason or "Paused",
    )


# A constant, no input in it.
BADGE_STYLE = mark_safe(
    "<style>.source-paused-badge { background: #fbe3b0; color: #5c3d00; "
    "padding: 1px 8px; border-radius: 10px; white-space: nowrap; "
    "font-weight: 600; font-size: .85em; }</style>"
)


class PauseForm(forms.Form):
    reason = forms.CharField(
        max_length=MAX_REASON_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Shown on the source, to the distribution system through the "
        "API, and in the source.paused webhook.",
    )


def _user(request: HttpRequest) -> User | None:
    user = request.user
    return user if isinstance(user, User) else None


class SourceStatusAdmin(SourceAdmin):
    # The base class's tuples, longer: mypy types a tuple by its length.
    list_display = ("name", "status_column", *SourceAdmin.list_display[1:])  # type: ignore[assignment]
    list_filter = ("status", *SourceAdmin.list_filter)  # type: ignore[assignment]
    readonly_fields = (*SourceAdmin.readonly_fields, "status_panel")  # type: ignore[assignment]
    fieldsets = (  # type: ignore[assignment]
        SourceAdmin.fieldsets[0],
        (
            "Status",
            {
                "fields": ("status_panel",),
                "description": "A paused source still receives and forwards "
                "feedback; the status tells the lead distribution system to "
                "stop buying from it (API and webhooks).",
            },
        ),
        *SourceAdmin.fieldsets[1:],
    )
    actions = ["pause_selected", "resume_selected"]
    change_form_template = "admin/sources/source/change_form.html"
    status_template = "admin/sources/source/status_change.html"

    @admin.display(description="status", ordering="status")
    def status_column(self, obj: Source) -> SafeString:
        if obj.status == Source.Status.PAUSED:
            return format_html("{}{}", BADGE_STYLE, paused_badge(obj))
        return format_html("{}", obj.get_status_display())

    @admin.display(description="status")
    def status_panel(self, obj: Source) -> SafeString:
        if obj.pk is None:
            return mark_safe("Active. A new source starts active.")
        if obj.status == Source.Status.PAUSED:
            head = format_html(
                "{}{} since {}: {}",
                BADGE_STYLE,
                paused_badge(obj),
                obj.paused_at.strftime("%Y-%m-%d %H:%M %Z") if obj.paused_at else "",
                obj.paused_reason or "(no reason given)",
            )
        else:
            head = mark_safe("Active")
        changes = list(source_status_changes(source=obj)[:HISTORY_SHOWN])
        if not changes:
            return format_html("<p>{}</p><p>Never paused.</p>", head)
        rows = format_html_join(
            "",
            '<li style="list-style: none; padding: 0">{} {} via {} by {}{}</li>',
            (
                (
                    change.created_at.strftime("%Y-%m-%d %H:%M"),
                    change.get_action_display().lower(),
                    change.via,
                    change.user or (change.api_key.name if change.api_key else "—"),
                    f": {change.reason}" if change.reason else "",
                )
                for change in changes
            ),
        )
        return format_html(
            '<p>{}</p><p class="source-status-history-title">Changes, newest first:</p>'
            '<ul class="source-status-history" style="margin: 0.2em 0 0; '
            'padding: 0; list-style: none">{}</ul>',
            head,
            rows,
        )

    # Buttons on the source page ------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/pause/",
                self.admin_site.admin_view(self.pause_view),
                name="sources_source_pause",
            ),
            path(
                "<path:object_id>/resume/",
                self.admin_site.admin_view(self.resume_view),
                name="sources_source_resume",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = dict(extra_context or {})
        source = self.get_object(request, object_id)
        if source is not None and self.has_change_permission(request, source):
            verb = RESUME if source.status == Source.Status.PAUSED else PAUSE
            context["status_action"] = verb
            context["status_url"] = reverse(
                f"admin:sources_source_{verb}", args=[source.pk]
            )
        return super().change_view(request, object_id, form_url, context)

    def pause_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._status_view(request, object_id, PAUSE)

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._status_view(request, object_id, RESUME)

    def _status_view(
        self, request: HttpRequest, object_id: str, verb: str
    ) -> HttpResponse:
        source = self.get_object(request, object_id)
        if source is None:
            raise Http404("No such source.")
        if not self.has_change_permission(request, source):
            raise PermissionDenied
        change_url = reverse("admin:sources_source_change", args=[source.pk])
        form = PauseForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and (verb == RESUME or form.is_valid()):
            self._apply(request, [source], verb, form)
            return HttpResponseRedirect(change_url)
        return self._confirm(request, [source], verb, form, single=True)

    # List actions ----------------------------------------------------------------

    @admin.action(description="Pause selected sources…", permissions=["change"])
    def pause_selected(
        self, request: HttpRequest, queryset: QuerySet[Source]
    ) -> HttpResponse | None:
        return self._act_selected(request, queryset, PAUSE)

    @admin.action(description="Resume selected sources…", permissions=["change"])
    def resume_selected(
        self, request: HttpRequest, queryset: QuerySet[Source]
    ) -> HttpResponse | None:
        return self._act_selected(request, queryset, RESUME)

    def _act_selected(
        self, request: HttpRequest, queryset: QuerySet[Source], verb: str
    ) -> HttpResponse | None:
        sources = list(queryset.order_by("name", "pk"))
        confirmed = request.POST.get("post") == "yes"
        form = PauseForm(request.POST if confirmed else None)
        if confirmed and (verb == RESUME or form.is_valid()):
            self._apply(request, sources, verb, form)
            return None
        return self._confirm(request, sources, verb, form, single=False)

    def _apply(
        self, request: HttpRequest, sources: Sequence[Source], verb: str, form: Any
    ) -> None:
        changed = 0
        for source in sources:
            if verb == PAUSE:
                changed += source_pause(
                    source=source,
                    reason=form.cleaned_data["reason"],
                    actor=_user(request),
                    via="admin",
                )
            else:
                changed += source_resume(
                    source=source, actor=_user(request), via="admin"
                )
        done = "paused" if verb == PAUSE else "resumed"
        already = "paused already" if verb == PAUSE else "active already"
        noun = "source" if changed == 1 else "sources"
        message = f"{changed} {noun} {done}."
        if len(sources) - changed:
            message += f" {len(sources) - changed} {already}, left as they were."
        self.message_user(request, message)

    def _confirm(
        self,
        request: HttpRequest,
        sources: Sequence[Source],
        verb: str,
        form: PauseForm,
        *,
        single: bool,
    ) -> TemplateResponse:
        count = len(sources)
        title = (
            f"{verb.capitalize()} {sources[0].name}"
            if single
            else f"{verb.capitalize()} {count} {'source' if count == 1 else 'sources'}"
        )
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "form": form if verb == PAUSE else None,
            "verb": verb,
            "single": single,
            "sources": sources,
            "badge_style": BADGE_STYLE,
            "action": f"{verb}_selected",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "change_url": (
                reverse("admin:sources_source_change", args=[sources[0].pk])
                if single
                else reverse("admin:sources_source_changelist")
            ),
        }
        return TemplateResponse(request, self.status_template, context)


admin.site.unregister(Source)
admin.site.register(Source, SourceStatusAdmin)
