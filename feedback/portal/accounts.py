"""Signing in, shared by the portal and the admin: the password-reset request,
throttled, and the page a locked-out login gets (django-axes counts the failures).
"""

import math
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordResetForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render

from feedback.ratelimits import client_address, hashed, rate_hit


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset request, throttled per client address and per email address.

    A client past its limit is told to wait (429): that says nothing about any
    account. An address past its limit gets no more mail, but the answer is the
    usual "check your email", whether or not an account has that address.
    """

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        usage = rate_hit(
            "password-reset-client",
            client_address(request),
            settings.LEADBACK_PASSWORD_RESET_RATE_CLIENT,
        )
        if usage.exceeded:
            response = render(
                request,
                "registration/password_reset_throttled.html",
                {"minutes": math.ceil(usage.reset_s / 60)},
                status=429,
            )
            response["Retry-After"] = str(usage.reset_s)
            return response
        return super().post(request, *args, **kwargs)

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        email = form.cleaned_data["email"].strip().lower()
        usage = rate_hit(
            "password-reset-email",
            hashed(email),
            settings.LEADBACK_PASSWORD_RESET_RATE_EMAIL,
        )
        if usage.exceeded:
            return HttpResponseRedirect(self.get_success_url())
        return super().form_valid(form)


def login_locked_out(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """django-axes' answer to a login while its user name and address are locked
    out (AXES_LOCKOUT_CALLABLE), for the portal's and the admin's login alike."""
    minutes = math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    response = render(
        request,
        "registration/locked_out.html",
        {"minutes": minutes, "login_url": request.get_full_path()},
        status=429,
    )
    # Each failed try during the lockout starts it again: this is the shortest wait.
    response["Retry-After"] = str(minutes * 60)
    return response
