"""CSV feedback imports over the API: upload a file, follow it, fetch refused rows.

An upload is a job: `POST /api/v1/feedback/imports` answers 202 with the import,
which a worker processes in chunks; its progress and per-row results are read with
`GET .../imports/<id>`. The file's content is its own idempotency key (the same
bytes from the same buyer answer with the first import, 200), so the generic
Idempotency-Key machinery, which buffers the whole body in memory, is not used here.
"""

import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback.api.auth import KeyPrincipal
from feedback.api.errors import problem_response
from feedback.api.permissions import IsBuyerKey
from feedback.audit.models import AuditEntry
from feedback.audit.services import audit_export
from feedback.imports.csvfile import FAILURE, SUCCESS
from feedback.imports.models import FeedbackImport
from feedback.imports.selectors import (
    feedback_import_refused_csv,
    feedback_import_results,
    get_feedback_import_for_buyer,
)
from feedback.imports.services import feedback_import_upload
from feedback.models import Buyer, Feedback

MAX_RESULTS_PAGE = 1000


class CSVBodyParser(BaseParser):
    """A `text/csv` body is the file itself: it becomes `file`, as if it had come
    as multipart. Read up to one byte past the limit so the service can tell a
    file that is too large."""

    media_type = "text/csv"

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        limit: int = settings.LEADBACK_IMPORT_MAX_BYTES
        data = b"" if stream is None else stream.read(limit + 1)
        return {"file": SimpleUploadedFile("upload.csv", data, "text/csv")}


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if isinstance(data, str):
            return data.encode()
        # Errors keep their problem+json body whatever the client accepted.
        return json.dumps(data).encode()


def _buyer(request: Request) -> Buyer:
    principal = request.user
    if not isinstance(principal, KeyPrincipal) or principal.api_key.buyer is None:
        raise TypeError("IsBuyerKey lets only buyer keys in")  # the permission did
    return principal.api_key.buyer


