"""Erasure over the API (DESIGN §12), for integration keys: erase a person's
data by email, phone or lead id and answer with the receipt."""

from typing import Any

from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback.api.auth import KeyPrincipal
from feedback.api.errors import PROBLEM_CONTENT_TYPE, flatten_errors, problem_body
from feedback.api.idempotency import NotExecutedResponse, idempotent
from feedback.api.permissions import IsIntegrationKey
from feedback.privacy.models import Erasure
from feedback.privacy.services import (
    MAX_IDENTIFIER_CHARS,
    ErasureInputError,
    erasure_request_clean,
    person_erase,
)


class ErasureOutputSerializer(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    leads = serializers.IntegerField(help_text="How many leads were erased.")
    counts = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Rows and files changed, by kind.",
    )
    notices = serializers.IntegerField(help_text="Erasure notices queued to sources.")
    suppression_list = serializers.CharField()
    created_at = serializers.DateTimeField()


def _problem(code: int, detail: str, **extra: Any) -> Response:
    body = problem_body(code, detail, **extra)
    return NotExecutedResponse(body, status=code, content_type=PROBLEM_CONTENT_TYPE)


class ErasureCreateApi(APIView):
    """Erase a person's data; the receipt keeps digests, never the text."""

    permission_classes = [IsIntegrationKey]

    @extend_schema_serializer(component_name="ErasureRequest")
    class InputSerializer(serializers.Serializer):
        email = serializers.CharField(
            required=False, allow_blank=True, max_length=MAX_IDENTIFIER_CHARS
        )
        phone = serializers.CharField(
            required=False, allow_blank=True, max_length=MAX_IDENTIFIER_CHARS
        )
        lead_id = serializers.CharField(
            required=False, allow_blank=True, max_length=MAX_IDENTIFIER_CHARS
        )
        suppression_list = serializers.SlugField(
            required=False,
            allow_blank=True,
            help_text="Also add the person's digests to this suppression list.",
        )

    @extend_schema(
        operation_id="api_v1_privacy_erasures_create",
        request=InputSerializer,
        responses={
            201: ErasureOutputSerializer,
            400: OpenApiResponse(
                description="No identifier, a malformed one, or an unknown list."
            ),
            403: OpenApiResponse(description="Not an integration key."),
        },
    )
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        if not serializer.is_valid():
            errors = flatten_errors(serializer.errors)
            summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
            return _problem(400, summary, errors=errors)
        data = serializer.validated_data
        principal = request.user
        api_key = principal.api_key if isinstance(principal, KeyPrincipal) else None
        try:
            erasure = person_erase(
                request=erasure_request_clean(
                    email=data.get("email", ""),
                    phone=data.get("phone", ""),
                    lead_id=data.get("lead_id", ""),
                ),
                via=Erasure.Via.API,
                api_key=api_key,
                requested_by=f"API key {api_key.name}" if api_key else "API",
                suppression_list=data.get("suppression_list", ""),
            )
        except ErasureInputError as exc:
            return _problem(400, str(exc))
        return Response(ErasureOutputSerializer(erasure).data, status=201)
