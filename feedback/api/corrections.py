"""Correcting feedback over the API (DESIGN §12): a buyer key retracts its own
feedback, or amends a conversion's revenue, within its policy's
`retract_hours` of sending it.

Feedback is addressed by its feedback_id; another buyer's answers exactly
like an unknown id (404). A body the caller got wrong answers 400 naming the
field; a correction the feedback does not allow (retracted already, refused,
not a conversion, the window has passed) answers 409 saying why.
"""

import uuid
from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback.api.idempotency import idempotent
from feedback.api.permissions import IsBuyerKey
from feedback.api.returns import _principal, _problem, _validated
from feedback.corrections.services import (
    REASON_MAX,
    CorrectionInvalid,
    CorrectionRefused,
    correction_data,
    feedback_amend,
    feedback_retract,
)
from feedback.models import ApiKey, Feedback, FeedbackCorrection
from feedback.selectors import feedback_list_for_key


class CorrectionOutputSerializer(serializers.Serializer):
    """A correction as recorded, and the feedback as it now stands."""

    correction_id = serializers.UUIDField()
    feedback_id = serializers.UUIDField()
    event_id = serializers.CharField()
    buyer = serializers.CharField(help_text="The buyer's slug.")
    # Named as the webhook's data names it, though DRF fields have a `source`.
    source = serializers.CharField(help_text="The source's slug.")  # type: ignore[assignment]
    kind = serializers.CharField(help_text="The feedback's kind.")
    action = serializers.ChoiceField(choices=FeedbackCorrection.Action.choices)
    reason = serializers.CharField()
    previous_revenue = serializers.CharField(
        allow_null=True, help_text="An amendment's revenue before it."
    )
    revenue = serializers.CharField(
        allow_null=True, help_text="The feedback's revenue now."
    )
    retracted_at = serializers.DateTimeField(allow_null=True)
    corrected_at = serializers.DateTimeField()


PROBLEM: dict[str, serializers.Field[Any, Any, Any, Any]] = {
    "type": serializers.CharField(),
    "title": serializers.CharField(),
    "status": serializers.IntegerField(),
    "detail": serializers.CharField(),
}
CONFLICT_DOC = OpenApiResponse(
    inline_serializer("CorrectionConflict", PROBLEM),
    description="The feedback cannot be corrected: retracted already, refused, "
    "not a conversion (amend), or the policy's retract_hours have passed; "
    "`detail` says which.",
)
UNKNOWN_DOC = OpenApiResponse(
    inline_serializer("CorrectionUnknown", PROBLEM),
    description="No feedback has this feedback_id within the key's reach "
    "(another buyer's answers the same).",
)
INVALID_DOC = OpenApiResponse(
    inline_serializer(
        "CorrectionInvalid",
        {
            **PROBLEM,
            "errors": inline_serializer(
                "CorrectionFieldError",
                {"field": serializers.CharField(), "message": serializers.CharField()},
                many=True,
            ),
        },
    ),
    description="A field is missing or wrong; `errors` name it.",
)


def _feedback(api_key: ApiKey, feedback_id: uuid.UUID) -> Feedback | None:
    return feedback_list_for_key(api_key=api_key).filter(public_id=feedback_id).first()


def _unknown() -> Response:
    return _problem(status.HTTP_404_NOT_FOUND, "Unknown feedback id.")


def _answer(correction: FeedbackCorrection) -> Response:
    return Response(
        CorrectionOutputSerializer(
            correction_data(correction.feedback, correction)
        ).data
    )


def _failed(exc: CorrectionInvalid | CorrectionRefused) -> Response:
    if isinstance(exc, CorrectionInvalid):
        return _problem(
            status.HTTP_400_BAD_REQUEST,
            f"{exc.field}: {exc.message}",
            errors=[{"field": exc.field, "message": exc.message}],
        )
    return _problem(status.HTTP_409_CONFLICT, exc.message)


class FeedbackRetractApi(APIView):
    """Retract the buyer's own feedback within its policy's retract_hours
    (buyer keys). Reports stop counting it; a retracted return frees the
    delivery's return slot and voids its credit."""

    permission_classes = [IsBuyerKey]

    @extend_schema_serializer(component_name="FeedbackRetraction")
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(
            min_length=1,
            max_length=REASON_MAX,
            help_text="Why it is retracted; kept in the feedback's history.",
        )

    @extend_schema(
        operation_id="api_v1_feedback_retract",
        request=InputSerializer,
        responses={
            200: CorrectionOutputSerializer,
            400: INVALID_DOC,
            403: OpenApiResponse(description="Not a buyer key."),
            404: UNKNOWN_DOC,
            409: CONFLICT_DOC,
        },
    )
    @idempotent
    def post(self, request: Request, feedback_id: uuid.UUID) -> Response:
        return _correct(
            request,
            feedback_id,
            self.InputSerializer,
            lambda feedback, values, api_key: feedback_retract(
                feedback=feedback, reason=values["reason"], api_key=api_key
            ),
        )


class FeedbackAmendApi(APIView):
    """Amend a conversion's revenue within its policy's retract_hours (buyer
    keys). Reports read the latest value; the history keeps every one."""

    permission_classes = [IsBuyerKey]

    @extend_schema_serializer(component_name="FeedbackAmendment")
    class InputSerializer(serializers.Serializer):
        revenue = serializers.CharField(
            max_length=40,
            allow_blank=True,
            help_text="The new revenue, a decimal of zero or more with at most two "
            'decimals, e.g. "225.00".',
        )
        reason = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=REASON_MAX,
            help_text="Why; kept in the feedback's history.",
        )

        def to_internal_value(self, data: Any) -> Any:
            # A JSON number is as good as a string: 225.5 reads "225.5".
            number = data.get("revenue") if isinstance(data, dict) else None
            if isinstance(number, int | float) and not isinstance(number, bool):
                data = {**data, "revenue": str(number)}
            return super().to_internal_value(data)

    @extend_schema(
        operation_id="api_v1_feedback_amend",
        request=InputSerializer,
        responses={
            200: CorrectionOutputSerializer,
            400: INVALID_DOC,
            403: OpenApiResponse(description="Not a buyer key."),
            404: UNKNOWN_DOC,
            409: CONFLICT_DOC,
        },
    )
    @idempotent
    def post(self, request: Request, feedback_id: uuid.UUID) -> Response:
        return _correct(
            request,
            feedback_id,
            self.InputSerializer,
            lambda feedback, values, api_key: feedback_amend(
                feedback=feedback,
                revenue=values["revenue"],
                reason=values.get("reason", ""),
                api_key=api_key,
            ),
        )


def _correct(
    request: Request,
    feedback_id: uuid.UUID,
    serializer: type[serializers.Serializer],
    correct: Callable[[Feedback, dict[str, Any], ApiKey | None], FeedbackCorrection],
) -> Response:
    """Validate the body, find the key's own feedback (404 for anyone else's)
    and apply `correct`; a refused correction answers with its reason."""
    values = _validated(serializer, request.data)
    if isinstance(values, Response):
        return values
    api_key = _principal(request).api_key
    feedback = _feedback(api_key, feedback_id)
    if feedback is None:
        return _unknown()
    try:
        correction = correct(feedback, values, api_key)
    except (CorrectionInvalid, CorrectionRefused) as exc:
        return _failed(exc)
    return _answer(correction)
