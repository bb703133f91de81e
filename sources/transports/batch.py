"""Which transport a batch config uses, and sending a file with it."""

from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from sources.models import FeedbackConfig
from sources.transports import BatchFile, StillMine, TransportError
from sources.transports.email import EmailDestination, email_send
from sources.transports.ftp import FtpDestination, ftp_put
from sources.transports.sftp import SftpDestination, sftp_put

Transport = FeedbackConfig.Transport

# What a file name template sees (feedback/batches.py fills in the real values);
# used to check a template on save.
SAMPLE_FILE_VARIABLES: dict[str, Any] = {
    "period": {
        "start": datetime(2026, 11, 24, 6, tzinfo=UTC),
        "end": datetime(2026, 11, 25, 6, tzinfo=UTC),
    },
    "source": {"name": "Bluesky Leads", "slug": "bluesky-leads"},
    "kind": "return",
    "run": {"id": "run_0123456789abcdef01234567", "rows": 42},
}
DEFAULT_PORTS: dict[str, int] = {"ftp": 21, "ftps": 21, "sftp": 22}


def batch_destination(
    config: FeedbackConfig,
) -> FtpDestination | SftpDestination | EmailDestination:
    """The destination a batch config describes (secrets included)."""
    timeout_s = float(settings.LEADBACK_BATCH_TIMEOUT_S)
    transport = config.batch_transport
    port = config.batch_port or DEFAULT_PORTS.get(transport, 0)
    if transport in (Transport.FTP, Transport.FTPS):
        return FtpDestination(
            host=config.batch_host,
            port=port,
            username=config.batch_username,
            password=config.batch_password,
            directory=config.batch_directory,
            tls=transport == Transport.FTPS,
            certificate=config.batch_tls_certificate,
            timeout_s=timeout_s,
        )
    if transport == Transport.SFTP:
        return SftpDestination(
            host=config.batch_host,
            port=port,
            host_key=config.batch_host_key,
            username=config.batch_username,
            password=config.batch_password,
            private_key=config.batch_private_key,
            directory=config.batch_directory,
            timeout_s=timeout_s,
        )
    if transport == Transport.EMAIL:
        return EmailDestination(
            to=tuple(config.batch_email_to or ()),
            subject=config.batch_email_subject,
            timeout_s=timeout_s,
        )
    raise TransportError(
        f"The config has no batch transport ({transport!r}).", permanent=True
    )


def batch_file_send(
    *, config: FeedbackConfig, file: BatchFile, still_mine: StillMine | None = None
) -> str:
    """Deliver `file` as the config says; raises TransportError. Network I/O:
    never call inside a transaction."""
    destination = batch_destination(config)
    if isinstance(destination, FtpDestination):
        return ftp_put(destination, file, still_mine=still_mine)
    if isinstance(destination, SftpDestination):
        return sftp_put(destination, file, still_mine=still_mine)
    return email_send(destination, file)
