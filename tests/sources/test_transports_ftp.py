"""FTP and FTPS uploads against a real pyftpdlib server on 127.0.0.1."""

import pytest

from sources.transports import BatchFile, TransportError
from sources.transports.ftp import FtpDestination, ftp_put
from tests.sources.file_servers import (
    PASSWORD,
    USERNAME,
    FtpServer,
    FtpsServer,
    self_signed_certificate,
)

CSV = b"event_id,reason\r\n65a1f0c2e4b0a1b2c3d4e5f6,Wrong number\r\n"


@pytest.fixture(autouse=True)
def _allow_loopback(settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "ftp"
    (path / "incoming").mkdir(parents=True)
    return path


@pytest.fixture
def ftp_server(root):
    with FtpServer(root) as server:
        yield server


def destination(server, **overrides):
    values = {
        "host": "127.0.0.1",
        "port": server.port,
        "username": USERNAME,
        "password": PASSWORD,
        "directory": "/incoming",
        "timeout_s": 10.0,
    }
    return FtpDestination(**(values | overrides))


def test_upload_leaves_only_the_complete_file(ftp_server, root):
    result = ftp_put(destination(ftp_server), BatchFile("returns.csv", CSV))

    assert result.startswith("Uploaded returns.csv (")
    assert sorted(p.name for p in (root / "incoming").iterdir()) == ["returns.csv"]
    assert (root / "incoming" / "returns.csv").read_bytes() == CSV


def test_a_second_try_of_the_same_file_does_not_send_it_again(ftp_server, root):
    file = BatchFile("returns.csv", CSV)
    ftp_put(destination(ftp_server), file)
    (root / "incoming" / "returns.csv").touch()  # mtime changes if rewritten
    before = (root / "incoming" / "returns.csv").stat().st_mtime_ns

    result = ftp_put(destination(ftp_server), file)

    assert result == (
        f"returns.csv was already complete at ftp://127.0.0.1:{ftp_server.port}"
        "/incoming."
    )
    assert (root / "incoming" / "returns.csv").stat().st_mtime_ns == before
    assert (root / "incoming" / "returns.csv").read_bytes() == CSV


def test_a_half_uploaded_part_is_replaced(ftp_server, root):
    (root / "incoming" / "returns.csv.part").write_bytes(CSV[:10])

    ftp_put(destination(ftp_server), BatchFile("returns.csv", CSV))

    assert sorted(p.name for p in (root / "incoming").iterdir()) == ["returns.csv"]
    assert (root / "incoming" / "returns.csv").read_bytes() == CSV


def test_another_file_under_the_name_is_left_alone(ftp_server, root):
    (root / "incoming" / "returns.csv").write_bytes(b"someone else's file\r\n")

    with pytest.raises(TransportError) as caught:
        ftp_put(destination(ftp_server), BatchFile("returns.csv", CSV))

    assert caught.value.permanent
    assert "A different file named 'returns.csv' is already" in caught.value.message
    assert (
        root / "incoming" / "returns.csv"
    ).read_bytes() == b"someone else's file\r\n"


def test_a_wrong_password_is_a_permanent_error(ftp_server, root):
    with pytest.raises(TransportError) as caught:
        ftp_put(
            destination(ftp_server, password="wrong"), BatchFile("returns.csv", CSV)
        )

    assert caught.value.permanent
    assert "refused: 530" in caught.value.message
    assert list((root / "incoming").iterdir()) == []


def test_a_closed_port_is_a_transient_error(root):
    server = FtpServer(root)  # bound, never served: nothing answers the greeting
    port = server.port
    server.server.close_all()

    with pytest.raises(TransportError) as caught:
        ftp_put(
            FtpDestination(host="127.0.0.1", port=port, timeout_s=2),
            BatchFile("r.csv", CSV),
        )

    assert not caught.value.permanent
    assert f"Could not connect to 127.0.0.1:{port}" in caught.value.message


def test_the_ssrf_guard_refuses_loopback_unless_allow_listed(
    ftp_server, root, settings
):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = []

    with pytest.raises(TransportError) as caught:
        ftp_put(destination(ftp_server), BatchFile("returns.csv", CSV))

    assert caught.value.message.startswith("Refused by the SSRF guard: 127.0.0.1")
    assert list((root / "incoming").iterdir()) == []


# FTPS --------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path):
    return self_signed_certificate(tmp_path)


@pytest.fixture
def ftps_server(root, certificate):
    cert_path, key_path, _pem = certificate
    with FtpsServer(root, (cert_path, key_path)) as server:
        yield server


def test_ftps_uploads_over_tls_trusting_the_pinned_certificate(
    ftps_server, root, certificate
):
    # The server refuses plain-text control and data connections, so the file
    # only arrives if both went over TLS.
    result = ftp_put(
        destination(ftps_server, tls=True, certificate=certificate[2]),
        BatchFile("returns.csv", CSV),
    )

    assert result.startswith("Uploaded returns.csv")
    assert "ftps://127.0.0.1" in result
    assert ftps_server.commands[:4] == ["AUTH", "USER", "PASS", "PBSZ"]
    assert (root / "incoming" / "returns.csv").read_bytes() == CSV
    assert not (root / "incoming" / "returns.csv.part").exists()


def test_ftps_refuses_a_certificate_it_does_not_trust(ftps_server, root):
    with pytest.raises(TransportError) as caught:
        ftp_put(destination(ftps_server, tls=True), BatchFile("returns.csv", CSV))

    assert caught.value.permanent
    assert "TLS certificate is not trusted" in caught.value.message
    assert list((root / "incoming").iterdir()) == []


def test_plain_ftp_is_refused_by_a_server_that_requires_tls(ftps_server, root):
    with pytest.raises(TransportError) as caught:
        ftp_put(destination(ftps_server), BatchFile("returns.csv", CSV))

    assert caught.value.permanent
    assert list((root / "incoming").iterdir()) == []
