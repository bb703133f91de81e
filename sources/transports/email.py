"""Batch files by email: the CSV file attached, through the installation's SMTP
relay (EMAIL_HOST), reached through the SSRF guard like any other destination.

Email cannot be taken back or checked for, so a try cut off after the relay
accepted the message may send it twice; every try of a run carries the same
Message-ID so the receiving side can drop the copy.
"""

import smtplib
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.mail.backends.smtp import EmailBackend
from django.core.validators import validate_email

from sources.transports import (
    BatchFile,
    BatchTransport,
    ConfigProblems,
    StillMine,
    TransportError,
    guarded_connection,
)

if TYPE_CHECKING:
    from sources.models import FeedbackConfig


@dataclass(frozen=True)
class EmailDestination:
    to: tuple[str, ...]
    subject: str = ""
    timeout_s: float = 30.0

    def describe(self) -> str:
        return f"email to {', '.join(self.to)} via {settings.EMAIL_HOST}"


class EmailTransport(BatchTransport):
    name = "email"

    def __init__(self, config: "FeedbackConfig", *, timeout_s: float) -> None:
        super().__init__(config, timeout_s=timeout_s)
        self.destination = EmailDestination(
            to=tuple(config.batch_email_to or ()),
            subject=config.batch_email_subject,
            timeout_s=timeout_s,
        )

    @classmethod
    def config_problems(cls, config: "FeedbackConfig") -> ConfigProblems:
        recipients = config.batch_email_to
        if not isinstance(recipients, list) or not recipients:
            return [
                (
                    "batch_email_to",
                    'Enter a list of recipients, e.g. ["returns@source.example"].',
                )
            ]
        problems: ConfigProblems = []
        for address in recipients:
            try:
                validate_email(address)
            except ValidationError:
                problems.append(
                    ("batch_email_to", f"{address!r} is not an email address.")
                )
        return problems

    def describe(self) -> str:
        return self.destination.describe()

    def put(self, file: BatchFile, *, still_mine: StillMine | None = None) -> str:
        # Mail cannot be taken back, so there is no last moment to stand back
        # at: the Message-ID lets the receiving side drop a second copy.
        return email_send(self.destination, file)


class GuardedSMTP(smtplib.SMTP):
    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return guarded_connection(host, port, timeout)


class GuardedSMTP_SSL(smtplib.SMTP_SSL):
    context: ssl.SSLContext

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = guarded_connection(host, port, timeout)
        return self.context.wrap_socket(sock, server_hostname=host)


class GuardedEmailBackend(EmailBackend):
    """Django's SMTP backend, connecting through the SSRF guard."""

    @property
    def connection_class(self) -> Any:  # type: ignore[override]
        return GuardedSMTP_SSL if self.use_ssl else GuardedSMTP


def email_send(destination: EmailDestination, file: BatchFile) -> str:
    """Send `file` as an attachment; returns what happened, for the attempt log."""
    where = destination.describe()
    message = EmailMessage(
        subject=destination.subject or file.name,
        body=f"Attached: {file.name}\n",
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=list(destination.to),
        headers={"Message-ID": f"<{file.message_id or file.sha256}@leadback>"},
    )
    message.attach(file.name, file.content, "text/csv")
    backend = GuardedEmailBackend(timeout=destination.timeout_s, fail_silently=False)
    try:
        sent = backend.send_messages([message])
    except TransportError:
        raise
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise TransportError(
            f"{where}: the relay refused the recipients.",
            permanent=all(code >= 500 for code in codes),
        ) from None
    except smtplib.SMTPResponseException as exc:
        error = exc.smtp_error
        reason = error.decode(errors="replace") if isinstance(error, bytes) else error
        raise TransportError(
            f"{where}: the relay answered {exc.smtp_code} {reason}",
            permanent=exc.smtp_code >= 500,
        ) from None
    except (TimeoutError, smtplib.SMTPServerDisconnected):
        raise TransportError(f"{where}: the relay did not answer in time.") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise TransportError(f"{where}: {type(exc).__name__}: {exc}") from None
    if not sent:
        raise TransportError(f"{where}: the message was not sent.")
    return f"Emailed {file.name} ({len(file.content)} bytes) to {len(destination.to)}."
