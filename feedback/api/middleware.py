"""Query and path variables the database cannot store never reach a view.

Request bodies are checked by the parsers (negotiation.py); this is the same
check for what comes in the URL, for every page: a NUL byte (`%00`) in a
filter, a search box or an id would otherwise reach PostgreSQL and fail there.
"""

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views import defaults
from rest_framework import status

from feedback.api.errors import (
    is_api_path,
    is_leadconduit_path,
    problem_body,
    problem_http_response,
)
from feedback.intake.parse import FieldError
from feedback.safetext import find_problem, find_variable_problem


class RefuseUnstorableUrlText:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        # Django decodes the path and the query with replacement characters, so
        # neither can hold a lone surrogate; a NUL arrives decoded in the path, or
        # as %00 (or itself) in the raw query string.
        query = request.META.get("QUERY_STRING", "")
        if "\x00" not in request.path_info and not ("%00" in query or "\x00" in query):
            return None
        problem = (
            find_problem(view_kwargs)
            or find_problem(list(view_args), "path")
            or find_variable_problem(request.GET.lists())
        )
        if problem is None:
            return None
        if not is_api_path(request.path_info):
            return defaults.bad_request(request, ValueError(problem.message))
        detail = FieldError(problem.field, problem.message).sentence()
        body = problem_body(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            detail,
            errors=[{"field": problem.field, "message": problem.message}],
        )
        if is_leadconduit_path(request.path_info):
            body.update(outcome="error", reason=detail)  # LeadConduit's fields too
        return problem_http_response(body)
