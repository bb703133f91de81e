"""FTP and FTPS (explicit TLS, AUTH TLS) uploads of batch files.

The file goes up as `<name>.part` and is renamed once complete, so the source
never picks up half a file. A name that is already there with the same content
means an earlier try got that far (a worker killed after the rename): it counts
as delivered rather than sending the file twice.
"""

import contextlib
import ftplib
import hashlib
import io
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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


@dataclass(frozen=True)
class FtpDestination:
    host: str
    port: int = 21
    username: str = ""
    password: str = ""
    directory: str = ""
    tls: bool = False
    # PEM certificate(s) to trust instead of the system's authorities.
    certificate: str = ""
    timeout_s: float = 30.0

    def describe(self) -> str:
        scheme = "ftps" if self.tls else "ftp"
        return f"{scheme}://{self.host}:{self.port}/{self.directory.strip('/')}"


class FtpTransport(BatchTransport):
    """Plain FTP (ftps: the same with explicit TLS)."""

    name = "ftp"
    default_port = 21
    tls = False

    def __init__(self, config: "FeedbackConfig", *, timeout_s: float) -> None:
        super().__init__(config, timeout_s=timeout_s)
        self.destination = FtpDestination(
            host=config.batch_host,
            port=config.batch_port or self.default_port or 21,
            username=config.batch_username,
            password=config.batch_password,
            directory=config.batch_directory,
            tls=self.tls,
            certificate=config.batch_tls_certificate,
            timeout_s=timeout_s,
        )

    @classmethod
    def config_problems(cls, config: "FeedbackConfig") -> ConfigProblems:
        return server_host_problems(config)

    def describe(self) -> str:
        return self.destination.describe()

    def put(self, file: BatchFile, *, still_mine: StillMine | None = None) -> str:
        return ftp_put(self.destination, file, still_mine=still_mine)


class FtpsTransport(FtpTransport):
    name = "ftps"
    tls = True

    @classmethod
    def config_problems(cls, config: "FeedbackConfig") -> ConfigProblems:
        problems = super().config_problems(config)
        if config.batch_tls_certificate.strip():
            try:
                ssl.create_default_context(cadata=config.batch_tls_certificate)
            except (ssl.SSLError, ValueError):
                problems.append(
                    (
                        "batch_tls_certificate",
                        "This is not a PEM certificate "
                        "(-----BEGIN CERTIFICATE----- ...).",
                    )
                )
        return problems


class _GuardedConnect:
    """ftplib's connect(), opening the control connection through the guard.

    Data connections need no check of their own: ftplib connects them to the
    control connection's peer (it ignores the address in a PASV reply unless
    trust_server_pasv_ipv4_address is set), which the guard already allowed.
    """

    host: str
    port: int
    timeout: Any
    encoding: str

    def connect(  # type: ignore[override]
        self,
        host: str = "",
        port: int = 0,
        timeout: float = -999,
        source_address: Any = None,
    ) -> str:
        ftp: Any = self
        if host:
            ftp.host = host
        if port > 0:
            ftp.port = port
        if timeout != -999:
            ftp.timeout = timeout
        ftp.sock = guarded_connection(ftp.host, ftp.port, ftp.timeout)
        ftp.af = ftp.sock.family
        ftp.file = ftp.sock.makefile("r", encoding=ftp.encoding)
        ftp.welcome = ftp.getresp()
        return str(ftp.welcome)


class GuardedFTP(_GuardedConnect, ftplib.FTP):
    pass


class GuardedFTP_TLS(_GuardedConnect, ftplib.FTP_TLS):
    pass


def _tls_context(certificate: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if certificate.strip():
        try:
            context = ssl.create_default_context(cadata=certificate)
        except (ssl.SSLError, ValueError) as exc:
            raise TransportError(
                f"The FTPS certificate is not a usable PEM certificate: {exc}",
                permanent=True,
            ) from None
    return context


def _remote_size(ftp: ftplib.FTP, name: str) -> int | None:
    try:
        size = ftp.size(name)
    except ftplib.error_perm:
        return None  # 550: no such file
    return int(size) if size is not None else None


def _remote_sha256(ftp: ftplib.FTP, name: str) -> str:
    digest = hashlib.sha256()
    ftp.retrbinary(f"RETR {name}", digest.update)
    return digest.hexdigest()


def ftp_put(
    destination: FtpDestination, file: BatchFile, *, still_mine: StillMine | None = None
) -> str:
    """Upload `file`; returns what happened, in a sentence for the attempt log."""
    ftp: ftplib.FTP
    if destination.tls:
        ftp = GuardedFTP_TLS(
            context=_tls_context(destination.certificate),
            timeout=destination.timeout_s,
        )
    else:
        ftp = GuardedFTP(timeout=destination.timeout_s)
    where = destination.describe()
    try:
        ftp.connect(destination.host, destination.port)
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.auth()
        ftp.login(destination.username or "anonymous", destination.password)
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.prot_p()
        if destination.directory:
            ftp.cwd(destination.directory)
        ftp.voidcmd("TYPE I")  # SIZE counts bytes only in binary mode
        result = _put(ftp, file, where, still_mine)
        # The file is in place; a rude goodbye changes nothing.
        with contextlib.suppress(OSError, EOFError, ftplib.Error):
            ftp.quit()
        return result
    except TransportError:
        raise
    except ftplib.error_perm as exc:
        raise TransportError(f"{where} refused: {exc}", permanent=True) from None
    except ftplib.error_temp as exc:
        raise TransportError(f"{where} answered: {exc}") from None
    except ssl.SSLCertVerificationError as exc:
        raise TransportError(
            f"{where}: the server's TLS certificate is not trusted "
            f"({exc.verify_message}).",
            permanent=True,
        ) from None
    except ssl.SSLError as exc:
        raise TransportError(f"{where}: TLS error: {exc.reason or exc}") from None
    except TimeoutError:
        raise TransportError(f"{where} did not answer in time.") from None
    except (OSError, EOFError, ftplib.Error) as exc:
        raise TransportError(f"{where}: {type(exc).__name__}: {exc}") from None
    finally:
        ftp.close()


def _put(
    ftp: ftplib.FTP, file: BatchFile, where: str, still_mine: StillMine | None
) -> str:
    existing = _remote_size(ftp, file.name)
    if existing is not None:
        if existing == len(file.content) and _remote_sha256(ftp, file.name) == (
            file.sha256
        ):
            return f"{file.name} was already complete at {where}."
        raise TransportError(
            f"A different file named {file.name!r} is already at {where}; "
            "it was left alone.",
            permanent=True,
        )
    part = f"{file.name}.part"
    ftp.storbinary(f"STOR {part}", io.BytesIO(file.content))
    _part_check(_remote_size(ftp, part), file, where)
    lease_check(still_mine)
    ftp.rename(part, file.name)
    return f"Uploaded {file.name} ({len(file.content)} bytes) to {where}."


def _part_check(size: int | None, file: BatchFile, where: str) -> None:
    # A server may still be writing an earlier, cut-off upload into the same
    # .part; renaming a file of the wrong size would hand the source a bad file.
    if size != len(file.content):
        raise TransportError(
            f"{file.name}.part at {where} has {size} bytes, not "
            f"{len(file.content)}; not renaming it."
        )
