"""Batch files (DESIGN §5.6) run in-process against a real local FTP server."""

import csv
import io
from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.core.management import call_command
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from feedback.forwarding.batches import (
    batch_file_build,
    batch_period_end,
    batch_run_create,
    batch_run_send,
    batch_runs_claim_due,
    batch_runs_resend,
    batch_runs_run_due,
    batch_runs_schedule,
)
from feedback.forwarding.engine import notifications_claim_due
from feedback.forwarding.models import BatchRun, Notification
from feedback.intake.pipeline import feedback_receive
from feedback.models import Feedback
from sources.csvcells import FORMULA_TRIGGERS, safe_cell
from sources.models import FeedbackConfig, FieldMapping
from tests.factories import DeliveryEventFactory, FeedbackFactory, SourceFactory
from tests.sources.file_servers import (
    PASSWORD,
    USERNAME,
    FtpServer,
    FtpsServer,
    SftpServer,
    SmtpServer,
    self_signed_certificate,
)

pytestmark = pytest.mark.django_db

Status = BatchRun.Status
DAY_ONE = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
AFTER_SIX = datetime(2026, 11, 25, 6, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _engine(settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    settings.LEADBACK_RETRY_SCHEDULE_S = [0, 5, 300]
    settings.LEADBACK_RETRY_JITTER = 0
    settings.LEADBACK_BATCH_TIMEOUT_S = 5


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "ftp"
    (path / "in").mkdir(parents=True)
    return path


@pytest.fixture
def ftp(root):
    with FtpServer(root) as server:
        yield server


def make_batch_config(source, port, **fields) -> FeedbackConfig:
    values = {
        "kind": "return",
        "method": FeedbackConfig.Method.BATCH,
        "batch_every": FeedbackConfig.BatchEvery.DAY,
        "batch_at": time(6, 0),
        "batch_timezone": "UTC",
        "batch_transport": FeedbackConfig.Transport.FTP,
        "batch_host": "127.0.0.1",
        "batch_port": port,
        "batch_username": USERNAME,
        "batch_password": PASSWORD,
        "batch_directory": "/in",
        "batch_file_name": "returns-{{ period.start|date('%Y%m%d') }}.csv",
    } | fields
    config = FeedbackConfig.objects.create(source=source, **values)
    FieldMapping.objects.create(
        config=config, position=0, target="event_id", value="{{ event.id }}"
    )
    FieldMapping.objects.create(
        config=config, position=1, target="reason", value="{{ feedback.reason }}"
    )
    return config


def returned(buyer, source, reason="Wrong number") -> Feedback:
    delivery = DeliveryEventFactory(buyer=buyer, lead__source=source)
    result = feedback_receive(
        buyer=buyer,
        data={"event_id": delivery.event_id, "type": "return", "reason": reason},
        channel=Feedback.Channel.API,
    )
    assert result.feedback is not None
    return result.feedback


def read_rows(path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_bytes().decode(), newline="")))


# Intake ----------------------------------------------------------------------------


def test_a_batch_configs_notifications_wait_for_their_file(buyer, ftp):
    source = SourceFactory()
    make_batch_config(source, ftp.port)

    feedback = returned(buyer, source)

    notification = Notification.objects.get(feedback=feedback)
    assert notification.status == Notification.Status.BATCHED
    assert notification.next_attempt_at is None
    assert notification.batch_run is None
    assert notifications_claim_due() == []  # the HTTP engine leaves it alone


