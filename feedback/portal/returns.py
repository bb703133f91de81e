"""The portal's returns and credits (DESIGN §10): a buyer's returns with their
review state and history, disputing a rejection (with an evidence file), the
month's return allowance, and the credits approvals granted, as a page and a CSV.

Every return a URL names is fetched through `get_return_for_buyer`, which
answers 404 for another buyer's; state changes go through the returns services.
"""

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import django_filters
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.db.models import Count, Min, Prefetch, QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import dateformat, timezone
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from feedback import months
from feedback.audit.models import AuditEntry
from feedback.audit.services import Counted, audit_export
from feedback.intake.parse import MAX_NOTE_CHARS
from feedback.models import Buyer, BuyerPolicy, Feedback
from feedback.portal.context import PortalRequest, buyer_required
from feedback.portal.pagination import Keyset, keyset_page
from feedback.returns.admission import policy_for
from feedback.returns.models import Credit, ReturnTransition
from feedback.returns.selectors import (
    Allowance,
    allowances_for,
    credits_list,
    credits_total,
    recent_months,
    returns_list,
    transitions_for,
)
from feedback.returns.services import TransitionRefused, return_dispute
from feedback.selectors import buyer_list_for_user
from sources.csvcells import write_csv
from sources.models import Kind

State = Feedback.ReviewState
Actor = ReturnTransition.Actor

PAGE_SIZE = 50
# Rows of credits the page shows; the CSV has every row of the month.
CREDITS_SHOWN = 500
RETURNS = Keyset(
    "received_at",
    "public_id",
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
)
DECIDED = (State.APPROVED, State.REJECTED)


def _portal(request: HttpRequest) -> PortalRequest:
    if not hasattr(request, "buyer"):
        raise TypeError("portal views are wrapped in buyer_required")
    return request  # type: ignore[return-value]


# Reading ----------------------------------------------------------------------


def _live_credits() -> Prefetch[Any]:
    return Prefetch(
        "credits",
        queryset=Credit.objects.filter(voided_at__isnull=True).order_by("-created_at"),
        to_attr="live_credits",
    )


def return_list_for_buyer(*, buyer: Buyer) -> QuerySet[Feedback]:
    """The buyer's returns under review or decided, newest first, each with its
    decisions (newest first) and live credit, in a fixed number of queries."""
    decisions = Prefetch(
        "transitions",
        queryset=ReturnTransition.objects.filter(to_state__in=DECIDED).order_by(
            "-created_at", "-pk"
        ),
        to_attr="decisions",
    )
    return returns_list(buyer_id=buyer.pk).prefetch_related(decisions, _live_credits())


def get_return_for_buyer(*, buyer: Buyer, public_id: uuid.UUID) -> Feedback:
    """The buyer's own return; another buyer's (or a refused one) is a 404."""
    try:
        return (
            returns_list(buyer_id=buyer.pk)
            .select_related("delivery__lead")
            .prefetch_related(_live_credits())
            .get(public_id=public_id)
        )
    except Feedback.DoesNotExist:
        raise Http404("No such return.") from None


def return_policy(feedback: Feedback) -> BuyerPolicy:
    """The return policy that governs `feedback` (its flow's, else the buyer's)."""
    policies = {
        (p.flow_id, p.kind): p
        for p in BuyerPolicy.objects.filter(
            buyer_id=feedback.buyer_id, kind=Kind.RETURN
        )
    }
    return policy_for(policies, feedback.flow_id, Kind.RETURN)


@dataclass(frozen=True)
class DisputeWindow:
    """Whether the buyer may dispute the return now, until when, and if not, why."""

    open: bool
    deadline: datetime | None = None
    closed_because: str = ""


