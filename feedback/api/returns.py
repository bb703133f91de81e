"""Returns resolution over the API (DESIGN §10): decide a return (integration
keys), dispute a rejection (buyer keys), list returns and credits.

A return is addressed by its feedback_id. A buyer key reaches its own buyer's
returns only: another buyer's answers exactly like an unknown id (404). Input
the caller got wrong answers 400 naming the field, as the decision service
does; a step the return's state does not allow answers 409 with that state.
"""

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import django_filters
from django.db.models import Prefetch, QuerySet
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback.api.auth import KeyPrincipal
from feedback.api.errors import PROBLEM_CONTENT_TYPE, flatten_errors, problem_body
from feedback.api.idempotency import NotExecutedResponse, idempotent
from feedback.api.permissions import IsApiKey, IsBuyerKey, IsIntegrationKey
from feedback.api.serializers import AsciiDecimalField, lead_summary
from feedback.api.views import FeedbackPagination
from feedback.audit.models import AuditEntry
from feedback.audit.services import audit_export
from feedback.models import ApiKey, BuyerPolicy, Feedback
from feedback.returns.admission import Policies, policy_for
from feedback.returns.models import Credit, ReturnTransition
from feedback.returns.selectors import credits_list, credits_total, returns_list
from feedback.returns.services import (
    APPROVE,
    REJECT,
    DecisionInvalid,
    TransitionRefused,
    return_decide,
    return_dispute,
)
from sources.models import Kind

State = Feedback.ReviewState
CENTS = Decimal("0.01")
MAX_NOTE_LENGTH = 2000
# The states a decision leaves a return in: its latest such step is "the decision".
DECIDED = (State.APPROVED, State.REJECTED)


def _principal(request: Request) -> KeyPrincipal:
    principal = request.user
    if not isinstance(principal, KeyPrincipal):  # the permission classes let it in
        raise TypeError("this API needs an API key principal")
    return principal


# Reads ----------------------------------------------------------------------


def returns_for_key(*, api_key: ApiKey) -> QuerySet[Feedback]:
    """The returns `api_key` may see (all for integration keys, its buyer's
    otherwise), with their review steps and live credit prefetched."""
    if api_key.scope == ApiKey.Scope.INTEGRATION:
        queryset = returns_list()
    else:
        # A buyer key always has a buyer; were that broken, 0 matches nothing.
        queryset = returns_list(buyer_id=api_key.buyer_id or 0)
    return queryset.prefetch_related(*returns_prefetch())


def returns_prefetch() -> list[Prefetch]:
    return [
        Prefetch(
            "transitions",
            queryset=ReturnTransition.objects.order_by("created_at", "pk"),
            to_attr="steps",
        ),
        Prefetch(
            "credits",
            queryset=Credit.objects.filter(voided_at__isnull=True),
            to_attr="live_credits",
        ),
    ]


def credits_for_key(*, api_key: ApiKey) -> QuerySet[Credit]:
    if api_key.scope == ApiKey.Scope.INTEGRATION:
        return credits_list()
    return credits_list(buyer_id=api_key.buyer_id or 0)


def dispute_days_of(feedbacks: Sequence[Feedback]) -> dict[int, int]:
    """The dispute_days of each rejected return's policy (its flow's, else its
    buyer's), by feedback pk: one query for a page of returns."""
    rejected = [f for f in feedbacks if f.review_state == State.REJECTED]
    if not rejected:
        return {}
    policies: dict[int, Policies] = defaultdict(dict)
    for policy in BuyerPolicy.objects.filter(
        buyer_id__in={f.buyer_id for f in rejected}, kind=Kind.RETURN
    ):
        policies[policy.buyer_id][(policy.flow_id, policy.kind)] = policy
    return {
        f.pk: policy_for(policies[f.buyer_id], f.flow_id, Kind.RETURN).dispute_days
        for f in rejected
    }


def _steps(feedback: Feedback) -> list[ReturnTransition]:
    steps = getattr(feedback, "steps", None)
    if steps is None:  # not prefetched: read them (one query)
        steps = list(feedback.transitions.order_by("created_at", "pk"))
    return steps