# Periods ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "now", "end"),
    [
        ({"batch_every": "hour"}, "2026-11-25T10:59:59+00:00", "2026-11-25T10:00Z"),
        ({"batch_at": time(6)}, "2026-11-25T05:59:00+00:00", "2026-11-24T06:00Z"),
        ({"batch_at": time(6)}, "2026-11-25T06:00:00+00:00", "2026-11-25T06:00Z"),
        # 06:00 in Chicago is 12:00 UTC in winter (CST) and 11:00 in summer (CDT).
        (
            {"batch_at": time(6), "batch_timezone": "America/Chicago"},
            "2026-11-25T11:30:00+00:00",
            "2026-11-24T12:00Z",
        ),
        (
            {"batch_at": time(6), "batch_timezone": "America/Chicago"},
            "2026-07-01T11:30:00+00:00",
            "2026-07-01T11:00Z",
        ),
        # Weekly on Monday (0) at 08:15; 2026-11-25 is a Wednesday.
        (
            {"batch_every": "week", "batch_day": 0, "batch_at": time(8, 15)},
            "2026-11-25T09:00:00+00:00",
            "2026-11-23T08:15Z",
        ),
        (
            {"batch_every": "week", "batch_day": 2, "batch_at": time(8, 15)},
            "2026-11-25T08:00:00+00:00",
            "2026-11-18T08:15Z",
        ),
    ],
)
def test_period_ends(fields, now, end):
    config = FeedbackConfig(
        **({"batch_every": "day", "batch_timezone": "UTC"} | fields)
    )

    got = batch_period_end(config, now=datetime.fromisoformat(now))

    assert got == datetime.fromisoformat(end.replace("Z", "+00:00"))


# Running ---------------------------------------------------------------------------


def test_run_batches_once_sends_the_periods_file(buyer, ftp, root):
    source = SourceFactory()
    config = make_batch_config(source, ftp.port)
    with time_machine.travel(DAY_ONE):
        first = returned(buyer, source, reason="Wrong number")
        second = returned(buyer, source, reason="=cmd|' /C calc'!A0")

    with time_machine.travel(AFTER_SIX):
        out = io.StringIO()
        call_command("run_batches", "--once", stdout=out)

    assert out.getvalue().strip() == "Sent 1 batch run(s)."
    run = BatchRun.objects.get(config=config, period_end__gt=DAY_ONE)
    assert run.status == Status.SENT
    assert (run.period_start, run.period_end) == (
        datetime(2026, 11, 24, 6, tzinfo=UTC),
        datetime(2026, 11, 25, 6, tzinfo=UTC),
    )
    assert run.row_count == 2
    assert run.file_name == "returns-20261124.csv"
    assert [(a.number, a.outcome) for a in run.attempts.all()] == [(1, "success")]
    assert sorted(p.name for p in (root / "in").iterdir()) == ["returns-20261124.csv"]
    assert read_rows(root / "in" / "returns-20261124.csv") == [
        ["event_id", "reason"],
        [first.delivery.event_id, "Wrong number"],
        [second.delivery.event_id, "'=cmd|' /C calc'!A0"],
    ]
    notifications = Notification.objects.filter(config=config)
    assert {n.batch_run_id for n in notifications} == {run.pk}
    assert all(n.finished_at is not None for n in notifications)
    assert {n.status for n in notifications} == {Notification.Status.BATCHED}


def test_each_notification_lands_in_exactly_one_file(buyer, ftp, root):
    source = SourceFactory()
    config = make_batch_config(
        source,
        ftp.port,
        batch_every="hour",
        batch_file_name="returns-{{ period.end|date('%Y%m%d%H') }}.csv",
    )
    start = datetime(2026, 11, 25, 9, 10, tzinfo=UTC)
    with time_machine.travel(start):
        early = returned(buyer, source)
    with time_machine.travel(start + timedelta(hours=1)):  # 10:10
        batch_runs_run_due()
        batch_runs_run_due()  # a second scheduler pass: same period, no new run
        late = returned(buyer, source)  # after 10:00: the next period's
        assert batch_runs_schedule() == []
    with time_machine.travel(start + timedelta(hours=2)):  # 11:10
        batch_runs_run_due()

    runs = list(BatchRun.objects.filter(config=config).order_by("period_end"))
    assert [(r.period_end.hour, r.row_count, r.status) for r in runs] == [
        (10, 1, Status.SENT),
        (11, 1, Status.SENT),
    ]
    assert Notification.objects.get(feedback=early).batch_run == runs[0]
    assert Notification.objects.get(feedback=late).batch_run == runs[1]
    all_rows = [
        row[0]
        for run in runs
        for row in read_rows(root / "in" / run.file_name)[1:]  # past the header
    ]
    assert sorted(all_rows) == sorted([early.delivery.event_id, late.delivery.event_id])