def dispute_window(
    feedback: Feedback, steps: list[ReturnTransition], *, now: datetime | None = None
) -> DisputeWindow | None:
    """The same test return_dispute makes, to show the form only when it would
    be accepted. None when disputing is not a question (pending, approved)."""
    disputed = [s for s in steps if s.to_state == State.DISPUTED]
    if feedback.review_state == State.DISPUTED:
        at = disputed[-1].created_at if disputed else None
        when = f" on {_when(at)}" if at else ""
        return DisputeWindow(
            open=False,
            closed_because=f"You disputed this rejection{when}. It waits for a "
            "second decision, which is final.",
        )
    if feedback.review_state != State.REJECTED:
        return None
    if disputed:
        return DisputeWindow(
            open=False,
            closed_because="You disputed this return once already; the decision "
            "on the dispute is final.",
        )
    rejected = [s for s in steps if s.to_state == State.REJECTED]
    if not rejected:
        return DisputeWindow(open=True)
    days = return_policy(feedback).dispute_days
    deadline = rejected[-1].created_at + timedelta(days=days)
    if (now or timezone.now()) > deadline:
        return DisputeWindow(
            open=False,
            deadline=deadline,
            closed_because=f"The {days} days to dispute this rejection ended on "
            f"{_when(deadline)}.",
        )
    return DisputeWindow(open=True, deadline=deadline)


def _when(moment: datetime) -> str:
    return dateformat.format(timezone.localtime(moment), "M j, Y H:i T")


def step_actor(step: ReturnTransition, *, user: User, buyer: Buyer) -> str:
    """Who took a step, in words a buyer's person reads: never a staff account."""
    if step.actor == Actor.BUYER:
        if step.user_id is not None and step.user_id == user.pk:
            return "You"
        if step.api_key is not None and step.api_key.buyer_id == buyer.pk:
            return f"Your API key “{step.api_key.name}”"
        if step.api_key is not None:
            return "The seller's system, for you"
        if step.user is not None:
            return f"{step.user.get_username()} at {buyer.name}"
        return buyer.name
    if step.actor in (Actor.STAFF, Actor.INTEGRATION):
        return "Reviewer"
    return "Leadback, automatically"


STATE_LABELS = dict(State.choices)


@dataclass(frozen=True)
class Step:
    """One review step as the return's page shows it."""

    number: int
    from_label: str
    to_label: str
    to_state: str
    who: str
    at: datetime
    note: str
    evidence_name: str
    evidence_url: str


def steps_for_display(
    feedback: Feedback, steps: list[ReturnTransition], *, user: User, buyer: Buyer
) -> list[Step]:
    return [
        Step(
            number=number,
            from_label=STATE_LABELS.get(step.from_state, "") or "Requested",
            to_label=STATE_LABELS.get(step.to_state, "") or "Refused by the source",
            to_state=step.to_state,
            who=step_actor(step, user=user, buyer=buyer),
            at=step.created_at,
            # The intake writes a fixed word on the request step; the buyer's
            # own note is the return's and shows with it.
            note=step.note if step.from_state else "",
            evidence_name=step.evidence_name or Path(step.evidence.name or "").name,
            evidence_url=reverse(
                "portal:return-evidence", args=[feedback.public_id, number]
            )
            if step.evidence
            else "",
        )
        for number, step in enumerate(steps, start=1)
    ]


def latest_decision(feedback: Feedback) -> ReturnTransition | None:
    decisions = getattr(feedback, "decisions", None)
    if decisions is None:
        decisions = list(
            feedback.transitions.filter(to_state__in=DECIDED).order_by(
                "-created_at", "-pk"
            )[:1]
        )
    return decisions[0] if decisions else None


def live_credit(feedback: Feedback) -> Credit | None:
    credits: list[Credit] = getattr(feedback, "live_credits", [])
    return credits[0] if credits else None


# Forms ------------------------------------------------------------------------


class ReturnFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(
        field_name="review_state",
        label="State",
        choices=State.choices,
        empty_label="All states",
    )

    class Meta:
        model = Feedback
        fields: list[str] = []


@dataclass(frozen=True)
class EvidenceType:
    content_type: str
    signature: bytes
    suffixes: tuple[str, ...]


# What an evidence file may be, told by its first bytes: a browser's content
# type and a file name's extension are whatever the sender says.
EVIDENCE_TYPES = (
    EvidenceType("application/pdf", b"%PDF-", (".pdf",)),
    EvidenceType("image/png", b"\x89PNG\r\n\x1a\n", (".png",)),
    EvidenceType("image/jpeg", b"\xff\xd8\xff", (".jpg", ".jpeg")),
)
EVIDENCE_ACCEPT = ".pdf,.png,.jpg,.jpeg,application/pdf,image/png,image/jpeg"


