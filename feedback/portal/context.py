"""Which buyer a portal user works in: one at a time, switchable when several."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from feedback.models import Buyer
from feedback.selectors import buyer_list_for_user

SESSION_KEY = "portal_buyer"


class PortalRequest(HttpRequest):
    """A request inside the portal: a logged-in user working in one buyer."""

    user: User
    buyer: Buyer
    portal_buyers: list[Buyer]


def buyer_select(request: HttpRequest, buyer: Buyer) -> None:
    """Remember the buyer the user works in for the rest of the session."""
    request.session[SESSION_KEY] = buyer.slug


def buyer_required(
    view: Callable[..., HttpResponse],
) -> Callable[..., HttpResponse]:
    """Log in first, then work in the session's buyer (or the user's first one).

    A user with no active buyer gets a page that says so: staff accounts can
    exist without one, and an inactive buyer's people cannot use the portal.
    """

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not isinstance(request.user, User):  # login_required let it through
            raise TypeError("the portal needs a logged-in user")
        buyers = list(buyer_list_for_user(user=request.user))
        if not buyers:
            return render(request, "portal/no_buyer.html", status=403)
        wanted = request.session.get(SESSION_KEY)
        buyer = next((b for b in buyers if b.slug == wanted), buyers[0])
        if buyer.slug != wanted:
            buyer_select(request, buyer)
        request.buyer = buyer  # type: ignore[attr-defined]
        request.portal_buyers = buyers  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapper
