"""The buyer portal: fetch (scoped to the current buyer), validate a form, call a
service, redirect. Every object a URL names is fetched through a selector that
answers 404 for another buyer's object."""

import io
import uuid
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from rest_framework import serializers

from feedback.api.serializers import (
    FeedbackInputSerializer,
    notification_reason_for_buyer,
)
from feedback.audit.models import AuditEntry
from feedback.audit.services import Counted, audit_export
from feedback.corrections.services import correction_hours_of
from feedback.filters import DeliveryFilter
from feedback.forwarding.selectors import feedback_history_for_delivery
from feedback.imports.selectors import (
    feedback_import_list,
    feedback_import_refused_csv,
    feedback_import_results,
    get_feedback_import_for_buyer,
)
from feedback.imports.services import feedback_import_upload
from feedback.intake.parse import ReceiveStatus
from feedback.intake.pipeline import feedback_receive, feedback_receive_many
from feedback.models import ApiKey, DeliveryEvent, Feedback, OutcomeCode
from feedback.portal.context import PortalRequest, buyer_required, buyer_select
from feedback.portal.corrections import correctable
from feedback.portal.forms import (
    ApiKeyCreateForm,
    BulkFeedbackForm,
    BuyerSwitchForm,
    FeedbackForm,
    ImportUploadForm,
)
from feedback.portal.labels import lead_fields
from feedback.portal.pagination import keyset_page
from feedback.selectors import (
    api_key_list_for_buyer,
    delivery_list_for_buyer,
    feedback_usual_reasons,
    get_api_key_for_buyer,
    get_delivery_for_buyer,
    source_list_for_buyer,
)
from feedback.services import api_key_create, api_key_revoke
from sources.csvcells import write_csv
from sources.models import Kind

PAGE_SIZE = 50
FEEDBACK_KINDS = (Kind.CONVERSION, Kind.RETURN, Kind.STATUS)


def _portal(request: HttpRequest) -> PortalRequest:
    """The request as buyer_required left it (typed for the views below)."""
    if not hasattr(request, "buyer"):
        raise TypeError("portal views are wrapped in buyer_required")
    return request  # type: ignore[return-value]


# Deliveries -------------------------------------------------------------------


@require_GET
@buyer_required
def delivery_list(request: HttpRequest) -> HttpResponse:
    portal = _portal(request)
    filterset = DeliveryFilter(
        request.GET or None,
        queryset=delivery_list_for_buyer(buyer=portal.buyer),
        buyer=portal.buyer,
    )
    page = keyset_page(
        filterset.qs,
        older=request.GET.get("older"),
        newer=request.GET.get("newer"),
        page_size=PAGE_SIZE,
    )
    usual = feedback_usual_reasons(buyer=portal.buyer, kind=Kind.RETURN)
    return render(
        request,
        "portal/delivery_list.html",
        {
            "filter": filterset,
            "page": page,
            "query": _query_without_cursor(request),
            "filtered": any(request.GET.get(name) for name in filterset.form.fields),
            "bulk_form": BulkFeedbackForm(
                reason_groups=_reason_groups(page.items, usual)
            ),
            "reason_suggestions": usual,
            "nav": "deliveries",
        },
    )


# A download is the filtered list, newest first, up to this many rows: enough
# for a month of a busy buyer, small enough to build in one request.
CSV_MAX_ROWS = 50_000
CSV_HEADER = [
    "delivered_at",
    "event_id",
    "reference",
    "lead_id",
    "name",
    "email",
    "phone",
    "flow",
    "source",
    "price",
    "feedback",
]


