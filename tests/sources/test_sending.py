"""send() and the SSRF guard against a real local HTTP server.

Each method's test asserts what the server received, not what we meant to send.
The guard is exercised through real connections: 127.0.0.1 is only reachable
while it is allow-listed, exactly as in the demo and the test settings.
"""

import logging
import re
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from lxml import etree
from standardwebhooks import Webhook

from sources.outbound.guard import (
    USER_AGENT,
    DestinationRefused,
    check_address,
    resolve_and_check,
)
from sources.outbound.sending import send, shared_session
from sources.outbound.signing import generate_secret
from sources.outbound.types import MAX_RESPONSE_BYTES, OutboundRequest
from sources.transports.building import Auth, RequestSpec, build_request
from tests.sources.servers import RecordingServer, Reply, free_port

MESSAGE_ID = "ntf_01JNQ8ZJ3K"


@pytest.fixture(autouse=True)
def allow_loopback(settings: Any) -> None:
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


def build(spec: RequestSpec, fields: list[tuple[str, str]]) -> OutboundRequest:
    return build_request(spec, fields, message_id=MESSAGE_ID, now=datetime.now(UTC))


def fake_resolver(
    monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]
) -> list[str]:
    """Make the given names resolve to the given IPv4 addresses; returns the log of
    names looked up."""
    real = socket.getaddrinfo
    looked_up: list[str] = []

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in answers:
            return real(host, port, *args, **kwargs)
        looked_up.append(host)
        addresses = answers[host]
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        ip = addresses.pop(0) if len(addresses) > 1 else addresses[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, int(port)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return looked_up


# -- One test per method, checked on the receiving side ----------------------------


def test_query_arrives_as_get_parameters(server: RecordingServer) -> None:
    request = build(
        RequestSpec("query", server.url("/fb?key=abc")),
        [("event_id", "E-1"), ("reason", "Wrong number & more"), ("tags.0", "a")],
    )

    response = send(request, timeout_s=5)

    assert response.status == 200
    received = server.last
    assert received.method == "GET"
    assert received.path == "/fb"
    assert received.query == [
        ("key", "abc"),
        ("event_id", "E-1"),
        ("reason", "Wrong number & more"),
        ("tags", "a"),
    ]
    assert received.header("webhook-id") == MESSAGE_ID
    assert received.header("User-Agent") == USER_AGENT
    assert received.body == b""


def test_form_arrives_as_a_form_post(server: RecordingServer) -> None:
    request = build(
        RequestSpec("form", server.url("/form")),
        [("event_id", "E-1"), ("reason", "Zoë's number")],
    )

    send(request, timeout_s=5)

    received = server.last
    assert received.method == "POST"
    assert received.header("Content-Type") == "application/x-www-form-urlencoded"
    assert received.form == [("event_id", "E-1"), ("reason", "Zoë's number")]


def test_json_arrives_with_auth_and_headers(server: RecordingServer) -> None:
    request = build(
        RequestSpec(
            "json",
            server.url("/json"),
            http_method="PUT",
            headers={"X-Partner": "leadback"},
            auth=Auth(type="basic", username="partner", password="s3cret"),
        ),
        [("lead.email", "ann@example.com"), ("items.0.id", "A")],
    )

    send(request, timeout_s=5)

    received = server.last
    assert received.method == "PUT"
    assert received.header("Content-Type") == "application/json"
    assert received.header("X-Partner") == "leadback"
    assert received.header("Authorization") == "Basic cGFydG5lcjpzM2NyZXQ="
    assert received.body == b'{"lead":{"email":"ann@example.com"},"items":[{"id":"A"}]}'


def test_xml_arrives_as_a_parseable_document(server: RecordingServer) -> None:
    request = build(
        RequestSpec("xml", server.url("/xml")),
        [("lead@id", "L1"), ("lead.reason", '<Wrong> & "bad"'), ("lead.tag.0", "x")],
    )

    send(request, timeout_s=5)

    received = server.last
    assert received.header("Content-Type") == "application/xml; charset=utf-8"
    root = etree.fromstring(received.body)
    assert root.tag == "lead"  # every target starts with lead: LeadConduit's root
    assert root.get("id") == "L1"
    assert root.findtext("reason") == '<Wrong> & "bad"'
    assert root.findtext("tag") == "x"


def test_signature_verifies_where_it_arrives(server: RecordingServer) -> None:
    secret = generate_secret()
    request = build(
        RequestSpec("json", server.url("/hook"), signing_secret=secret),
        [("event_id", "E-1"), ("reason", "Zoë")],
    )

    send(request, timeout_s=5)

    received = server.last
    payload = Webhook(secret).verify(received.body, received.header_dict)
    assert payload == {"event_id": "E-1", "reason": "Zoë"}
    assert received.header("webhook-id") == MESSAGE_ID


def test_response_status_headers_and_body_come_back(server: RecordingServer) -> None:
    server.reply = Reply(
        status=201, body=b'{"id":"R-9"}', headers={"Content-Type": "application/json"}
    )

    response = send(OutboundRequest("POST", server.url("/r"), {}, b"{}"), timeout_s=5)

    assert response.status == 201
    assert response.body == b'{"id":"R-9"}'
    assert response.content_type == "application/json"
    assert response.error == ""
    assert response.elapsed_ms >= 0


# -- SSRF guard --------------------------------------------------------------------


def test_loopback_refused_unless_allowlisted(
    server: RecordingServer, settings: Any
) -> None:
    settings.LEADBACK_OUTBOUND_ALLOWLIST = []

    response = send(OutboundRequest("GET", server.url("/")), timeout_s=5)

    assert response.status is None
    assert response.error.startswith("Refused by the SSRF guard: 127.0.0.1:")
    assert "127.0.0.1 is an internal address" in response.error
    assert server.requests == []


def test_allowlisted_loopback_is_reached(server: RecordingServer) -> None:
    response = send(OutboundRequest("GET", server.url("/")), timeout_s=5)

    assert response.status == 200
    assert len(server.requests) == 1


def test_hostname_resolving_to_loopback_refused_at_connect_time(
    server: RecordingServer, settings: Any
) -> None:
    settings.LEADBACK_OUTBOUND_ALLOWLIST = []

    response = send(
        OutboundRequest("GET", server.url("/", host="localhost")), timeout_s=5
    )

    assert response.status is None
    assert "SSRF guard" in response.error
    assert "127.0.0.1 is an internal address" in response.error
    assert server.requests == []


def test_https_is_guarded_too(server: RecordingServer, settings: Any) -> None:
    settings.LEADBACK_OUTBOUND_ALLOWLIST = []

    response = send(
        OutboundRequest("GET", f"https://localhost:{server.port}/"), timeout_s=5
    )

    assert "SSRF guard" in response.error
    assert server.requests == []


def test_the_checked_address_is_the_connected_address(
    server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rebinding name: allowed on the first lookup, internal on any later one.
    # The guard resolves once and connects to what it checked.
    looked_up = fake_resolver(monkeypatch, {"rebind.test": ["127.0.0.1", "10.0.0.7"]})

    response = send(
        OutboundRequest("GET", server.url("/", host="rebind.test")), timeout_s=5
    )

    assert response.status == 200
    assert looked_up == ["rebind.test"]
    assert server.last.header("Host") == f"rebind.test:{server.port}"


def test_name_resolving_to_private_address_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_resolver(monkeypatch, {"intranet.test": ["10.0.0.7"]})

    response = send(OutboundRequest("GET", "http://intranet.test/"), timeout_s=5)

    assert response.status is None
    assert response.error == (
        "Refused by the SSRF guard: intranet.test: 10.0.0.7 is an internal address "
        "(loopback, private, link-local, multicast or reserved) and is not in "
        "LEADBACK_OUTBOUND_ALLOWLIST."
    )


@pytest.mark.parametrize(
    "ip",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.2",
        "169.254.169.254",  # cloud metadata
        "100.100.100.200",  # carrier-grade NAT range, another metadata address
        "0.0.0.0",  # noqa: S104
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "2002:a9fe:a9fe::1",  # 6to4 around 169.254.169.254
        "64:ff9b::7f00:1",  # NAT64 around 127.0.0.1
    ],
)
def test_check_address_refuses_internal_addresses(ip: str, settings: Any) -> None:
    settings.LEADBACK_OUTBOUND_ALLOWLIST = []

    with pytest.raises(DestinationRefused, match="internal address"):
        check_address(ip)


@pytest.mark.parametrize(
    "ip", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_check_address_allows_public_addresses(ip: str, settings: Any) -> None:
    settings.LEADBACK_OUTBOUND_ALLOWLIST = []

    check_address(ip)  # raises if refused


def test_allowlist_is_read_as_cidrs(settings: Any) -> None:
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["10.0.0.0/8", "::1"]

    check_address("10.20.30.40")
    check_address("::ffff:10.0.0.1")
    check_address("::1")
    with pytest.raises(DestinationRefused):
        check_address("192.168.0.1")
    with pytest.raises(DestinationRefused):
        check_address("127.0.0.1")


def test_mapped_form_of_an_allowlisted_address_is_allowed() -> None:
    check_address("::ffff:127.0.0.1")


def test_invalid_allowlist_entry_is_a_configuration_error(settings: Any) -> None:
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["10.0.0.0/33"]

    with pytest.raises(ImproperlyConfigured, match=re.escape("10.0.0.0/33")):
        check_address("8.8.8.8")


def test_not_an_address_is_refused() -> None:
    with pytest.raises(DestinationRefused, match="not an IP address"):
        check_address("example.com")


def test_resolve_and_check_keeps_only_allowed_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "mixed.test":
            return real(host, port, *args, **kwargs)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    addresses = resolve_and_check("mixed.test", 21)

    assert [sockaddr for *_, sockaddr in addresses] == [("127.0.0.1", 21)]


def test_resolve_and_check_refuses_when_nothing_is_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_resolver(monkeypatch, {"sftp.internal.test": ["192.168.10.5"]})

    with pytest.raises(
        DestinationRefused, match=re.escape("sftp.internal.test: 192.168.10.5")
    ):
        resolve_and_check("sftp.internal.test", 22)


def test_redirects_are_not_followed(server: RecordingServer) -> None:
    server.reply = Reply(status=302, headers={"Location": server.url("/elsewhere")})

    response = send(
        OutboundRequest("POST", server.url("/start"), {}, b"x"), timeout_s=5
    )

    assert response.status == 302
    assert response.headers["Location"] == server.url("/elsewhere")
    assert [r.path for r in server.requests] == ["/start"]


def test_non_ascii_in_the_url_is_sent_percent_encoded(server: RecordingServer) -> None:
    # A lead's name can reach the query string of a GET config: what requests
    # sent before, UTF-8 percent-encoded, with encoded text left as it was.
    url = server.url("/p/é?name=Zoë Ünal&x=a b&y=%20z")

    response = send(OutboundRequest("GET", url, {}, b""), timeout_s=5)

    assert response.status == 200
    assert server.last.target == "/p/%C3%A9?name=Zo%C3%AB%20%C3%9Cnal&x=a%20b&y=%20z"


def test_proxy_settings_from_the_environment_are_ignored(
    server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy would make the guard check the proxy instead of the destination.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")

    response = send(OutboundRequest("GET", server.url("/direct")), timeout_s=5)

    assert response.status == 200
    assert server.last.target == "/direct"


# -- Failures come back as errors, never as exceptions ----------------------------


def test_timeout_is_an_error(server: RecordingServer) -> None:
    server.reply = Reply(delay_s=5)

    response = send(OutboundRequest("GET", server.url("/slow")), timeout_s=0.3)

    assert response.status is None
    assert response.error == "127.0.0.1 did not answer in time."
    assert 300 <= response.elapsed_ms < 3000


def test_connection_refused_is_an_error() -> None:
    port = free_port()

    response = send(OutboundRequest("GET", f"http://127.0.0.1:{port}/"), timeout_s=5)

    assert response.status is None
    assert response.error == "127.0.0.1 refused the connection."


def test_dns_failure_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_resolver(monkeypatch, {"nowhere.test": []})

    response = send(OutboundRequest("GET", "http://nowhere.test/"), timeout_s=5)

    assert response.status is None
    assert response.error == "Could not resolve nowhere.test."


def test_tls_to_a_plain_http_server_is_an_error(server: RecordingServer) -> None:
    response = send(
        OutboundRequest("GET", f"https://127.0.0.1:{server.port}/"), timeout_s=5
    )

    assert response.status is None
    assert response.error == "TLS error with 127.0.0.1."


def test_a_server_that_hangs_up_without_answering_is_an_error() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def hang_up() -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        connection.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    port = listener.getsockname()[1]

    response = send(OutboundRequest("GET", f"http://127.0.0.1:{port}/"), timeout_s=5)

    thread.join(5)
    listener.close()
    assert response.status is None
    assert response.error == "The connection to 127.0.0.1 failed."


def test_body_is_cut_at_the_cap(server: RecordingServer) -> None:
    server.reply = Reply(body=b"a" * MAX_RESPONSE_BYTES + b"b" * 300_000)

    response = send(OutboundRequest("GET", server.url("/big")), timeout_s=5)

    assert response.status == 200
    assert len(response.body) == MAX_RESPONSE_BYTES
    assert set(response.body) == {ord("a")}


def test_a_dripping_body_cannot_outlast_the_timeout(server: RecordingServer) -> None:
    # Each byte arrives well within the socket timeout; the whole body would not.
    server.reply = Reply(body=b"x" * 100, drip_s=0.05)

    response = send(OutboundRequest("GET", server.url("/drip")), timeout_s=0.5)

    assert response.status is None
    assert response.error == (
        "127.0.0.1 answered 200 but did not finish the body in time."
    )
    assert response.elapsed_ms < 2000


def test_non_http_url_is_an_error() -> None:
    response = send(OutboundRequest("GET", "file:///etc/passwd"), timeout_s=5)

    assert response.status is None
    assert response.error == "Only http and https URLs can be sent to."


def test_logs_say_where_but_not_what(
    server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    request = build(
        RequestSpec(
            "query", server.url("/fb"), auth=Auth(type="bearer", token="tok-secret")
        ),
        [("email", "ann@example.com")],
    )

    with caplog.at_level(logging.DEBUG, logger="sources.outbound"):
        send(request, timeout_s=5)

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "GET 127.0.0.1 -> 200 in" in logged
    assert "ann" not in logged
    assert "tok-secret" not in logged
    assert "/fb" not in logged


def test_one_session_per_thread() -> None:
    mine = shared_session()
    theirs: list[object] = []
    thread = threading.Thread(target=lambda: theirs.append(shared_session()))
    thread.start()
    thread.join()

    assert shared_session() is mine
    assert theirs[0] is not mine
    assert mine.trust_env is False
    assert set(mine.adapters) == {"http://", "https://"}


# -- Connections are kept, each new one guarded ----------------------------------


class _KeepAliveHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_KeepAliveServer"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.seen.append((self.client_address[1], self.path, self.headers))
        body = b"a" * (MAX_RESPONSE_BYTES + 100_000) if self.path == "/big" else b"ok"
        self.send_response(200)
        self.send_header("Set-Cookie", "a=1")
        self.send_header("Set-Cookie", "b=2")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _KeepAliveServer(ThreadingHTTPServer):
    daemon_threads = True
    seen: list[tuple[int, str, Any]]


@pytest.fixture
def keep_alive() -> Iterator[_KeepAliveServer]:
    server = _KeepAliveServer(("127.0.0.1", 0), _KeepAliveHandler)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_connection_is_reused_and_guarded_when_opened(
    keep_alive: _KeepAliveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up = fake_resolver(monkeypatch, {"kept.test": ["127.0.0.1"]})
    url = f"http://kept.test:{keep_alive.server_address[1]}"

    first = send(OutboundRequest("POST", url + "/a", {}, b"{}"), timeout_s=5)
    second = send(OutboundRequest("POST", url + "/b", {}, b"{}"), timeout_s=5)

    assert (first.status, second.status) == (200, 200)
    assert second.body == b"ok"
    assert len({port for port, _, _ in keep_alive.seen}) == 1
    assert looked_up == ["kept.test"]  # the guard ran for the one connection


def test_a_body_cut_short_never_leaves_its_connection_for_reuse(
    keep_alive: _KeepAliveServer,
) -> None:
    url = f"http://127.0.0.1:{keep_alive.server_address[1]}"

    big = send(OutboundRequest("POST", url + "/big", {}, b"{}"), timeout_s=5)
    after = send(OutboundRequest("POST", url + "/after", {}, b"{}"), timeout_s=5)

    assert len(big.body) == MAX_RESPONSE_BYTES
    assert (after.status, after.body) == (200, b"ok")
    assert keep_alive.seen[0][0] != keep_alive.seen[1][0]


def test_default_headers_go_out_and_the_request_s_own_win(
    keep_alive: _KeepAliveServer,
) -> None:
    url = f"http://127.0.0.1:{keep_alive.server_address[1]}/h"

    response = send(
        OutboundRequest("POST", url, {"accept": "application/json"}, b"{}"),
        timeout_s=5,
    )

    headers = keep_alive.seen[0][2]
    assert headers.get_all("Accept") == ["application/json"]
    assert headers["User-Agent"] == USER_AGENT
    assert headers["Accept-Encoding"] == "gzip, deflate"
    assert headers["Content-Length"] == "2"
    # Repeated answer headers come back joined, as one value per name.
    assert response.headers["Set-Cookie"] == "a=1, b=2"