def test_racing_schedulers_make_one_run_per_period(buyer, ftp):
    source = SourceFactory()
    config = make_batch_config(source, ftp.port)
    with time_machine.travel(DAY_ONE):
        returned(buyer, source)
    end = datetime(2026, 11, 25, 6, tzinfo=UTC)

    first = batch_run_create(config=config, period_end=end)
    second = batch_run_create(config=config, period_end=end)

    assert first is not None
    assert first.row_count == 1
    assert second is None
    assert BatchRun.objects.filter(config=config).count() == 1


def test_a_resent_run_sends_the_same_file_and_duplicates_nothing(buyer, ftp, root):
    source = SourceFactory()
    config = make_batch_config(source, ftp.port)
    with time_machine.travel(DAY_ONE):
        returned(buyer, source)
    with time_machine.travel(AFTER_SIX):
        batch_runs_run_due()
    run = BatchRun.objects.get(config=config, status=Status.SENT)
    content = (root / "in" / run.file_name).read_bytes()

    assert batch_runs_resend(ids=[run.pk]) == 1
    assert batch_runs_run_due() == 1

    run.refresh_from_db()
    assert run.status == Status.SENT
    assert [a.reason.split(" ")[0] for a in run.attempts.all()] == [
        "Uploaded",
        f"{run.file_name}",
    ]
    assert run.attempts.last().reason.endswith(
        f"was already complete at ftp://127.0.0.1:{ftp.port}/in."
    )
    assert sorted(p.name for p in (root / "in").iterdir()) == [run.file_name]
    assert (root / "in" / run.file_name).read_bytes() == content


def test_a_failed_transfer_retries_on_the_schedule_then_dies(buyer, root):
    source = SourceFactory()
    with FtpServer(root) as server:
        port = server.port
    config = make_batch_config(source, port)  # nothing listens there any more
    with time_machine.travel(DAY_ONE):
        returned(buyer, source)

    with time_machine.travel(AFTER_SIX, tick=False):
        batch_runs_run_due()
        run = BatchRun.objects.get(config=config, row_count=1)
        assert run.status == Status.RETRYING
        assert run.next_attempt_at == AFTER_SIX + timedelta(seconds=5)
        assert batch_runs_run_due() == 0  # not due yet
    with time_machine.travel(AFTER_SIX + timedelta(seconds=6), tick=False):
        batch_runs_run_due()
        run.refresh_from_db()
        assert run.next_attempt_at == AFTER_SIX + timedelta(seconds=306)
    with time_machine.travel(AFTER_SIX + timedelta(seconds=400), tick=False):
        batch_runs_run_due()

    run.refresh_from_db()
    assert run.status == Status.DEAD
    assert run.attempt_count == 3
    assert {a.outcome for a in run.attempts.all()} == {"error"}
    assert f"Could not connect to 127.0.0.1:{port}" in run.reason


def test_a_refused_login_fails_the_run_without_retrying(buyer, ftp, root):
    source = SourceFactory()
    config = make_batch_config(source, ftp.port, batch_password="wrong")
    with time_machine.travel(DAY_ONE):
        returned(buyer, source)

    with time_machine.travel(AFTER_SIX):
        batch_runs_run_due()

    run = BatchRun.objects.get(config=config, row_count=1)
    assert run.status == Status.FAILED
    assert run.next_attempt_at is None
    assert "530" in run.reason
    assert list((root / "in").iterdir()) == []


