"""Sending digests: once per period, by email or the source's batch transport."""

import datetime
import logging
import smtplib
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from reporting.digests.figures import digest_figures
from reporting.digests.periods import (
    Period,
    digest_last_complete_period,
    digest_last_send_time,
    known_zone,
    period_sent_at,
)
from reporting.digests.render import RenderedDigest, digest_render
from reporting.digests.selectors import digest_batch_config, digest_list
from reporting.models import Digest, DigestSend
from sources.models import FeedbackConfig, Source
from sources.transports import BatchFile, TransportError
from sources.transports.batch import batch_file_send
from sources.transports.email import GuardedEmailBackend

logger = logging.getLogger(__name__)

# A send that failed (relay down, FTP server refusing) is tried again by the
# next beats, this many times in all, while its period is still the latest.
MAX_TRIES = 3

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


class DigestError(Exception):
    """A digest could not be delivered; the message says why, for staff."""


@dataclass(frozen=True)
class DueDigest:
    digest: Digest
    period: Period


# Checks -------------------------------------------------------------------------


def digest_problems(
    *,
    source: Source | None,
    channel: str,
    timezone_name: str,
    recipients: object,
) -> list[tuple[str, str]]:
    """What is wrong with a digest's settings, as (field, message) pairs."""
    problems: list[tuple[str, str]] = []
    if not known_zone(timezone_name):
        problems.append(
            (
                "timezone",
                f"{timezone_name!r} is not a known time zone "
                "(an IANA name such as Europe/Berlin).",
            )
        )
    if not isinstance(recipients, list) or not all(
        isinstance(r, str) for r in recipients
    ):
        problems.append(("recipients", "Enter a list of email addresses."))
    else:
        for address in recipients:
            try:
                validate_email(address)
            except ValidationError:
                problems.append(("recipients", f"{address!r} is not an email address."))
        if channel == Digest.Channel.EMAIL and not recipients:
            problems.append(
                ("recipients", "The email channel needs at least one recipient.")
            )
    if (
        channel == Digest.Channel.BATCH
        and source is not None
        and source.pk is not None
        and digest_batch_config(source_id=source.pk) is None
    ):
        problems.append(
            (
                "channel",
                f"{source.name} has no batch feedback config, so it has no batch "
                "transport to send the digest through.",
            )
        )
    return problems


# Writes -------------------------------------------------------------------------


def digest_save(
    *,
    digest: Digest | None = None,
    slug: str,
    source: Source,
    enabled: bool,
    every: str,
    weekday: int,
    at: datetime.time,
    timezone_name: str,
    channel: str,
    recipients: list[str],
) -> Digest:
    """Update `digest`, or create or update the digest `slug` (configuration as
    code); a ValidationError when its settings are wrong."""
    problems = digest_problems(
        source=source,
        channel=channel,
        timezone_name=timezone_name,
        recipients=recipients,
    )
    if problems:
        raise ValidationError(dict(problems))
    with transaction.atomic():
        if digest is None:
            digest = Digest.objects.select_for_update().filter(
                slug=slug
            ).first() or Digest(slug=slug, source=source)
        digest.slug = slug
        digest.source = source
        digest.enabled = enabled
        digest.every = every
        digest.weekday = weekday
        digest.at = at
        digest.timezone = timezone_name
        digest.channel = channel
        digest.recipients = list(recipients)
        digest.full_clean()
        digest.save()
    return digest


# Due digests ----------------------------------------------------------------------


def digests_due(*, now: datetime.datetime | None = None) -> list[DueDigest]:
    """Enabled digests whose latest scheduled time has passed and whose period
    has not been sent (or failed and may be tried again)."""
    moment = now or timezone.now()
    due = []
    for digest in digest_list(enabled_only=True):
        try:
            send_time = digest_last_send_time(digest, now=moment)
        except ValueError as exc:
            # One digest's bad time zone must not stop the others.
            logger.warning("digest %s: %s", digest.slug, exc)
            continue
        # A new digest starts with its next scheduled time, not with a period
        # that ended before anyone asked for it.
        if send_time < digest.created_at:
            continue
        period = period_sent_at(digest, send_time)
        sent = DigestSend.objects.filter(
            digest=digest, period_start=period.start
        ).first()
        if sent is None or (
            sent.status == DigestSend.Status.FAILED and sent.tries < MAX_TRIES
        ):
            due.append(DueDigest(digest, period))
    return due


def digests_send_due(*, now: datetime.datetime | None = None) -> list[DigestSend]:
    """Send every due digest; returns the sends this call made (sent or failed)."""
    made = []
    for item in digests_due(now=now):
        send = digest_send(digest=item.digest, period=item.period)
        if send is not None:
            made.append(send)
    return made


def digest_claim(*, digest: Digest, period: Period) -> DigestSend | None:
    """Take the period's send row, or None when another process has it (sent,
    sending, or out of tries). Committed before anything is sent."""
    try:
        with transaction.atomic():
            return DigestSend.objects.create(
                digest=digest,
                period_start=period.start,
                period_end=period.end,
                channel=digest.channel,
            )
    except IntegrityError:
        pass
    with transaction.atomic():
        taken = (
            DigestSend.objects.filter(
                digest=digest,
                period_start=period.start,
                status=DigestSend.Status.FAILED,
                tries__lt=MAX_TRIES,
            )
            .select_for_update(skip_locked=True)
            .first()
        )
        if taken is None:
            return None
        taken.status = DigestSend.Status.SENDING
        taken.tries += 1
        taken.channel = digest.channel
        taken.save(update_fields=["status", "tries", "channel"])
        return taken


