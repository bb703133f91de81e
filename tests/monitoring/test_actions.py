"""Alert actions against real local servers: SMTP (aiosmtpd) and an HTTP
receiver for Apprise's json:// schema; the outbox's once-per-change guarantee,
retries, giving up, crashes and resend."""

import json
import uuid

import pytest
from django.utils import timezone

from monitoring.models import Alert, AlertAction, Monitor
from monitoring.services import (
    alert_actions_resend,
    alert_actions_run,
    monitors_evaluate,
)
from tests.monitoring.test_evaluate import deliver, make_monitor
from tests.sources.file_servers import SmtpServer
from tests.sources.servers import RecordingServer, Reply

pytestmark = pytest.mark.django_db
Status = AlertAction.Status


@pytest.fixture
def smtp(settings):
    with SmtpServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = server.port
        settings.EMAIL_USE_TLS = False
        settings.DEFAULT_FROM_EMAIL = "leadback@seller.example"
        settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
        yield server


@pytest.fixture
def receiver(settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    with RecordingServer() as server:
        yield server


def firing(actions, **fields):
    """A monitor on a source with a 40 % return rate, evaluated: one firing alert."""
    monitor = make_monitor(actions=actions, **fields)
    deliver(100, returned=40, lead__source=monitor.source or None)
    monitors_evaluate()
    return Alert.objects.get(monitor=monitor)


@pytest.fixture
def source():
    from tests.factories import SourceFactory

    return SourceFactory(slug="bluesky-leads")


def test_email_reaches_the_relay_once_per_change(smtp, source):
    alert = firing(
        [{"type": "email", "to": ["ops@seller.example", "cto@seller.example"]}],
        source=source,
        name="Bluesky returns",
    )

    assert alert_actions_run() == 1
    assert alert_actions_run() == 0  # done: never again for this change

    [(recipients, message)] = smtp.messages
    assert recipients == ["ops@seller.example", "cto@seller.example"]
    assert message["Subject"] == "[Leadback] Firing: Bluesky returns"
    assert message["Message-ID"] == f"<{alert.public_id}.0@leadback>"
    body = message.get_content()
    assert "return rate" in body
    assert "40.00 %" in body
    assert "sample 100" in body
    assert "the threshold is above 15.00 %" in body
    action = alert.actions.get()
    assert (action.status, action.attempt_count, action.last_error) == (
        Status.SUCCEEDED,
        1,
        "",
    )
    assert action.result == "Emailed 2 recipient(s)."


def test_apprise_json_reaches_a_local_receiver(receiver, source):
    url = f"json://127.0.0.1:{receiver.port}/hooks/alerts"
    alert = firing([{"type": "notify", "url": url}], source=source, name="Returns")

    alert_actions_run()

    request = receiver.last
    assert (request.method, request.path) == ("POST", "/hooks/alerts")
    body = json.loads(request.body)
    assert body["title"] == "[Leadback] Firing: Returns"
    assert "40.00 %" in body["message"]
    assert alert.actions.get().status == Status.SUCCEEDED


def test_apprise_urls_pass_the_ssrf_guard_first(receiver, source, settings):
    url = f"json://127.0.0.1:{receiver.port}/hooks"
    alert = firing([{"type": "notify", "url": url}], source=source)
    settings.LEADBACK_OUTBOUND_ALLOWLIST = []

    alert_actions_run()

    action = alert.actions.get()
    assert action.status == Status.FAILED  # permanent: retrying will not help
    assert "SSRF guard" in action.last_error
    assert receiver.requests == []


def test_a_failing_service_is_retried_then_given_up(receiver, source, settings):
    settings.LEADBACK_RETRY_SCHEDULE_S = [0, 0]
    settings.LEADBACK_RETRY_JITTER = 0
    receiver.reply = Reply(status=503)
    alert = firing(
        [{"type": "notify", "url": f"json://127.0.0.1:{receiver.port}/h"}],
        source=source,
    )

    alert_actions_run()
    action = alert.actions.get()
    assert (action.status, action.attempt_count) == (Status.RETRYING, 1)
    assert action.last_error.startswith("json: the service did not take")

    alert_actions_run()
    alert_actions_run()
    action.refresh_from_db()
    assert (action.status, action.attempt_count) == (Status.DEAD, 3)
    assert len(receiver.requests) == 3

    # Resend (staff, once the service is back): the schedule starts over.
    receiver.reply = Reply(status=200)
    assert alert_actions_resend(ids=[action.pk]) == 1
    alert_actions_run()
    action.refresh_from_db()
    assert (action.status, action.attempt_count) == (Status.SUCCEEDED, 4)
    assert len(receiver.requests) == 4


def test_an_action_abandoned_by_a_dead_worker_runs_once_its_lease_is_out(smtp, source):
    from feedback.leases import due, leases_claim

    alert = firing([{"type": "email", "to": ["ops@seller.example"]}], source=source)
    # A worker claims the action and dies before sending.
    leases_claim(
        AlertAction.objects.filter(due(timezone.now())),
        seconds=300,
        status=Status.SENDING,
    )

    assert alert_actions_run() == 0  # still leased to the dead worker
    assert smtp.messages == []

    AlertAction.objects.update(lease_expires_at=timezone.now())
    assert alert_actions_run() == 1
    assert alert_actions_run() == 0
    assert len(smtp.messages) == 1
    assert alert.actions.get().status == Status.SUCCEEDED


def test_a_stale_claim_does_not_run_the_action_again(smtp, source):
    from monitoring.services import alert_action_run

    alert = firing([{"type": "email", "to": ["ops@seller.example"]}], source=source)
    alert_actions_run()
    action = alert.actions.get()

    # A late message for a claim whose row was finished meanwhile.
    assert alert_action_run(action_id=action.pk, token=uuid.uuid4()) == "stale"
    assert len(smtp.messages) == 1


def test_every_change_runs_its_actions(smtp, source):
    alert = firing([{"type": "email", "to": ["ops@seller.example"]}], source=source)
    alert_actions_run()
    deliver(300, lead__source=source)

    monitors_evaluate()
    alert_actions_run()

    resolved = Alert.objects.exclude(pk=alert.pk).get()
    assert resolved.state == Alert.State.RESOLVED
    subjects = [m["Subject"] for _, m in smtp.messages]
    assert subjects == [
        f"[Leadback] Firing: {alert.monitor.name}",
        f"[Leadback] Resolved: {alert.monitor.name}",
    ]
    assert Monitor.objects.get().state == Monitor.State.OK


def test_another_email_backend_is_used_as_configured(source, mailoutbox):
    # pytest-django's locmem backend stands for the demo's console one.
    alert = firing([{"type": "email", "to": ["ops@seller.example"]}], source=source)

    alert_actions_run()

    [message] = mailoutbox
    assert message.to == ["ops@seller.example"]
    assert message.subject == f"[Leadback] Firing: {alert.monitor.name}"
    assert alert.actions.get().status == Status.SUCCEEDED


def test_apprise_slack_compatible_webhook_reaches_a_local_receiver(receiver, source):
    # Mattermost's incoming webhooks take Slack's schema ({"text": ...}).
    url = f"mmost://127.0.0.1:{receiver.port}/abcdefghijklmnop"
    alert = firing([{"type": "notify", "url": url}], source=source, name="Returns")

    alert_actions_run()

    request = receiver.last
    assert (request.method, request.path) == ("POST", "/hooks/abcdefghijklmnop")
    body = json.loads(request.body)
    assert "[Leadback] Firing: Returns" in body["text"]
    assert "40.00 %" in body["text"]
    assert alert.actions.get().status == Status.SUCCEEDED
