"""Suppression lists over the API (DESIGN §11), for integration keys: check a
contact before buying a lead, add and remove contacts by hand.

Contacts are sent as plain email and phone (normalised and hashed here, never
stored) or, for the check, as the SHA-256 hex digest of the normalised value.
"""

from typing import Any

from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback.api.errors import flatten_errors, problem_response
from feedback.api.idempotency import idempotent
from feedback.api.permissions import IsIntegrationKey
from feedback.safetext import find_problem
from feedback.suppression.digests import (
    HEX_SHA256,
    Digest,
    digest,
    email_value,
    phone_value,
)
from feedback.suppression.models import SuppressionList
from feedback.suppression.selectors import (
    UnknownLists,
    suppression_check,
    suppression_list_get,
)
from feedback.suppression.services import (
    suppression_entries_add,
    suppression_entries_remove,
)

MAX_LISTS = 50
_instant = serializers.DateTimeField()
CONTACT_FIELDS = ("email", "phone", "email_sha256", "phone_sha256")
UNPROCESSABLE = status.HTTP_422_UNPROCESSABLE_ENTITY


def _problem(detail: Any) -> Response:
    errors = flatten_errors(detail)
    summary = "; ".join(
        f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors
    )
    return problem_response(UNPROCESSABLE, summary or "Invalid input.", errors=errors)


def _validated(
    serializer_class: type[serializers.Serializer], data: Any
) -> dict[str, Any] | Response:
    """The body's values, or the 422 answer naming what is wrong. Unknown
    fields are refused: a misspelt `emial` must not check nothing."""
    serializer = serializer_class(data=data)
    errors = {} if serializer.is_valid() else dict(serializer.errors)
    if isinstance(data, dict):
        for name in sorted(set(data) - set(serializer.fields)):
            errors[name] = ["Unknown field."]
    if errors:
        return _problem(errors)
    return dict(serializer.validated_data)


class ContactSerializer(serializers.Serializer):
    """An email and a phone, in plain text; at least one."""

    email = serializers.CharField(
        required=False,
        max_length=254,
        help_text="Compared trimmed and in lower case.",
    )
    phone = serializers.CharField(
        required=False,
        max_length=40,
        help_text="Compared as its digits; a North American number as its ten "
        "digits, without the leading 1.",
    )

    def validate_email(self, value: str) -> str:
        email = email_value(value)
        if not email:
            raise serializers.ValidationError("Must be an email address.")
        return email

    def validate_phone(self, value: str) -> str:
        phone = phone_value(value)
        if not phone:
            raise serializers.ValidationError("Must contain digits.")
        return phone

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        problem = find_problem(dict(attrs))
        if problem is not None:
            raise serializers.ValidationError({problem.field: problem.message})
        names = [name for name in CONTACT_FIELDS if name in self.fields]
        if not any(attrs.get(name) for name in names):
            raise serializers.ValidationError(
                f"Send at least one of {', '.join(names)}."
            )
        return attrs


_SHA256_HELP = "The SHA-256 hex digest of the normalised {}."


class DigestContactSerializer(ContactSerializer):
    """An email and a phone, in plain text or as SHA-256 digests; at least one."""

    email_sha256 = serializers.RegexField(
        HEX_SHA256,
        required=False,
        help_text=_SHA256_HELP.format("email"),
        error_messages={"invalid": "Must be 64 hexadecimal characters."},
    )
    phone_sha256 = serializers.RegexField(
        HEX_SHA256,
        required=False,
        help_text=_SHA256_HELP.format("phone"),
        error_messages={"invalid": "Must be 64 hexadecimal characters."},
    )

    def to_internal_value(self, data: Any) -> Any:
        # Digests compare in lower case, whatever case the client wrote them in.
        if isinstance(data, dict):
            data = {
                key: value.lower()
                if key in ("email_sha256", "phone_sha256") and isinstance(value, str)
                else value
                for key, value in data.items()
            }
        return super().to_internal_value(data)


def _pairs(values: dict[str, Any]) -> list[tuple[str, str]]:
    """The (field, sha256) pairs a validated contact names."""
    pairs = []
    for field in ("email", "phone"):
        if values.get(field):
            pairs.append((field, digest(field, values[field]).sha256))
        if values.get(f"{field}_sha256"):
            pairs.append((field, values[f"{field}_sha256"]))
    return pairs


def _digests(values: dict[str, Any]) -> list[Digest]:
    return [
        digest(field, values[field])
        for field in ("email", "phone")
        if values.get(field)
    ]