@require_GET
@buyer_required
def delivery_csv(request: HttpRequest) -> HttpResponse:
    """The deliveries the list's filters select, as CSV (every cell formula-safe)."""
    portal = _portal(request)
    filterset = DeliveryFilter(
        request.GET or None,
        queryset=delivery_list_for_buyer(buyer=portal.buyer),
        buyer=portal.buyer,
    )
    if filterset.is_bound and not filterset.is_valid():
        problems = "; ".join(
            f"{name}: {' '.join(errors)}" for name, errors in filterset.errors.items()
        )
        return HttpResponse(
            f"These filters cannot be applied: {problems}",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    rows = Counted(
        [
            timezone.localtime(d.delivered_at),
            d.event_id,
            d.reference,
            d.lead.public_id,
            d.lead.display_name,
            d.lead.data.get("email", ""),
            d.lead.data.get("phone_1", ""),
            d.flow.name,
            d.source.name,
            d.price,
            _feedback_word(d),
        ]
        for d in filterset.qs[:CSV_MAX_ROWS].iterator(chunk_size=2000)
    )
    stream = io.StringIO()
    write_csv(stream, rows, header=CSV_HEADER)
    audit_export(
        request=request,
        export="deliveries.csv",
        via=AuditEntry.Via.PORTAL,
        rows=rows.count,
        scope=portal.buyer,
    )
    response = HttpResponse(stream.getvalue(), content_type="text/csv; charset=utf-8")
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = (
        f'attachment; filename="deliveries-{portal.buyer.slug}-{stamp}.csv"'
    )
    return response


def _feedback_word(delivery: DeliveryEvent) -> str:
    if getattr(delivery, "is_returned", False):
        return "returned"
    if getattr(delivery, "is_converted", False):
        return "converted"
    if getattr(delivery, "is_refused", False):
        return "refused"
    return "feedback" if getattr(delivery, "has_feedback", False) else ""


def _query_without_cursor(request: HttpRequest) -> str:
    query = request.GET.copy()
    for name in ("older", "newer"):
        query.pop(name, None)
    return query.urlencode()


def _reason_groups(
    deliveries: list[DeliveryEvent], usual: list[str]
) -> list[tuple[str, list[str]]]:
    """Return reasons to pick from for a selection of the page: each source's
    accepted list under its name (one heading when the page has one source),
    then the buyer's usual reasons when some source accepts any reason."""
    sources = list({d.source_id: d.source for d in deliveries}.values())
    listed = [s for s in sources if s.allowed_reasons(Kind.RETURN)]
    if not listed:
        return []
    groups = [
        (
            "Accepted by all of these leads' source"
            if len(sources) == 1
            else f"Accepted by {source.name}",
            source.allowed_reasons(Kind.RETURN),
        )
        for source in sorted(listed, key=lambda s: s.name)
    ]
    if len(listed) < len(sources):
        groups.append(("Your usual reasons (other sources)", usual))
    return groups


def _delivery_or_404(portal: PortalRequest, event_id: str) -> DeliveryEvent:
    try:
        return get_delivery_for_buyer(buyer=portal.buyer, event_id=event_id)
    except DeliveryEvent.DoesNotExist:
        raise Http404("No such delivery.") from None


def _feedback_forms(
    portal: PortalRequest,
    delivery: DeliveryEvent,
    *,
    bound: FeedbackForm | None = None,
) -> dict[str, FeedbackForm]:
    usual: dict[str, list[str]] = {}
    forms: dict[str, FeedbackForm] = {}
    for kind in FEEDBACK_KINDS:
        if bound is not None and bound.prefix == kind:
            forms[kind] = bound
            continue
        allowed = delivery.source.allowed_reasons(kind)
        if not allowed and kind == Kind.RETURN:
            usual[kind] = feedback_usual_reasons(buyer=portal.buyer, kind=kind)
        forms[kind] = FeedbackForm(
            prefix=kind,
            kind=kind,
            allowed_reasons=allowed,
            suggestions=usual.get(kind, []),
        )
    return forms


def _standing(history: list[Feedback]) -> tuple[Feedback | None, list[Feedback]]:
    """The lead's return that stands (accepted, not rejected on review), and
    its accepted conversions, oldest first, from its history (newest first)."""
    accepted = [
        f
        for f in reversed(history)
        if f.outcome == Feedback.Outcome.SUCCESS and f.retracted_at is None
    ]
    returned = next(
        (
            f
            for f in accepted
            if f.kind == Kind.RETURN and f.review_state != Feedback.ReviewState.REJECTED
        ),
        None,
    )
    return returned, [f for f in accepted if f.kind == Kind.CONVERSION]


def _conflict(kind: str, conversions: list[Feedback]) -> str:
    """What recording `kind` on top of the lead's conversions does to the
    reports, when it is more than a buyer may expect; "" when nothing conflicts."""
    if not conversions or kind not in (Kind.RETURN, Kind.CONVERSION):
        return ""
    first = conversions[0]
    when = date_format(timezone.localtime(first.received_at), "M j, Y")
    if kind == Kind.RETURN:
        return (
            f"This lead was reported converted on {when}. Returning it keeps that "
            "conversion: the reports will count the lead as both converted and "
            "returned, and the source is told of the return."
        )
    worth = f" with revenue {first.revenue}" if first.revenue is not None else ""
    count = len(conversions) + 1
    return (
        f"This lead was already reported converted on {when}{worth}. Another "
        f"conversion is counted as well: the reports will show {count} conversions "
        "for this lead and add up their revenue."
    )


def _render_delivery(
    request: HttpRequest,
    delivery: DeliveryEvent,
    *,
    bound: FeedbackForm | None = None,
    conflict: str = "",
    status: int = 200,
) -> HttpResponse:
    portal = _portal(request)
    history = list(feedback_history_for_delivery(delivery=delivery))
    returned, _ = _standing(history)
    hours = correction_hours_of(history)
    for feedback in history:
        feedback.correctable = correctable(feedback, hours=hours[feedback.pk])  # type: ignore[attr-defined]
        for notification in feedback.notifications.all():
            # What the source said, without what only the seller should see.
            notification.buyer_reason = notification_reason_for_buyer(notification)  # type: ignore[attr-defined]
    forms = _feedback_forms(portal, delivery, bound=bound)
    return render(
        request,
        "portal/delivery_detail.html",
        {
            "delivery": delivery,
            "lead": delivery.lead,
            "lead_fields": lead_fields(delivery.lead.data),
            "history": history,
            "returned": returned,
            "conflict": conflict,
            "conflict_kind": bound.prefix if conflict and bound is not None else "",
            "forms": [
                (kind, Kind(kind).label, forms[kind], delivery.source.accepts(kind))
                for kind in FEEDBACK_KINDS
            ],
            "nav": "deliveries",
        },
        status=status,
    )


@require_GET
@buyer_required
def delivery_detail(request: HttpRequest, event_id: str) -> HttpResponse:
    delivery = _delivery_or_404(_portal(request), event_id)
    return _render_delivery(request, delivery)


@require_POST
@buyer_required
def delivery_feedback(request: HttpRequest, event_id: str, kind: str) -> HttpResponse:
    """Report one feedback about one delivery, through feedback_receive."""
    portal = _portal(request)
    delivery = _delivery_or_404(portal, event_id)
    if kind not in FEEDBACK_KINDS:
        raise Http404("No such feedback kind.")
    form = FeedbackForm(
        request.POST,
        prefix=kind,
        kind=kind,
        allowed_reasons=delivery.source.allowed_reasons(kind),
        suggestions=feedback_usual_reasons(buyer=portal.buyer, kind=kind)
        if kind == Kind.RETURN
        else [],
    )
    if not form.is_valid():
        return _render_delivery(request, delivery, bound=form, status=400)
    _, conversions = _standing(list(feedback_history_for_delivery(delivery=delivery)))
    conflict = _conflict(kind, conversions)
    if conflict and not form.cleaned_data.get("confirmed"):
        # Say what it will do, and ask again with the same values.
        again = FeedbackForm(
            {**request.POST.dict(), f"{kind}-confirmed": "True"},
            prefix=kind,
            kind=kind,
            allowed_reasons=delivery.source.allowed_reasons(kind),
            suggestions=form.suggestions,
        )
        again.is_valid()
        return _render_delivery(
            request, delivery, bound=again, conflict=conflict, status=409
        )
    result = feedback_receive(
        buyer=portal.buyer,
        data=form.feedback_data(event_id=delivery.event_id),
        channel=Feedback.Channel.PORTAL,
        user=portal.user,
    )
    if result.status == ReceiveStatus.ACCEPTED:
        messages.success(request, f"{Kind(kind).label} recorded.")
    elif result.feedback is not None:
        # Refused feedback is stored (and reported on); say why next to the form.
        messages.error(
            request,
            f"Refused: {result.reason}",
            extra_tags=f"inline inline-{kind}",
        )
    else:
        form.add_error(None, result.reason)
        return _render_delivery(request, delivery, bound=form, status=400)
    return redirect("portal:delivery-detail", event_id=delivery.event_id)


@require_POST
@buyer_required
def delivery_bulk_feedback(request: HttpRequest) -> HttpResponse:
    """The same feedback for a selection; each delivery succeeds or fails alone."""
    portal = _portal(request)
    form = BulkFeedbackForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(str(error) for error in errors))
        return redirect(_back_to_list(request))
    items = form.feedback_items()
    results = feedback_receive_many(
        buyer=portal.buyer,
        items=items,
        channel=Feedback.Channel.PORTAL,
        user=portal.user,
    )
    rows = [
        {
            "event_id": item["event_id"],
            "accepted": result.status == ReceiveStatus.ACCEPTED,
            "recorded": result.feedback is not None,
            "reason": result.reason,
            "delivery": result.feedback.delivery if result.feedback else None,
        }
        for item, result in zip(items, results, strict=True)
    ]
    accepted = sum(1 for row in rows if row["accepted"])
    return render(
        request,
        "portal/feedback_results.html",
        {
            "rows": rows,
            "kind_label": Kind(form.cleaned_data["kind"]).label,
            "accepted": accepted,
            "refused": len(rows) - accepted,
            "back": _back_to_list(request),
            "nav": "deliveries",
        },
    )