def test_an_empty_period_sends_nothing_unless_asked(buyer, ftp, root):
    source = SourceFactory()
    quiet = make_batch_config(source, ftp.port, batch_file_name="quiet.csv")
    chatty = make_batch_config(
        source, ftp.port, batch_file_name="chatty.csv", batch_send_empty=True
    )

    with time_machine.travel(AFTER_SIX):
        batch_runs_run_due()

    assert BatchRun.objects.get(config=quiet).status == Status.EMPTY
    assert BatchRun.objects.get(config=chatty).status == Status.SENT
    assert sorted(p.name for p in (root / "in").iterdir()) == ["chatty.csv"]
    assert read_rows(root / "in" / "chatty.csv") == [["event_id", "reason"]]


def test_the_header_row_can_be_left_out(buyer, ftp, root):
    source = SourceFactory()
    make_batch_config(source, ftp.port, batch_header=False)
    with time_machine.travel(DAY_ONE):
        feedback = returned(buyer, source)

    with time_machine.travel(AFTER_SIX):
        batch_runs_run_due()

    assert read_rows(root / "in" / "returns-20261124.csv") == [
        [feedback.delivery.event_id, "Wrong number"]
    ]


def test_a_stale_claim_sends_nothing(buyer, ftp, root):
    source = SourceFactory()
    config = make_batch_config(source, ftp.port)
    with time_machine.travel(DAY_ONE):
        returned(buyer, source)
    with time_machine.travel(AFTER_SIX):
        batch_runs_schedule()
        [(run_id, token)] = batch_runs_claim_due()
        assert batch_run_send(run_id=run_id, token=token) is not None

        assert batch_run_send(run_id=run_id, token=token) is None

    assert BatchRun.objects.get(config=config, row_count=1).attempt_count == 1


def test_a_broken_file_name_is_an_error_that_names_the_template(buyer, ftp):
    source = SourceFactory()
    config = make_batch_config(source, ftp.port, batch_file_name="a/{{ kind }}.csv")
    with time_machine.travel(DAY_ONE):
        returned(buyer, source)

    with time_machine.travel(AFTER_SIX):
        batch_runs_run_due()

    run = BatchRun.objects.get(config=config, row_count=1)
    assert run.status == Status.RETRYING
    assert run.content is None
    assert run.reason.startswith("File name template: 'a/return.csv' is not a file")


# Formula safety --------------------------------------------------------------------

cell_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=60,
)


@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(values=st.lists(st.tuples(cell_text, cell_text), min_size=1, max_size=4))
def test_batch_file_cells_never_start_a_formula(buyer, values):
    source = SourceFactory()
    config = FeedbackConfig.objects.create(
        source=source, kind="return", method="batch", batch_file_name="f.csv"
    )
    FieldMapping.objects.create(
        config=config, position=0, target="=reason", value="{{ feedback.reason }}"
    )
    FieldMapping.objects.create(
        config=config, position=1, target="note", value="{{ feedback.note }}"
    )
    run = BatchRun.objects.create(
        config=config, source=source, period_start=DAY_ONE, period_end=AFTER_SIX
    )
    for reason, note in values:
        feedback = FeedbackFactory(
            delivery__buyer=buyer,
            delivery__lead__source=source,
            kind="return",
            reason=reason,
            note=note,
        )
        Notification.objects.create(
            feedback=feedback,
            config=config,
            source=source,
            kind="return",
            lead_delivered_at=feedback.delivery.delivered_at,
            status=Notification.Status.BATCHED,
            batch_run=run,
        )

    _name, content = batch_file_build(run, config)

    rows = list(csv.reader(io.StringIO(content.decode(), newline="")))
    assert rows == [
        ["'=reason", "note"],
        *[[safe_cell(reason), safe_cell(note)] for reason, note in values],
    ]
    for row in rows:
        for cell in row:
            assert not cell.lstrip(" ").startswith(FORMULA_TRIGGERS)
    # An apostrophe in front is the only change: the value itself survives.
    for row, (reason, note) in zip(rows[1:], values, strict=True):
        assert row[0] in (reason, "'" + reason)
        assert row[1] in (note, "'" + note)


# Every transport, end to end in-process -------------------------------------------


