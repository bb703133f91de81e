"""Real local FTP/FTPS, SFTP, SMTP and S3 servers for the batch file transports.

Each listens on 127.0.0.1 on a free port, runs in a daemon thread and stops on
exit from its `with` block. The FTP server can throttle uploads (to catch a
client in the middle of one); the SFTP server has its own generated host key; the
SMTP server keeps every message it accepted; the S3 server is moto's, speaking
the S3 API over HTTP.
"""

import asyncio
import datetime
import ipaddress
import logging
import socket
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Self

import asyncssh
import boto3
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto.server import ThreadedMotoServer
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, ThrottledDTPHandler, TLS_FTPHandler
from pyftpdlib.servers import FTPServer

USERNAME = "leadback"
PASSWORD = "s3cret-pass"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def self_signed_certificate(directory: Path) -> tuple[Path, Path, str]:
    """A certificate for 127.0.0.1 signed by its own key: (cert, key, cert PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    cert_path = directory / "server.crt"
    key_path = directory / "server.key"
    cert_path.write_bytes(pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, pem.decode()


class SlowDTP(ThrottledDTPHandler):
    """Uploads at `read_limit` bytes a second; 0 lifts the limit."""

    read_limit = 0
    write_limit = 0


class FtpServer:
    """pyftpdlib serving `root` to one user."""

    def __init__(self, root: Path, *, port: int = 0) -> None:
        self.root = root
        authorizer = DummyAuthorizer()
        authorizer.add_user(USERNAME, PASSWORD, str(root), perm="elradfmwMT")
        attrs: dict[str, Any] = {
            "authorizer": authorizer,
            "dtp_handler": type("DTP", (SlowDTP,), {}),
            "banner": "leadback test ftp",
        }
        self.handler = type("Handler", (FTPHandler,), attrs)
        # serve_forever() logs a banner on every call, and it is called in a loop.
        logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
        self.server = FTPServer(("127.0.0.1", port), self.handler)
        self.port = int(self.server.address[1])
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def throttle(self, bytes_per_second: int) -> None:
        """Slow uploads down to `bytes_per_second` (0: full speed again)."""
        dtp = self.handler.dtp_handler
        dtp.read_limit = bytes_per_second
        # Small reads, or one read would take a whole small file at once.
        dtp.ac_in_buffer_size = 512 if bytes_per_second else 65536

    def _serve(self) -> None:
        while not self._stopping.is_set():
            self.server.serve_forever(timeout=0.05, blocking=False)
        self.server.close_all()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)


class FtpsServer(FtpServer):
    """pyftpdlib's FTPS (explicit TLS, RFC 4217) serving `root` to one user.

    Plain-text control and data connections are refused, as a strict server
    does, so a file only arrives if both went over TLS. `commands` lists the
    commands received, in order."""

    def __init__(self, root: Path, certificate: tuple[Path, Path]) -> None:
        self.commands: list[str] = []
        super().__init__(root)
        commands = self.commands

        class Handler(TLS_FTPHandler):
            authorizer = self.handler.authorizer
            banner = "leadback test ftps"
            certfile = str(certificate[0])
            keyfile = str(certificate[1])
            tls_control_required = True
            tls_data_required = True

            def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
                commands.append(cmd)
                super().pre_process_command(line, cmd, arg)

        self.server.close_all()
        self.handler = Handler
        self.server = FTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.address[1])


class _SshServer(asyncssh.SSHServer):
    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == USERNAME and password == PASSWORD


class SftpServer:
    """asyncssh serving `root` (chrooted) over SFTP with a fresh host key.

    Logs in USERNAME with PASSWORD, or with a key listed in `client_keys`."""

    def __init__(self, root: Path, *, client_keys: list[str] | None = None) -> None:
        self.root = root
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_keys = client_keys or []
        self.port = 0
        self.logins = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Any = None

    @property
    def public_host_key(self) -> str:
        return self.host_key.export_public_key().decode().strip()

    async def _start(self) -> None:
        authorized = (
            asyncssh.import_authorized_keys("\n".join(self.client_keys))
            if self.client_keys
            else None
        )
        root = str(self.root)
        outer = self

        class Server(_SshServer):
            def auth_completed(self) -> None:
                outer.logins += 1

        self._server = await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[self.host_key],
            authorized_client_keys=authorized,
            server_factory=Server,
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=root),
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted"


class SmtpServer:
    """aiosmtpd keeping every message it accepts."""

    def __init__(self) -> None:
        self.inbox = _Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[tuple[list[str], EmailMessage]]:
        return [
            (rcpt, message_from_bytes(raw, policy=policy.default))  # type: ignore[misc]
            for rcpt, raw in self.inbox.messages
        ]

    def __enter__(self) -> Self:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


class S3Server:
    """moto's S3 (in server mode) on 127.0.0.1; any access key is accepted."""

    ACCESS_KEY_ID = "AKIALEADBACKTEST"
    SECRET_ACCESS_KEY = "leadback-s3-secret"
    REGION = "us-east-1"

    def __init__(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)

    @property
    def endpoint_url(self) -> str:
        host, port = self.server.get_host_and_port()
        return f"http://{host}:{port}"

    def client(self) -> Any:
        """A plain boto3 client on this server, for setting up and looking."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.REGION,
            aws_access_key_id=self.ACCESS_KEY_ID,
            aws_secret_access_key=self.SECRET_ACCESS_KEY,
        )

    def read(self, bucket: str, key: str) -> bytes:
        return bytes(self.client().get_object(Bucket=bucket, Key=key)["Body"].read())

    def keys(self, bucket: str) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def __enter__(self) -> Self:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
