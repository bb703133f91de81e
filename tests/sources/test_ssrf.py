"""The SSRF guard on the one outbound session, with the addresses attackers use.

Every destination here is tried through `send()`, the path every transport
takes, with nothing allow-listed: none may be reached, and the answer says why.
"""

from typing import Any

import pytest

from sources.outbound.sending import send
from sources.outbound.types import OutboundRequest
from tests.sources.servers import RecordingServer, Reply


@pytest.fixture
def server():
    with RecordingServer(Reply(200, b"reached")) as server:
        yield server


@pytest.fixture(autouse=True)
def nothing_allowed(settings: Any) -> None:
    settings.LEADBACK_OUTBOUND_ALLOWLIST = []


LOOPBACK_FORMS = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f000001",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "0.0.0.0",  # noqa: S104 - a destination under test, not a bind address
    "localhost",
]


@pytest.mark.parametrize("host", LOOPBACK_FORMS)
def test_loopback_in_any_spelling_is_refused(
    server: RecordingServer, host: str
) -> None:
    response = send(
        OutboundRequest("POST", f"http://{host}:{server.port}/", body=b"x"),
        timeout_s=3,
    )

    assert response.status is None
    assert response.error.startswith("Refused by the SSRF guard"), response.error
    assert server.requests == []


@pytest.mark.parametrize(
    "host",
    ["10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254"],
)
def test_private_and_metadata_addresses_are_refused_before_connecting(
    host: str,
) -> None:
    response = send(OutboundRequest("GET", f"http://{host}/latest/"), timeout_s=3)

    assert response.status is None
    assert (
        "refused" in response.error.lower() or "not allowed" in response.error.lower()
    )
    # Refused by the guard, not by a timeout to an unroutable address.
    assert response.elapsed_ms < 2000


def test_a_redirect_to_loopback_is_not_followed(settings: Any) -> None:
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    with RecordingServer() as target:
        reply = Reply(302, b"", headers={"Location": f"http://[::1]:{target.port}/"})
        with RecordingServer(reply) as redirector:
            response = send(
                OutboundRequest("GET", redirector.url("/start")), timeout_s=3
            )
            assert target.requests == []

    assert response.status == 302
