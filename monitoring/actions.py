"""What an alert does: email, webhook events, Apprise notifications, pausing
the source. One function per action type; each raises TransportError (with
`permanent`) when the action did not happen, like the forwarding transports.

`webhook` and `pause_source` only write rows (the webhook engine delivers the
events), so they run inside the transaction that marks their outbox row done
and happen exactly once. Email and Apprise reach the outside world, which
cannot be taken back: a worker cut off after sending and before marking sends
again once its lease runs out (at least once). Every try of one action carries
the same Message-ID so a mail system can drop the copy.
"""

import smtplib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from monitoring.models import Alert, AlertAction, Monitor
from sources.outbound.guard import destination_problem
from sources.transports import TransportError
from sources.transports.email import GuardedEmailBackend

EMAIL_TIMEOUT_S = 30.0
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
# Actions that only write rows: run in the transaction that marks them done.
IN_TRANSACTION = frozenset({"webhook", "pause_source"})
TYPES = ("email", "webhook", "notify", "pause_source")


def alert_payload(alert: Alert) -> dict[str, Any]:
    """What every action says about an alert: numbers and names, no PII."""
    monitor = alert.monitor
    scope = {
        name: getattr(monitor, name).slug
        for name in ("source", "buyer", "flow")
        if getattr(monitor, f"{name}_id") is not None
    }
    return {
        "id": alert.public_id,
        "monitor": monitor.slug,
        "name": monitor.name,
        "metric": monitor.metric,
        "scope": scope,
        "state": alert.state,
        "value": alert.value,
        "interval": {"low": alert.low, "high": alert.high},
        "sample": alert.sample,
        "condition": {
            "op": monitor.op,
            "threshold": alert.threshold,
            "min_sample": monitor.min_sample,
            "confidence": monitor.confidence,
        },
        "window": {
            "from": alert.window_start.isoformat(),
            "to": alert.window_end.isoformat(),
        },
        "at": alert.at.isoformat(),
    }


def format_value(value: float | None, metric: str) -> str:
    """A metric's value as people read it: rates in %, others as numbers."""
    if value is None:
        return "-"
    if metric in (Monitor.Metric.AVERAGE_QUALITY, Monitor.Metric.DEAD_NOTIFICATIONS):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value * 100:.2f} %"


def alert_title(alert: Alert) -> str:
    verb = "Firing" if alert.state == Alert.State.FIRING else "Resolved"
    return f"[Leadback] {verb}: {alert.monitor.name}"


def alert_text(alert: Alert) -> str:
    monitor, metric = alert.monitor, alert.monitor.metric
    label = Monitor.Metric(metric).label.lower()
    low, high = format_value(alert.low, metric), format_value(alert.high, metric)
    return (
        f"{monitor.name} ({monitor.slug}) is {alert.state}: the {label} over "
        f"{alert.window_start:%Y-%m-%d} to {alert.window_end:%Y-%m-%d} is "
        f"{format_value(alert.value, metric)} "
        f"(interval {low} to {high} "
        f"at {monitor.confidence:.0%} confidence, sample {alert.sample}); "
        f"the threshold is {monitor.op} {format_value(alert.threshold, metric)}."
    )


def run_email(action: AlertAction) -> str:
    alert = action.alert
    recipients = list(action.spec.get("to") or [])
    message = EmailMessage(
        subject=alert_title(alert),
        body=alert_text(alert) + "\n",
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
        headers={"Message-ID": f"<{alert.public_id}.{action.index}@leadback>"},
    )
    where = f"email via {settings.EMAIL_HOST}"
    backend: Any
    if settings.EMAIL_BACKEND == SMTP_BACKEND:
        # The relay is reached through the SSRF guard, as batch files are.
        backend = GuardedEmailBackend(timeout=EMAIL_TIMEOUT_S, fail_silently=False)
    else:
        # The console backend of `make demo` and development, or another one
        # the installation chose.
        backend = get_connection(fail_silently=False)
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
        raise TransportError(
            f"{where}: the relay answered {exc.smtp_code}.",
            permanent=exc.smtp_code >= 500,
        ) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise TransportError(f"{where}: {type(exc).__name__}") from None
    if not sent:
        raise TransportError(f"{where}: the message was not sent.")
    return f"Emailed {len(recipients)} recipient(s)."


def notify_url_problem(url: str) -> str | None:
    """Why an Apprise URL may not be used, or None: Apprise must know it, and a
    host in it must pass the SSRF guard (a service URL such as slack://… names
    tokens, not a host, and reaches the service's public address)."""
    import apprise

    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return "is not an Apprise URL Apprise can use"
    # Apprise declares a "host" token for the services whose host the URL
    # names (json://, ntfy://host/…); elsewhere the URL's "host" is a token.
    names_host = "host" in getattr(type(plugin), "template_tokens", {})
    host = getattr(plugin, "host", None)
    if names_host and isinstance(host, str) and host:
        problem = destination_problem(host)
        if problem:
            return f"is refused by the SSRF guard: {problem}"
    return None


def run_notify(action: AlertAction) -> str:
    import apprise

    url = str(action.spec.get("url") or "")
    # Checked on every run, not only when configured: the allowlist and DNS
    # may have changed since.
    problem = notify_url_problem(url)
    if problem:
        raise TransportError(f"The notify URL {problem}.", permanent=True)
    alert = action.alert
    notifier = apprise.Apprise()
    notifier.add(url)
    if not notifier.notify(title=alert_title(alert), body=alert_text(alert)):
        scheme = urlsplit(url).scheme or "apprise"
        raise TransportError(f"{scheme}: the service did not take the notification.")
    return "Notified."


def run_webhook(action: AlertAction) -> str:
    from feedback.webhooks.services import (
        webhook_emit,
    )

    alert = action.alert
    count = webhook_emit(event=f"alert.{alert.state}", payload=alert_payload(alert))
    return f"Queued alert.{alert.state} for {count} endpoint(s)."


def run_pause_source(action: AlertAction) -> str:
    from feedback.sourcestatus.services import (
        source_pause,
    )

    alert = action.alert
    monitor = alert.monitor
    if alert.state != Alert.State.FIRING:
        return "Nothing to do: a resolved alert does not resume the source."
    if monitor.source is None:
        raise TransportError("The monitor has no source to pause.", permanent=True)
    paused = source_pause(
        source=monitor.source,
        reason=alert_text(alert),
        actor=None,
        via=f"monitor:{monitor.slug}",
    )
    return "Paused the source." if paused else "The source was already paused."


RUNNERS: dict[str, Callable[[AlertAction], str]] = {
    "email": run_email,
    "webhook": run_webhook,
    "notify": run_notify,
    "pause_source": run_pause_source,
}
