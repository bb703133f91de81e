"""`Idempotency-Key` for every POST: a retry with the same key and body gets the
stored response (with `Idempotency-Replayed: true`) instead of a second write.

The answer is stored as the bytes sent, so a replay is identical to the first
answer whatever the retry's `Accept`. An answer given before anything was done
(`NotExecutedResponse`: an unknown event, invalid input) is not stored, nor is
one that never reached the view (401, 406, a parse error): a retry after the
cause is fixed runs afresh.
"""

import hashlib
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.http import HttpResponse, HttpResponseBase
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback.api.auth import KeyPrincipal
from feedback.api.errors import problem_response
from feedback.services import (
    IdempotencyKeyInFlightError,
    IdempotencyKeyReusedError,
    StoredResponse,
    idempotent_call,
)

HEADER = "Idempotency-Key"
META_KEY = "HTTP_IDEMPOTENCY_KEY"
MAX_KEY_LENGTH = 255

View = TypeVar("View", bound=APIView)
Handler = Callable[..., HttpResponseBase]


class NotExecutedResponse(Response):
    """An answer given before the request changed anything: not kept for replay."""


def owner_of(request: Request) -> str:
    """Keys are scoped to the caller's owner: a buyer's keys share one scope."""
    user = request.user
    if isinstance(user, KeyPrincipal):
        api_key = user.api_key
        if api_key.buyer_id is not None:
            return f"buyer:{api_key.buyer_id}"
        return f"key:{api_key.pk}"
    return f"user:{getattr(user, 'pk', '')}"


def request_fingerprint(request: Request) -> str:
    digest = hashlib.sha256()
    for part in (
        request.method or "",
        request.path,
        request.META.get("QUERY_STRING", ""),
        request.content_type or "",
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(request.body)
    return digest.hexdigest()


def idempotent(method: Handler) -> Handler:
    """Decorate an APIView's `post` to honour the Idempotency-Key header."""

    @wraps(method)
    def wrapper(
        view: APIView, request: Request, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        # From META: request.headers would build a map of every header first.
        key = request.META.get(META_KEY)
        if key is None:
            return method(view, request, *args, **kwargs)
        key = key.strip()
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            return problem_response(
                status.HTTP_400_BAD_REQUEST,
                f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable characters.",
                errors=[{"field": HEADER, "message": "Invalid key."}],
            )
        fingerprint = request_fingerprint(request)  # reads the body before parsing

        def handler() -> StoredResponse:
            response = method(view, request, *args, **kwargs)
            content, content_type = rendered(view, request, response)
            return StoredResponse(
                response.status_code,
                content,
                content_type,
                keep=not isinstance(response, NotExecutedResponse),
            )

        try:
            stored = idempotent_call(
                owner=owner_of(request),
                key=key,
                request_hash=fingerprint,
                handler=handler,
            )
        except IdempotencyKeyReusedError as exc:
            return problem_response(
                status.HTTP_422_UNPROCESSABLE_ENTITY,
                str(exc),
                errors=[{"field": HEADER, "message": str(exc)}],
            )
        except IdempotencyKeyInFlightError as exc:
            return problem_response(status.HTTP_409_CONFLICT, str(exc))
        content, content_type = stored.content, stored.content_type
        if content is None:
            content, content_type = rendered(
                view,
                request,
                Response(
                    stored.data,
                    status=stored.status_code,
                    content_type=content_type or None,
                ),
            )
        response = HttpResponse(
            content, status=stored.status_code, content_type=content_type or None
        )
        if stored.replayed:
            response["Idempotency-Replayed"] = "true"
        return response

    return wrapper


def rendered(
    view: APIView, request: Request, response: HttpResponseBase
) -> tuple[bytes, str]:
    """The body and content type of `response` as they go on the wire: rendered
    now, the way APIView.finalize_response and Django would render it later."""
    if isinstance(response, Response):
        response.accepted_renderer = request.accepted_renderer
        response.accepted_media_type = request.accepted_media_type
        # DRF sets renderer_context on its responses; the stubs do not declare it.
        response.renderer_context = view.get_renderer_context()  # type: ignore[attr-defined]
        response.render()
    if not isinstance(response, HttpResponse):
        raise TypeError("an idempotent view answers with a body, not a stream")
    return response.content, response.get("Content-Type", "")
