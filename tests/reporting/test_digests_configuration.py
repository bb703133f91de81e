"""Digests as code: the `digests` list of the configuration document."""

import datetime

import pytest

from feedback.configuration import (
    ConfigurationError,
    config_export,
    config_import,
    config_validate,
)
from reporting.models import Digest
from sources.models import FeedbackConfig, Kind
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db

WEEKLY = {
    "slug": "bluesky-weekly",
    "source": "bluesky-leads",
    "schedule": {
        "every": "week",
        "day": "monday",
        "at": "08:00",
        "timezone": "Europe/Berlin",
    },
    "channel": "email",
    "recipients": ["ops@bluesky.example"],
}


@pytest.fixture
def source():
    return SourceFactory(slug="bluesky-leads", name="Bluesky Leads")


def test_a_digest_is_created_exported_and_unchanged_on_reimport(source):
    report = config_import(document={"digests": [WEEKLY]}, dry_run=False)
    assert [str(c) for c in report.changes] == ["digest bluesky-weekly: created"]
    digest = Digest.objects.get(slug="bluesky-weekly")
    assert digest.source == source
    assert (digest.every, digest.weekday, digest.at, digest.timezone) == (
        "week",
        0,
        datetime.time(8, 0),
        "Europe/Berlin",
    )
    exported = config_export()["digests"]
    assert exported == [{**WEEKLY, "enabled": True}]

    again = config_import(document={"digests": exported}, dry_run=False)
    assert [str(c) for c in again.changes] == ["digest bluesky-weekly: unchanged"]


def test_defaults_fill_in_and_a_change_is_reported(source):
    config_import(
        document={
            "digests": [
                {
                    "slug": "daily",
                    "source": "bluesky-leads",
                    "schedule": {"every": "day"},
                    "recipients": ["a@bluesky.example"],
                }
            ]
        },
        dry_run=False,
    )
    [exported] = config_export()["digests"]
    assert exported["schedule"] == {"every": "day", "at": "08:00", "timezone": "UTC"}
    assert exported["channel"] == "email"

    exported["schedule"]["at"] = "07:30"
    report = config_import(document={"digests": [exported]}, dry_run=True)
    assert [str(c) for c in report.changes] == ["digest daily: updated (schedule)"]
    assert Digest.objects.get(slug="daily").at == datetime.time(8, 0)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"source": "nowhere"},
            "$.digests[0].source: no source 'nowhere' in the file or stored",
        ),
        (
            {"schedule": {"every": "week", "timezone": "Mars/Olympus"}},
            "$.digests[0].schedule.timezone: 'Mars/Olympus' is not a known time zone "
            "(an IANA name such as Europe/Berlin).",
        ),
        (
            {"schedule": {"every": "month"}},
            '$.digests[0].schedule.every: must be one of "day", "week"; not "month"',
        ),
        (
            {"schedule": {"every": "day", "at": "25:00"}},
            "$.digests[0].schedule.at: must be a 24-hour time, e.g. '08:00'",
        ),
        (
            {"recipients": ["not-an-address"]},
            "$.digests[0].recipients: 'not-an-address' is not an email address.",
        ),
        (
            {"recipients": []},
            "$.digests[0].recipients: The email channel needs at least one recipient.",
        ),
        (
            {"channel": "batch", "recipients": []},
            "$.digests[0].channel: source 'bluesky-leads' has no batch feedback "
            "config to send through",
        ),
        (
            {"colour": "red"},
            "$.digests[0].colour: unknown key (allowed: slug, source, enabled, "
            "schedule, channel, recipients)",
        ),
    ],
)
def test_invalid_digests_are_refused_with_their_path(source, change, expected):
    document = {"digests": [{**WEEKLY, **change}]}
    problems = [str(p) for p in config_validate(document=document)]
    assert problems == [expected]
    with pytest.raises(ConfigurationError):
        config_import(document=document, dry_run=False)
    assert not Digest.objects.exists()


def test_the_batch_channel_accepts_a_source_with_a_batch_config(source):
    FeedbackConfig.objects.create(
        source=source,
        kind=Kind.RETURN,
        method=FeedbackConfig.Method.BATCH,
        batch_transport=FeedbackConfig.Transport.EMAIL,
        batch_email_to=["files@bluesky.example"],
    )
    document = {"digests": [{**WEEKLY, "channel": "batch", "recipients": []}]}
    assert config_validate(document=document) == []
    config_import(document=document, dry_run=False)
    assert Digest.objects.get().channel == "batch"


def test_a_digest_may_name_a_source_defined_in_the_same_file():
    document = {
        "sources": [{"slug": "harbor-digital", "name": "Harbor Digital"}],
        "digests": [{**WEEKLY, "slug": "harbor-weekly", "source": "harbor-digital"}],
    }
    assert config_validate(document=document) == []
    config_import(document=document, dry_run=False)
    assert Digest.objects.get().source.slug == "harbor-digital"
