"""Digests: when they are due, once per period, and both channels against real
servers (SMTP, FTP)."""

import csv
import datetime
import io
import threading
from datetime import UTC

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection

from config.celery import app
from feedback.models import Feedback
from reporting.digests.periods import (
    Period,
    digest_last_complete_period,
    digest_last_send_time,
)
from reporting.digests.services import (
    MAX_TRIES,
    digest_claim,
    digest_send_test,
    digests_due,
    digests_send_due,
)
from reporting.models import Digest, DigestSend
from reporting.tasks import send_digests_task
from sources.models import FeedbackConfig, Kind
from tests.factories import (
    BuyerFactory,
    DeliveryEventFactory,
    FeedbackFactory,
    SourceFactory,
)
from tests.sources.file_servers import (
    PASSWORD,
    USERNAME,
    FtpServer,
    SftpServer,
    SmtpServer,
)

pytestmark = pytest.mark.django_db

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
# Monday 7 December 2026; Berlin is at UTC+1 in winter, UTC+2 in summer.
CREATED = datetime.datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _loopback(settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    settings.LEADBACK_BATCH_TIMEOUT_S = 5


@pytest.fixture
def smtp(settings):
    with SmtpServer() as server:
        settings.EMAIL_BACKEND = SMTP_BACKEND
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = server.port
        settings.EMAIL_USE_TLS = False
        settings.DEFAULT_FROM_EMAIL = "leadback@seller.example"
        yield server


def make_digest(**fields) -> Digest:
    values = {
        "slug": "bluesky-weekly",
        "every": Digest.Every.WEEK,
        "weekday": Digest.Weekday.MONDAY,
        "at": datetime.time(8, 0),
        "timezone": "Europe/Berlin",
        "channel": Digest.Channel.EMAIL,
        "recipients": ["ops@bluesky.example"],
    } | fields
    if "source" not in values:
        values["source"] = SourceFactory(slug="bluesky-leads", name="Bluesky Leads")
    with time_machine.travel(CREATED, tick=False):
        return Digest.objects.create(**values)


def returned(source, *, reason: str, at: datetime.datetime) -> Feedback:
    delivery = DeliveryEventFactory(
        lead__source=source, buyer=BuyerFactory(), delivered_at=at
    )
    return FeedbackFactory(
        delivery=delivery, kind=Kind.RETURN, reason=reason, received_at=at
    )


# When ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("every", "at", "zone", "now", "expected"),
    [
        # Weekly, Mondays 08:00 Berlin: 07:00 UTC in winter, 06:00 UTC in summer.
        ("week", "08:00", "Europe/Berlin", "2026-12-07T07:00", "2026-12-07T07:00"),
        ("week", "08:00", "Europe/Berlin", "2026-12-07T06:59", "2026-11-30T07:00"),
        ("week", "08:00", "Europe/Berlin", "2026-12-10T12:00", "2026-12-07T07:00"),
        ("week", "08:00", "Europe/Berlin", "2026-06-01T06:00", "2026-06-01T06:00"),
        # Daily across the spring change (29 March 2026): 07:00 then 06:00 UTC.
        ("day", "08:00", "Europe/Berlin", "2026-03-28T07:30", "2026-03-28T07:00"),
        ("day", "08:00", "Europe/Berlin", "2026-03-29T06:30", "2026-03-29T06:00"),
        # 02:30 does not exist on 29 March: sent just after the gap, 03:30 CEST.
        ("day", "02:30", "Europe/Berlin", "2026-03-29T01:45", "2026-03-29T01:30"),
        # 02:30 happens twice on 25 October: sent at the first, once.
        ("day", "02:30", "Europe/Berlin", "2026-10-25T01:45", "2026-10-25T00:30"),
        # West of UTC the local day lags: Sunday evening UTC is still Sunday.
        ("day", "06:00", "America/Chicago", "2026-12-07T11:59", "2026-12-06T12:00"),
        ("day", "06:00", "America/Chicago", "2026-12-07T12:00", "2026-12-07T12:00"),
    ],
)
def test_the_last_send_time_in_the_digest_time_zone(every, at, zone, now, expected):
    digest = Digest(
        every=every,
        weekday=0,
        at=datetime.time.fromisoformat(at),
        timezone=zone,
    )
    moment = datetime.datetime.fromisoformat(now).replace(tzinfo=UTC)
    assert digest_last_send_time(digest, now=moment) == datetime.datetime.fromisoformat(
        expected
    ).replace(tzinfo=UTC)


