"""API key authentication: `X-API-Key: <key>` or `Authorization: Bearer <key>`.

Keys are never read from the query string: URLs end up in proxy and access logs.
Every call is also counted here against its rate limit (feedback/api/throttling.py):
its key's, or its client address's when it has no valid key.
"""

import base64
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from feedback.api.throttling import throttle_anonymous, throttle_key
from feedback.models import ApiKey
from feedback.selectors import api_key_get_active
from feedback.services import api_key_mark_used


class KeyPrincipal:
    """The authenticated caller: an API key, acting for a buyer or an integration."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key

    @property
    def is_integration(self) -> bool:
        return self.api_key.scope == ApiKey.Scope.INTEGRATION

    def __str__(self) -> str:
        return f"api-key:{self.api_key.prefix}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[KeyPrincipal, ApiKey] | None:
        try:
            raw_key = self._raw_key(request)
        except exceptions.AuthenticationFailed:
            throttle_anonymous(request)
            raise
        if raw_key is None:
            throttle_anonymous(request)
            return None
        api_key = api_key_get_active(raw_key=raw_key)
        if api_key is None:
            throttle_anonymous(request)
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        throttle_key(request, api_key)
        api_key_mark_used(api_key=api_key)
        return KeyPrincipal(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'

    def _raw_key(self, request: Request) -> str | None:
        header = request.META.get("HTTP_X_API_KEY")
        if header is not None:
            return header.strip()
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Authorization header must be 'Bearer <key>'."
            )
        try:
            return parts[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Malformed API key.") from None


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "feedback.api.auth.ApiKeyAuthentication"
    name = ["ApiKeyHeader", "BearerKey"]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return [
            {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            {"type": "http", "scheme": "bearer"},
        ]


class LeadConduitKeyAuthentication(ApiKeyAuthentication):
    """Also takes the key as the password of HTTP Basic auth (any user name), the
    way CRMs integrated with LeadConduit send it, so only the host must change."""

    def _raw_key(self, request: Request) -> str | None:
        parts = authentication.get_authorization_header(request).split()
        if len(parts) == 2 and parts[0].lower() == b"basic":
            try:
                decoded = base64.b64decode(parts[1], validate=True).decode()
            except (ValueError, UnicodeError):
                raise exceptions.AuthenticationFailed(
                    "Malformed Basic credentials."
                ) from None
            return decoded.partition(":")[2].strip()
        return super()._raw_key(request)


class LeadConduitKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "feedback.api.auth.LeadConduitKeyAuthentication"
    name = ["FeedbackUrlKeyHeader", "FeedbackUrlBearerKey", "FeedbackUrlBasicKey"]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return [
            {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            {"type": "http", "scheme": "bearer"},
            {"type": "http", "scheme": "basic"},
        ]
