"""Send one OutboundRequest and bring back what happened, never raising for the network.

Requests go out through urllib3 directly, on one guarded pool manager per
thread: requests' session spent more CPU preparing each request (merging
settings, cookies, hooks) and wrapping its answer than urllib3 spends sending
it, and a worker sends hundreds a second. The connections are the same guarded
ones (sources/outbound/guard.py), the default headers requests sent are sent as
before. One guarded requests session per thread remains for zeep (SOAP's WSDL).
Redirects are not followed, the body is cut at MAX_RESPONSE_BYTES, and
`timeout_s` bounds connecting, every wait for data, and the request as a whole.
Logs carry the method, host, status and time only: URLs, headers and bodies hold
lead data and credentials.
"""

import logging
import threading
import time
from urllib.parse import urlsplit

import requests
from requests.utils import DEFAULT_ACCEPT_ENCODING
from urllib3 import BaseHTTPResponse, HTTPHeaderDict, PoolManager, Timeout
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationValueError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
)
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError

from sources.outbound.guard import (
    USER_AGENT,
    DestinationRefused,
    guarded_pool_manager,
    guarded_session,
)
from sources.outbound.types import MAX_RESPONSE_BYTES, OutboundRequest, OutboundResponse

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 64 * 1024
_local = threading.local()
# What requests sent with every request; a request's own headers win.
DEFAULT_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept-Encoding": DEFAULT_ACCEPT_ENCODING,
    "Accept": "*/*",
    "Connection": "keep-alive",
}


def shared_session() -> requests.Session:
    """This thread's guarded requests session (zeep's), created on first use."""
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = guarded_session()
    return session


def shared_pool() -> PoolManager:
    """This thread's guarded pool manager, created on first use."""
    pool: PoolManager | None = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = guarded_pool_manager()
    return pool


def network_reason(exc: BaseException, host: str) -> str:
    """A readable sentence for a failed connection, without the URL's path or query."""
    if isinstance(exc, DestinationRefused):
        return f"Refused by the SSRF guard: {exc}"
    if isinstance(exc, Urllib3Error | OSError) and not isinstance(
        exc,
        requests.RequestException,  # an OSError too
    ):
        return _urllib3_reason(exc, host)
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
        if isinstance(cause, NameResolutionError | NewConnectionError):
            return _urllib3_reason(cause, host)
        return f"The connection to {host} failed."
    if isinstance(
        exc, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema
    ):
        return "The URL cannot be sent to."
    return f"The request to {host} failed ({type(exc).__name__})."


def _urllib3_reason(exc: BaseException, host: str) -> str:
    """network_reason() for urllib3's own errors (raised as they are: no retries)."""
    if isinstance(exc, NameResolutionError):
        return f"Could not resolve {host}."
    # Before the timeouts: urllib3 makes NewConnectionError a ConnectTimeoutError.
    if isinstance(exc, NewConnectionError):
        if isinstance(exc.__cause__, ConnectionRefusedError):
            return f"{host} refused the connection."
        return f"Could not connect to {host}: {exc.__cause__ or 'no route'}."
    if isinstance(exc, ConnectTimeoutError):
        return f"Could not connect to {host} in time."
    if isinstance(exc, Urllib3TimeoutError | TimeoutError):
        return f"{host} did not answer in time."
    if isinstance(exc, Urllib3SSLError):
        return f"TLS error with {host}."
    if isinstance(exc, LocationValueError):
        return "The URL cannot be sent to."
    if isinstance(exc, ProtocolError | OSError):
        return f"The connection to {host} failed."
    return f"The request to {host} failed ({type(exc).__name__})."


def send(request: OutboundRequest, *, timeout_s: float) -> OutboundResponse:
    """Send `request`; on any network failure the response has status None and an
    error saying why (timeout, refused, DNS, SSRF guard, broken response)."""
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
    headers = HTTPHeaderDict(DEFAULT_HEADERS)
    for name, value in request.headers.items():
        headers[name] = value
    try:
        response = shared_pool().urlopen(
            request.method,
            request.url,
            body=request.body or None,
            headers=headers,
            timeout=Timeout(connect=timeout_s, read=timeout_s),
            retries=False,
            redirect=False,
            preload_content=False,
        )
    except (Urllib3Error, OSError, DestinationRefused) as exc:
        return failed(network_reason(exc, host), exc)

    try:
        body = read_raw_body(
            response, max_bytes=MAX_RESPONSE_BYTES, deadline=started + timeout_s
        )
    except (TimeoutError, Urllib3TimeoutError) as exc:
        return failed(
            f"{host} answered {response.status} but did not finish the body in time.",
            exc,
        )
    except (Urllib3Error, OSError) as exc:
        return failed(f"{host} answered {response.status} but the body broke off.", exc)
    finally:
        # A body read to its end has already handed the connection back for the
        # next request; one cut short is closed, never reused half-read.
        response.close()
        response.release_conn()
    ms = elapsed_ms()
    logger.info("%s %s -> %s in %d ms", request.method, host, response.status, ms)
    return OutboundResponse(
        status=response.status,
        # Repeated headers joined with ", ", as requests gave them.
        headers={name: response.headers[name] for name in response.headers},
        body=body,
        elapsed_ms=ms,
    )


def read_body(response: requests.Response, *, max_bytes: int, deadline: float) -> bytes:
    """read_raw_body() of a streamed requests response (zeep's WSDL)."""
    return read_raw_body(response.raw, max_bytes=max_bytes, deadline=deadline)


def read_raw_body(
    response: BaseHTTPResponse, *, max_bytes: int, deadline: float
) -> bytes:
    """Read a streamed body, at most `max_bytes` of it, before `deadline` (monotonic).

    read1() returns what one socket read gave, so a server dripping a byte at a
    time cannot hold us past the deadline (read() would wait for a full chunk).
    TimeoutError when the deadline passes first.
    """
    body = bytearray()
    while len(body) < max_bytes:
        if time.monotonic() > deadline:
            raise TimeoutError("body not finished before the deadline")
        chunk = response.read1(
            min(_CHUNK_BYTES, max_bytes - len(body)), decode_content=True
        )
        if not chunk:
            break
        body += chunk
    return bytes(body)