def test_a_weekly_berlin_digest_is_due_at_eight_berlin_time():
    digest = make_digest()
    with time_machine.travel(datetime.datetime(2026, 12, 7, 6, 59, tzinfo=UTC)):
        # Before 08:00 Berlin the latest send time is 30 November's, whose
        # period was sent.
        DigestSend.objects.create(
            digest=digest,
            period_start=datetime.date(2026, 11, 23),
            period_end=datetime.date(2026, 11, 29),
            channel="email",
            status=DigestSend.Status.SENT,
        )
        assert digests_due() == []
    with time_machine.travel(datetime.datetime(2026, 12, 7, 7, 0, tzinfo=UTC)):
        [due] = digests_due()
    assert due.digest == digest
    # Monday to Sunday before the send day, in Berlin.
    assert due.period == Period(datetime.date(2026, 11, 30), datetime.date(2026, 12, 6))


def test_a_new_digest_waits_for_its_first_scheduled_time():
    with time_machine.travel(datetime.datetime(2026, 12, 9, 12, 0, tzinfo=UTC)):
        digest = Digest.objects.create(
            slug="d",
            source=SourceFactory(),
            timezone="Europe/Berlin",
            recipients=["a@b.example"],
        )
        assert digests_due() == []
    with time_machine.travel(datetime.datetime(2026, 12, 14, 7, 0, tzinfo=UTC)):
        assert [d.digest for d in digests_due()] == [digest]


def test_a_disabled_digest_is_never_due():
    make_digest(enabled=False)
    with time_machine.travel(datetime.datetime(2026, 12, 7, 9, 0, tzinfo=UTC)):
        assert digests_due() == []


# Once per period ----------------------------------------------------------------


def test_each_period_is_emailed_once(smtp):
    digest = make_digest()
    source = digest.source
    returned(
        source,
        reason="=cmd|' /C calc'!A0",
        at=datetime.datetime(2026, 12, 2, 10, tzinfo=UTC),
    )
    returned(
        source, reason="Duplicate", at=datetime.datetime(2026, 12, 3, 10, tzinfo=UTC)
    )
    # After the period: it ends at midnight Berlin time, 23:00 UTC on Sunday.
    returned(
        source, reason="Late", at=datetime.datetime(2026, 12, 6, 23, 30, tzinfo=UTC)
    )

    with time_machine.travel(datetime.datetime(2026, 12, 7, 7, 5, tzinfo=UTC)):
        [send] = digests_send_due()
        assert digests_send_due() == []  # a second beat
        assert send_digests_task() == 0  # the task is the same call

    assert send.status == DigestSend.Status.SENT, send.detail
    assert (send.period_start, send.period_end) == (
        datetime.date(2026, 11, 30),
        datetime.date(2026, 12, 6),
    )
    [(recipients, message)] = smtp.messages
    assert recipients == ["ops@bluesky.example"]
    assert message["Subject"] == (
        "Bluesky Leads: feedback digest for Mon 30 Nov to Sun 06 Dec 2026"
    )
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Returns: 2 (previous 0, +2)" in text
    assert 'data-measure="returns"' in html
    # No remote assets: nothing to fetch when the email is opened.
    assert "http://" not in html
    assert "https://" not in html
    assert "<img" not in html
    [attachment] = list(message.iter_attachments())
    assert (
        attachment.get_filename()
        == "digest-bluesky-leads-20261130-20261206-returns.csv"
    )
    rows = list(csv.reader(io.StringIO(attachment.get_content())))
    assert [row[2] for row in rows[1:]] == ["'=cmd|' /C calc'!A0", "Duplicate"]


