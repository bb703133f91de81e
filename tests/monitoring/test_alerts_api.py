"""GET /api/v1/alerts: integration keys, newest first, filters, clear 4xx."""

import datetime

import pytest
from django.utils import timezone

from monitoring.models import Alert, Monitor
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db


def alert(monitor, state, minutes_ago, value):
    return Alert.objects.create(
        monitor=monitor,
        state=state,
        value=value,
        low=value - 0.05,
        high=value + 0.05,
        sample=120,
        threshold=0.15,
        window_start=datetime.date(2026, 11, 24),
        window_end=datetime.date(2026, 12, 7),
        at=timezone.now() - datetime.timedelta(minutes=minutes_ago),
    )


@pytest.fixture
def alerts():
    source = SourceFactory(slug="bluesky-leads")
    returns = Monitor.objects.create(
        slug="bluesky-returns",
        name="Bluesky returns",
        source=source,
        metric="return_rate",
        threshold=0.15,
    )
    quality = Monitor.objects.create(
        slug="quality", name="Quality", metric="average_quality", threshold=3
    )
    return [
        alert(returns, "firing", 60, 0.31),
        alert(returns, "resolved", 30, 0.12),
        alert(quality, "firing", 10, 2.4),
    ]


def test_lists_alerts_newest_first(integration_client, alerts):
    response = integration_client.get("/api/v1/alerts")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["monitor"], r["state"]) for r in results] == [
        ("quality", "firing"),
        ("bluesky-returns", "resolved"),
        ("bluesky-returns", "firing"),
    ]
    first = results[2]
    assert first["id"] == alerts[0].public_id
    assert first["metric"] == "return_rate"
    assert first["value"] == 0.31
    assert (first["low"], first["high"]) == (pytest.approx(0.26), pytest.approx(0.36))
    assert first["sample"] == 120
    assert first["threshold"] == 0.15
    assert (first["window_start"], first["window_end"]) == ("2026-11-24", "2026-12-07")
    assert first["at"].endswith("Z") or "+" in first["at"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("monitor=bluesky-returns", ["resolved", "firing"]),
        ("state=firing", ["firing", "firing"]),
        ("monitor=bluesky-returns&state=firing", ["firing"]),
        ("monitor=nobody", []),
    ],
)
def test_filters(integration_client, alerts, query, expected):
    response = integration_client.get(f"/api/v1/alerts?{query}")
    assert [r["state"] for r in response.json()["results"]] == expected


def test_a_bad_state_is_a_422_naming_it(integration_client, alerts):
    response = integration_client.get("/api/v1/alerts?state=burning")
    assert response.status_code == 422
    assert "state" in response.content.decode()


def test_buyer_keys_and_anonymous_callers_are_refused(buyer_client, client, alerts):
    assert buyer_client.get("/api/v1/alerts").status_code == 403
    assert client.get("/api/v1/alerts").status_code in (401, 403)
