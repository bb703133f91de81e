"""Batch files by email, through a real aiosmtpd server on 127.0.0.1."""

import csv
import io

import pytest

from sources.transports import BatchFile, TransportError
from sources.transports.email import EmailDestination, email_send
from tests.sources.file_servers import SmtpServer

CSV = b"event_id,reason\r\n65a1f0c2e4b0a1b2c3d4e5f6,'=HYPERLINK(1)\r\n"


@pytest.fixture
def smtp(settings):
    with SmtpServer() as server:
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = server.port
        settings.EMAIL_USE_TLS = False
        settings.DEFAULT_FROM_EMAIL = "leadback@seller.example"
        settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
        yield server


def test_the_file_arrives_attached(smtp):
    file = BatchFile("returns-20261125.csv", CSV, message_id="run_abc")
    destination = EmailDestination(
        to=("returns@source.example", "ops@source.example"), subject="Returns"
    )

    result = email_send(destination, file)

    assert result == f"Emailed returns-20261125.csv ({len(CSV)} bytes) to 2."
    [(recipients, message)] = smtp.messages
    assert recipients == ["returns@source.example", "ops@source.example"]
    assert message["Subject"] == "Returns"
    assert message["From"] == "leadback@seller.example"
    assert message["Message-ID"] == "<run_abc@leadback>"
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "returns-20261125.csv"
    assert attachment.get_content_type() == "text/csv"
    rows = list(csv.reader(io.StringIO(attachment.get_content())))
    assert rows == [
        ["event_id", "reason"],
        ["65a1f0c2e4b0a1b2c3d4e5f6", "'=HYPERLINK(1)"],
    ]


def test_every_try_of_a_run_has_the_same_message_id(smtp):
    file = BatchFile("r.csv", CSV, message_id="run_same")
    destination = EmailDestination(to=("a@source.example",))

    email_send(destination, file)
    email_send(destination, file)

    ids = {message["Message-ID"] for _rcpt, message in smtp.messages}
    assert ids == {"<run_same@leadback>"}
    assert smtp.messages[0][1]["Subject"] == "r.csv"  # no subject: the file name


def test_the_ssrf_guard_covers_the_relay(smtp, settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = []

    with pytest.raises(TransportError) as caught:
        email_send(EmailDestination(to=("a@source.example",)), BatchFile("r.csv", CSV))

    assert caught.value.message.startswith("Refused by the SSRF guard: 127.0.0.1")
    assert smtp.messages == []


def test_no_relay_listening_is_a_transient_error(settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    settings.EMAIL_HOST = "127.0.0.1"
    with SmtpServer() as server:
        settings.EMAIL_PORT = server.port
    # stopped: nothing listens on the port any more

    with pytest.raises(TransportError) as caught:
        email_send(EmailDestination(to=("a@source.example",)), BatchFile("r.csv", CSV))

    assert not caught.value.permanent
    assert "Could not connect to 127.0.0.1" in caught.value.message
