"""Destinations are checked when a config is saved, by the rules the sender uses:
internal addresses are refused unless allow-listed. No DNS here: names resolve
from the `config_dns` fixture."""

import time
from typing import Any

import pytest

from sources.models import FeedbackConfig
from sources.outbound import guard
from sources.outbound.guard import DestinationRefused, check_address
from sources.services import feedback_config_problems
from tests.factories import SourceFactory


@pytest.fixture(autouse=True)
def nothing_allowed(settings: Any) -> None:
    settings.LEADBACK_OUTBOUND_ALLOWLIST = []


INTERNAL = [
    "127.0.0.1",
    "10.1.2.3",
    "192.168.0.10",
    "169.254.169.254",  # cloud metadata (AWS, GCP, Azure)
    "fd00:ec2::254",  # AWS metadata over IPv6
    "100.100.100.200",  # Alibaba Cloud metadata
    "fec0::1",  # site-local IPv6
    "fe80::1",
    "::1",
    "[::1]",
    "::ffff:127.0.0.1",
]


@pytest.mark.parametrize("host", INTERNAL)
def test_internal_addresses_are_refused(host: str) -> None:
    problem = guard.destination_problem(host)

    assert problem is not None
    assert "internal address" in problem
    assert "LEADBACK_OUTBOUND_ALLOWLIST" in problem


def test_site_local_ipv6_is_refused_when_sending_too() -> None:
    with pytest.raises(DestinationRefused, match="internal address"):
        check_address("fec0::1")


@pytest.mark.parametrize("host", ["93.184.215.14", "2606:4700:4700::1111"])
def test_public_addresses_pass(host: str) -> None:
    assert guard.destination_problem(host) is None


def test_the_allowlist_is_honoured(settings: Any) -> None:
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32", "10.20.0.0/16"]

    assert guard.destination_problem("127.0.0.1") is None
    assert guard.destination_problem("10.20.3.4") is None
    assert guard.destination_problem("10.21.3.4") is not None


def test_a_name_is_refused_when_every_address_is_internal(
    config_dns: dict[str, list[str]],
) -> None:
    config_dns["intranet.test"] = ["10.0.0.7", "fd00::7"]

    assert guard.destination_problem("intranet.test") == (
        "intranet.test: 10.0.0.7 is an internal address (loopback, private, "
        "link-local, multicast or reserved) and is not in "
        "LEADBACK_OUTBOUND_ALLOWLIST."
    )


def test_a_name_with_one_allowed_address_passes_as_it_would_be_sent_to(
    config_dns: dict[str, list[str]], settings: Any
) -> None:
    # The sender connects only to the allowed addresses of a name.
    config_dns["mixed.test"] = ["10.0.0.7", "93.184.215.14"]

    assert guard.destination_problem("mixed.test") is None
    assert guard.destination_problem("localhost") is not None
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    assert guard.destination_problem("localhost") is None  # ::1 is not needed


def test_a_name_that_does_not_resolve_passes() -> None:
    # It may resolve later; the guard checks it on every connection.
    assert guard.destination_problem("nowhere.test") is None


def test_a_slow_resolver_does_not_hold_the_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def slow(host: str) -> list[str]:
        time.sleep(1)
        return ["10.0.0.7"]

    monkeypatch.setattr(guard, "_addresses_for_check", slow)
    monkeypatch.setattr(guard, "CHECK_RESOLVE_TIMEOUT_S", 0.05)
    started = time.monotonic()

    assert guard.destination_problem("slow.test") is None
    assert time.monotonic() - started < 0.5


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "https://localhost/hook",
        "http://[fec0::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
    ],
)
def test_a_config_sending_to_an_internal_address_is_refused(url: str) -> None:
    config = FeedbackConfig(
        source=SourceFactory(), kind="return", method="json", url=url
    )

    (message,) = feedback_config_problems(config)["url"]

    assert message.startswith("Refused by the SSRF guard: ")
    assert "internal address" in message


@pytest.mark.django_db
def test_an_allowlisted_config_is_saved_as_before(settings: Any) -> None:
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    config = FeedbackConfig(
        source=SourceFactory(),
        kind="return",
        method="json",
        url="http://127.0.0.1:8000/hook",
    )

    assert "url" not in feedback_config_problems(config)