def evidence_type(upload: UploadedFile) -> EvidenceType | None:
    """The allowed type the file's content is, or None."""
    upload.seek(0)
    head = upload.read(16)
    upload.seek(0)
    return next((t for t in EVIDENCE_TYPES if head.startswith(t.signature)), None)


def evidence_limit_text() -> str:
    return filesizeformat(settings.LEADBACK_EVIDENCE_MAX_BYTES)


class DisputeForm(forms.Form):
    comment = forms.CharField(
        label="Why the rejection is wrong",
        max_length=MAX_NOTE_CHARS,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="The reviewer reads this with your evidence before the final "
        "decision.",
    )
    evidence = forms.FileField(
        label="Evidence (optional)",
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": EVIDENCE_ACCEPT}),
    )

    def __init__(self, *args: Any, too_large: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.too_large = too_large
        self.fields["evidence"].help_text = (
            f"A PDF, PNG or JPEG file of at most {evidence_limit_text()}, such as a "
            "call log or a screenshot."
        )

    def clean_evidence(self) -> UploadedFile | None:
        upload = cast(UploadedFile | None, self.cleaned_data.get("evidence"))
        if self.too_large:
            raise forms.ValidationError(_too_large_message(), code="too_large")
        if not upload:
            return None
        limit = settings.LEADBACK_EVIDENCE_MAX_BYTES
        if (upload.size or 0) > limit:
            raise forms.ValidationError(
                _too_large_message(upload.size), code="too_large"
            )
        kind = evidence_type(upload)
        if kind is None:
            raise forms.ValidationError(
                "This file is not a PDF, PNG or JPEG (judged by its content, "
                "whatever its name). Save the evidence as one of those and "
                "upload it again.",
                code="type",
            )
        # Stored and served as what the content is, under a name that says so.
        upload.content_type = kind.content_type
        name = Path(upload.name or "evidence").name
        stem, suffix = Path(name).stem or "evidence", Path(name).suffix.lower()
        if suffix not in kind.suffixes:
            name = f"{stem}{kind.suffixes[0]}"
        upload.name = name
        return upload


def _too_large_message(size: int | None = None) -> str:
    this = f" This one is {filesizeformat(size)}." if size else ""
    return (
        f"The evidence file is too large: at most {evidence_limit_text()} is "
        f"allowed.{this}"
    )


class EvidenceSizeLimit(FileUploadHandler):
    """Stops keeping an uploaded file once it passes the evidence limit, so an
    oversized upload never lands on disk; the form then says it was too large.
    (The form checks the size too, for uploads that arrive another way.)"""

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.limit = settings.LEADBACK_EVIDENCE_MAX_BYTES
        self.too_large = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if start + len(raw_data) > self.limit:
            self.too_large = True
            raise SkipFile()
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def _month_value(month: date) -> str:
    return f"{month:%Y-%m}"


class CreditMonthForm(forms.Form):
    month = forms.ChoiceField(label="Month credited", required=False)

    def __init__(self, *args: Any, month_list: list[date], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(forms.ChoiceField, self.fields["month"])
        field.choices = [(_month_value(m), f"{m:%B %Y}") for m in month_list]
        field.initial = _month_value(month_list[0])

    def chosen(self) -> date | None:
        if not self.is_bound or not self.is_valid() or not self.cleaned_data["month"]:
            return None
        year, month = self.cleaned_data["month"].split("-")
        return date(int(year), int(month), 1)


def credit_months(buyer: Buyer) -> list[date]:
    """This month back to the month of the buyer's first credit, newest first."""
    first = (
        Credit.objects.filter(buyer=buyer, voided_at__isnull=True)
        .order_by()
        .aggregate(first=Min("created_at"))["first"]
    )
    current = months.month_of(timezone.now())
    oldest = months.month_of(first) if first is not None else current
    result = [current]
    while result[-1] > oldest:
        previous = result[-1] - timedelta(days=1)
        result.append(previous.replace(day=1))
    return result


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """The month's first instant and the next month's, in TIME_ZONE."""
    following = (month + timedelta(days=32)).replace(day=1)
    start = timezone.make_aware(datetime.combine(month, datetime.min.time()))
    end = timezone.make_aware(datetime.combine(following, datetime.min.time()))
    return start, end


# Views: returns ---------------------------------------------------------------


@dataclass(frozen=True)
class AllowanceScope:
    scope: str
    months: list[Allowance]


def _allowances(buyer: Buyer) -> list[AllowanceScope]:
    scopes: dict[str, list[Allowance]] = {}
    for allowance in allowances_for(buyer_id=buyer.pk, month_list=recent_months()):
        scopes.setdefault(allowance.scope, []).append(allowance)
    return [AllowanceScope(scope, rows) for scope, rows in scopes.items()]


@require_GET
@buyer_required
def return_list(request: HttpRequest) -> HttpResponse:
    portal = _portal(request)
    filterset = ReturnFilter(
        request.GET or None, queryset=return_list_for_buyer(buyer=portal.buyer)
    )
    page = keyset_page(
        filterset.qs,
        older=request.GET.get("older"),
        newer=request.GET.get("newer"),
        page_size=PAGE_SIZE,
        keyset=RETURNS,
    )
    rows = [
        {
            "feedback": feedback,
            "decision": latest_decision(feedback),
            "credit": live_credit(feedback),
        }
        for feedback in page.items
    ]
    query = request.GET.copy()
    for name in ("older", "newer"):
        query.pop(name, None)
    return render(
        request,
        "portal/return_list.html",
        {
            "filter": filterset,
            "page": page,
            "rows": rows,
            "query": query.urlencode(),
            "filtered": bool(request.GET.get("state")),
            "allowances": _allowances(portal.buyer),
            "nav": "returns",
        },
    )


def _render_return(
    request: HttpRequest,
    feedback: Feedback,
    *,
    form: DisputeForm | None = None,
    refusal: str = "",
    status: int = 200,
) -> HttpResponse:
    portal = _portal(request)
    steps = list(transitions_for(feedback))
    window = dispute_window(feedback, steps)
    if form is None and window is not None and window.open:
        form = DisputeForm()
    decisions = [s for s in steps if s.to_state in DECIDED]
    return render(
        request,
        "portal/return_detail.html",
        {
            "return": feedback,
            "delivery": feedback.delivery,
            "lead": feedback.delivery.lead,
            "decision": decisions[-1] if decisions else None,
            "credit": live_credit(feedback),
            "steps": steps_for_display(
                feedback, steps, user=portal.user, buyer=portal.buyer
            ),
            "window": window,
            "form": form if window is not None and window.open else None,
            "refusal": refusal,
            "evidence_limit": evidence_limit_text(),
            "nav": "returns",
        },
        status=status,
    )


@require_GET
@buyer_required
def return_detail(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    feedback = get_return_for_buyer(buyer=_portal(request).buyer, public_id=public_id)
    return _render_return(request, feedback)


@csrf_exempt
@require_POST
def return_dispute_view(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """Dispute a rejected return. The size limit is installed before anything
    reads the body (the CSRF check reads it, hence the exempt-then-protect
    pattern Django documents for upload handlers)."""
    limit = EvidenceSizeLimit(request)
    request.upload_handlers.insert(0, limit)
    return _return_dispute(request, public_id, limit=limit)


@csrf_protect
@buyer_required
def _return_dispute(
    request: HttpRequest, public_id: uuid.UUID, *, limit: EvidenceSizeLimit
) -> HttpResponse:
    portal = _portal(request)
    feedback = get_return_for_buyer(buyer=portal.buyer, public_id=public_id)
    form = DisputeForm(request.POST, request.FILES, too_large=limit.too_large)
    if not form.is_valid():
        status = 413 if limit.too_large else 400
        return _render_return(request, feedback, form=form, status=status)
    try:
        return_dispute(
            feedback=feedback,
            comment=form.cleaned_data["comment"],
            user=portal.user,
            evidence=form.cleaned_data["evidence"],
        )
    except TransitionRefused as refused:
        feedback.refresh_from_db(fields=["review_state"])
        return _render_return(request, feedback, refusal=refused.message, status=409)
    messages.success(
        request,
        "Dispute sent. The return counts against your allowance again while it "
        "waits for a second decision, which is final.",
    )
    return redirect("portal:return-detail", public_id=feedback.public_id)


def _may_read_evidence(user: User, feedback: Feedback) -> bool:
    opts = ReturnTransition._meta
    if user.is_staff and user.has_perm(f"{opts.app_label}.view_{opts.model_name}"):
        return True
    return buyer_list_for_user(user=user).filter(pk=feedback.buyer_id).exists()


@require_GET
@login_required
def return_evidence(request: HttpRequest, public_id: uuid.UUID, step: int) -> Any:
    """A step's evidence file, to the return's buyer's people and to staff who
    may read review steps; anyone else gets the 404 an unknown return gets.
    Always a download, never rendered by the browser."""
    user = cast(User, request.user)
    feedback = returns_list().filter(public_id=public_id).first()
    if feedback is None or not _may_read_evidence(user, feedback):
        raise Http404("No such return.")
    steps = list(transitions_for(feedback))
    if not 1 <= step <= len(steps) or not steps[step - 1].evidence:
        raise Http404("No evidence at this step.")
    found = steps[step - 1]
    known = {t.content_type for t in EVIDENCE_TYPES}
    try:
        handle = found.evidence.open("rb")
    except FileNotFoundError:
        raise Http404("The evidence file is missing.") from None
    response = FileResponse(
        handle,
        as_attachment=True,
        filename=found.evidence_name or Path(found.evidence.name or "evidence").name,
        content_type=found.evidence_type
        if found.evidence_type in known
        else "application/octet-stream",
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-store"
    return response


# Views: credits ---------------------------------------------------------------

CSV_HEADER = (
    "credited_at",
    "amount",
    "return_id",
    "event_id",
    "reference",
    "lead",
    "delivered_at",
    "flow",
    "source",
    "reason",
)


def _credits_for_month(
    request: HttpRequest,
) -> tuple[CreditMonthForm, date, QuerySet[Credit]]:
    portal = _portal(request)
    month_list = credit_months(portal.buyer)
    form = CreditMonthForm(
        request.GET if "month" in request.GET else None, month_list=month_list
    )
    month = form.chosen() or month_list[0]
    start, end = month_bounds(month)
    credits = credits_list(buyer_id=portal.buyer.pk, start=start, end=end)
    return form, month, credits.select_related("delivery__lead")


@require_GET
@buyer_required
def credit_list(request: HttpRequest) -> HttpResponse:
    form, month, credits = _credits_for_month(request)
    count = credits.order_by().aggregate(count=Count("pk"))["count"]
    return render(
        request,
        "portal/credit_list.html",
        {
            "form": form,
            "month": month,
            "credits": list(credits[:CREDITS_SHOWN]),
            "count": count,
            "total": credits_total(credits),
            "csv_query": f"month={_month_value(month)}",
            "nav": "credits",
        },
        status=400 if form.errors else 200,
    )


def _to_second(moment: datetime) -> datetime:
    return timezone.localtime(moment).replace(microsecond=0)


def _csv_rows(credits: QuerySet[Credit]) -> Iterator[tuple[Any, ...]]:
    for credit in credits.iterator(chunk_size=1000):
        delivery = credit.delivery
        yield (
            _to_second(credit.created_at),
            credit.amount,
            credit.feedback.public_id,
            delivery.event_id,
            delivery.reference,
            delivery.lead.display_name,
            _to_second(delivery.delivered_at),
            credit.flow.name,
            credit.source.name,
            credit.reason,
        )


@require_GET
@buyer_required
def credit_csv(request: HttpRequest) -> HttpResponse:
    """The month's credits as CSV, ready for invoicing; every cell formula-safe."""
    portal = _portal(request)
    _, month, credits = _credits_for_month(request)
    stream = io.StringIO()
    rows = Counted(_csv_rows(credits))
    write_csv(stream, rows, header=CSV_HEADER)
    audit_export(
        request=request,
        export="credits.csv",
        via=AuditEntry.Via.PORTAL,
        rows=rows.count,
        scope=portal.buyer,
    )
    response = HttpResponse(stream.getvalue(), content_type="text/csv; charset=utf-8")
    filename = f"credits-{portal.buyer.slug}-{_month_value(month)}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
