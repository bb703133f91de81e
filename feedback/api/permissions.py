from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from feedback.api.auth import KeyPrincipal


class IsIntegrationKey(BasePermission):
    """Only the lead distribution system's keys record delivery events."""

    message = "This endpoint needs an integration API key; buyer keys cannot use it."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return isinstance(user, KeyPrincipal) and user.is_integration


class IsApiKey(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, KeyPrincipal)


class IsBuyerKey(BasePermission):
    """Feedback is sent and read with a buyer's key."""

    message = "This endpoint needs a buyer API key."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return isinstance(user, KeyPrincipal) and not user.is_integration