def _latest_decision(feedback: Feedback) -> ReturnTransition | None:
    decided = [s for s in _steps(feedback) if s.to_state in DECIDED]
    return decided[-1] if decided else None


# Filters --------------------------------------------------------------------


# Days outside anything stored, clamped so the arithmetic cannot overflow.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9000, 12, 31)


def _start_of(day: date) -> datetime:
    """Midnight at the start of `day` in the installation's time zone."""
    day = min(max(day, FIRST_DAY), LAST_DAY)
    return timezone.make_aware(datetime.combine(day, time.min))


class PeriodFilterSet(django_filters.FilterSet):
    """`from` and `to`: calendar days in the installation's time zone, both
    inclusive, on the model's `period_field` (an invoicing period reads
    from=2026-11-01&to=2026-11-30). `from` is a Python keyword, so the two
    filters are added in get_filters rather than declared."""

    period_field = ""
    period_help = ""
    buyer = django_filters.CharFilter(
        field_name="buyer__slug",
        max_length=100,
        help_text="A buyer's slug. A buyer key sees only its own buyer: another "
        "slug lists nothing, as an unknown one does.",
    )

    @classmethod
    def get_filters(cls) -> dict[str, django_filters.Filter]:
        filters = dict(super().get_filters())
        if cls.period_field:
            filters["from"] = django_filters.DateFilter(
                method="filter_from",
                help_text=f"First day (YYYY-MM-DD), inclusive, {cls.period_help}.",
            )
            filters["to"] = django_filters.DateFilter(
                method="filter_to",
                help_text=f"Last day (YYYY-MM-DD), inclusive, {cls.period_help}.",
            )
        return filters

    def filter_from(self, queryset: QuerySet[Any], name: str, value: date) -> Any:
        return queryset.filter(**{f"{self.period_field}__gte": _start_of(value)})

    def filter_to(self, queryset: QuerySet[Any], name: str, value: date) -> Any:
        end = _start_of(min(value, LAST_DAY) + timedelta(days=1))
        return queryset.filter(**{f"{self.period_field}__lt": end})


class ReturnFilter(PeriodFilterSet):
    period_field = "received_at"
    period_help = "of the day the return was received"
    review_state = django_filters.ChoiceFilter(choices=State.choices)

    class Meta:
        model = Feedback
        fields = ["review_state", "buyer"]


class CreditFilter(PeriodFilterSet):
    period_field = "created_at"
    period_help = "of the day the credit was granted"

    class Meta:
        model = Credit
        fields = ["buyer"]


# Output ---------------------------------------------------------------------

_instant = serializers.DateTimeField()


class ReturnStepSerializer(serializers.Serializer):
    """One review step: who acted is told by kind only (buyer, staff,
    integration key, Leadback), never by name or email."""

    # `from` is a Python keyword: the fields are named in get_fields.

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            # Plain strings like FeedbackOutput's `type`: another enum of the
            # review states would need an ENUM_NAME_OVERRIDES entry.
            "from": serializers.CharField(
                allow_null=True,
                help_text="The state before (null for the request itself).",
            ),
            "to": serializers.CharField(
                allow_null=True,
                help_text="The state after (null when the return left the review).",
            ),
            "actor": serializers.ChoiceField(choices=ReturnTransition.Actor.choices),
            "note": serializers.CharField(),
            "at": serializers.DateTimeField(),
            "evidence": serializers.CharField(
                allow_null=True,
                help_text="The name of the file the buyer attached, if any.",
            ),
        }

    def to_representation(self, instance: ReturnTransition) -> dict[str, Any]:
        return step_output(instance)


def step_output(step: ReturnTransition) -> dict[str, Any]:
    return {
        "from": step.from_state or None,
        "to": step.to_state or None,
        "actor": step.actor,
        "note": step.note,
        "at": _instant.to_representation(step.created_at),
        "evidence": step.evidence_name or None,
    }