def _sent_run(config) -> BatchRun:
    run = BatchRun.objects.get(config=config, row_count=1)
    assert run.status == Status.SENT, run.reason
    return run


def test_an_sftp_batch_config_sends_its_file(buyer, tmp_path):
    root = tmp_path / "sftp"
    (root / "in").mkdir(parents=True)
    with SftpServer(root) as server:
        source = SourceFactory()
        config = make_batch_config(
            source,
            server.port,
            batch_transport="sftp",
            batch_host_key=server.public_host_key,
        )
        with time_machine.travel(DAY_ONE):
            feedback = returned(buyer, source)
        with time_machine.travel(AFTER_SIX):
            batch_runs_run_due()

    run = _sent_run(config)
    assert run.attempts.get().destination == f"sftp://127.0.0.1:{server.port}/in"
    assert read_rows(root / "in" / "returns-20261124.csv") == [
        ["event_id", "reason"],
        [feedback.delivery.event_id, "Wrong number"],
    ]


def test_an_ftps_batch_config_trusts_its_certificate(buyer, tmp_path, root):
    cert, key, pem = self_signed_certificate(tmp_path)
    with FtpsServer(root, (cert, key)) as server:
        source = SourceFactory()
        config = make_batch_config(
            source, server.port, batch_transport="ftps", batch_tls_certificate=pem
        )
        with time_machine.travel(DAY_ONE):
            returned(buyer, source)
        with time_machine.travel(AFTER_SIX):
            batch_runs_run_due()

    _sent_run(config)
    assert len(read_rows(root / "in" / "returns-20261124.csv")) == 2


def test_an_email_batch_config_mails_its_file(buyer, settings):
    with SmtpServer() as smtp:
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
        source = SourceFactory()
        config = make_batch_config(
            source,
            None,
            batch_transport="email",
            batch_email_to=["returns@source.example"],
            batch_email_subject="Leadback returns",
        )
        with time_machine.travel(DAY_ONE):
            feedback = returned(buyer, source)
        with time_machine.travel(AFTER_SIX):
            batch_runs_run_due()

    run = _sent_run(config)
    [(recipients, message)] = smtp.messages
    assert recipients == ["returns@source.example"]
    assert message["Subject"] == "Leadback returns"
    assert message["Message-ID"] == f"<{run.public_id}@leadback>"
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "returns-20261124.csv"
    assert list(csv.reader(io.StringIO(attachment.get_content(), newline=""))) == [
        ["event_id", "reason"],
        [feedback.delivery.event_id, "Wrong number"],
    ]


def test_a_deleted_configs_runs_stay_and_an_unsent_one_fails(buyer, ftp):
    source = SourceFactory()
    config = make_batch_config(source, ftp.port)
    with time_machine.travel(DAY_ONE):
        returned(buyer, source)
    with time_machine.travel(AFTER_SIX):
        batch_runs_schedule()
    run = BatchRun.objects.get(row_count=1)

    config.delete()
    with time_machine.travel(AFTER_SIX):
        batch_runs_run_due()

    run.refresh_from_db()
    assert run.config is None
    assert run.status == Status.FAILED
    assert run.reason == "The config was disabled or deleted before sending."
    assert run.content is not None  # the file it would have sent is kept


def test_an_unexpected_error_is_recorded_and_retried(buyer, ftp, monkeypatch):
    source = SourceFactory()
    config = make_batch_config(source, ftp.port)
    with time_machine.travel(DAY_ONE):
        returned(buyer, source)

    def broken(**kwargs):
        raise KeyError("boom")

    monkeypatch.setattr("feedback.forwarding.batches.batch_file_send", broken)
    with time_machine.travel(AFTER_SIX):
        batch_runs_run_due()

    run = BatchRun.objects.get(config=config, row_count=1)
    assert run.status == Status.RETRYING
    assert run.reason == "Unexpected error (KeyError); see the worker's log."
    assert run.attempts.get().error_class == "KeyError"
