"""One exception handler at the edge: every API error is RFC 9457 problem+json."""

import logging
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

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
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or _TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    response = Response(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


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
