"""Returns resolution in the admin (DESIGN §10): the review queue with its bulk
decisions, one return's review page with its evidence files, the credits with
their invoicing CSV, and the review steps as an audit trail.

Every decision goes through the services, one return at a time, so the admin
answers exactly as the API does: a return that is no longer waiting is skipped
with the service's reason (the API's 409).
"""

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, QuerySet, Subquery
from django.db.models.functions import TruncMonth
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import content_disposition_header
from django.utils.safestring import SafeString
from django.utils.timesince import timesince
from django.utils.translation import ngettext

from feedback.adminkit import ReadOnlyAdmin, short_text
from feedback.audit.models import AuditEntry
from feedback.audit.services import Counted, audit_export
from feedback.models import Buyer, BuyerPolicy, Feedback
from feedback.returns.admission import credit_amount, policy_for
from feedback.returns.checks import Check, return_checks
from feedback.returns.models import Credit, ReturnTransition
from feedback.returns.proxies import ReturnReview
from feedback.returns.selectors import (
    credits_total,
    other_feedback,
    return_rates_this_month,
    returns_awaiting_review,
    returns_list,
    transitions_for,
)
from feedback.returns.services import (
    APPROVE,
    REJECT,
    DecisionInvalid,
    TransitionRefused,
    return_decide,
)
from sources.csvcells import write_csv
from sources.models import Kind

State = Feedback.ReviewState
AWAITING = (State.PENDING, State.DISPUTED)

# Evidence is served with the type the buyer's browser gave it only when it is
# one the portal accepts; anything else is a download of unknown bytes.
EVIDENCE_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg"})

# Admin CSS variables, so the badges follow the light and dark themes.
STATE_BACKGROUNDS: dict[str, str] = {
    State.PENDING: "var(--message-warning-bg)",
    State.DISPUTED: "var(--message-warning-bg)",
    State.APPROVED: "var(--message-success-bg)",
    State.REJECTED: "var(--message-error-bg)",
}
VERDICTS = {
    "supports": ("supports", "var(--message-success-bg)"),
    "contradicts": ("contradicts", "var(--message-error-bg)"),
    "unknown": ("can't tell", "var(--darkened-bg)"),
}
BADGE = (
    '<span class="{}" title="{}" style="background: {}; color: var(--body-fg); '
    'padding: 1px 8px; border-radius: 10px; white-space: nowrap">{}</span>'
)


def state_badge(feedback: Feedback, *, short: bool = False) -> SafeString:
    """The review state as a coloured pill; `short` (for lists) names it in one
    word and keeps the full label for hovering."""
    label = feedback.get_review_state_display() or "Not under review"
    return format_html(
        BADGE,
        f"review-state state-{feedback.review_state or 'none'}",
        label,
        STATE_BACKGROUNDS.get(feedback.review_state, "transparent"),
        feedback.review_state.capitalize()
        if short and feedback.review_state
        else label,
    )


def verdict_badge(check: Check, *, short: bool) -> SafeString:
    words, background = VERDICTS[check.verdict]
    return format_html(
        BADGE,
        f"evidence-check verdict-{check.verdict}",
        check.detail,
        background,
        f"{check.label}: {words}" if short else words,
    )


RATE_HELP = (
    "Returns counted against the buyer's cap (pending, disputed and approved) "
    "about this month's deliveries, of the buyer's deliveries this month."
)


def rate_text(rate: tuple[int, int]) -> str:
    """ "12 of 140 (8.6 %)": the buyer's counted returns of its deliveries."""
    returns, deliveries = rate
    if not deliveries:
        return f"{returns} of 0 deliveries"
    return f"{returns} of {deliveries} ({returns / deliveries * 100:.1f} %)"


def age_text(moment: datetime) -> str:
    return timesince(moment, depth=1)


def actor_text(step: ReturnTransition) -> str:
    if step.user is not None:
        return step.user.get_full_name() or step.user.get_username()
    if step.api_key is not None:
        return f"{step.get_actor_display()} “{step.api_key.name}”"
    return step.get_actor_display()


def return_policy(feedback: Feedback) -> BuyerPolicy:
    """The return policy that applies to this return (flow's, else buyer-wide,
    else the defaults), as the services read it."""
    policies = {
        (p.flow_id, p.kind): p
        for p in BuyerPolicy.objects.filter(
            buyer_id=feedback.buyer_id, kind=Kind.RETURN
        )
    }
    return policy_for(policies, feedback.flow_id, Kind.RETURN)


