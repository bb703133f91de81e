"""SFTP uploads of batch files, to a server whose host key is pinned.

The pinned key is the only one trusted: known_hosts files, agents and the
user's own keys are never consulted, so the worker's home directory cannot
change who is trusted or what credentials are offered.
"""

import asyncio
import hashlib
import posixpath
import socket
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import asyncssh

from sources.transports import (
    BatchFile,
    BatchTransport,
    ConfigProblems,
    StillMine,
    TransportError,
    guarded_connection,
    lease_check,
    server_host_problems,
)

if TYPE_CHECKING:
    from sources.models import FeedbackConfig

KEY_PREFIXES = ("ssh-", "ecdsa-", "sk-")
T = TypeVar("T")


@dataclass(frozen=True)
class SftpDestination:
    host: str
    host_key: str
    port: int = 22
    username: str = ""
    password: str = ""
    private_key: str = ""
    directory: str = ""
    timeout_s: float = 30.0

    def describe(self) -> str:
        return f"sftp://{self.host}:{self.port}/{self.directory.strip('/')}"


class SftpTransport(BatchTransport):
    name = "sftp"
    default_port = 22

    def __init__(self, config: "FeedbackConfig", *, timeout_s: float) -> None:
        super().__init__(config, timeout_s=timeout_s)
        self.destination = SftpDestination(
            host=config.batch_host,
            port=config.batch_port or self.default_port or 22,
            host_key=config.batch_host_key,
            username=config.batch_username,
            password=config.batch_password,
            private_key=config.batch_private_key,
            directory=config.batch_directory,
            timeout_s=timeout_s,
        )

    @classmethod
    def config_problems(cls, config: "FeedbackConfig") -> ConfigProblems:
        problems = server_host_problems(config)
        if not config.batch_username:
            problems.append(("batch_username", "SFTP needs a username."))
        if not (config.batch_password or config.batch_private_key):
            problems.append(
                ("batch_password", "SFTP needs a password or a private key.")
            )
        try:
            host_key_parse(config.batch_host_key)
        except ValueError as exc:
            problems.append(("batch_host_key", str(exc)))
        if config.batch_private_key.strip():
            try:
                private_key_parse(config.batch_private_key)
            except ValueError as exc:
                problems.append(("batch_private_key", str(exc)))
        return problems

    def describe(self) -> str:
        return self.destination.describe()

    def put(self, file: BatchFile, *, still_mine: StillMine | None = None) -> str:
        return sftp_put(self.destination, file, still_mine=still_mine)


def host_key_parse(text: str) -> asyncssh.SSHKey:
    """The public key of an OpenSSH public key line or a known_hosts line.

    Raises ValueError naming what is wrong."""
    fields = text.strip().split()
    # A known_hosts line starts with the host name(s); a public key line does not.
    if fields and not fields[0].startswith(KEY_PREFIXES):
        fields = fields[1:]
    if len(fields) < 2:
        raise ValueError(
            "Enter the server's public key as in known_hosts, e.g. "
            "'ssh-ed25519 AAAA...'."
        )
    try:
        return asyncssh.import_public_key(f"{fields[0]} {fields[1]}")
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ValueError(f"The host key is not a public key: {exc}") from None


def private_key_parse(text: str, passphrase: str | None = None) -> asyncssh.SSHKey:
    try:
        return asyncssh.import_private_key(text.strip() + "\n", passphrase)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ValueError(f"The private key cannot be read: {exc}") from None


