"""Intake and read APIs. Views validate, call one service, serialise."""

import uuid
from collections.abc import Sequence
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Prefetch, QuerySet, prefetch_related_objects
from django.http import QueryDict
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ParseError, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback.api.auth import KeyPrincipal, LeadConduitKeyAuthentication
from feedback.api.errors import (
    PROBLEM_CONTENT_TYPE,
    InputRefused,
    flatten_errors,
    problem_response,
    request_limit_status,
)
from feedback.api.idempotency import NotExecutedResponse, idempotent
from feedback.api.negotiation import (
    FormBodyParser,
    JSONBodyParser,
    ResultXMLRenderer,
    TextXMLParser,
    TextXMLRenderer,
    XMLParser,
    deep_merge,
    nest_dotted,
    querydict_to_dict,
)
from feedback.api.permissions import IsApiKey, IsBuyerKey, IsIntegrationKey
from feedback.api.serializers import (
    EventInputSerializer,
    EventOutputSerializer,
    FeedbackInputSerializer,
    FeedbackOutputSerializer,
    ItemsInputSerializer,
    feedback_outputs,
    lead_summary,
)
from feedback.audit.models import AuditEntry
from feedback.audit.services import audit_export
from feedback.filters import FeedbackFilter
from feedback.forwarding.models import Notification
from feedback.intake.parse import (
    KNOWN_FIELDS,
    FieldError,
    ReceiveResult,
    ReceiveStatus,
    keep_extra_variables,
)
from feedback.intake.pipeline import feedback_receive, feedback_receive_many
from feedback.models import Buyer, DeliveryEvent, Feedback
from feedback.selectors import (
    delivery_event_list,
    feedback_list_for_key,
    get_delivery_for_key,
)
from feedback.services import (
    ConflictError,
    DeliveryInput,
    delivery_event_record,
    delivery_events_record_many,
)
from sources.models import Kind

CENTS = Decimal("0.01")
MAX_ITEMS = settings.LEADBACK_BATCH_MAX_ITEMS
LC_RESPONSE_DOC = inline_serializer(
    "LeadConduitResult",
    {
        "outcome": serializers.ChoiceField(choices=["success", "failure", "error"]),
        "reason": serializers.CharField(allow_null=True),
        "lead": serializers.DictField(required=False),
        "feedback_id": serializers.UUIDField(required=False),
    },
)


def notifications_prefetch() -> Prefetch:
    """The notifications each feedback's output lists, fetched in one query."""
    return Prefetch(
        "notifications",
        queryset=Notification.objects.select_related("source", "config").order_by(
            "created_at", "pk"
        ),
    )


def notifications_load(feedbacks: Sequence[Feedback]) -> None:
    """Read the notifications of new feedback, unless the intake has set them
    (it does, but a sync send changes them)."""
    unread = [
        f
        for f in feedbacks
        if "notifications" not in getattr(f, "_prefetched_objects_cache", {})
    ]
    if unread:
        prefetch_related_objects(unread, notifications_prefetch())