def converted_first() -> Exists:
    """Whether an accepted conversion was reported on the delivery before the
    return: selectors.converted_before, as an annotation for lists."""
    return Exists(
        Feedback.objects.filter(
            delivery_id=OuterRef("delivery_id"),
            kind=Kind.CONVERSION,
            outcome=Feedback.Outcome.SUCCESS,
            received_at__lt=OuterRef("received_at"),
        )
    )


def user_of(request: HttpRequest) -> User | None:
    return request.user if isinstance(request.user, User) else None


# The review queue ------------------------------------------------------------


class StateFilter(admin.SimpleListFilter):
    """Waiting returns unless asked otherwise: the queue is what needs deciding."""

    title = "state"
    parameter_name = "state"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, str]]:
        return [
            (State.PENDING, "Pending review"),
            (State.DISPUTED, "Disputed"),
            (State.APPROVED, "Approved"),
            (State.REJECTED, "Rejected"),
            ("all", "Every state"),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> QuerySet[Any] | None:
        value = self.value()
        if not value:
            return queryset.filter(review_state__in=AWAITING)
        if value == "all":
            return queryset
        return queryset.filter(review_state=value)

    def choices(self, changelist: ChangeList) -> Iterator[Any]:
        yield {
            "selected": not self.value(),
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Waiting for a decision",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == str(lookup),
                "query_string": changelist.get_query_string(
                    {self.parameter_name: lookup}
                ),
                "display": title,
            }


class AgeFilter(admin.SimpleListFilter):
    title = "age"
    parameter_name = "age"
    # (newer than, older than) in days.
    BANDS = {
        "lt1": (1, None),
        "1to3": (3, 1),
        "3to7": (7, 3),
        "gt7": (None, 7),
    }

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, str]]:
        return [
            ("lt1", "Under a day"),
            ("1to3", "1 to 3 days"),
            ("3to7", "3 to 7 days"),
            ("gt7", "Over 7 days"),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> QuerySet[Any] | None:
        band = self.BANDS.get(self.value() or "")
        if band is None:
            return None
        now = timezone.now()
        newer, older = band
        if newer is not None:
            queryset = queryset.filter(received_at__gt=now - timedelta(days=newer))
        if older is not None:
            queryset = queryset.filter(received_at__lte=now - timedelta(days=older))
        return queryset


class ReasonFilter(admin.SimpleListFilter):
    """The reasons of the returns waiting, most frequent first."""

    title = "reason"
    parameter_name = "reason"
    LIMIT = 20

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, str]]:
        reasons = list(
            returns_awaiting_review()
            .exclude(reason="")
            .order_by()
            .values_list("reason", flat=True)
            .annotate(n=Count("pk"))
            .order_by("-n", "reason")[: self.LIMIT]
        )
        chosen = self.value()
        if chosen and chosen not in reasons:
            reasons.append(chosen)
        return [(reason, reason) for reason in reasons]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> QuerySet[Any] | None:
        if self.value():
            return queryset.filter(reason=self.value())
        return None


@dataclass(frozen=True)
class RowFacts:
    """What a queue row shows beyond its columns, computed once per page."""

    rate: tuple[int, int]
    checks: list[Check]