class ReturnOutputSerializer(serializers.Serializer):
    """A return request and where its review stands."""

    # Reads `steps` and `live_credits` (returns_prefetch) when they were
    # prefetched, and each rejected return's dispute days from the context.

    feedback_id = serializers.UUIDField(source="public_id")
    event_id = serializers.CharField(source="delivery.event_id")
    reference = serializers.CharField(source="delivery.reference")
    buyer = serializers.CharField(source="buyer.slug")
    reason = serializers.CharField()
    review_state = serializers.ChoiceField(choices=State.choices)
    received_at = serializers.DateTimeField()
    decided_at = serializers.SerializerMethodField(
        help_text="When the latest approval or rejection was made; null while "
        "no decision has been."
    )
    decision_reason = serializers.SerializerMethodField(
        help_text="The note of the latest approval or rejection."
    )
    credit = serializers.SerializerMethodField(
        help_text="The live credit's amount; null when there is none."
    )
    dispute_deadline = serializers.SerializerMethodField(
        help_text="Until when the buyer may dispute the rejection: set on a "
        "rejected return that was never disputed, null otherwise."
    )
    history = serializers.SerializerMethodField()
    lead = serializers.SerializerMethodField()

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_decided_at(self, feedback: Feedback) -> str | None:
        step = _latest_decision(feedback)
        return None if step is None else _instant.to_representation(step.created_at)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_decision_reason(self, feedback: Feedback) -> str | None:
        step = _latest_decision(feedback)
        return None if step is None else step.note

    @extend_schema_field(
        serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)
    )
    def get_credit(self, feedback: Feedback) -> str | None:
        credits = getattr(feedback, "live_credits", None)
        if credits is None:
            credits = list(feedback.credits.filter(voided_at__isnull=True))
        if not credits:
            return None
        return f"{credits[0].amount.quantize(CENTS):f}"

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_dispute_deadline(self, feedback: Feedback) -> str | None:
        # services.dispute_deadline's reckoning, from the prefetched steps and
        # the page's policies rather than two queries per return.
        if feedback.review_state != State.REJECTED:
            return None
        steps = _steps(feedback)
        if any(s.to_state == State.DISPUTED for s in steps):
            return None  # the second decision is final
        rejected = [s for s in steps if s.to_state == State.REJECTED]
        days = self.context.get("dispute_days", {}).get(feedback.pk)
        if not rejected or days is None:
            return None
        return _instant.to_representation(rejected[-1].created_at + timedelta(days))

    @extend_schema_field(ReturnStepSerializer(many=True))
    def get_history(self, feedback: Feedback) -> list[dict[str, Any]]:
        return [step_output(step) for step in _steps(feedback)]

    def get_lead(self, feedback: Feedback) -> dict[str, Any]:
        return lead_summary(feedback.lead)


def return_outputs(feedbacks: Sequence[Feedback]) -> list[dict[str, Any]]:
    context = {"dispute_days": dispute_days_of(feedbacks)}
    return list(ReturnOutputSerializer(feedbacks, many=True, context=context).data)


class CreditOutputSerializer(serializers.Serializer):
    feedback_id = serializers.UUIDField(
        source="feedback.public_id", help_text="The approved return."
    )
    event_id = serializers.CharField(source="delivery.event_id")
    reference = serializers.CharField(source="delivery.reference")
    buyer = serializers.CharField(source="buyer.slug")
    source = serializers.CharField(source="source.slug")  # type: ignore[assignment]
    flow = serializers.CharField(source="flow.slug")
    reason = serializers.CharField(help_text="The return's reason.")
    price = serializers.DecimalField(
        source="delivery.price", max_digits=12, decimal_places=2
    )
    amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    created_at = serializers.DateTimeField(help_text="When the approval granted it.")


class CreditPagination(FeedbackPagination):
    ordering = ("-created_at", "-id")

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        answer = super().get_paginated_response_schema(schema)
        answer["properties"]["total"] = {
            "type": "string",
            "format": "decimal",
            "example": "1250.00",
            "description": "The sum of every credit the filters match, on all pages.",
        }
        answer["required"] = [*answer.get("required", []), "total"]
        return answer