UNKNOWN_LIST = OpenApiResponse(description="No suppression list has this slug.")
NOT_INTEGRATION = OpenApiResponse(description="Not an integration key.")
INVALID = OpenApiResponse(
    description="A value is wrong, a field unknown, or no contact was sent; "
    "`errors` name the field."
)


class SuppressionCheckApi(APIView):
    """Whether a contact is on a suppression list (integration keys)."""

    permission_classes = [IsIntegrationKey]

    @extend_schema_serializer(component_name="SuppressionCheck")
    class InputSerializer(DigestContactSerializer):
        lists = serializers.ListField(
            child=serializers.SlugField(max_length=100),
            required=False,
            allow_empty=False,
            max_length=MAX_LISTS,
            help_text="Only these lists (slugs); default: every list.",
        )

    @extend_schema_serializer(component_name="SuppressionCheckResult")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="SuppressionHit")
        class HitSerializer(serializers.Serializer):
            list = serializers.CharField(help_text="The list's slug.")
            field = serializers.ChoiceField(choices=["email", "phone"])
            added_at = serializers.DateTimeField()

        suppressed = serializers.BooleanField()
        hits = HitSerializer(many=True)

    @extend_schema(
        operation_id="api_v1_suppression_check",
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            403: NOT_INTEGRATION,
            422: INVALID,
        },
    )
    @idempotent
    def post(self, request: Request) -> Response:
        values = _validated(self.InputSerializer, request.data)
        if isinstance(values, Response):
            return values
        try:
            hits = suppression_check(digests=_pairs(values), lists=values.get("lists"))
        except UnknownLists as exc:
            return _problem({"lists": [f"No list {slug!r}." for slug in exc.slugs]})
        # The answer's shape is OutputSerializer's (the schema); written out
        # here because building a serializer per check costs more than the lookup.
        return Response(
            {
                "suppressed": bool(hits),
                "hits": [
                    {
                        "list": hit.list,
                        "field": hit.field,
                        "added_at": _instant.to_representation(hit.added_at),
                    }
                    for hit in hits
                ],
            }
        )


class SuppressionEntriesApi(APIView):
    """Add a contact to a list, or remove it (integration keys)."""

    permission_classes = [IsIntegrationKey]

    @extend_schema_serializer(component_name="SuppressionEntryAdd")
    class AddSerializer(ContactSerializer):
        pass

    @extend_schema_serializer(component_name="SuppressionEntryRemove")
    class RemoveSerializer(DigestContactSerializer):
        pass

    @extend_schema_serializer(component_name="SuppressionEntriesChanged")
    class OutputSerializer(serializers.Serializer):
        list = serializers.CharField(help_text="The list's slug.")
        added = serializers.IntegerField(
            required=False, help_text="Entries written (one per field sent)."
        )
        removed = serializers.IntegerField(
            required=False, help_text="Entries that were on the list."
        )

    def _list(self, slug: str) -> SuppressionList | Response:
        found = suppression_list_get(slug=slug)
        if found is None:
            return problem_response(
                status.HTTP_404_NOT_FOUND, f"No suppression list {slug!r}."
            )
        return found

    @extend_schema(
        operation_id="api_v1_suppression_entries_add",
        request=AddSerializer,
        responses={
            201: OutputSerializer,
            403: NOT_INTEGRATION,
            404: UNKNOWN_LIST,
            422: INVALID,
        },
    )
    @idempotent
    def post(self, request: Request, slug: str) -> Response:
        values = _validated(self.AddSerializer, request.data)
        if isinstance(values, Response):
            return values
        found = self._list(slug)
        if isinstance(found, Response):
            return found
        added = suppression_entries_add(
            suppression_list=found, digests=_digests(values)
        )
        return Response(
            self.OutputSerializer({"list": found.slug, "added": added}).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        operation_id="api_v1_suppression_entries_remove",
        request=RemoveSerializer,
        responses={
            200: OutputSerializer,
            403: NOT_INTEGRATION,
            404: UNKNOWN_LIST,
            422: INVALID,
        },
    )
    def delete(self, request: Request, slug: str) -> Response:
        values = _validated(self.RemoveSerializer, request.data)
        if isinstance(values, Response):
            return values
        found = self._list(slug)
        if isinstance(found, Response):
            return found
        removed = suppression_entries_remove(
            suppression_list=found, digests=_pairs(values)
        )
        return Response(
            self.OutputSerializer({"list": found.slug, "removed": removed}).data
        )
