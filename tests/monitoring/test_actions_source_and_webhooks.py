"""The two actions that act inside Leadback: `webhook` emits alert.firing and
alert.resolved to the webhook endpoints that subscribe to them (sent by the
engine, signed, retried), and `pause_source` pauses the monitor's source with
an audit row, once per change."""

import json

import pytest

from feedback.sourcestatus.models import SourceStatusChange
from feedback.webhooks.models import WebhookEndpoint, WebhookMessage
from monitoring.models import Alert, AlertAction
from monitoring.services import alert_actions_run, monitors_evaluate
from sources.models import Source
from tests.factories import SourceFactory
from tests.monitoring.test_actions import firing
from tests.monitoring.test_evaluate import deliver

pytestmark = pytest.mark.django_db
Status = AlertAction.Status
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def source():
    return SourceFactory(slug="bluesky-leads", name="Bluesky Leads")


def endpoint(slug, events):
    return WebhookEndpoint.objects.create(
        slug=slug, url=f"https://{slug}.example/hooks", secret=SECRET, events=events
    )


def bodies(endpoint_):
    return [
        json.loads(m.body)
        for m in WebhookMessage.objects.filter(endpoint=endpoint_).order_by("pk")
    ]


def test_a_webhook_action_emits_firing_then_resolved_to_subscribers(source):
    alerts = endpoint("ops", ["alert.firing", "alert.resolved"])
    other = endpoint("erp", ["return.decided"])
    alert = firing([{"type": "webhook"}], source=source, name="Bluesky returns")

    assert alert_actions_run() == 1
    assert alert_actions_run() == 0  # once per change

    [sent] = bodies(alerts)
    assert sent["type"] == "alert.firing"
    assert sent["data"]["monitor"] == alert.monitor.slug
    assert sent["data"]["scope"] == {"source": "bluesky-leads"}
    assert sent["data"]["value"] == pytest.approx(0.40)
    assert sent["data"]["sample"] == 100
    assert bodies(other) == []
    action = alert.actions.get()
    assert action.status == Status.SUCCEEDED
    assert action.result == "Queued alert.firing for 1 endpoint(s)."

    deliver(300, lead__source=source)
    monitors_evaluate()
    alert_actions_run()

    assert [b["type"] for b in bodies(alerts)] == ["alert.firing", "alert.resolved"]
    assert WebhookMessage.objects.filter(endpoint=alerts).count() == 2


def test_pause_source_pauses_once_with_an_audit_row_and_its_event(source):
    paused = endpoint("dist", ["source.paused", "source.resumed"])
    alert = firing([{"type": "pause_source"}], source=source, name="Bluesky returns")

    alert_actions_run()

    source.refresh_from_db()
    assert source.status == Source.Status.PAUSED
    assert "Bluesky returns" in source.paused_reason
    [change] = SourceStatusChange.objects.filter(source=source)
    assert (change.action, change.via) == ("paused", f"monitor:{alert.monitor.slug}")
    assert change.user is None
    [event] = bodies(paused)
    assert event["type"] == "source.paused"
    assert event["data"]["source"]["slug"] == "bluesky-leads"
    assert event["data"]["via"] == f"monitor:{alert.monitor.slug}"
    assert alert.actions.get().result == "Paused the source."

    # Resolving does not resume: a person decides when to buy again.
    deliver(300, lead__source=source)
    monitors_evaluate()
    alert_actions_run()
    source.refresh_from_db()
    assert source.status == Source.Status.PAUSED
    resolved = Alert.objects.get(state=Alert.State.RESOLVED)
    assert resolved.actions.get().result == (
        "Nothing to do: a resolved alert does not resume the source."
    )
    assert SourceStatusChange.objects.filter(source=source).count() == 1


def test_a_source_paused_already_stays_paused_without_a_second_row(source):
    from feedback.sourcestatus.services import source_pause

    source_pause(source=source, reason="By hand", actor=None, via="admin")
    alert = firing([{"type": "pause_source"}], source=source)

    alert_actions_run()

    assert alert.actions.get().result == "The source was already paused."
    assert SourceStatusChange.objects.filter(source=source).count() == 1
    source.refresh_from_db()
    assert source.paused_reason == "By hand"
