"""One exception handler at the edge: every API error is RFC 9457 problem+json.

The 400 and 404 handlers answer problem+json too for the API's URLs, so a request
refused before any view runs (an unknown URL, too many query variables) gets the
same kind of answer as one refused by a view.
"""

import json
import logging
from typing import Any

from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response

from feedback.intake.parse import FieldError
from feedback.safetext import TextProblem
from feedback.services import ConflictError

PROBLEM_CONTENT_TYPE = "application/problem+json"
# How long a client is asked to wait when the database is out of reach.
UNAVAILABLE_RETRY_AFTER_S = 5

logger = logging.getLogger(__name__)

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Validation failed",
    429: "Too many requests",
    503: "Service unavailable",
}


class InputRefused(exceptions.APIException):
    """Input refused at the edge, before any view logic: text the database cannot
    store (422) or a document nested too deep (400). Names the field."""

    def __init__(self, field: str, message: str, *, status_code: int = 422) -> None:
        self.status_code = status_code
        self.field = field
        self.message = message
        super().__init__(FieldError(field, message).sentence())

    @classmethod
    def from_problem(cls, problem: TextProblem) -> "InputRefused":
        return cls(
            problem.field,
            problem.message,
            status_code=status.HTTP_400_BAD_REQUEST
            if problem.too_deep
            else status.HTTP_422_UNPROCESSABLE_ENTITY,
        )

    def errors(self) -> list[dict[str, str]]:
        return [{"field": self.field, "message": self.message}]


# Django refuses these while reading the request (DATA_UPLOAD_MAX_* settings).
REQUEST_LIMIT_STATUS: dict[type[SuspiciousOperation], int] = {
    RequestDataTooBig: status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    TooManyFieldsSent: status.HTTP_400_BAD_REQUEST,
    TooManyFilesSent: status.HTTP_400_BAD_REQUEST,
}


def request_limit_status(exc: BaseException | None) -> int | None:
    for kind, code in REQUEST_LIMIT_STATUS.items():
        if isinstance(exc, kind):
            return code
    return None


def flatten_errors(detail: Any, path: str = "") -> list[dict[str, str]]:
    """Turn DRF's nested error detail into [{"field": "lead.email", "message": ...}]."""
    if isinstance(detail, dict):
        errors: list[dict[str, str]] = []
        for key, value in detail.items():
            field = path if key == "non_field_errors" else _join(path, str(key))
            errors.extend(flatten_errors(value, field))
        return errors
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return [{"field": path, "message": str(item)} for item in detail]
        errors = []
        for index, item in enumerate(detail):
            if item:
                errors.extend(flatten_errors(item, _join(path, str(index))))
        return errors
    return [{"field": path, "message": str(detail)}]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def problem_response(
    status_code: int,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = problem_body(status_code, detail, errors=errors)
    if title:
        body["title"] = title
    response = Response(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def problem_body(
    status_code: int, detail: str, *, errors: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return body


def problem_http_response(body: dict[str, Any]) -> HttpResponse:
    """A problem outside DRF's rendering: for Django's handlers, the middleware,
    and answers that must be JSON whatever the client's Accept header says."""
    return HttpResponse(
        json.dumps(body),
        status=body["status"],
        content_type=PROBLEM_CONTENT_TYPE,
    )


def is_leadconduit_path(path: str) -> bool:
    return path.rstrip("/") == "/feedback"


def is_api_path(path: str) -> bool:
    """The JSON API and the LeadConduit-compatible URL."""
    return path.startswith("/api/") or is_leadconduit_path(path)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: problem+json on the API (413 for a body over the limit)."""
    if not is_api_path(request.path_info):
        return defaults.bad_request(request, exception)
    code = request_limit_status(exception) or status.HTTP_400_BAD_REQUEST
    return problem_http_response(problem_body(code, str(exception) or "Bad request."))


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: problem+json for unknown URLs under /api/, HTML elsewhere."""
    if not request.path_info.startswith("/api/"):
        return defaults.page_not_found(request, exception)
    return problem_http_response(
        problem_body(status.HTTP_404_NOT_FOUND, "No such URL in the API.")
    )


def validation_problem(detail: Any) -> Response:
    errors = flatten_errors(detail)
    summary = "; ".join(
        f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors
    )
    return problem_response(
        status.HTTP_422_UNPROCESSABLE_ENTITY, summary or "Invalid input.", errors=errors
    )


def problem_exception_handler(
    exc: Exception, context: dict[str, Any]
) -> Response | None:
    if isinstance(exc, InputRefused):
        return problem_response(exc.status_code, str(exc.detail), errors=exc.errors())
    limit_status = request_limit_status(exc)
    if limit_status is not None:
        return problem_response(limit_status, str(exc))
    if isinstance(exc, exceptions.ValidationError):
        return validation_problem(exc.detail)
    if isinstance(exc, DjangoValidationError):
        return validation_problem(
            exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    if isinstance(exc, ConflictError):
        errors = [{"field": exc.field, "message": exc.message}] if exc.field else None
        return problem_response(status.HTTP_409_CONFLICT, exc.message, errors=errors)
    if isinstance(exc, Http404):
        return problem_response(status.HTTP_404_NOT_FOUND, "Not found.")
    if isinstance(exc, OperationalError | InterfaceError):
        # The database is restarting or out of reach: the client's answer is to
        # retry (with its Idempotency-Key, if it sent one), not a server bug.
        logger.warning("database unavailable: %s", type(exc).__name__)
        return problem_response(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "The database is unavailable. Retry shortly.",
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
        )

    # Imported here: loading rest_framework.views loads DEFAULT_PARSER_CLASSES,
    # whose parsers raise InputRefused from this module.
    from rest_framework.views import exception_handler

    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    headers = {
        name: value
        for name, value in response.items()
        if name in {"WWW-Authenticate", "Allow", "Retry-After"}
    }
    message = (
        str(exc.detail)
        if not isinstance(exc.detail, dict | list)
        else "Request refused."
    )
    return problem_response(response.status_code, message, headers=headers)
