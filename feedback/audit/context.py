"""Who is acting, and from which address, for as long as a request or a command
runs: the admin's change log and the key services record without being handed
the request."""

import contextvars
import getpass
import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse

from feedback.audit.models import AuditEntry
from feedback.models import ApiKey
from feedback.ratelimits import client_address

# The URL namespaces of the interfaces, as config/urls.py includes them.
NAMESPACE_VIA = {
    "admin": AuditEntry.Via.ADMIN,
    "portal": AuditEntry.Via.PORTAL,
    "api": AuditEntry.Via.API,
}


@dataclass
class Scope:
    """What is known of the current request or command."""

    via: str
    request: HttpRequest | None = None
    # A command's name for itself ("manage.py import_config"); requests name
    # their user or key.
    actor: str = ""


@dataclass(frozen=True)
class Actor:
    label: str
    user: User | None = None
    api_key: ApiKey | None = None
    address: str | None = None


_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "audit_scope", default=None
)


def current_scope() -> Scope | None:
    return _scope.get()


@contextmanager
def audit_scope(*, via: str, actor: str) -> Iterator[Scope]:
    """Name the actor of what runs inside, for work outside a request (a command)."""
    scope = Scope(via=via, actor=actor)
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def command_actor(command: str) -> str:
    """A command's name for the audit log, with the account that ran it."""
    try:
        account = getpass.getuser()
    except (OSError, KeyError):  # no user name in this environment
        return f"manage.py {command}"
    return f"manage.py {command} (as {account})"


def request_actor(request: Any) -> Actor:
    """The request's user or API key and its client address.

    Takes Django's request or DRF's: DRF sets the key's principal on both.
    """
    user = getattr(request, "user", None)
    address = valid_address(client_address(request))
    api_key = getattr(user, "api_key", None)
    if isinstance(api_key, ApiKey):
        return Actor(key_label(api_key), api_key=api_key, address=address)
    if isinstance(user, User):
        return Actor(user.get_username(), user=user, address=address)
    return Actor("anonymous", address=address)


def current_actor() -> Actor:
    """The actor of the current request or command; "system" outside both."""
    scope = _scope.get()
    if scope is None:
        return Actor("system")
    if scope.request is not None:
        return request_actor(scope.request)
    return Actor(scope.actor or "system")


def current_via() -> str:
    scope = _scope.get()
    return scope.via if scope is not None else AuditEntry.Via.OTHER


def key_label(api_key: ApiKey) -> str:
    return f"API key {api_key.prefix}… ({api_key.name})"[:200]


def valid_address(address: str) -> str | None:
    # X-Forwarded-For is text a client may have written: keep only an address.
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return None


class AuditScopeMiddleware:
    """Keeps the request at hand for the audit rows written while it runs."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _scope.set(Scope(via=AuditEntry.Via.OTHER, request=request))
        try:
            return self.get_response(request)
        finally:
            _scope.reset(token)

    def process_view(
        self, request: HttpRequest, view: Any, args: Any, kwargs: Any
    ) -> None:
        scope = _scope.get()
        match = request.resolver_match
        if scope is None or match is None:
            return
        for namespace in match.namespaces:
            if namespace in NAMESPACE_VIA:
                scope.via = NAMESPACE_VIA[namespace]
                return
        if match.url_name == "lc-feedback":  # the LeadConduit URL is the API's
            scope.via = AuditEntry.Via.API