def _back_to_list(request: HttpRequest) -> str:
    """The list the user came from, with its filters (only ever a portal URL)."""
    query = request.POST.get("list_query", "")
    url = reverse("portal:delivery-list")
    return f"{url}?{query}" if query and "\n" not in query else url


# CSV imports ------------------------------------------------------------------

# Rows of results shown on the page; the refused-rows CSV has all refusals.
IMPORT_RESULTS_SHOWN = 500
RECENT_IMPORTS = 20


@require_http_methods(["GET", "POST"])
@buyer_required
def import_upload(request: HttpRequest) -> HttpResponse:
    """Upload a CSV of feedback; a worker imports it while the page shows progress."""
    portal = _portal(request)
    bound = request.method == "POST"
    form = ImportUploadForm(
        request.POST if bound else None, request.FILES if bound else None
    )
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            feedback_import, created = feedback_import_upload(
                buyer=portal.buyer,
                user=portal.user,
                file=upload,
                filename=upload.name,
                channel=Feedback.Channel.CSV,
            )
        except ValidationError as exc:
            form.add_error("file", exc)
        else:
            if not created:
                messages.info(
                    request,
                    "You uploaded this file before; here is that import. "
                    "Its rows are not recorded twice.",
                )
            return redirect("portal:import-detail", public_id=feedback_import.public_id)
    return render(
        request,
        "portal/import_upload.html",
        {
            "form": form,
            "imports": feedback_import_list(buyer=portal.buyer)[:RECENT_IMPORTS],
            "nav": "imports",
        },
        status=400 if form.errors else 200,
    )


def _import_context(portal: PortalRequest, public_id: str) -> dict[str, Any]:
    feedback_import = get_feedback_import_for_buyer(
        buyer=portal.buyer, public_id=public_id
    )
    results = []
    if feedback_import.is_finished:
        results = feedback_import_results(
            feedback_import=feedback_import, limit=IMPORT_RESULTS_SHOWN
        )
    return {
        "import": feedback_import,
        "results": results,
        "more_results": feedback_import.processed_rows > len(results),
        "nav": "imports",
    }


@require_GET
@buyer_required
def import_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    context = _import_context(_portal(request), public_id)
    return render(request, "portal/import_detail.html", context)


@require_GET
@buyer_required
def import_progress(request: HttpRequest, public_id: str) -> HttpResponse:
    """The progress fragment the import page polls every second."""
    context = _import_context(_portal(request), public_id)
    response = render(request, "portal/partials/import_progress.html", context)
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@buyer_required
def import_refused_csv(request: HttpRequest, public_id: str) -> HttpResponse:
    portal = _portal(request)
    feedback_import = get_feedback_import_for_buyer(
        buyer=portal.buyer, public_id=public_id
    )
    response = HttpResponse(
        feedback_import_refused_csv(feedback_import=feedback_import),
        content_type="text/csv; charset=utf-8",
    )
    audit_export(
        request=request,
        export=f"import {feedback_import.public_id} refused rows",
        via=AuditEntry.Via.PORTAL,
        rows=feedback_import.refused_rows,
        scope=portal.buyer,
    )
    response["Content-Disposition"] = (
        f'attachment; filename="{feedback_import.public_id}-refused.csv"'
    )
    return response