class FeedbackPagination(CursorPagination):
    ordering = ("-received_at", "-id")
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class EventRecordApi(APIView):
    """Record delivery events: one object, or {"items": [...]} with up to 1,000."""

    permission_classes = [IsIntegrationKey]

    @extend_schema(
        request=EventInputSerializer,
        responses={
            201: EventOutputSerializer,
            200: OpenApiResponse(description="Per-item results of an items batch."),
            409: OpenApiResponse(description="event_id recorded with another payload."),
            422: OpenApiResponse(description="Invalid input, naming the field."),
        },
    )
    @idempotent
    def post(self, request: Request) -> Response:
        if isinstance(request.data, dict) and "items" in request.data:
            return self._post_items(request.data)
        serializer = EventInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        event, created = delivery_event_record(data=serializer.to_delivery_input())
        # A new event carries what the answer names; a repeat is read whole.
        answer = (
            event_answer(event, zone=timezone.get_current_timezone())
            if created
            else EventOutputSerializer(_reload(event)).data
        )
        return Response(answer, status=status.HTTP_201_CREATED)

    def _post_items(self, data: dict[str, Any]) -> Response:
        envelope = ItemsInputSerializer(data=data)
        envelope.is_valid(raise_exception=True)
        results: list[dict[str, Any]] = []
        valid: list[tuple[int, DeliveryInput]] = []
        # One serializer for every item: building its fields costs more than
        # validating an item with them.
        checker = EventInputSerializer()
        for index, item in enumerate(envelope.validated_data["items"]):
            try:
                data = checker.run_validation(item)
            except ValidationError as exc:
                results.append(
                    {
                        "index": index,
                        "status": 422,
                        "errors": flatten_errors(exc.detail, f"items.{index}"),
                    }
                )
            else:
                valid.append((index, EventInputSerializer.delivery_input(data)))
                results.append({})
        # One transaction for the batch: it is recorded whole, or not at all.
        with transaction.atomic():
            recorded = delivery_events_record_many(items=[d for _, d in valid])
        zone = timezone.get_current_timezone()
        for (index, _), outcome in zip(valid, recorded, strict=True):
            if isinstance(outcome, ConflictError):
                field = f"items.{index}.event_id"
                results[index] = {
                    "index": index,
                    "status": 409,
                    "errors": [{"field": field, "message": outcome.message}],
                }
            else:
                event = event_answer(outcome, zone=zone)
                results[index] = {"index": index, "status": 201, "event": event}
        summary = {
            "recorded": sum(1 for r in results if r["status"] == 201),
            "failed": sum(1 for r in results if r["status"] != 201),
        }
        # No item recorded: nothing an Idempotency-Key retry must not repeat.
        answer = Response if summary["recorded"] else NotExecutedResponse
        return answer({**summary, "results": results}, status=status.HTTP_200_OK)


def event_answer(event: DeliveryEvent, *, zone: tzinfo) -> dict[str, Any]:
    """EventOutputSerializer's representation of `event`, written out: for a
    1,000-event batch the serializer's fields cost more than recording them.
    tests/feedback/test_events_batch.py holds the two to the same output."""

    def iso(value: datetime) -> str:
        text = value.astimezone(zone).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return {
        "event_id": event.event_id,
        "delivered_at": iso(event.delivered_at),
        "price": f"{Decimal(event.price).quantize(CENTS):f}",
        "buyer": event.buyer.slug,
        "source": event.source.slug,
        "flow": event.flow.slug,
        "step": event.step,
        "reference": event.reference,
        "lead": {"id": event.lead.public_id, **event.lead.data},
        "recorded_at": iso(event.created_at),
    }


def _reload(event: DeliveryEvent) -> DeliveryEvent:
    # Re-read with relations so the answer is identical for a first call and a repeat.
    return delivery_event_list().get(pk=event.pk)


class EventDetailApi(APIView):
    """One delivery event: for its buyer's keys and for integration keys."""

    permission_classes = [IsApiKey]

    @extend_schema(responses={200: EventOutputSerializer})
    def get(self, request: Request, event_id: str) -> Response:
        principal = request.user
        if not isinstance(principal, KeyPrincipal):  # IsApiKey let it through
            raise TypeError("EventDetailApi needs an API key principal")
        try:
            event = get_delivery_for_key(api_key=principal.api_key, event_id=event_id)
        except DeliveryEvent.DoesNotExist:
            return problem_response(
                status.HTTP_404_NOT_FOUND, "No delivery of yours has this event id."
            )
        return Response(EventOutputSerializer(event).data)


# Feedback -------------------------------------------------------------------