def sftp_put(
    destination: SftpDestination,
    file: BatchFile,
    *,
    still_mine: StillMine | None = None,
) -> str:
    """Upload `file`; returns what happened, in a sentence for the attempt log."""
    try:
        host_key = host_key_parse(destination.host_key)
        client_key = (
            private_key_parse(destination.private_key)
            if destination.private_key.strip()
            else None
        )
    except ValueError as exc:
        raise TransportError(str(exc), permanent=True) from None
    # The guard's check and connect happen here, before asyncssh sees a socket.
    sock = guarded_connection(destination.host, destination.port, destination.timeout_s)
    where = destination.describe()
    try:
        # asyncssh's steps run on an event loop of their own, in a thread of
        # their own, so this thread may hold a running loop of its own (an
        # async caller) and still does the lease check, with its database
        # connection, between the steps.
        with _LoopThread() as runner:
            return _put(
                runner, destination, file, sock, host_key, client_key, still_mine
            )
    except TransportError:
        raise
    except asyncssh.HostKeyNotVerifiable:
        raise TransportError(
            f"{where}: the server's host key is not the pinned one; not connecting.",
            permanent=True,
        ) from None
    except asyncssh.PermissionDenied:
        raise TransportError(f"{where} refused the login.", permanent=True) from None
    except asyncssh.SFTPError as exc:
        permanent = exc.code in (
            asyncssh.FX_PERMISSION_DENIED,
            asyncssh.FX_NO_SUCH_FILE,
            asyncssh.FX_NO_SUCH_PATH,
        )
        raise TransportError(f"{where}: {exc.reason}", permanent=permanent) from None
    except TimeoutError:
        raise TransportError(f"{where} did not answer in time.") from None
    except (OSError, asyncssh.Error) as exc:
        raise TransportError(f"{where}: {type(exc).__name__}: {exc}") from None
    finally:
        sock.close()


class _LoopThread:
    """An event loop in a daemon thread; run() waits for one coroutine on it."""

    def __enter__(self) -> "_LoopThread":
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        return self

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def _put(
    runner: _LoopThread,
    destination: SftpDestination,
    file: BatchFile,
    sock: socket.socket,
    host_key: asyncssh.SSHKey,
    client_key: asyncssh.SSHKey | None,
    still_mine: StillMine | None,
) -> str:
    where = destination.describe()
    conn: asyncssh.SSHClientConnection = runner.run(
        _connect(
            destination.host,
            destination.port,
            sock=sock,
            username=destination.username,
            password=destination.password or None,
            client_keys=[client_key] if client_key else None,
            known_hosts=([host_key], [], []),
            config=None,
            agent_path=None,
            connect_timeout=destination.timeout_s,
            login_timeout=destination.timeout_s,
        )
    )
    try:
        sftp: asyncssh.SFTPClient = runner.run(_start_sftp(conn))
        target = posixpath.join(destination.directory or ".", file.name)
        part = f"{target}.part"
        if runner.run(sftp.exists(target)):
            if runner.run(_remote_sha256(sftp, target)) == file.sha256:
                return f"{file.name} was already complete at {where}."
            raise TransportError(
                f"A different file named {file.name!r} is already at {where}; "
                "it was left alone.",
                permanent=True,
            )
        runner.run(_write(sftp, part, file.content))
        size = runner.run(sftp.stat(part)).size
        if size != len(file.content):
            raise TransportError(
                f"{file.name}.part at {where} has {size} bytes, not "
                f"{len(file.content)}; not renaming it."
            )
        lease_check(still_mine)
        runner.run(sftp.rename(part, target))
    finally:
        runner.run(_close(conn))
    return f"Uploaded {file.name} ({len(file.content)} bytes) to {where}."


async def _connect(*args: Any, **kwargs: Any) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(*args, **kwargs)


async def _close(conn: asyncssh.SSHClientConnection) -> None:
    # On the loop's own thread: asyncssh is not thread-safe, and a close from
    # the calling thread raced the loop writing to the same socket.
    conn.close()
    await conn.wait_closed()


async def _start_sftp(conn: asyncssh.SSHClientConnection) -> asyncssh.SFTPClient:
    return await conn.start_sftp_client()


async def _remote_sha256(sftp: asyncssh.SFTPClient, path: str) -> str:
    digest = hashlib.sha256()
    async with sftp.open(path, "rb") as remote:
        while chunk := await remote.read(64 * 1024):
            digest.update(chunk if isinstance(chunk, bytes) else chunk.encode())
    return digest.hexdigest()


async def _write(sftp: asyncssh.SFTPClient, path: str, content: bytes) -> None:
    async with sftp.open(path, "wb") as remote:
        await remote.write(content)