def test_two_claims_of_one_period_give_one_send():
    digest = make_digest()
    period = Period(datetime.date(2026, 11, 30), datetime.date(2026, 12, 6))
    first = digest_claim(digest=digest, period=period)
    second = digest_claim(digest=digest, period=period)
    assert first is not None
    assert second is None
    assert DigestSend.objects.filter(digest=digest).count() == 1


@pytest.mark.service
@pytest.mark.django_db(transaction=True)
def test_concurrent_beats_claim_a_period_once():
    """Two workers at the same instant on PostgreSQL: one send row, one sender."""
    assert connection.vendor == "postgresql"
    digest = make_digest()
    period = Period(datetime.date(2026, 11, 30), datetime.date(2026, 12, 6))
    barrier = threading.Barrier(4)
    results = []

    def claim() -> None:
        barrier.wait()
        try:
            results.append(digest_claim(digest=digest, period=period))
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for r in results if r is not None) == 1
    assert DigestSend.objects.filter(digest=digest).count() == 1


def test_a_failed_send_is_tried_again_then_given_up(settings):
    make_digest()
    settings.EMAIL_BACKEND = SMTP_BACKEND
    settings.EMAIL_HOST = "127.0.0.1"
    with SmtpServer() as stopped:
        settings.EMAIL_PORT = stopped.port
    # Nothing listens now.
    with time_machine.travel(datetime.datetime(2026, 12, 7, 7, 5, tzinfo=UTC)):
        [send] = digests_send_due()
        assert send.status == DigestSend.Status.FAILED
        assert send.detail
        with SmtpServer() as smtp:
            settings.EMAIL_PORT = smtp.port
            [again] = digests_send_due()
        assert again.pk == send.pk
        assert again.status == DigestSend.Status.SENT
        assert again.tries == 2
        assert len(smtp.messages) == 1
        assert digests_send_due() == []

    DigestSend.objects.filter(pk=send.pk).update(
        status=DigestSend.Status.FAILED, tries=MAX_TRIES
    )
    with time_machine.travel(datetime.datetime(2026, 12, 7, 8, 0, tzinfo=UTC)):
        assert digests_due() == []


# Channels ---------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["ftp", "sftp"])
def test_the_batch_channel_uploads_through_the_sources_transport(tmp_path, transport):
    root = tmp_path / transport
    (root / "in").mkdir(parents=True)
    source = SourceFactory(slug="bluesky-leads", name="Bluesky Leads")
    server_class = FtpServer if transport == "ftp" else SftpServer
    with server_class(root) as server:
        FeedbackConfig.objects.create(
            source=source,
            kind=Kind.RETURN,
            method=FeedbackConfig.Method.BATCH,
            batch_every=FeedbackConfig.BatchEvery.DAY,
            batch_at=datetime.time(6, 0),
            batch_timezone="UTC",
            batch_transport=transport,
            batch_host_key=server.public_host_key if transport == "sftp" else "",
            batch_host="127.0.0.1",
            batch_port=server.port,
            batch_username=USERNAME,
            batch_password=PASSWORD,
            batch_directory="/in",
            batch_file_name="returns-{{ period.start|date('%Y%m%d') }}.csv",
        )
        make_digest(
            source=source,
            every=Digest.Every.DAY,
            timezone="UTC",
            channel=Digest.Channel.BATCH,
            recipients=[],
        )
        returned(
            source,
            reason="+Wrong number",
            at=datetime.datetime(2026, 12, 6, 9, tzinfo=UTC),
        )
        with time_machine.travel(datetime.datetime(2026, 12, 7, 8, 1, tzinfo=UTC)):
            [send] = digests_send_due()

    assert send.status == DigestSend.Status.SENT, send.detail
    files = sorted(p.name for p in (root / "in").iterdir())
    assert files == [
        "digest-bluesky-leads-20261206-20261206-returns.csv",
        "digest-bluesky-leads-20261206-20261206-summary.csv",
    ]
    returns = list(csv.reader(io.StringIO((root / "in" / files[0]).read_text())))
    assert [r[2] for r in returns[1:]] == ["'+Wrong number"]
    summary = {
        row[0]: row[1:]
        for row in csv.reader(io.StringIO((root / "in" / files[1]).read_text()))
    }
    assert summary["returns"] == ["1", "0", "1"]
    assert summary["delivered"] == ["1", "0", "1"]
    assert summary["return_rate"] == ["1.0", "", ""]


