"""Monitors as code: the `monitors` section of the configuration document."""

import pytest

from feedback.configuration import (
    REDACTED,
    ConfigurationError,
    config_export,
    config_import,
    config_validate,
)
from monitoring.models import Monitor
from tests.factories import BuyerFactory, SourceFactory

pytestmark = pytest.mark.django_db

MONITOR = {
    "slug": "bluesky-returns",
    "name": "Bluesky returns",
    "scope": {"source": "bluesky-leads"},
    "metric": "return_rate",
    "window_days": 14,
    "basis": "delivery",
    "condition": {
        "op": "above",
        "threshold": 0.15,
        "min_sample": 50,
        "confidence": 0.95,
    },
    "actions": [
        {"type": "email", "to": ["ops@seller.example"]},
        {"type": "webhook"},
        {"type": "notify", "url": "json://127.0.0.1:9/hooks"},
        {"type": "pause_source"},
    ],
}


@pytest.fixture(autouse=True)
def _allow_local(settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]


def test_import_creates_then_leaves_unchanged_then_updates():
    source = SourceFactory(slug="bluesky-leads")

    report = config_import(document={"monitors": [MONITOR]}, dry_run=False)

    assert [str(c) for c in report.changes] == ["monitor bluesky-returns: created"]
    monitor = Monitor.objects.get()
    assert (monitor.source, monitor.metric, monitor.threshold) == (
        source,
        "return_rate",
        0.15,
    )
    assert (monitor.min_sample, monitor.confidence, monitor.window_days) == (
        50,
        0.95,
        14,
    )
    assert [a["type"] for a in monitor.actions] == [
        "email",
        "webhook",
        "notify",
        "pause_source",
    ]

    again = config_import(document={"monitors": [MONITOR]}, dry_run=False)
    assert [str(c) for c in again.changes] == ["monitor bluesky-returns: unchanged"]

    changed = {**MONITOR, "condition": {**MONITOR["condition"], "threshold": 0.2}}
    report = config_import(document={"monitors": [changed]}, dry_run=False)
    assert [str(c) for c in report.changes] == [
        "monitor bluesky-returns: updated (condition)"
    ]
    assert Monitor.objects.get().threshold == 0.2


def test_defaults_are_filled_in_and_exported():
    SourceFactory(slug="bluesky-leads")
    minimal = {
        "slug": "everything",
        "name": "Everything",
        "metric": "conversion_rate",
        "condition": {"op": "below", "threshold": 0.05},
    }
    config_import(document={"monitors": [minimal]}, dry_run=False)

    [exported] = config_export()["monitors"]
    assert exported == {
        "slug": "everything",
        "name": "Everything",
        "scope": {},
        "metric": "conversion_rate",
        "window_days": 14,
        "basis": "delivery",
        "condition": {
            "op": "below",
            "threshold": 0.05,
            "min_sample": 50,
            "confidence": 0.95,
        },
        "actions": [],
    }


def test_apprise_urls_are_redacted_on_export_and_kept_on_import():
    SourceFactory(slug="bluesky-leads")
    config_import(document={"monitors": [MONITOR]}, dry_run=False)

    exported = config_export()
    actions = exported["monitors"][0]["actions"]
    assert actions[2] == {"type": "notify", "url": REDACTED}
    assert config_export(include_secrets=True)["monitors"][0]["actions"][2]["url"] == (
        "json://127.0.0.1:9/hooks"
    )

    report = config_import(document=exported, dry_run=False)
    assert [str(c) for c in report.changes if "monitor" in str(c)] == [
        "monitor bluesky-returns: unchanged"
    ]
    assert Monitor.objects.get().actions[2]["url"] == "json://127.0.0.1:9/hooks"


def test_a_source_defined_in_the_same_document_may_be_watched():
    document = config_export()
    document["sources"] = [{"slug": "bluesky-leads", "name": "Bluesky Leads"}]
    document["monitors"] = [MONITOR]
    assert config_validate(document=document) == []
    config_import(document=document, dry_run=False)
    assert Monitor.objects.get().source.slug == "bluesky-leads"


def item(**changes):
    return {**MONITOR, **changes}


@pytest.mark.parametrize(
    ("monitor", "problem"),
    [
        (
            item(scope={"source": "nowhere"}),
            "$.monitors[0].scope.source: no source 'nowhere'",
        ),
        (
            item(scope={"buyer": "nobody"}, actions=[]),
            "$.monitors[0].scope.buyer: no buyer 'nobody'",
        ),
        (
            item(metric="sentiment"),
            "$.monitors[0].metric: must be one of",
        ),
        (
            item(condition={"threshold": 1.5}),
            "$.monitors[0].condition.threshold: must be from 0 to 1 for return_rate",
        ),
        (
            item(metric="average_quality", condition={"threshold": 7}),
            "$.monitors[0].condition.threshold: must be from 1 to 5 for average_",
        ),
        (
            item(condition={"threshold": 0.1, "confidence": 1}),
            "$.monitors[0].condition.confidence:",
        ),
        (
            item(condition={"threshold": 0.1, "min_sample": 0}),
            "$.monitors[0].condition.min_sample: must be at least 1",
        ),
        (
            item(scope={}, actions=[{"type": "pause_source"}]),
            "$.monitors[0].actions[0].type: pause_source needs a source in the scope",
        ),
        (
            item(actions=[{"type": "email", "to": ["not-an-address"]}]),
            "$.monitors[0].actions[0].to[0]: 'not-an-address' is not an email address",
        ),
        (
            item(actions=[{"type": "notify", "url": "nonsense://x"}]),
            "$.monitors[0].actions[0].url: is not an Apprise URL Apprise can use",
        ),
        (
            item(actions=[{"type": "notify", "url": "json://10.1.2.3/hooks"}]),
            "$.monitors[0].actions[0].url: is refused by the SSRF guard",
        ),
        (
            item(actions=[{"type": "sms"}]),
            "$.monitors[0].actions[0].type: must be one of",
        ),
        (
            item(window_days=0),
            "$.monitors[0].window_days: must be at least 1",
        ),
    ],
)
def test_invalid_monitors_are_refused_with_their_path(monitor, problem):
    SourceFactory(slug="bluesky-leads")
    BuyerFactory(slug="acme")

    problems = [str(p) for p in config_validate(document={"monitors": [monitor]})]

    assert any(p.startswith(problem) for p in problems), problems
    with pytest.raises(ConfigurationError):
        config_import(document={"monitors": [monitor]}, dry_run=False)
    assert not Monitor.objects.exists()