RESULT_STATUS = {
    ReceiveStatus.ACCEPTED: status.HTTP_201_CREATED,
    ReceiveStatus.REFUSED: status.HTTP_422_UNPROCESSABLE_ENTITY,
    ReceiveStatus.FORBIDDEN: status.HTTP_409_CONFLICT,
    ReceiveStatus.ALREADY_RETURNED: status.HTTP_409_CONFLICT,
    ReceiveStatus.NOT_FOUND: status.HTTP_404_NOT_FOUND,
    ReceiveStatus.INVALID: status.HTTP_422_UNPROCESSABLE_ENTITY,
}


def _principal(request: Request) -> KeyPrincipal:
    principal = request.user
    if not isinstance(principal, KeyPrincipal):  # the permission classes let it in
        raise TypeError("this API needs an API key principal")
    return principal


def _unknown_fields(item: Any) -> ReceiveResult | None:
    """The JSON API refuses fields it does not know: a typo must not be dropped."""
    if not isinstance(item, dict):
        return None
    unknown = sorted(set(item) - KNOWN_FIELDS)
    if not unknown:
        return None
    return ReceiveResult(
        ReceiveStatus.INVALID,
        errors=[
            FieldError(name, f"{name} is not a field Leadback knows.")
            for name in unknown
        ],
    )


def _problem_body(result: ReceiveResult, path: str = "") -> dict[str, Any]:
    code = RESULT_STATUS[result.status]
    prefix = f"{path}." if path else ""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": "Feedback refused" if result.feedback else "Feedback not recorded",
        "status": code,
        "detail": result.reason,
        "errors": [
            {"field": f"{prefix}{e.field}" if e.field else path, "message": e.message}
            for e in result.errors
        ],
    }
    if result.feedback is not None:
        body["feedback_id"] = str(result.feedback.public_id)
        body["outcome"] = result.feedback.outcome
    return _with_allowance(body, result)


def _with_allowance(body: dict[str, Any], result: ReceiveResult) -> dict[str, Any]:
    """A return to a capped buyer says how many returns its month has left."""
    if result.returns_remaining is not None:
        body["returns_remaining"] = result.returns_remaining
    return body