# API keys ---------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@buyer_required
def api_key_list(request: HttpRequest) -> HttpResponse:
    portal = _portal(request)
    form = ApiKeyCreateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        api_key, raw_key = api_key_create(
            scope=ApiKey.Scope.BUYER,
            name=form.cleaned_data["name"],
            buyer=portal.buyer,
            created_by=portal.user,
        )
        # Shown in this one response and never again: nothing stores it.
        response = render(
            request,
            "portal/apikey_created.html",
            {"api_key": api_key, "raw_key": raw_key, "nav": "keys"},
            status=201,
        )
        response["Cache-Control"] = "no-store"
        return response
    return render(
        request,
        "portal/apikey_list.html",
        {
            "form": form,
            "nav": "keys",
            "keys": api_key_list_for_buyer(buyer=portal.buyer).select_related(
                "created_by"
            ),
        },
        status=400 if form.errors else 200,
    )


@require_POST
@buyer_required
def api_key_revoke_view(request: HttpRequest, key_id: uuid.UUID) -> HttpResponse:
    portal = _portal(request)
    try:
        api_key = get_api_key_for_buyer(buyer=portal.buyer, public_id=key_id)
    except ApiKey.DoesNotExist:
        raise Http404("No such key.") from None
    api_key_revoke(api_key=api_key)
    messages.success(request, f"Key “{api_key.name}” ({api_key.prefix}…) revoked.")
    return redirect("portal:apikey-list")


# Integration ------------------------------------------------------------------

# Notes for fields whose serializer declares no help text.
FIELD_NOTES = {
    "reason": "Why; a source may accept only its listed reasons.",
    "revenue": "Decimal ≥ 0 with at most 2 places, for conversions.",
    "quality_score": "Whole number from 1 to 5.",
    "occurred_at": "When it happened at your end (ISO 8601); defaults to now.",
    "note": "Free text for people, kept with the feedback.",
}


def field_reference() -> list[dict[str, str]]:
    """The feedback fields as the API's input serializer declares them."""
    rows = []
    for name, field in FeedbackInputSerializer().fields.items():
        rows.append(
            {
                "name": name,
                "type": _field_type(field),
                "required": "yes" if field.required else "no",
                "notes": str(field.help_text or FIELD_NOTES.get(name, "")),
            }
        )
    return rows


def _field_type(field: serializers.Field) -> str:
    if isinstance(field, serializers.ChoiceField):
        return "one of " + ", ".join(str(choice) for choice in field.choices)
    if isinstance(field, serializers.DecimalField):
        return "decimal"
    if isinstance(field, serializers.IntegerField):
        return f"integer {field.min_value} to {field.max_value}"
    if isinstance(field, serializers.DateTimeField):
        return "ISO 8601 date-time"
    if isinstance(field, serializers.DictField):
        return "JSON object"
    max_length = getattr(field, "max_length", None)
    return f"text (≤ {max_length})" if max_length else "text"


@require_GET
@buyer_required
def integration(request: HttpRequest) -> HttpResponse:
    portal = _portal(request)
    latest: QuerySet[DeliveryEvent] = delivery_list_for_buyer(buyer=portal.buyer)
    sample = latest.values_list("event_id", flat=True).first()
    base = request.build_absolute_uri("/").rstrip("/")
    context: dict[str, Any] = {
        "base": base,
        "event_id": sample or "65a1f0c2e4b0a1b2c3d4e5f6",
        "lc_url": f"{base}/feedback",
        "api_url": f"{base}{reverse('api:feedback-list')}",
        "events_url": f"{base}/api/v1/events/",
        "imports_url": f"{base}{reverse('api:feedback-import-create')}",
        "docs_url": f"{base}{reverse('api-docs')}",
        "fields": field_reference(),
        "outcome_codes": OutcomeCode.objects.filter(is_active=True),
        "sources": source_list_for_buyer(buyer=portal.buyer),
        "nav": "integration",
    }
    return render(request, "portal/integration.html", context)


# Buyer switch -----------------------------------------------------------------


@require_POST
@buyer_required
def buyer_switch(request: HttpRequest) -> HttpResponse:
    portal = _portal(request)
    form = BuyerSwitchForm(request.POST)
    wanted = form.cleaned_data["buyer"] if form.is_valid() else ""
    buyer = next((b for b in portal.portal_buyers if b.slug == wanted), None)
    if buyer is None:
        raise Http404("No such buyer.")
    buyer_select(request, buyer)
    messages.success(request, f"Now working in {buyer.name}.")
    return redirect("portal:delivery-list")
