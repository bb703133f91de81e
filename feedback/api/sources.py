"""Source status over the API (DESIGN §11), for integration keys: read a
source's status, pause it and resume it.

The status tells the lead distribution system whether to keep buying from a
source; Leadback itself still receives and forwards its feedback. Pausing a
paused source (or resuming an active one) changes nothing and answers 200
with the status as it is.
"""

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
from feedback.models import ApiKey
from feedback.sourcestatus.selectors import source_get
from feedback.sourcestatus.services import (
    MAX_REASON_LENGTH,
    source_pause,
    source_resume,
)
from sources.models import Source


class SourceStatusOutputSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=Source.Status.choices)
    paused_reason = serializers.CharField(
        allow_null=True, help_text="Why it was paused; null while active."
    )
    paused_at = serializers.DateTimeField(
        allow_null=True, help_text="When it was paused; null while active."
    )


def status_output(source: Source) -> dict[str, Any]:
    paused = source.status == Source.Status.PAUSED
    return dict(
        SourceStatusOutputSerializer(
            {
                "slug": source.slug,
                "name": source.name,
                "status": source.status,
                "paused_reason": source.paused_reason if paused else None,
                "paused_at": source.paused_at if paused else None,
            }
        ).data
    )


def _problem(code: int, detail: str, **extra: Any) -> Response:
    body = problem_body(code, detail, **extra)
    return NotExecutedResponse(body, status=code, content_type=PROBLEM_CONTENT_TYPE)


def _unknown_source() -> Response:
    return _problem(404, "Unknown source.")


def _api_key(request: Request) -> ApiKey | None:
    principal = request.user
    return principal.api_key if isinstance(principal, KeyPrincipal) else None


UNKNOWN_DOC = OpenApiResponse(description="No source has this slug.")
FORBIDDEN_DOC = OpenApiResponse(description="Not an integration key.")


class SourceDetailApi(APIView):
    """A source's status: whether the distribution system should buy from it."""

    permission_classes = [IsIntegrationKey]

    @extend_schema(
        operation_id="api_v1_sources_retrieve",
        responses={
            200: SourceStatusOutputSerializer,
            403: FORBIDDEN_DOC,
            404: UNKNOWN_DOC,
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        source = source_get(slug=slug)
        if source is None:
            return _unknown_source()
        return Response(status_output(source))


class SourcePauseApi(APIView):
    """Pause a source; it keeps receiving and forwarding feedback."""

    permission_classes = [IsIntegrationKey]

    @extend_schema_serializer(component_name="SourcePause")
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(
            max_length=MAX_REASON_LENGTH,
            help_text="Why; shown in the admin and sent in the source.paused webhook.",
        )

    @extend_schema(
        operation_id="api_v1_sources_pause",
        request=InputSerializer,
        responses={
            200: SourceStatusOutputSerializer,
            400: OpenApiResponse(description="No reason, or one that is too long."),
            403: FORBIDDEN_DOC,
            404: UNKNOWN_DOC,
        },
    )
    @idempotent
    def post(self, request: Request, slug: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        if not serializer.is_valid():
            errors = flatten_errors(serializer.errors)
            summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
            return _problem(400, summary, errors=errors)
        source = source_get(slug=slug)
        if source is None:
            return _unknown_source()
        source_pause(
            source=source,
            reason=serializer.validated_data["reason"],
            actor=None,
            via="api",
            api_key=_api_key(request),
        )
        return Response(status_output(source))


class SourceResumeApi(APIView):
    """Resume a paused source."""

    permission_classes = [IsIntegrationKey]

    @extend_schema(
        operation_id="api_v1_sources_resume",
        request=None,
        responses={
            200: SourceStatusOutputSerializer,
            403: FORBIDDEN_DOC,
            404: UNKNOWN_DOC,
        },
    )
    @idempotent
    def post(self, request: Request, slug: str) -> Response:
        source = source_get(slug=slug)
        if source is None:
            return _unknown_source()
        source_resume(source=source, actor=None, via="api", api_key=_api_key(request))
        return Response(status_output(source))
