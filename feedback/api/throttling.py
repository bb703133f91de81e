"""API rate limits: per API key, and per client address for calls without a valid key.

DRF checks throttles after authentication and permissions, so a call with a wrong
key would be refused (401) before any throttle counted it, and guessing keys would
cost nothing. The authentication counts instead (feedback/api/auth.py): every API
call passes it once, before anything else, and each call costs one cache hit.
"""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from rest_framework import exceptions
from rest_framework.request import Request

from feedback.models import ApiKey
from feedback.ratelimits import Usage, client_address, rate_hit

_PERIOD_NAMES = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


class RateLimited(exceptions.Throttled):
    """429 with Retry-After; the middleware below adds the RateLimit headers."""

    def __init__(self, usage: Usage, *, rate: tuple[int, int], who: str) -> None:
        limit, period_s = rate
        period = _PERIOD_NAMES.get(period_s, f"{period_s} seconds")
        super().__init__(
            wait=usage.reset_s,
            detail=f"Rate limit reached: {limit} requests a {period} {who}.",
        )


def throttle_key(request: Request, api_key: ApiKey) -> None:
    _count(
        request,
        scope="api-key",
        ident=str(api_key.pk),
        rate=settings.LEADBACK_API_RATE_KEY,
        who="for this API key",
    )


def throttle_anonymous(request: Request) -> None:
    _count(
        request,
        scope="api-anon",
        ident=client_address(request._request),
        rate=settings.LEADBACK_API_RATE_ANON,
        who="without a valid API key",
    )


def _count(
    request: Request, *, scope: str, ident: str, rate: tuple[int, int], who: str
) -> None:
    usage = rate_hit(scope, ident, rate)
    request._request.rate_limit = usage  # type: ignore[attr-defined]
    if usage.exceeded:
        raise RateLimited(usage, rate=rate, who=who)


class RateLimitHeadersMiddleware:
    """Tells API clients where they stand: RateLimit-Limit, -Remaining and -Reset
    on every answer to a counted request, 429s included."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        usage: Usage | None = getattr(request, "rate_limit", None)
        if usage is not None:
            for name, value in usage.headers().items():
                response[name] = value
        return response