def digest_send(*, digest: Digest, period: Period) -> DigestSend | None:
    """Send the digest of `period` once: None when it was already taken."""
    send = digest_claim(digest=digest, period=period)
    if send is None:
        return None
    try:
        rendered = digest_render(digest_figures(digest=digest, period=period))
        detail = digest_deliver(
            digest=digest,
            rendered=rendered,
            recipients=list(digest.recipients),
            # The same on every try, so a mail system can drop a second copy.
            message_id=f"digest-{send.pk}",
        )
    except DigestError as exc:
        return digest_send_mark(send=send, ok=False, detail=str(exc))
    except Exception as exc:
        logger.exception("digest %s: unexpected error", digest.slug)
        return digest_send_mark(
            send=send,
            ok=False,
            detail=f"Unexpected error ({type(exc).__name__}); see the worker's log.",
        )
    return digest_send_mark(send=send, ok=True, detail=detail)


def digest_send_mark(*, send: DigestSend, ok: bool, detail: str) -> DigestSend:
    """Record how a send ended."""
    with transaction.atomic():
        send.status = DigestSend.Status.SENT if ok else DigestSend.Status.FAILED
        send.detail = detail[:2000]
        send.sent_at = timezone.now() if ok else None
        send.save(update_fields=["status", "detail", "sent_at"])
    if not ok:
        # Not the detail: a refusal may quote recipients' addresses. Staff read
        # it on the digest's page.
        logger.warning(
            "digest %s: the send of %s failed (try %d)",
            send.digest_id,
            send.period_start,
            send.tries,
        )
    return send


def digest_send_test(
    *, digest: Digest, to: str, now: datetime.datetime | None = None
) -> str:
    """Email the digest of the last complete period to `to` (staff's own
    address), whatever the digest's channel; records no send. Raises
    DigestError."""
    try:
        validate_email(to)
    except ValidationError:
        raise DigestError(f"{to!r} is not an email address.") from None
    period = digest_last_complete_period(digest, now=now or timezone.now())
    rendered = digest_render(digest_figures(digest=digest, period=period))
    return digest_email(
        rendered=rendered,
        recipients=[to],
        subject_prefix="[Test] ",
        message_id=f"digest-test-{digest.pk}-{timezone.now().timestamp():.0f}",
    )


# Channels ---------------------------------------------------------------------


def digest_deliver(
    *,
    digest: Digest,
    rendered: RenderedDigest,
    recipients: list[str],
    message_id: str,
) -> str:
    """Send by the digest's channel; what happened, or DigestError. Network I/O:
    never inside a transaction."""
    if digest.channel == Digest.Channel.BATCH:
        config = digest_batch_config(source_id=digest.source_id)
        if config is None:
            raise DigestError(
                f"{digest.source.name} has no batch feedback config to send through."
            )
        return digest_batch(config=config, rendered=rendered, message_id=message_id)
    return digest_email(rendered=rendered, recipients=recipients, message_id=message_id)


def mail_connection() -> BaseEmailBackend:
    """The installation's mail backend; SMTP through the SSRF guard, as batch
    files by email are sent."""
    if settings.EMAIL_BACKEND == SMTP_BACKEND:
        return GuardedEmailBackend(
            timeout=float(settings.LEADBACK_BATCH_TIMEOUT_S), fail_silently=False
        )
    return get_connection(fail_silently=False)


def digest_email(
    *,
    rendered: RenderedDigest,
    recipients: list[str],
    message_id: str,
    subject_prefix: str = "",
) -> str:
    """HTML with a plain-text alternative and the returns CSV attached."""
    if not recipients:
        raise DigestError("The digest has no recipients.")
    message = EmailMultiAlternatives(
        subject=subject_prefix + rendered.subject,
        body=rendered.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
        headers={"Message-ID": f"<{message_id}@leadback>"},
    )
    message.attach_alternative(rendered.html, "text/html")
    message.attach(rendered.returns_name, rendered.returns_csv, "text/csv")
    try:
        sent = mail_connection().send_messages([message])
    except TransportError as exc:
        raise DigestError(exc.message) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DigestError(f"Email not sent: {type(exc).__name__}: {exc}") from None
    if not sent:
        raise DigestError("Email not sent: the mail backend sent nothing.")
    return (
        f"Emailed to {len(recipients)} recipient{'s' if len(recipients) > 1 else ''}."
    )


def digest_batch(
    *, config: FeedbackConfig, rendered: RenderedDigest, message_id: str
) -> str:
    """The summary and the returns as two CSV files, by the config's transport."""
    results = []
    for name, content in (
        (rendered.summary_name, rendered.summary_csv),
        (rendered.returns_name, rendered.returns_csv),
    ):
        file = BatchFile(name=name, content=content, message_id=f"{message_id}-{name}")
        try:
            results.append(batch_file_send(config=config, file=file))
        except TransportError as exc:
            raise DigestError(f"{name}: {exc.message}") from None
    return " ".join(results)


def digest_preview(
    *, digest: Digest, now: datetime.datetime | None = None
) -> RenderedDigest:
    """The digest of the last complete period, as it would be sent."""
    period = digest_last_complete_period(digest, now=now or timezone.now())
    return digest_render(digest_figures(digest=digest, period=period))