# Answers --------------------------------------------------------------------


def _problem(
    code: int, detail: str, *, errors: list[dict[str, str]] | None = None, **extra: Any
) -> Response:
    """A problem answered before anything changed: a retry with the same
    Idempotency-Key runs afresh rather than replaying it."""
    body = {**problem_body(code, detail, errors=errors), **extra}
    return NotExecutedResponse(body, status=code, content_type=PROBLEM_CONTENT_TYPE)


def _invalid(detail: Any) -> Response:
    errors = flatten_errors(detail)
    summary = "; ".join(
        f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors
    )
    return _problem(
        status.HTTP_400_BAD_REQUEST, summary or "Invalid input.", errors=errors
    )


def _unknown_return() -> Response:
    return _problem(status.HTTP_404_NOT_FOUND, "Unknown return.")


def _refused(exc: TransitionRefused) -> Response:
    return _problem(
        status.HTTP_409_CONFLICT, exc.message, review_state=exc.state or None
    )


def _validated(
    serializer_class: type[serializers.Serializer], data: Any
) -> dict[str, Any] | Response:
    """The body's values, or the 400 answer naming what is wrong. Unknown
    fields are refused: a misspelt credit_amount must not grant a full credit."""
    serializer = serializer_class(data=data)
    errors = {} if serializer.is_valid() else dict(serializer.errors)
    if isinstance(data, dict):
        for name in sorted(set(data) - set(serializer.fields)):
            errors[name] = ["Unknown field."]
    if errors:
        return _invalid(errors)
    return dict(serializer.validated_data)


def _answer(api_key: ApiKey, feedback: Feedback) -> Response:
    """The return as it is now, read again with what its output shows."""
    fresh = returns_for_key(api_key=api_key).get(pk=feedback.pk)
    return Response(return_outputs([fresh])[0])


CONFLICT_DOC = OpenApiResponse(
    inline_serializer(
        "ReturnConflict",
        {
            "type": serializers.CharField(),
            "title": serializers.CharField(),
            "status": serializers.IntegerField(),
            "detail": serializers.CharField(),
            "review_state": serializers.ChoiceField(
                choices=State.choices, allow_null=True
            ),
        },
    ),
    description="The return's state does not allow this step; `review_state` "
    "is the state it is in.",
)
UNKNOWN_DOC = OpenApiResponse(
    description="No accepted return has this feedback_id within the key's reach "
    "(another buyer's answers the same)."
)


# Writes ---------------------------------------------------------------------


class ReturnDecideApi(APIView):
    """Approve or reject a pending or disputed return (integration keys)."""

    permission_classes = [IsIntegrationKey]

    @extend_schema_serializer(component_name="ReturnDecision")
    class InputSerializer(serializers.Serializer):
        decision = serializers.ChoiceField(choices=[APPROVE, REJECT])
        reason = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=MAX_NOTE_LENGTH,
            help_text="Why; shown to the buyer in the return's history.",
        )
        credit_amount = AsciiDecimalField(
            max_digits=12,
            decimal_places=2,
            min_value=0,
            required=False,
            allow_null=True,
            help_text="Approvals only; at most the delivery's price. Default: "
            "the price times the buyer policy's credit_percent.",
        )

    @extend_schema(
        operation_id="api_v1_returns_decision",
        request=InputSerializer,
        responses={
            200: ReturnOutputSerializer,
            400: OpenApiResponse(
                description="A value is wrong (a decision other than approve or "
                "reject, a credit above the price or with a rejection); "
                "`errors` name the field."
            ),
            403: OpenApiResponse(description="Not an integration key."),
            404: UNKNOWN_DOC,
            409: CONFLICT_DOC,
        },
    )
    @idempotent
    def post(self, request: Request, feedback_id: uuid.UUID) -> Response:
        values = _validated(self.InputSerializer, request.data)
        if isinstance(values, Response):
            return values
        api_key = _principal(request).api_key
        feedback = (
            returns_for_key(api_key=api_key).filter(public_id=feedback_id).first()
        )
        if feedback is None:
            return _unknown_return()
        try:
            decided = return_decide(
                feedback=feedback,
                decision=values["decision"],
                api_key=api_key,
                note=values.get("reason", ""),
                credit_amount=values.get("credit_amount"),
            )
        except DecisionInvalid as exc:
            return _invalid({exc.field: [exc.message]})
        except TransitionRefused as exc:
            return _refused(exc)
        except Feedback.DoesNotExist:  # refused by a sync source meanwhile
            return _unknown_return()
        return _answer(api_key, decided)


