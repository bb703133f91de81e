"""Batch file transports (DESIGN §5.6): FTP, FTPS, SFTP and email.

Each transport puts one finished file at its destination and raises
TransportError on failure, `permanent` when trying again cannot help (a refused
login, an unknown host key, a name taken by another file). Every connection is
opened through `guarded_connection`, which resolves the host, checks each address
against the SSRF guard and connects to the checked address only.
"""

import hashlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from sources.outbound.guard import DestinationRefused, create_connection


class TransportError(Exception):
    """A file could not be delivered; `permanent` when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


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
