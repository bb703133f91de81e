"""The demo's monitor fires on the seeded history (`make demo` runs
seed_demo, then seed_demo_monitors)."""

import io

import pytest
from django.core.management import call_command

from monitoring.models import Alert, AlertAction, Monitor

pytestmark = pytest.mark.django_db


def test_the_demo_monitor_fires_during_the_seeded_history(settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    call_command("seed_demo", stdout=io.StringIO())
    out = io.StringIO()

    call_command("seed_demo_monitors", stdout=out)

    assert "Monitors: 3 created" in out.getvalue()
    assert "1 fired" in out.getvalue()
    [alert] = Alert.objects.select_related("monitor")
    assert alert.monitor.slug == "northwind-returns"
    assert alert.state == Alert.State.FIRING
    assert alert.sample >= 50
    assert alert.low > 0.15
    assert AlertAction.objects.get(alert=alert).type == "email"
    # The other sources' returns stay at their usual rate: no alert.
    assert Monitor.objects.get(slug="bluesky-returns").state == Monitor.State.OK

    # Run again: nothing changes, nothing is alerted twice.
    again = io.StringIO()
    call_command("seed_demo_monitors", stdout=again)
    assert "3 unchanged" in again.getvalue()
    assert Alert.objects.count() == 1