class ReturnDisputeApi(APIView):
    """Contest a rejection, once, within the policy's dispute_days (buyer keys)."""

    permission_classes = [IsBuyerKey]

    @extend_schema_serializer(component_name="ReturnDispute")
    class InputSerializer(serializers.Serializer):
        comment = serializers.CharField(
            min_length=1,
            max_length=MAX_NOTE_LENGTH,
            help_text="Why the rejection is wrong; shown to the reviewer.",
        )

    @extend_schema(
        operation_id="api_v1_returns_dispute",
        request=InputSerializer,
        responses={
            200: ReturnOutputSerializer,
            400: OpenApiResponse(
                description="No comment, or a comment that is too long; `errors` "
                "name the field."
            ),
            403: OpenApiResponse(description="Not a buyer key."),
            404: UNKNOWN_DOC,
            409: CONFLICT_DOC,
        },
    )
    @idempotent
    def post(self, request: Request, feedback_id: uuid.UUID) -> Response:
        values = _validated(self.InputSerializer, request.data)
        if isinstance(values, Response):
            return values
        api_key = _principal(request).api_key
        feedback = (
            returns_for_key(api_key=api_key).filter(public_id=feedback_id).first()
        )
        if feedback is None:
            return _unknown_return()
        try:
            disputed = return_dispute(
                feedback=feedback, comment=values["comment"], api_key=api_key
            )
        except TransitionRefused as exc:
            return _refused(exc)
        except Feedback.DoesNotExist:  # refused by a sync source meanwhile
            return _unknown_return()
        return _answer(api_key, disputed)


# Lists ----------------------------------------------------------------------


class ReturnListApi(GenericAPIView[Feedback]):
    """Returns under review or decided, newest first: all of them for
    integration keys, the buyer's own for buyer keys."""

    permission_classes = [IsApiKey]
    filterset_class = ReturnFilter
    pagination_class = FeedbackPagination
    serializer_class = ReturnOutputSerializer

    def get_queryset(self) -> QuerySet[Feedback]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Feedback.objects.none()
        return returns_for_key(api_key=_principal(self.request).api_key)

    @extend_schema(
        operation_id="api_v1_returns_list",
        responses={200: ReturnOutputSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        response = self.get_paginated_response(return_outputs(page or []))
        # Each return names its lead (lead_summary): a listing of personal data.
        audit_export(
            request=request,
            export="GET /api/v1/returns",
            via=AuditEntry.Via.API,
            rows=len(page or []),
        )
        return response


class CreditListApi(GenericAPIView[Credit]):
    """Live credits, newest first, with the total of everything the filters
    match: all buyers' for integration keys, the buyer's own for buyer keys."""

    permission_classes = [IsApiKey]
    filterset_class = CreditFilter
    pagination_class = CreditPagination
    serializer_class = CreditOutputSerializer

    def get_queryset(self) -> QuerySet[Credit]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Credit.objects.none()
        return credits_for_key(api_key=_principal(self.request).api_key)

    @extend_schema(
        operation_id="api_v1_credits_list",
        responses={200: CreditOutputSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        credits = self.filter_queryset(self.get_queryset())
        total = credits_total(credits)
        page = self.paginate_queryset(credits)
        response = self.get_paginated_response(
            CreditOutputSerializer(page, many=True).data
        )
        response.data["total"] = f"{total.quantize(CENTS):f}"
        return response
