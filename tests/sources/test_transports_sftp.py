"""SFTP uploads against a real asyncssh server with its own host key."""

import asyncssh
import pytest

from sources.transports import BatchFile, TransportError
from sources.transports.sftp import SftpDestination, host_key_parse, sftp_put
from tests.sources.file_servers import PASSWORD, USERNAME, SftpServer

CSV = b"event_id,reason\r\n65a1f0c2e4b0a1b2c3d4e5f6,Wrong number\r\n"


@pytest.fixture(autouse=True)
def _allow_loopback(settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]


@pytest.fixture
def client_key():
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "sftp"
    (path / "incoming").mkdir(parents=True)
    return path


@pytest.fixture
def server(root, client_key):
    public = client_key.export_public_key().decode()
    with SftpServer(root, client_keys=[public]) as server:
        yield server


def destination(server, **overrides):
    values = {
        "host": "127.0.0.1",
        "port": server.port,
        "host_key": server.public_host_key,
        "username": USERNAME,
        "password": PASSWORD,
        "directory": "/incoming",
        "timeout_s": 10.0,
    }
    return SftpDestination(**(values | overrides))


def test_upload_with_a_password_leaves_only_the_complete_file(server, root):
    result = sftp_put(destination(server), BatchFile("returns.csv", CSV))

    assert result == (
        f"Uploaded returns.csv ({len(CSV)} bytes) to "
        f"sftp://127.0.0.1:{server.port}/incoming."
    )
    assert sorted(p.name for p in (root / "incoming").iterdir()) == ["returns.csv"]
    assert (root / "incoming" / "returns.csv").read_bytes() == CSV


def test_upload_with_a_private_key(server, root, client_key):
    private = client_key.export_private_key().decode()

    sftp_put(
        destination(server, password="", private_key=private),
        BatchFile("returns.csv", CSV),
    )

    assert (root / "incoming" / "returns.csv").read_bytes() == CSV
    assert server.logins == 1


def test_a_known_hosts_line_pins_the_key_too(server, root):
    line = f"[127.0.0.1]:{server.port} {server.public_host_key}"

    sftp_put(destination(server, host_key=line), BatchFile("returns.csv", CSV))

    assert (root / "incoming" / "returns.csv").read_bytes() == CSV


def test_a_host_key_other_than_the_pinned_one_is_refused(server, root):
    impostor = asyncssh.generate_private_key("ssh-ed25519")
    pinned = impostor.export_public_key().decode()

    with pytest.raises(TransportError) as caught:
        sftp_put(destination(server, host_key=pinned), BatchFile("returns.csv", CSV))

    assert caught.value.permanent
    assert "host key is not the pinned one" in caught.value.message
    assert server.logins == 0  # no password was offered to the wrong server
    assert list((root / "incoming").iterdir()) == []


def test_a_wrong_password_is_a_permanent_error(server, root):
    with pytest.raises(TransportError) as caught:
        sftp_put(destination(server, password="nope"), BatchFile("r.csv", CSV))

    assert caught.value.permanent
    assert caught.value.message.endswith("refused the login.")


def test_a_second_try_of_the_same_file_does_not_send_it_again(server, root):
    file = BatchFile("returns.csv", CSV)
    sftp_put(destination(server), file)

    result = sftp_put(destination(server), file)

    assert result.startswith("returns.csv was already complete")
    assert sorted(p.name for p in (root / "incoming").iterdir()) == ["returns.csv"]


def test_another_file_under_the_name_is_left_alone(server, root):
    (root / "incoming" / "returns.csv").write_bytes(b"other\r\n")

    with pytest.raises(TransportError) as caught:
        sftp_put(destination(server), BatchFile("returns.csv", CSV))

    assert caught.value.permanent
    assert (root / "incoming" / "returns.csv").read_bytes() == b"other\r\n"


def test_a_missing_directory_is_a_permanent_error(server, root):
    with pytest.raises(TransportError) as caught:
        sftp_put(destination(server, directory="/nowhere"), BatchFile("r.csv", CSV))

    assert caught.value.permanent


def test_the_ssrf_guard_refuses_loopback_unless_allow_listed(server, settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = []

    with pytest.raises(TransportError) as caught:
        sftp_put(destination(server), BatchFile("returns.csv", CSV))

    assert caught.value.message.startswith("Refused by the SSRF guard: 127.0.0.1")
    assert server.logins == 0


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "Enter the server's public key"),
        ("ssh-ed25519 not-base64!", "The host key is not a public key"),
    ],
)
def test_bad_host_keys_are_named(text, problem):
    with pytest.raises(ValueError, match=problem):
        host_key_parse(text)