class FeedbackApi(GenericAPIView[Feedback]):
    """GET lists the caller's feedback; POST reports one or up to 1,000."""

    filter_backends = [DjangoFilterBackend]
    filterset_class = FeedbackFilter
    pagination_class = FeedbackPagination
    serializer_class = FeedbackOutputSerializer

    def get_permissions(self) -> list[Any]:
        if self.request.method == "POST":
            return [IsBuyerKey()]
        return [IsApiKey()]

    def get_queryset(self) -> QuerySet[Feedback]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Feedback.objects.none()
        return feedback_list_for_key(
            api_key=_principal(self.request).api_key
        ).prefetch_related(notifications_prefetch())

    @extend_schema(
        operation_id="api_v1_feedback_list",
        responses={200: FeedbackOutputSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        response = self.get_paginated_response(
            FeedbackOutputSerializer(page, many=True).data
        )
        # Each item names its lead (lead_summary): a listing of personal data.
        audit_export(
            request=request,
            export="GET /api/v1/feedback",
            via=AuditEntry.Via.API,
            rows=len(page or []),
        )
        return response

    @extend_schema(
        request=FeedbackInputSerializer,
        responses={
            201: FeedbackOutputSerializer,
            200: OpenApiResponse(description="Per-item results of an items batch."),
            404: OpenApiResponse(description="Unknown event id or reference."),
            409: OpenApiResponse(
                description="This kind of feedback is not enabled for the buyer, "
                "or the lead was already returned."
            ),
            422: OpenApiResponse(description="Refused, naming the field and reason."),
        },
    )
    @idempotent
    def post(self, request: Request) -> Response:
        principal = _principal(request)
        buyer = principal.api_key.buyer
        if buyer is None:
            raise TypeError("IsBuyerKey lets only buyer keys post feedback")
        data = request.data
        if isinstance(data, dict) and "items" in data:
            return self._post_items(request, buyer=buyer, data=data)
        if not isinstance(data, dict):
            raise ValidationError('Send one feedback object or {"items": [...]}.')
        result = _unknown_fields(data) or feedback_receive(
            buyer=buyer,
            data=data,
            channel=Feedback.Channel.API,
            api_key=principal.api_key,
        )
        if result.status == ReceiveStatus.ACCEPTED and result.feedback is not None:
            notifications_load([result.feedback])
            return Response(
                _with_allowance(feedback_outputs([result.feedback])[0], result),
                status=status.HTTP_201_CREATED,
            )
        # Unknown event or invalid input: nothing stored, so nothing to replay.
        answer = Response if result.feedback is not None else NotExecutedResponse
        return answer(
            _problem_body(result),
            status=RESULT_STATUS[result.status],
            content_type=PROBLEM_CONTENT_TYPE,
        )

    def _post_items(
        self, request: Request, *, buyer: Buyer, data: dict[str, Any]
    ) -> Response:
        items = data["items"]
        if set(data) != {"items"}:
            raise ValidationError({"items": "Send only items at the top level."})
        if not isinstance(items, list) or not items:
            raise ValidationError({"items": "Must be a non-empty list."})
        if len(items) > MAX_ITEMS:
            raise ValidationError({"items": f"At most {MAX_ITEMS} items per request."})
        refused = {i: r for i, item in enumerate(items) if (r := _unknown_fields(item))}
        received = iter(
            feedback_receive_many(
                buyer=buyer,
                items=[item for i, item in enumerate(items) if i not in refused],
                channel=Feedback.Channel.API,
                api_key=_principal(request).api_key,
            )
        )
        outcomes = [refused.get(index) or next(received) for index in range(len(items))]
        accepted_feedback = [
            r.feedback
            for r in outcomes
            if r.status == ReceiveStatus.ACCEPTED and r.feedback is not None
        ]
        notifications_load(accepted_feedback)
        outputs = iter(feedback_outputs(accepted_feedback))
        results = []
        for index, result in enumerate(outcomes):
            code = RESULT_STATUS[result.status]
            if result.status == ReceiveStatus.ACCEPTED:
                output = _with_allowance(next(outputs), result)
                entry = {"index": index, "status": code, "feedback": output}
            else:
                entry = {"index": index, **_problem_body(result, f"items.{index}")}
            results.append(entry)
        accepted = sum(1 for r in results if r["status"] == status.HTTP_201_CREATED)
        stored_any = any(r.feedback is not None for r in outcomes)
        answer = Response if stored_any else NotExecutedResponse
        return answer(
            {
                "accepted": accepted,
                "refused": len(results) - accepted,
                "results": results,
            }
        )


class FeedbackDetailApi(APIView):
    """One feedback by its feedback_id, within the caller's scope."""

    permission_classes = [IsApiKey]

    @extend_schema(responses={200: FeedbackOutputSerializer})
    def get(self, request: Request, feedback_id: uuid.UUID) -> Response:
        queryset = feedback_list_for_key(api_key=_principal(request).api_key)
        feedback = (
            queryset.prefetch_related(notifications_prefetch())
            .filter(public_id=feedback_id)
            .first()
        )
        if feedback is None:
            return problem_response(status.HTTP_404_NOT_FOUND, "Unknown feedback id.")
        return Response(FeedbackOutputSerializer(feedback).data)


# LeadConduit-compatible feedback URL ----------------------------------------

LC_STATUS = {
    ReceiveStatus.ACCEPTED: status.HTTP_201_CREATED,
    ReceiveStatus.REFUSED: status.HTTP_201_CREATED,
    ReceiveStatus.ALREADY_RETURNED: status.HTTP_201_CREATED,
    ReceiveStatus.FORBIDDEN: status.HTTP_409_CONFLICT,
    ReceiveStatus.NOT_FOUND: status.HTTP_404_NOT_FOUND,
    ReceiveStatus.INVALID: status.HTTP_422_UNPROCESSABLE_ENTITY,
}


# Variables the URL reads itself (DRF's format override) or that would carry a
# key, which is never accepted in a query string: not kept in custom.
LC_NOT_KEPT = frozenset({"format", "api_key", "apikey", "key"})


class LeadConduitFeedbackApi(APIView):
    """`GET|POST /feedback?event_id=…`, answering as LeadConduit does (DESIGN §4.1).

    A CRM integrated with LeadConduit only changes the host (and its key).
    """

    http_method_names = ["get", "post"]
    authentication_classes = [LeadConduitKeyAuthentication]
    permission_classes = [IsBuyerKey]
    parser_classes = [JSONBodyParser, FormBodyParser, XMLParser, TextXMLParser]
    renderer_classes = [JSONRenderer, ResultXMLRenderer, TextXMLRenderer]

    @extend_schema(
        operation_id="leadconduit_feedback_get",
        parameters=[
            OpenApiParameter("event_id", str, required=True),
            OpenApiParameter("type", str, enum=Kind.values),
            OpenApiParameter("reason", str),
        ],
        responses={(201, "application/json"): LC_RESPONSE_DOC},
    )
    def get(self, request: Request) -> Response:
        return self._receive(request, body={})

    @extend_schema(
        operation_id="leadconduit_feedback_post",
        parameters=[OpenApiParameter("event_id", str, required=True)],
        request={
            "application/json": FeedbackInputSerializer,
            "application/x-www-form-urlencoded": FeedbackInputSerializer,
            "application/xml": FeedbackInputSerializer,
        },
        responses={(201, "application/json"): LC_RESPONSE_DOC},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = request.data
        body = querydict_to_dict(data) if isinstance(data, QueryDict) else data
        if not isinstance(body, dict):
            raise ParseError("The body must be an object of variables.")
        return self._receive(request, body=body)

    def _receive(self, request: Request, *, body: dict[str, Any]) -> Response:
        query = querydict_to_dict(request.query_params)
        variables = deep_merge(nest_dotted(body), nest_dotted(query))
        principal = _principal(request)
        buyer = principal.api_key.buyer
        if buyer is None:
            raise TypeError("IsBuyerKey lets only buyer keys send feedback")
        result = feedback_receive(
            buyer=buyer,
            data=keep_extra_variables(variables, ignore=LC_NOT_KEPT),
            channel=Feedback.Channel.LC_COMPAT,
            api_key=principal.api_key,
        )
        feedback = result.feedback
        if feedback is None:
            body_out: dict[str, Any] = {"outcome": "error", "reason": result.reason}
        else:
            body_out = {
                "outcome": feedback.outcome,
                "reason": result.reason or None,
                "lead": lead_summary(feedback.lead),
            }
            if feedback.pk is not None:
                # Refused feedback is stored too: the id finds it in the portal
                # and the API, accepted or not.
                body_out["feedback_id"] = str(feedback.public_id)
            if feedback.review_state:
                body_out["review_state"] = feedback.review_state
            _with_allowance(body_out, result)
        answer = Response if feedback is not None else NotExecutedResponse
        return answer(body_out, status=LC_STATUS[result.status])

    def handle_exception(self, exc: Exception) -> Response:
        """Errors answer in LeadConduit's shape and the negotiated format."""
        response = super().handle_exception(exc)
        if isinstance(exc, InputRefused) or request_limit_status(exc) is not None:
            # Refused before LeadConduit's rules apply: problem+json whatever the
            # Accept header, with LeadConduit's outcome and reason as well.
            self.request.accepted_renderer = JSONRenderer()
            self.request.accepted_media_type = JSONRenderer.media_type
            detail = response.data["detail"]
            response.data = {**response.data, "outcome": "error", "reason": detail}
            return response
        if isinstance(exc, APIException) and response.status_code < 500:
            reason = response.data.get("detail") if response.data else None
            response.data = {"outcome": "error", "reason": reason or str(exc)}
            response.content_type = None
        return response
