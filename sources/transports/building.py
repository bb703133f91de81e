"""Build the exact HTTP request for one notification from a config and its fields.

Pure functions over plain values: the model layer turns a FeedbackConfig into a
`RequestSpec` and renders its mappings into `(target, value)` pairs; what comes
back is the `OutboundRequest` that is previewed in the admin and sent as is.

The method's own part (URL, body, content type; the envelope for SOAP) is built
by its transport class (sources/transports/, looked up by name); this module
adds what every method shares: configured headers, authentication, the
`webhook-id` and the Standard Webhooks signature. How targets are read is in
payloads.py.
"""

import base64
import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from requests.structures import CaseInsensitiveDict

from sources.outbound import signing
from sources.outbound.payloads import BuildError
from sources.outbound.types import Auth, OutboundRequest, RequestSpec
from sources.transports.registry import http_transport

if TYPE_CHECKING:
    from zeep import Client

AUTH_TYPES = ("none", "basic", "bearer", "header", "wsse")

# Set by the HTTP client or by the signing; a configured header may not replace them.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

__all__ = ["Auth", "BuildError", "RequestSpec", "build_request", "validate_headers"]


def build_request(
    spec: RequestSpec,
    fields: Sequence[tuple[str, str]],
    *,
    message_id: str,
    now: datetime,
    soap_client: "Client | None" = None,
) -> OutboundRequest:
    """The request `spec` makes of `fields`, or BuildError.

    `message_id` is the notification's stable id, always sent as `webhook-id`;
    `now` (timezone-aware) stamps the signature and WS-Security. SOAP needs the
    loaded WSDL: pass `soap.soap_client(spec.url, ...)` as `soap_client`.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware.")
    transport = http_transport(spec.method)
    if spec.auth.type not in AUTH_TYPES:
        raise BuildError(f"Unknown authentication type {spec.auth.type!r}.")
    if spec.auth.type == "wsse" and not transport.wsse:
        raise BuildError("WS-Security authentication needs the SOAP method.")

    base = transport(spec).build(fields, now=now, soap_client=soap_client)
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(base.headers)
    _add_configured_headers(headers, spec.headers)
    _add_auth(headers, spec.auth, configured=spec.headers)
    headers["webhook-id"] = _header_value("webhook-id", message_id)
    if spec.signing_secret:
        try:
            signature = signing.sign(
                spec.signing_secret, message_id, int(now.timestamp()), base.body
            )
        except signing.SigningSecretError as exc:
            raise BuildError(str(exc)) from None
        headers.update(signature)
    return OutboundRequest(
        method=base.method, url=base.url, headers=dict(headers.items()), body=base.body
    )


def validate_headers(headers: dict[str, str]) -> None:
    """BuildError unless `headers` may be configured (names, values, reserved)."""
    _add_configured_headers(CaseInsensitiveDict(), headers)


# -- Headers and auth ----------------------------------------------------------


def _header_value(name: str, value: str) -> str:
    if _BAD_VALUE.search(value):
        raise BuildError(f"Header {name}: line breaks and control characters.")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise BuildError(
            f"Header {name}: only Latin-1 characters can be sent."
        ) from None
    return value.strip()


def _add_configured_headers(
    headers: CaseInsensitiveDict[str], configured: dict[str, str]
) -> None:
    for name, value in configured.items():
        if not _TOKEN.match(name):
            raise BuildError(f"{name!r} is not a valid header name.")
        if name.lower() in RESERVED_HEADERS:
            raise BuildError(
                f"Header {name} is set by Leadback and cannot be configured."
            )
        headers[name] = _header_value(name, str(value))


def _add_auth(
    headers: CaseInsensitiveDict[str], auth: Auth, *, configured: dict[str, str]
) -> None:
    if auth.type == "basic":
        credentials = f"{auth.username}:{auth.password}".encode()
        name, value = "Authorization", "Basic " + base64.b64encode(credentials).decode()
    elif auth.type == "bearer":
        name, value = "Authorization", f"Bearer {auth.token}"
    elif auth.type == "header":
        if not _TOKEN.match(auth.name):
            raise BuildError(f"{auth.name!r} is not a valid header name.")
        if auth.name.lower() in RESERVED_HEADERS:
            raise BuildError(f"Header {auth.name} is set by Leadback.")
        name, value = auth.name, auth.value
    else:  # none, or wsse (in the SOAP envelope)
        return
    if any(existing.lower() == name.lower() for existing in configured):
        raise BuildError(f"Header {name} is set both by the headers and the auth.")
    headers[name] = _header_value(name, value)