class FeedbackImportOutputSerializer(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    status = serializers.ChoiceField(choices=FeedbackImport.Status.choices)
    filename = serializers.CharField()
    total_rows = serializers.IntegerField()
    processed_rows = serializers.IntegerField()
    succeeded_rows = serializers.IntegerField()
    refused_rows = serializers.IntegerField()
    percent = serializers.IntegerField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    links = serializers.SerializerMethodField()

    def get_links(self, obj: FeedbackImport) -> dict[str, str]:
        return {
            "self": reverse("api:feedback-import-detail", args=[obj.public_id]),
            "refused_csv": reverse(
                "api:feedback-import-refused-csv", args=[obj.public_id]
            ),
        }


class FeedbackImportRowSerializer(serializers.Serializer):
    row_number = serializers.IntegerField(help_text="Row in the file; header is 1.")
    outcome = serializers.ChoiceField(choices=[SUCCESS, FAILURE])
    status = serializers.CharField(help_text="accepted, refused, not_found, ...")
    reason = serializers.CharField()
    feedback_id = serializers.UUIDField(
        allow_null=True, help_text="The stored feedback, accepted or refused."
    )
    event_id = serializers.CharField()
    reference = serializers.CharField()


class FeedbackImportResultsSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Processed rows matching `outcome`.")
    offset = serializers.IntegerField()
    limit = serializers.IntegerField()
    items = FeedbackImportRowSerializer(many=True)


class FeedbackImportCreateApi(APIView):
    """Upload a CSV of feedback (multipart `file`, or the file as a text/csv body)."""

    permission_classes = [IsBuyerKey]
    parser_classes = [MultiPartParser, CSVBodyParser]

    @extend_schema_serializer(component_name="FeedbackImportUpload")
    class InputSerializer(serializers.Serializer):
        # Empty files reach the service, which names the problem.
        file = serializers.FileField(allow_empty_file=True)

    @extend_schema(
        operation_id="api_v1_feedback_imports_create",
        parameters=[
            OpenApiParameter(
                "filename",
                str,
                description="Name to show for a text/csv body (default upload.csv).",
            )
        ],
        request={
            "multipart/form-data": InputSerializer,
            "text/csv": OpenApiTypes.BINARY,
        },
        responses={
            202: FeedbackImportOutputSerializer,
            200: OpenApiResponse(
                FeedbackImportOutputSerializer,
                description="This buyer uploaded the same file before: that import.",
            ),
            413: OpenApiResponse(description="The file is larger than the limit."),
            415: OpenApiResponse(description="Neither multipart nor text/csv."),
            422: OpenApiResponse(description="The file cannot be imported, and why."),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        content = serializer.validated_data["file"]
        filename = content.name
        if request.content_type.startswith(CSVBodyParser.media_type):
            filename = request.query_params.get("filename") or filename
        principal = request.user
        try:
            feedback_import, created = feedback_import_upload(
                buyer=_buyer(request),
                user=None,
                file=content,
                filename=filename,
                channel=Feedback.Channel.CSV,
                api_key=principal.api_key
                if isinstance(principal, KeyPrincipal)
                else None,
            )
        except DjangoValidationError as exc:
            if exc.code == "too_large":
                return problem_response(
                    status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                    exc.messages[0],
                    errors=[{"field": "file", "message": exc.messages[0]}],
                )
            field = "filename" if exc.code == "filename" else "file"
            raise ValidationError({field: exc.messages}) from None
        return Response(
            FeedbackImportOutputSerializer(feedback_import).data,
            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
        )


class FeedbackImportDetailApi(APIView):
    """An import's progress and counts, and a page of its per-row results."""

    permission_classes = [IsBuyerKey]

    class FilterSerializer(serializers.Serializer):
        outcome = serializers.ChoiceField(choices=[SUCCESS, FAILURE], required=False)
        offset = serializers.IntegerField(min_value=0, default=0)
        limit = serializers.IntegerField(
            min_value=1, max_value=MAX_RESULTS_PAGE, default=100
        )

    @extend_schema_serializer(component_name="FeedbackImportDetail")
    class OutputSerializer(FeedbackImportOutputSerializer):
        results = FeedbackImportResultsSerializer()

    @extend_schema(
        operation_id="api_v1_feedback_imports_retrieve",
        parameters=[FilterSerializer],
        responses={
            200: OutputSerializer,
            404: OpenApiResponse(description="Unknown import id."),
            422: OpenApiResponse(description="Invalid outcome, offset or limit."),
        },
    )
    def get(self, request: Request, public_id: str) -> Response:
        feedback_import = get_feedback_import_for_buyer(
            buyer=_buyer(request), public_id=public_id
        )
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        outcome = query.validated_data.get("outcome")
        offset = query.validated_data["offset"]
        limit = query.validated_data["limit"]
        rows = feedback_import_results(
            feedback_import=feedback_import, outcome=outcome, offset=offset, limit=limit
        )
        count = {
            None: feedback_import.processed_rows,
            SUCCESS: feedback_import.succeeded_rows,
            FAILURE: feedback_import.refused_rows,
        }[outcome]
        body = FeedbackImportOutputSerializer(feedback_import).data
        body["results"] = {
            "count": count,
            "offset": offset,
            "limit": limit,
            "items": FeedbackImportRowSerializer(rows, many=True).data,
        }
        return Response(body)


class FeedbackImportRefusedCsvApi(APIView):
    """The refused rows of an import as CSV: original columns, row, refusal_reason."""

    permission_classes = [IsBuyerKey]
    renderer_classes = [CSVRenderer, JSONRenderer]

    @extend_schema(
        operation_id="api_v1_feedback_imports_refused_csv",
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            404: OpenApiResponse(description="Unknown import id."),
        },
    )
    def get(self, request: Request, public_id: str) -> Response:
        feedback_import = get_feedback_import_for_buyer(
            buyer=_buyer(request), public_id=public_id
        )
        text = feedback_import_refused_csv(feedback_import=feedback_import)
        audit_export(
            request=request,
            export=f"import {feedback_import.public_id} refused rows",
            via=AuditEntry.Via.API,
            rows=feedback_import.refused_rows,
            scope=feedback_import.buyer,
        )
        response = Response(text, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="{feedback_import.public_id}-refused.csv"'
        )
        return response
