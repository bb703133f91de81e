"""Admin for what happened, read-only: leads, deliveries and feedback, with
where each feedback was forwarded."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from feedback.adminkit import (
    ContactSearchAdmin,
    ReadOnlyAdmin,
    ReadOnlyInline,
    count_of,
    pretty_json,
)
from feedback.corrections.services import (
    CorrectionInvalid,
    CorrectionRefused,
    correction_refusal,
    feedback_amend,
    feedback_retract,
)
from feedback.forwarding.admin import status_badge
from feedback.forwarding.models import (
    Notification,
)
from feedback.forwarding.notifications import (
    correction_field,
    correction_originals,
)
from feedback.models import (
    DeliveryEvent,
    Feedback,
    FeedbackCorrection,
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
        (
            "Corrections",
            {
                "fields": ("corrections",),
                "description": "Retractions and revenue amendments, by the buyer "
                "within its policy's window or by staff at any time, and which "
                "sources were told.",
            },
        ),
    )
    readonly_fields = (
        "corrections",
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

    # Corrections (DESIGN §12) -------------------------------------------------

    def has_correct_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("feedback.correct_feedback")

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/correct/<str:action>/",
                self.admin_site.admin_view(self.correct_view),
                name="feedback_feedback_correct",
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
        # The page's buttons lead to the forms only for who may use them.
        obj = self.get_object(request, unquote(object_id))
        corrections = []
        if obj is not None and self.has_correct_permission(request):
            corrections = _correct_links(obj)
        context = {**(extra_context or {}), "correction_links": corrections}
        return super().change_view(request, object_id, form_url, context)

    @admin.display(description="history")
    def corrections(self, obj: Feedback) -> SafeString:
        rows = list(
            FeedbackCorrection.objects.filter(feedback=obj).select_related(
                "user", "api_key"
            )
        )
        parts = [_correction_state(obj)]
        if rows:
            parts.append(
                format_html(
                    '<table class="correction-history"><thead><tr><th>When</th>'
                    "<th>What</th><th>Who</th><th>Why</th></tr></thead>"
                    "<tbody>{}</tbody></table>",
                    format_html_join(
                        "",
                        "<tr><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td></tr>",
                        (
                            (
                                row.created_at.strftime("%Y-%m-%d %H:%M UTC"),
                                _what(row),
                                row.actor,
                                row.get_channel_display(),
                                row.reason or "—",
                            )
                            for row in rows
                        ),
                    ),
                )
            )
            parts.append(_sources_told(obj, rows))
        return format_html_join("", "{}", ((part,) for part in parts))

    def correct_view(
        self, request: HttpRequest, object_id: str, action: str
    ) -> HttpResponse:
        """Retract a feedback or amend its revenue, as staff (any time)."""
        if action not in FeedbackCorrection.Action.values:
            raise Http404("No such correction.")
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No such feedback.")
        if not self.has_correct_permission(request):
            raise PermissionDenied
        change_url = reverse("admin:feedback_feedback_change", args=[obj.pk])
        form = CorrectionForm(request.POST or None, action=action)
        refusal = correction_refusal(obj, action=action, staff=True)
        if request.method == "POST" and not refusal and form.is_valid():
            try:
                if action == FeedbackCorrection.Action.RETRACT:
                    feedback_retract(
                        feedback=obj,
                        reason=form.cleaned_data["reason"],
                        staff=True,
                        user=request.user,  # type: ignore[arg-type]
                        channel=Feedback.Channel.ADMIN,
                    )
                    done = "The feedback was retracted."
                else:
                    feedback_amend(
                        feedback=obj,
                        revenue=form.cleaned_data["revenue"],
                        reason=form.cleaned_data["reason"],
                        staff=True,
                        user=request.user,  # type: ignore[arg-type]
                        channel=Feedback.Channel.ADMIN,
                    )
                    done = "The revenue was amended."
            except CorrectionInvalid as exc:
                form.add_error(
                    exc.field if exc.field in form.fields else None, exc.message
                )
            except CorrectionRefused as exc:
                refusal = exc.message
            else:
                self.message_user(request, done, messages.SUCCESS)
                return HttpResponseRedirect(change_url)
        retract = action == FeedbackCorrection.Action.RETRACT
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Retract feedback" if retract else "Amend revenue",
            "feedback": obj,
            "form": form,
            "retract": retract,
            "refusal": refusal,
            "change_url": change_url,
            "not_told": _not_told(obj, action, before=True),
        }
        return TemplateResponse(
            request, "admin/feedback/feedback/correct.html", context
        )

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


class CorrectionForm(forms.Form):
    """Staff's retraction (a reason) or amendment (the new revenue, a reason)."""

    revenue = forms.CharField(
        label="New revenue",
        max_length=40,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "size": 14}),
        help_text="A decimal of zero or more, at most two decimals, e.g. 225.00.",
    )
    reason = forms.CharField(
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Kept in the feedback's history and sent to sources that are "
        "told of corrections.",
    )

    def __init__(self, *args: Any, action: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if action == FeedbackCorrection.Action.RETRACT:
            del self.fields["revenue"]
        else:
            self.fields["reason"].required = False


def _what(row: FeedbackCorrection) -> str:
    if row.action == FeedbackCorrection.Action.RETRACT:
        return "Retracted"
    before = "none" if row.previous_revenue is None else f"{row.previous_revenue}"
    return f"Revenue {before} → {row.revenue}"


def _correction_state(obj: Feedback) -> SafeString:
    if obj.retracted_at is not None:
        return format_html(
            '<p class="correction-state"><strong>Retracted</strong> on {}: '
            "reports do not count it.</p>",
            obj.retracted_at.strftime("%Y-%m-%d %H:%M UTC"),
        )
    return format_html('<p class="correction-state">{}</p>', "Not retracted.")


def _sources_told(obj: Feedback, rows: list[FeedbackCorrection]) -> SafeString:
    """Per correction, the notices sent, and the sources that were not told
    because their config has no request for it."""
    notices = list(
        Notification.objects.filter(feedback=obj, correction__in=rows)
        .select_related("source", "correction")
        .order_by("pk")
    )
    lines: list[tuple[Any, ...]] = []
    for row in rows:
        for notice in (n for n in notices if n.correction_id == row.pk):
            lines.append(
                (
                    format_html(
                        '{} was told ({}): <a href="{}">{}</a>',
                        notice.source.name,
                        _what(row).lower(),
                        reverse("admin:feedback_notification_change", args=[notice.pk]),
                        notice.public_id,
                    ),
                    status_badge(notice),
                )
            )
        lines += [(line, "") for line in _not_told(obj, row.action)]
    if not lines:
        return format_html("<p>{}</p>", "No source had received this feedback.")
    return format_html(
        '<div class="correction-sources">{}</div>',
        format_html_join("", "<p>{} {}</p>", lines),
    )


def _not_told(obj: Feedback, action: str, *, before: bool = False) -> list[str]:
    """The sources that received the feedback under a config without the
    request, each as "Source X has no retraction mapping: it was not told."
    (`before`: "it will not be told", on the form)."""
    field = correction_field(action)
    noun = "retraction" if action == FeedbackCorrection.Action.RETRACT else "amendment"
    seen: set[str] = set()
    lines = []
    for original in correction_originals(obj):
        config = original.config
        if config is not None and getattr(config, field):
            continue
        name = original.source.name
        if name in seen:
            continue
        seen.add(name)
        told = "it will not be told" if before else "it was not told"
        lines.append(f"Source {name} has no {noun} mapping: {told}.")
    return lines


def _correct_links(obj: Feedback) -> list[tuple[str, str]]:
    """The corrections staff may make to the feedback now, as (URL, label)."""
    links = []
    for action, label in (
        (FeedbackCorrection.Action.RETRACT, "Retract…"),
        (FeedbackCorrection.Action.AMEND, "Amend revenue…"),
    ):
        if correction_refusal(obj, action=action, staff=True):
            continue
        links.append(
            (
                reverse("admin:feedback_feedback_correct", args=[obj.pk, action]),
                label,
            )
        )
    return links
