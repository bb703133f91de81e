"""The SSRF guard (DESIGN §5.4): outbound connections never reach internal addresses.

A destination is checked after DNS, on the very address the socket connects to, so
a name that resolves to a public address when checked and to 127.0.0.1 when used
(DNS rebinding) cannot slip through. Loopback, private, link-local, multicast,
reserved, unspecified and other non-global addresses are refused, as are IPv6
addresses that lead to one (IPv4-mapped, 6to4, NAT64), unless they fall in a
`LEADBACK_OUTBOUND_ALLOWLIST` CIDR. A name with several addresses is reached only
on its allowed ones.

HTTP goes through `guarded_pool_manager()` (urllib3, for sending notifications)
or `guarded_session()` (requests, for zeep's WSDL loading); FTP, SFTP and SMTP
use `resolve_and_check()` or `create_connection()` and connect to the addresses
they return; S3 (botocore, on urllib3) opens its connections with
`guarded_new_conn()`. Configs are checked when saved with `destination_problem()`,
by the same rules.
"""

import functools
import ipaddress
import socket
import threading
from collections.abc import Iterable
from typing import Any

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
)
from urllib3.poolmanager import PoolManager

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
        # fec0::/10: deprecated, but still routed inside some networks, and
        # Python counts it as global.
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
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


# How long a config check waits for DNS before leaving a name to the check made
# on every connection.
CHECK_RESOLVE_TIMEOUT_S = 2.0


def destination_problem(host: str) -> str | None:
    """Why a config may not send to `host`, as a sentence, or None.

    For the admin and config imports, so an internal destination is refused when
    it is configured, not only when something is sent. The rules are the
    sender's: an IP address is checked as it is; a name is resolved and refused
    when none of its addresses may be reached (the sender connects only to
    allowed ones, so one is enough). A name that does not resolve within
    CHECK_RESOLVE_TIMEOUT_S passes: it may resolve later, and is checked then.
    """
    bare = host.strip().strip("[]")
    if not bare:
        return None
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        return _name_problem(bare)
    try:
        check_address(bare)
    except DestinationRefused as exc:
        return str(exc)
    return None


def _addresses_for_check(host: str) -> list[str]:
    """The addresses `host` resolves to (tests replace this: no DNS in tests)."""
    return [
        str(info[4][0])
        for info in socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM)
    ]


def _name_problem(host: str) -> str | None:
    found: list[list[str] | Exception] = []

    def lookup() -> None:
        try:
            found.append(_addresses_for_check(host))
        except (OSError, UnicodeError, ValueError) as exc:
            found.append(exc)

    # getaddrinfo() takes no timeout: a slow resolver must not hang a form.
    thread = threading.Thread(target=lookup, name="destination-check", daemon=True)
    thread.start()
    thread.join(CHECK_RESOLVE_TIMEOUT_S)
    addresses = found[0] if found else None
    if not isinstance(addresses, list) or not addresses:
        return None  # no answer in time, or none at all
    refusals = []
    for ip in addresses:
        try:
            check_address(ip)
        except DestinationRefused as exc:
            refusals.append(exc)
        else:
            return None
    return f"{host}: {refusals[0]}"


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


def guarded_pool_manager() -> PoolManager:
    """A urllib3 pool manager that connects only where the guard allows.

    What `guarded_session()` gives without requests' per-request work (merging
    settings, cookies, hooks, preparing and wrapping): the same connection
    pools, the same CA bundle, no proxies (a PoolManager never reads them from
    the environment). Pass `retries=False, redirect=False`, as sending.send()
    does. Not for several threads at once: one per thread, like a session.
    """
    manager = PoolManager(
        num_pools=10,
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=DEFAULT_CA_BUNDLE_PATH,
    )
    manager.pool_classes_by_scheme = {
        "http": GuardedHTTPConnectionPool,
        "https": GuardedHTTPSConnectionPool,
    }
    return manager
