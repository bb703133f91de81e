"""Transports: how a notification leaves Leadback, one class per way.

Outbound methods (query, form, json, xml, soap) turn a config's mapped fields
into an HTTP request; batch transports (ftp, ftps, sftp, email, s3) put a
finished file at a destination. Each class owns its config checks, its
building and its errors; `registry.py` maps names to classes, and callers look
transports up there instead of branching on names.

Batch transports raise TransportError, `permanent` when trying again cannot
help (a refused login, an unknown host key, a name taken by another file).
Every socket they open goes through the SSRF guard, which resolves the host,
checks each address and connects to the checked address only.
"""

import hashlib
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from sources.outbound.guard import (
    DestinationRefused,
    create_connection,
    destination_problem,
)
from sources.outbound.payloads import BuildError, check_url
from sources.outbound.types import HTTP_METHODS, OutboundRequest, RequestSpec

if TYPE_CHECKING:
    from zeep import Client

    from sources.models import FeedbackConfig

# (field name, message) for what is wrong with a config.
ConfigProblems = list[tuple[str, str]]


class TransportError(Exception):
    """A file could not be delivered; `permanent` when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


# -- Outbound methods --------------------------------------------------------------


class HttpTransport:
    """An outbound method: the HTTP request a config's mapped fields make.

    `build` gives the request before the shared parts (configured headers,
    authentication, webhook-id, signature), which transports/building.py adds.
    """

    name: ClassVar[str]
    # The HTTP method it always uses, whatever the config says; None: the config's.
    http_method: ClassVar[str | None] = None
    content_type: ClassVar[str | None] = None
    # Whether it carries WS-Security authentication (in a SOAP header).
    wsse: ClassVar[bool] = False

    def __init__(self, spec: RequestSpec) -> None:
        self.spec = spec

    @classmethod
    def config_problems(cls, config: "FeedbackConfig") -> ConfigProblems:
        """What this method needs of a config beyond the checks all share."""
        return []

    def build(
        self,
        fields: Sequence[tuple[str, str]],
        *,
        now: datetime,
        soap_client: "Client | None" = None,
    ) -> OutboundRequest:
        method = self.request_method()
        url = self.target_url(check_url(self.spec.url), fields)
        headers = {"Content-Type": self.content_type} if self.content_type else {}
        return OutboundRequest(
            method=method, url=url, headers=headers, body=self.body(fields)
        )

    def request_method(self) -> str:
        method = (self.spec.http_method or self.http_method or "POST").upper()
        if method not in HTTP_METHODS:
            raise BuildError(f"HTTP method {self.spec.http_method!r} is not supported.")
        return method

    def target_url(self, url: str, fields: Sequence[tuple[str, str]]) -> str:
        return url

    def body(self, fields: Sequence[tuple[str, str]]) -> bytes:
        return b""


# -- Batch transports --------------------------------------------------------------


@dataclass(frozen=True)
class BatchFile:
    """A finished file, exactly as every try sends it."""

    name: str
    content: bytes
    # Stable across tries: email's Message-ID, so mail systems can drop a copy.
    message_id: str = ""
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", hashlib.sha256(self.content).hexdigest())


# Called just before a file is renamed into place: False when another worker has
# taken the run over meanwhile (our lease ran out), and this one must stand back.
StillMine = Callable[[], bool]


class BatchTransport:
    """A way a batch file reaches a source (DESIGN §5.6), set up from a config."""

    name: ClassVar[str]
    default_port: ClassVar[int | None] = None

    def __init__(self, config: "FeedbackConfig", *, timeout_s: float) -> None:
        self.config = config
        self.timeout_s = timeout_s

    @classmethod
    def config_problems(cls, config: "FeedbackConfig") -> ConfigProblems:
        """What this transport needs of a config's batch_* fields."""
        return []

    def describe(self) -> str:
        """Where files go, without secrets, for the attempt log."""
        raise NotImplementedError

    def put(self, file: BatchFile, *, still_mine: StillMine | None = None) -> str:
        """Deliver `file`; returns what happened, in a sentence for the attempt
        log, or raises TransportError. Network I/O: never inside a transaction."""
        raise NotImplementedError


def destination_problems(field: str, host: str) -> ConfigProblems:
    """The SSRF guard's refusal of a configured destination host, if any: checked
    when a config is saved, with the rules applied when sending."""
    problem = destination_problem(host)
    return [(field, f"Refused by the SSRF guard: {problem}")] if problem else []


def server_host_problems(config: "FeedbackConfig") -> ConfigProblems:
    """The checks on `batch_host` of a transport that connects to a server."""
    if not config.batch_host.strip():
        return [("batch_host", "Enter the server's host name.")]
    if "/" in config.batch_host or ":" in config.batch_host.strip("[]"):
        return [
            (
                "batch_host",
                "Enter a host name only; the port and directory have their own fields.",
            )
        ]
    return destination_problems("batch_host", config.batch_host)


def guarded_connection(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to `host`, on an address the SSRF guard allows."""
    try:
        return create_connection((host, port), timeout)
    except DestinationRefused as exc:
        raise TransportError(f"Refused by the SSRF guard: {exc}") from None
    except socket.gaierror:
        raise TransportError(f"{host} does not resolve to an address.") from None
    except TimeoutError:
        raise TransportError(f"Could not connect to {host}:{port} in time.") from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise TransportError(f"Could not connect to {host}:{port}: {reason}.") from None


def lease_check(still_mine: StillMine | None) -> None:
    if still_mine is not None and not still_mine():
        raise TransportError(
            "Another worker took this run over before the file was put in place."
        )