def test_send_test_emails_staffs_address_without_recording_a_send(smtp):
    digest = make_digest(channel=Digest.Channel.EMAIL)
    result = digest_send_test(
        digest=digest,
        to="me@seller.example",
        now=datetime.datetime(2026, 12, 8, 10, tzinfo=UTC),
    )
    assert result == "Emailed to 1 recipient."
    [(recipients, message)] = smtp.messages
    assert recipients == ["me@seller.example"]
    assert message["Subject"].startswith("[Test] Bluesky Leads: feedback digest for")
    assert DigestSend.objects.count() == 0


def test_the_command_lists_due_digests_on_a_dry_run(smtp):
    make_digest()
    out = io.StringIO()
    with time_machine.travel(datetime.datetime(2026, 12, 7, 7, 5, tzinfo=UTC)):
        call_command("send_digests", "--dry-run", stdout=out)
        assert DigestSend.objects.count() == 0
        assert smtp.messages == []
        call_command("send_digests", stdout=out)
    assert "bluesky-weekly: 2026-11-30 to 2026-12-06 by email" in out.getvalue()
    assert "bluesky-weekly: 2026-11-30 to 2026-12-06 sent" in out.getvalue()
    assert len(smtp.messages) == 1


def test_a_digest_with_an_unknown_time_zone_does_not_stop_the_others():
    good = make_digest()
    make_digest(slug="broken", source=good.source, timezone="Mars/Olympus")
    with time_machine.travel(datetime.datetime(2026, 12, 7, 7, 5, tzinfo=UTC)):
        assert [d.digest for d in digests_due()] == [good]


@pytest.mark.parametrize(
    ("every", "now", "expected"),
    [
        # Weekly on Mondays: the last whole Monday-to-Sunday week, even on the
        # Monday before the send time.
        ("week", "2026-12-07T05:00", ("2026-11-30", "2026-12-06")),
        ("week", "2026-12-13T22:00", ("2026-11-30", "2026-12-06")),
        # 23:30 UTC on Sunday is already Monday in Berlin.
        ("week", "2026-12-13T23:30", ("2026-12-07", "2026-12-13")),
        ("day", "2026-12-09T12:00", ("2026-12-08", "2026-12-08")),
    ],
)
def test_the_preview_period_is_the_last_complete_one(every, now, expected):
    digest = Digest(every=every, weekday=0, timezone="Europe/Berlin")
    moment = datetime.datetime.fromisoformat(now).replace(tzinfo=UTC)
    period = digest_last_complete_period(digest, now=moment)
    assert (period.start.isoformat(), period.end.isoformat()) == expected


def test_beat_runs_the_digest_task(settings, smtp):
    entry = settings.CELERY_BEAT_SCHEDULE["send-digests"]
    assert entry["task"] == "reporting.tasks.send_digests_task"
    assert entry["schedule"] == 60.0
    make_digest()
    # The name beat sends resolves to the task (a real worker runs it in
    # test_digest_task.py).
    task = app.tasks[entry["task"]]
    with time_machine.travel(datetime.datetime(2026, 12, 7, 7, 5, tzinfo=UTC)):
        assert task() == 1
    assert len(smtp.messages) == 1
