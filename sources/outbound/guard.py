"""The SSRF guard (DESIGN §5.4): outbound connections never reach internal addresses.

A destination is checked after DNS, on the very address the socket connects to, so
a name that resolves to a public address when checked and to 127.0.0.1 when used
(DNS rebinding) cannot slip through. Loopback, private, link-local, multicast,
reserved, unspecified and other non-global addresses are refused, as are IPv6
addresses that lead to one (IPv4-mapped, 6to4, NAT64), unless they fall in a
`LEADBACK_OUTBOUND_ALLOWLIST` CIDR. A name with several addresses is reached only
on its allowed ones.

HTTP goes through `guarded_session()`; FTP, SFTP and SMTP use `resolve_and_check()`
or `create_connection()` and connect to the addresses they return; S3 (botocore,
on urllib3) opens its connections with `guarded_new_conn()`.
"""

import functools
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
)

USER_AGENT = "Leadback (+feedback forwarding)"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# One getaddrinfo() result: (family, type, proto, canonname, sockaddr).
AddrInfo = tuple[
    socket.AddressFamily,
    socket.SocketKind,
    int,
    str,
    tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes],
]


class DestinationRefused(Exception):
    """The destination resolves to an address outgoing requests may not reach.

    Deliberately not an OSError: urllib3 would otherwise retry it and bury it in
    a MaxRetryError, and callers must be able to tell it from a network failure.
    """


@functools.lru_cache(maxsize=8)
def _parse_allowlist(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"LEADBACK_OUTBOUND_ALLOWLIST: {entry!r} is not an address or CIDR."
            ) from None
    return tuple(networks)


def _allowlist() -> tuple[IPNetwork, ...]:
    # Read on every check (the parse is cached) so settings overrides apply.
    return _parse_allowlist(tuple(settings.LEADBACK_OUTBOUND_ALLOWLIST))


def _is_internal(address: IPAddress) -> bool:
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        # Catches the rest, e.g. 100.64.0.0/10 (carrier-grade NAT, also where
        # some clouds put their metadata service).
        or not address.is_global
    )


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4 or NAT64 address leads to."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_refused(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket; judge that.
            return _is_internal(address.ipv4_mapped)
        embedded = _embedded_ipv4(address)
        if embedded is not None and _is_internal(embedded):
            return True
    return _is_internal(address)


def _is_allowlisted(address: IPAddress, allowlist: tuple[IPNetwork, ...]) -> bool:
    forms: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        forms.append(address.ipv4_mapped)
    return any(form in network for form in forms for network in allowlist)


def check_address(ip: str) -> None:
    """Raise DestinationRefused unless outgoing connections may reach `ip`."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise DestinationRefused(f"{ip!r} is not an IP address.") from None
    allowlist = _allowlist()  # first, so a bad setting shows up on any check
    if _is_refused(address) and not _is_allowlisted(address, allowlist):
        raise DestinationRefused(
            f"{address} is an internal address (loopback, private, link-local, "
            "multicast or reserved) and is not in LEADBACK_OUTBOUND_ALLOWLIST."
        )


def resolve_and_check(host: str, port: int) -> list[AddrInfo]:
    """Resolve `host` and return the addresses it may be reached on, in DNS order.

    Addresses the guard refuses are dropped; when none is left, DestinationRefused
    names the first refusal. Connect only to the addresses returned (never resolve
    the name again): that is what makes the check hold against DNS rebinding.
    socket.gaierror propagates when the name does not resolve.
    """
    host = host.strip("[]")
    results = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    allowed: list[AddrInfo] = []
    refusal: DestinationRefused | None = None
    for family, kind, proto, canonname, sockaddr in results:
        try:
            check_address(str(sockaddr[0]))
        except DestinationRefused as exc:
            refusal = refusal or exc
            continue
        allowed.append((family, kind, proto, canonname, sockaddr))
    if not allowed:
        if refusal is None:
            raise socket.gaierror(f"{host} has no address")
        raise DestinationRefused(f"{host}: {refusal}")
    return allowed


def create_connection(
    address: tuple[str, int],
    timeout: float | None = None,
    *,
    source_address: tuple[str, int] | None = None,
    socket_options: Iterable[tuple[int, int, int | bytes]] | None = None,
) -> socket.socket:
    """socket.create_connection(), connecting only to addresses the guard allows."""
    host, port = address
    last_error: OSError | None = None
    for family, kind, proto, _canonname, sockaddr in resolve_and_check(host, port):
        sock = socket.socket(family, kind, proto)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        return sock
    raise last_error or OSError(f"Could not connect to {host}:{port}.")


def guarded_new_conn(conn: HTTPConnection) -> socket.socket:
    """urllib3's HTTPConnection._new_conn, connecting through the guard.

    The errors are urllib3's own, so requests reports them as usual; TLS, SNI
    and certificate checks still happen afterwards against the hostname.
    """
    timeout = conn.timeout if isinstance(conn.timeout, int | float) else None
    try:
        return create_connection(
            (conn.host, conn.port),
            timeout,
            source_address=conn.source_address,
            socket_options=conn.socket_options,
        )
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    except TimeoutError as exc:
        raise ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={timeout})"
        ) from exc
    except OSError as exc:
        raise NewConnectionError(
            conn, f"Failed to establish a new connection: {exc}"
        ) from exc


class GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return guarded_new_conn(self)


class GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return guarded_new_conn(self)


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter whose pools connect through the guard (http and https)."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": GuardedHTTPConnectionPool,
            "https": GuardedHTTPSConnectionPool,
        }

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # Through a proxy the guard would check the proxy, not the destination.
        raise DestinationRefused("Outgoing requests do not go through proxies.")


def guarded_session() -> requests.Session:
    """A requests session that connects only where the guard allows.

    Only http and https are mounted, proxies from the environment and .netrc are
    ignored (trust_env off). Redirects are the caller's: pass
    allow_redirects=False, as sending.send() does.
    """
    session = requests.Session()
    session.trust_env = False
    session.adapters.clear()
    adapter = GuardedAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session