class ReviewChangeList(ChangeList):
    """The queue's page, with the buyers' rates read in one query and the
    evidence checks run for the rows shown only."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows = list(self.result_list)
        rates = return_rates_this_month({row.buyer_id for row in rows})
        for row in rows:
            # The checks read the lead and the buyer's earlier deliveries: a
            # few queries a row, which is why the queue shows 50 rows a page.
            row.review_facts = RowFacts(
                rate=rates.get(row.buyer_id, (0, 0)), checks=return_checks(row)
            )
        self.result_list = rows


class DecisionForm(forms.Form):
    """One return's decision, as staff make it on its review page."""

    decision = forms.ChoiceField(
        choices=[(APPROVE, "Approve"), (REJECT, "Reject")],
        widget=forms.RadioSelect,
    )
    credit_amount = forms.DecimalField(
        label="Credit amount",
        required=False,
        min_value=0,
        max_digits=12,
        decimal_places=2,
        widget=forms.NumberInput(attrs={"step": "0.01", "size": 10}),
    )
    note = forms.CharField(
        label="Reason",
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Required to reject. The buyer sees it in the portal and may "
        "dispute a rejection once.",
    )

    def __init__(
        self, *args: Any, price: Decimal, default_credit: Decimal, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self.price = price
        self.fields["credit_amount"].help_text = (
            f"Approvals only. Leave empty to credit {default_credit} (the buyer's "
            f"policy); a partial credit is at most the price, {price}."
        )

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean() or {}
        decision = cleaned_data.get("decision")
        amount = cleaned_data.get("credit_amount")
        if decision == REJECT and amount is not None:
            self.add_error(
                "credit_amount",
                "Only an approval grants a credit: leave it empty to reject.",
            )
        if decision == REJECT and not cleaned_data.get("note", "").strip():
            self.add_error("note", "Say why it is rejected: the buyer sees this.")
        if amount is not None and amount > self.price:
            self.add_error(
                "credit_amount",
                f"Cannot be more than the delivery's price, {self.price}.",
            )
        return cleaned_data


class BulkDecisionForm(forms.Form):
    note = forms.CharField(
        label="Reason",
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )

    def __init__(self, *args: Any, decision: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        note = self.fields["note"]
        if decision == APPROVE:
            note.required = False
            note.label = "Note (optional)"
            note.help_text = (
                "Each return is credited as its buyer's policy says. The buyer "
                "sees the note in the portal."
            )
        else:
            note.help_text = (
                "The buyer sees this reason in the portal and may dispute the "
                "rejection once."
            )


@admin.register(ReturnReview)
class ReturnReviewAdmin(admin.ModelAdmin[ReturnReview]):
    """Returns waiting for a decision, oldest first, and each return's review
    page. Nothing here edits a return: decisions go through the services."""

    list_display = (
        "age",
        "buyer",
        "source",
        "reason_column",
        "state",
        "return_rate",
        "evidence",
    )
    # The age is the first column a phone shows: it opens the return too.
    list_display_links = ("age", "reason_column")
    list_filter = (StateFilter, "buyer", "source", ReasonFilter, AgeFilter)
    search_fields = (
        "delivery__event_id__exact",
        "delivery__reference__exact",
        "lead__public_id__exact",
    )
    search_help_text = "Exact event id, reference or lead id."
    ordering = ("received_at", "pk")
    list_per_page = 50
    actions = ("approve_selected", "reject_selected")
    review_template = "admin/feedback/returnreview/review.html"
    confirmation_template = "admin/feedback/returnreview/decide_selected.html"
    change_list_template = "admin/feedback/returnreview/change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Every accepted return: the state filter narrows the list to the
        # waiting ones, and a decided return's page stays open to read.
        return returns_list().annotate(converted_first=converted_first())

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ReviewChangeList

    # Permissions: seeing the queue, deciding returns; nothing is added,
    # changed or deleted here.

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or self.has_decide_permission(
            request
        )

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.decide_returns")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # Columns

    @admin.display(description="age", ordering="received_at")
    def age(self, obj: Feedback) -> SafeString:
        received = timezone.localtime(obj.received_at)
        return format_html(
            '<span title="Received {}">{}</span>',
            f"{received:%Y-%m-%d %H:%M}",
            age_text(obj.received_at),
        )

    @admin.display(description="reason", ordering="reason")
    def reason_column(self, obj: Feedback) -> SafeString | str:
        return short_text(obj.reason, 40) if obj.reason else "(no reason)"

    @admin.display(description="state", ordering="review_state")
    def state(self, obj: Feedback) -> SafeString:
        if not getattr(obj, "converted_first", False):
            return state_badge(obj, short=True)
        return format_html(
            "{} " + BADGE,
            state_badge(obj, short=True),
            "converted-before",
            "The buyer reported a conversion on this delivery before returning it.",
            "var(--message-error-bg)",
            "Converted first",
        )

    @admin.display(description="buyer's returns this month", empty_value="")
    def return_rate(self, obj: Feedback) -> SafeString | str:
        facts: RowFacts | None = getattr(obj, "review_facts", None)
        if facts is None:
            return ""
        return format_html(
            '<span title="{}">{}</span>', RATE_HELP, rate_text(facts.rate)
        )

    @admin.display(description="evidence")
    def evidence(self, obj: Feedback) -> SafeString | str:
        facts: RowFacts | None = getattr(obj, "review_facts", None)
        if not facts or not facts.checks:
            return "—"
        return format_html_join(
            " ", "{}", ((verdict_badge(c, short=True),) for c in facts.checks)
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {
            "title": "Returns to review",
            "can_decide": self.has_decide_permission(request),
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)

    # Bulk decisions: a confirmation page asks for the reason, then each return
    # is decided by the service on its own.

    @admin.action(description="Approve selected returns…", permissions=["decide"])
    def approve_selected(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> HttpResponse | None:
        return self._decide_selected(request, queryset, APPROVE)

    @admin.action(description="Reject selected returns…", permissions=["decide"])
    def reject_selected(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> HttpResponse | None:
        return self._decide_selected(request, queryset, REJECT)

    def _selected_ids(self, request: HttpRequest, queryset: QuerySet[Any]) -> list[int]:
        # The ticked rows themselves, not the list's queryset: a return another
        # reviewer decided meanwhile has left the queue, and is reported as
        # skipped with the reason rather than silently dropped.
        if request.POST.get("select_across") == "1":
            return list(queryset.values_list("pk", flat=True))
        return [
            int(value)
            for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
            if value.isdigit()
        ]

    def _decide_selected(
        self, request: HttpRequest, queryset: QuerySet[Any], decision: str
    ) -> HttpResponse | None:
        ids = self._selected_ids(request, queryset)
        chosen = returns_list().filter(pk__in=ids).order_by("received_at", "pk")
        confirmed = request.POST.get("post") == "yes"
        form = BulkDecisionForm(request.POST if confirmed else None, decision=decision)
        if confirmed and form.is_valid():
            self._decide_each(request, chosen, decision, form.cleaned_data["note"])
            return None
        verb = "approve" if decision == APPROVE else "reject"
        context = {
            **self.admin_site.each_context(request),
            "title": f"{verb.capitalize()} {len(ids)} "
            f"{'return' if len(ids) == 1 else 'returns'}",
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "form": form,
            "decision": decision,
            "verb": verb,
            "action": f"{verb}_selected",
            "returns": [(row, row.review_state in AWAITING) for row in chosen],
            "ids": ids,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, self.confirmation_template, context)

    def _decide_each(
        self,
        request: HttpRequest,
        returns: Iterable[Feedback],
        decision: str,
        note: str,
    ) -> None:
        decided = 0
        skipped: list[str] = []
        for feedback in returns:
            try:
                return_decide(
                    feedback=feedback,
                    decision=decision,
                    user=user_of(request),
                    note=note,
                )
            except (TransitionRefused, DecisionInvalid) as exc:
                skipped.append(f"{feedback.delivery.event_id}: {exc.message}")
            else:
                decided += 1
        if decided:
            message = (
                ngettext("Approved %d return.", "Approved %d returns.", decided)
                if decision == APPROVE
                else ngettext("Rejected %d return.", "Rejected %d returns.", decided)
            )
            self.message_user(request, message % decided, messages.SUCCESS)
        if skipped:
            shown = skipped[:10]
            more = len(skipped) - len(shown)
            self.message_user(
                request,
                format_html(
                    "{} <ul class='skipped-returns'>{}</ul>{}",
                    ngettext("Skipped %d return:", "Skipped %d returns:", len(skipped))
                    % len(skipped),
                    format_html_join("", "<li>{}</li>", ((line,) for line in shown)),
                    f"and {more} more." if more else "",
                ),
                messages.WARNING,
            )

    # One return's review page: the facts, the evidence, the history and the
    # decision form, which posts back to it.

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/evidence/<int:step_id>/",
                self.admin_site.admin_view(self.evidence_view),
                name="feedback_returnreview_evidence",
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
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No such return.")
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        price = obj.delivery.price or Decimal(0)
        policy = return_policy(obj)
        default_credit = credit_amount(policy, price)
        can_decide = self.has_decide_permission(request)
        waiting = obj.review_state in AWAITING
        form = DecisionForm(
            request.POST if request.method == "POST" else None,
            price=price,
            default_credit=default_credit,
        )
        if request.method == "POST":
            if not can_decide:
                raise PermissionDenied
            if form.is_valid():
                decided = self._decide_one(request, obj, form)
                if decided:
                    return HttpResponseRedirect(request.get_full_path())
        context = {
            **self.admin_site.each_context(request),
            **self._review_context(obj, price=price, policy=policy),
            "title": f"Return of {obj.delivery.event_id}",
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "original": obj,
            "form": form if can_decide and waiting else None,
            "can_decide": can_decide,
            "waiting": waiting,
            "default_credit": default_credit,
            "preserved_filters": self.get_preserved_filters(request),
            "media": self.media + form.media,
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.review_template, context)

    def _decide_one(
        self, request: HttpRequest, obj: Feedback, form: DecisionForm
    ) -> bool:
        data = form.cleaned_data
        try:
            decided = return_decide(
                feedback=obj,
                decision=data["decision"],
                user=user_of(request),
                note=data["note"].strip(),
                credit_amount=data["credit_amount"],
            )
        except TransitionRefused as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return True
        except DecisionInvalid as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            return False
        if decided.review_state == State.APPROVED:
            credit = Credit.objects.filter(
                feedback_id=obj.pk, voided_at__isnull=True
            ).first()
            amount = credit.amount if credit else Decimal(0)
            self.message_user(
                request,
                f"Approved: {amount} credited to {obj.buyer}.",
                messages.SUCCESS,
            )
        else:
            self.message_user(request, "Rejected.", messages.SUCCESS)
        return True

    def _review_context(
        self, obj: Feedback, *, price: Decimal, policy: BuyerPolicy
    ) -> dict[str, Any]:
        steps = list(transitions_for(obj))
        others = list(other_feedback(obj))
        rate = return_rates_this_month([obj.buyer_id]).get(obj.buyer_id, (0, 0))
        next_pk = (
            returns_awaiting_review()
            .exclude(pk=obj.pk)
            .values_list("pk", flat=True)
            .first()
        )
        evidence_url = f"admin:{self.opts.app_label}_returnreview_evidence"
        return {
            "feedback": obj,
            "delivery": obj.delivery,
            "price": price,
            "policy": policy,
            "age": age_text(obj.received_at),
            "state": state_badge(obj),
            "rate": rate_text(rate),
            "rate_help": RATE_HELP,
            "checks": [(c, verdict_badge(c, short=False)) for c in return_checks(obj)],
            "converted_before": any(
                other.kind == Kind.CONVERSION
                and other.outcome == Feedback.Outcome.SUCCESS
                and other.received_at < obj.received_at
                for other in others
            ),
            "others": [
                (
                    other,
                    other.kind == Kind.CONVERSION
                    and other.outcome == Feedback.Outcome.SUCCESS
                    and other.received_at < obj.received_at,
                )
                for other in others
            ],
            "steps": [
                (
                    step,
                    actor_text(step),
                    reverse(evidence_url, args=[obj.pk, step.pk])
                    if step.evidence
                    else "",
                )
                for step in steps
            ],
            "credits": list(
                Credit.objects.filter(feedback_id=obj.pk)
                .select_related("decided_by", "api_key")
                .order_by("created_at", "pk")
            ),
            "next_url": reverse(
                f"admin:{self.opts.app_label}_returnreview_change", args=[next_pk]
            )
            if next_pk
            else "",
        }

    def evidence_view(
        self, request: HttpRequest, object_id: str, step_id: int
    ) -> HttpResponseBase:
        """A dispute's evidence file, to staff who may see the return: always a
        download, never rendered by the browser as a page of this site."""
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No such return.")
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        step = ReturnTransition.objects.filter(feedback_id=obj.pk, pk=step_id).first()
        if step is None or not step.evidence:
            raise Http404("No such evidence.")
        try:
            handle = step.evidence.open("rb")
        except FileNotFoundError:
            raise Http404("The evidence file is missing.") from None
        content_type = (
            step.evidence_type
            if step.evidence_type in EVIDENCE_TYPES
            else "application/octet-stream"
        )
        response = FileResponse(handle, content_type=content_type)
        response["Content-Disposition"] = content_disposition_header(
            as_attachment=True, filename=step.evidence_name or "evidence"
        )
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "private, no-store"
        return response


# The review steps: the audit trail, append-only ----------------------------------


@admin.register(ReturnTransition)
class ReturnTransitionAdmin(ReadOnlyAdmin[ReturnTransition]):
    list_display = (
        "created_at",
        "return_link",
        "from_state",
        "to_state",
        "actor",
        "who",
        "note_column",
    )
    list_filter = ("to_state", "actor")
    list_select_related = ("feedback__delivery", "user", "api_key")
    search_fields = ("feedback__delivery__event_id__exact",)
    search_help_text = "Exact event id."
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-pk")
    show_full_result_count = False
    fields = (
        "return_link",
        "from_state",
        "to_state",
        "actor",
        "who",
        "note",
        "evidence_name",
        "evidence_type",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="return (event id)")
    def return_link(self, obj: ReturnTransition) -> SafeString:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:feedback_returnreview_change", args=[obj.feedback_id]),
            obj.feedback.delivery.event_id,
        )

    @admin.display(description="by")
    def who(self, obj: ReturnTransition) -> str:
        return actor_text(obj)

    @admin.display(description="note")
    def note_column(self, obj: ReturnTransition) -> SafeString:
        return short_text(obj.note)


# Credits: read-only, with the filtered total and an invoicing CSV ---------------


class MonthFilter(admin.SimpleListFilter):
    """The calendar month (in TIME_ZONE) a credit was granted in."""

    title = "month"
    parameter_name = "month"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, str]]:
        months = (
            Credit.objects.annotate(month=TruncMonth("created_at"))
            .order_by("-month")
            .values_list("month", flat=True)
            .distinct()[:36]
        )
        return [(f"{month:%Y-%m}", f"{month:%B %Y}") for month in months if month]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> QuerySet[Any] | None:
        bounds = month_bounds(self.value() or "")
        if bounds is None:
            return None
        start, end = bounds
        return queryset.filter(created_at__gte=start, created_at__lt=end)


def month_bounds(value: str) -> tuple[datetime, datetime] | None:
    """[start, end) of a "YYYY-MM" month in TIME_ZONE; None for anything else."""
    try:
        start = datetime.strptime(value, "%Y-%m")  # noqa: DTZ007 made aware below
    except ValueError:
        return None
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else (start.replace(month=start.month + 1))
    )
    return timezone.make_aware(start), timezone.make_aware(end)


class VoidedFilter(admin.SimpleListFilter):
    title = "voided"
    parameter_name = "voided"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, str]]:
        return [("no", "Live"), ("yes", "Voided")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> QuerySet[Any] | None:
        if self.value() == "no":
            return queryset.filter(voided_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(voided_at__isnull=False)
        return None


def approving_step() -> Subquery:
    """The from-state of the step that approved the credit's return: empty
    when it was approved at intake, by the buyer's policy."""
    return Subquery(
        ReturnTransition.objects.filter(
            feedback_id=OuterRef("feedback_id"), to_state=State.APPROVED
        )
        .order_by("-created_at", "-pk")
        .values("from_state")[:1]
    )


def credit_decider(credit: Credit) -> str:
    if credit.decided_by is not None:
        return credit.decided_by.get_full_name() or credit.decided_by.get_username()
    if getattr(credit, "approved_from", None) == "":
        return "Policy, at intake"
    if credit.api_key is not None:
        return f"API key “{credit.api_key.name}”"
    return ""


CSV_HEADER = (
    "buyer",
    "month",
    "delivery event id",
    "reference",
    "lead id",
    "reason",
    "amount",
    "decided at",
    "decided by",
)


@admin.register(Credit)
class CreditAdmin(ReadOnlyAdmin[Credit]):
    """What approved returns credit each buyer. Credits change only through the
    services: approving a return writes one, undoing an approval voids it."""

    list_display = (
        "decided_at",
        "buyer",
        "amount",
        "reason_column",
        "source",
        "event_link",
        "decided_by_column",
        "voided",
    )
    list_filter = (MonthFilter, "buyer", "source", VoidedFilter)
    list_select_related = ("buyer", "source", "delivery", "decided_by", "api_key")
    search_fields = ("delivery__event_id__exact", "delivery__reference__exact")
    search_help_text = "Exact event id or reference."
    ordering = ("-created_at", "-pk")
    change_list_template = "admin/feedback/credit/change_list.html"
    fields = (
        "buyer",
        "source",
        "flow",
        "event_link",
        "return_link",
        "reason",
        "amount",
        "decided_by_column",
        "created_at",
        "voided_at",
        "void_reason",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Credit]:
        return super().get_queryset(request).annotate(approved_from=approving_step())

    @admin.display(description="decided at", ordering="created_at")
    def decided_at(self, obj: Credit) -> str:
        return f"{timezone.localtime(obj.created_at):%Y-%m-%d %H:%M}"

    @admin.display(description="delivery (event id)")
    def event_link(self, obj: Credit) -> SafeString:
        # The start of the id is enough to tell deliveries apart in a list;
        # the page and the CSV carry all of it.
        event_id = obj.delivery.event_id
        return format_html(
            '<a href="{}" title="{}">{}…</a>',
            reverse("admin:feedback_deliveryevent_change", args=[obj.delivery_id]),
            event_id,
            event_id[:10],
        )

    @admin.display(description="return")
    def return_link(self, obj: Credit) -> SafeString:
        return format_html(
            '<a href="{}">Review page</a>',
            reverse("admin:feedback_returnreview_change", args=[obj.feedback_id]),
        )

    @admin.display(description="reason", ordering="reason")
    def reason_column(self, obj: Credit) -> SafeString:
        return short_text(obj.reason, 40)

    @admin.display(description="decided by", empty_value="")
    def decided_by_column(self, obj: Credit) -> str:
        return credit_decider(obj)

    @admin.display(description="voided", ordering="voided_at", empty_value="")
    def voided(self, obj: Credit) -> SafeString | str:
        if obj.voided_at is None:
            return ""
        return format_html(
            '<span title="{}">{}</span>',
            obj.void_reason,
            f"{timezone.localtime(obj.voided_at):%Y-%m-%d}",
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {"title": "Credits", **(extra_context or {})}
        response = super().changelist_view(request, extra_context)
        # A redirect (bad filter, action done) has no list to total.
        context = getattr(response, "context_data", None)
        cl = context.get("cl") if context is not None else None
        if context is not None and cl is not None:
            live = cl.queryset.filter(voided_at__isnull=True)
            context["credits_total"] = credits_total(live)
            context["credits_count"] = live.count()
            context["export_url"] = (
                reverse("admin:feedback_credit_export") + cl.get_query_string()
            )
        return response

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "export.csv",
                self.admin_site.admin_view(self.export_view),
                name="feedback_credit_export",
            ),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """The live credits the list's filters select, as a CSV ready for
        invoicing: one row per credit, every cell formula-safe."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            cl = self.get_changelist_instance(request)
        except admin.options.IncorrectLookupParameters:
            return HttpResponseRedirect(reverse("admin:feedback_credit_changelist"))
        credits = (
            cl.queryset.filter(voided_at__isnull=True)
            .select_related("buyer", "delivery", "feedback__lead", "decided_by")
            .order_by("buyer__name", "created_at", "pk")
        )
        stream = io.StringIO()
        rows = Counted(
            (
                credit.buyer.name,
                f"{timezone.localtime(credit.created_at):%Y-%m}",
                credit.delivery.event_id,
                credit.delivery.reference,
                credit.feedback.lead.public_id,
                credit.reason,
                credit.amount,
                timezone.localtime(credit.created_at).replace(microsecond=0),
                credit_decider(credit),
            )
            for credit in credits.iterator(chunk_size=2000)
        )
        write_csv(stream, rows, header=CSV_HEADER)
        audit_export(
            request=request,
            export="credits.csv",
            via=AuditEntry.Via.ADMIN,
            rows=rows.count,
        )
        response = HttpResponse(
            stream.getvalue(), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = content_disposition_header(
            as_attachment=True, filename=export_name(request)
        )
        return response


def export_name(request: HttpRequest) -> str:
    """credits-<buyer>-<month>.csv, naming what the filters chose."""
    parts = ["credits"]
    buyer = request.GET.get("buyer__id__exact", "")
    if buyer.isdigit():
        slug = (
            Buyer.objects.filter(pk=int(buyer)).values_list("slug", flat=True).first()
        )
        parts.append(slug or buyer)
    month = request.GET.get("month", "")
    if month_bounds(month) is not None:
        parts.append(month)
    return "-".join(parts) + ".csv"
