"""Send one OutboundRequest and bring back what happened, never raising for the network.

One guarded session per thread (requests sessions are not thread-safe, and each
keeps its own connection pool). Redirects are not followed, the body is cut at
MAX_RESPONSE_BYTES, and `timeout_s` bounds connecting, every wait for data, and
the request as a whole. Logs carry the method, host, status and time only: URLs,
headers and bodies hold lead data and credentials.
"""

import logging
import threading
import time
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import (
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
)

from sources.outbound.guard import DestinationRefused, guarded_session
from sources.outbound.types import MAX_RESPONSE_BYTES, OutboundRequest, OutboundResponse

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 64 * 1024
_local = threading.local()


def shared_session() -> requests.Session:
    """This thread's guarded session, created on first use."""
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = guarded_session()
    return session


def network_reason(exc: BaseException, host: str) -> str:
    """A readable sentence for a failed connection, without the URL's path or query."""
    if isinstance(exc, DestinationRefused):
        return f"Refused by the SSRF guard: {exc}"
    if isinstance(exc, requests.ConnectTimeout):
        return f"Could not connect to {host} in time."
    if isinstance(exc, requests.Timeout):
        return f"{host} did not answer in time."
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error with {host}."
    if isinstance(exc, requests.ConnectionError):
        # requests wraps urllib3's error, whose text repeats the URL; dig out the cause.
        cause = exc.args[0] if exc.args else None
        cause = getattr(cause, "reason", cause)
        if isinstance(cause, NameResolutionError):
            return f"Could not resolve {host}."
        if isinstance(cause, NewConnectionError):
            if isinstance(cause.__cause__, ConnectionRefusedError):
                return f"{host} refused the connection."
            return f"Could not connect to {host}: {cause.__cause__ or 'no route'}."
        return f"The connection to {host} failed."
    if isinstance(
        exc, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema
    ):
        return "The URL cannot be sent to."
    return f"The request to {host} failed ({type(exc).__name__})."


def send(
    request: OutboundRequest,
    *,
    timeout_s: float,
    session: requests.Session | None = None,
) -> OutboundResponse:
    """Send `request`; on any network failure the response has status None and an
    error saying why (timeout, refused, DNS, SSRF guard, broken response)."""
    session = session or shared_session()
    host = urlsplit(request.url).hostname or ""
    started = time.monotonic()

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    def failed(reason: str, exc: BaseException) -> OutboundResponse:
        ms = elapsed_ms()
        logger.info(
            "%s %s -> %s after %d ms", request.method, host, type(exc).__name__, ms
        )
        return OutboundResponse(status=None, error=reason, elapsed_ms=ms)

    if urlsplit(request.url).scheme not in ("http", "https") or not host:
        return failed("Only http and https URLs can be sent to.", ValueError())
    try:
        response = session.request(
            request.method,
            request.url,
            headers=request.headers,
            data=request.body or None,
            timeout=timeout_s,
            allow_redirects=False,
            stream=True,
        )
    except (requests.RequestException, DestinationRefused) as exc:
        return failed(network_reason(exc, host), exc)

    with response:
        try:
            body = read_body(
                response, max_bytes=MAX_RESPONSE_BYTES, deadline=started + timeout_s
            )
        except (TimeoutError, ReadTimeoutError) as exc:
            return failed(
                f"{host} answered {response.status_code} but did not finish the "
                "body in time.",
                exc,
            )
        except (Urllib3Error, requests.RequestException, OSError) as exc:
            return failed(
                f"{host} answered {response.status_code} but the body broke off.", exc
            )
    ms = elapsed_ms()
    logger.info("%s %s -> %s in %d ms", request.method, host, response.status_code, ms)
    return OutboundResponse(
        status=response.status_code,
        headers=dict(response.headers.items()),
        body=body,
        elapsed_ms=ms,
    )


def read_body(response: requests.Response, *, max_bytes: int, deadline: float) -> bytes:
    """Read a streamed body, at most `max_bytes` of it, before `deadline` (monotonic).

    read1() returns what one socket read gave, so a server dripping a byte at a
    time cannot hold us past the deadline (read() would wait for a full chunk).
    TimeoutError when the deadline passes first.
    """
    body = bytearray()
    while len(body) < max_bytes:
        if time.monotonic() > deadline:
            raise TimeoutError("body not finished before the deadline")
        chunk = response.raw.read1(
            min(_CHUNK_BYTES, max_bytes - len(body)), decode_content=True
        )
        if not chunk:
            break
        body += chunk
    return bytes(body)
