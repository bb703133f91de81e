"""Batch configs in the feedback config admin, and the batch run admin."""

import asyncssh
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from feedback.forwarding.models import BatchAttempt, BatchRun
from sources.models import FeedbackConfig
from tests.factories import FeedbackFactory, SourceFactory
from tests.sources.test_config_admin import config_form

pytestmark = pytest.mark.django_db

ADD = reverse("admin:sources_feedbackconfig_add")
HOST_KEY = (
    asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
)
PRIVATE_KEY = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def batch_form(source, **overrides):
    values = {
        "method": "batch",
        "url": "",
        "batch_every": "week",
        "batch_day": "0",
        "batch_at": "06:00",
        "batch_timezone": "America/Chicago",
        "batch_transport": "sftp",
        "batch_host": "sftp.bluesky.example",
        "batch_port": "2222",
        "batch_username": "leadback",
        "batch_password": "sftp-pass-1",
        "batch_private_key": PRIVATE_KEY,
        "batch_host_key": HOST_KEY,
        "batch_tls_certificate": "",
        "batch_directory": "/incoming",
        "batch_email_to": "[]",
        "batch_email_subject": "",
        "batch_file_name": "returns-{{ period.start|date('%Y%m%d') }}.csv",
        "batch_header": "on",
    } | overrides
    return config_form(
        source,
        mappings=[("event_id", "{{ event.id }}"), ("reason", "{{ feedback.reason }}")],
        **values,
    )


def test_an_admin_adds_a_weekly_sftp_batch_config(staff_client):
    source = SourceFactory()

    response = staff_client.post(ADD, batch_form(source))

    assert response.status_code == 302, response.content.decode()[:3000]
    config = FeedbackConfig.objects.get()
    assert config.method == "batch"
    assert config.url == ""
    assert (config.batch_every, config.batch_day, str(config.batch_at)) == (
        "week",
        0,
        "06:00:00",
    )
    assert config.batch_timezone == "America/Chicago"
    assert (config.batch_transport, config.batch_host, config.batch_port) == (
        "sftp",
        "sftp.bluesky.example",
        2222,
    )
    assert config.batch_password == "sftp-pass-1"
    assert config.batch_private_key == PRIVATE_KEY.strip()
    assert config.batch_header is True
    assert config.batch_send_empty is False
    assert [m.target for m in config.mappings.all()] == ["event_id", "reason"]


def test_passwords_and_keys_are_write_only_and_kept_when_left_blank(staff_client):
    source = SourceFactory()
    staff_client.post(ADD, batch_form(source))
    config = FeedbackConfig.objects.get()
    change = reverse("admin:sources_feedbackconfig_change", args=[config.pk])

    page = staff_client.get(change).content.decode()

    assert "sftp-pass-1" not in page
    assert "PRIVATE KEY" not in page
    assert HOST_KEY.split()[1] in page  # the public host key is not a secret
    data = batch_form(
        source, batch_password="", batch_private_key="", batch_directory="/in2"
    )
    data["mappings-TOTAL_FORMS"] = "0"
    response = staff_client.post(change, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    config.refresh_from_db()
    assert config.batch_directory == "/in2"
    assert config.batch_password == "sftp-pass-1"
    assert config.batch_private_key == PRIVATE_KEY.strip()


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"batch_host_key": "nonsense"}, "batch_host_key", "public key"),
        ({"batch_host": ""}, "batch_host", "Enter the server's host name."),
        ({"batch_timezone": "Mars/Olympus"}, "batch_timezone", "not a known time"),
        ({"batch_day": ""}, "batch_day", "A weekly file needs the day"),
        ({"batch_file_name": "{{ period.start|nope }}"}, "batch_file_name", "does not"),
        ({"batch_transport": "email"}, "batch_email_to", "Enter a list of recipient"),
        (
            {"batch_transport": "email", "batch_email_to": '["not-an-address"]'},
            "batch_email_to",
            "'not-an-address' is not an email address.",
        ),
        (
            {"batch_transport": "ftps", "batch_tls_certificate": "garbage"},
            "batch_tls_certificate",
            "not a PEM certificate",
        ),
        ({"sync": "on"}, "sync", "turn sync off"),
    ],
)
def test_bad_batch_settings_are_form_errors(staff_client, overrides, field, message):
    source = SourceFactory()

    response = staff_client.post(ADD, batch_form(source, **overrides))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(message in error for error in errors.get(field, [])), errors
    assert not FeedbackConfig.objects.exists()


def test_a_json_config_still_needs_its_url(staff_client):
    source = SourceFactory()

    response = staff_client.post(ADD, config_form(source, url=""))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["url"] == ["Use an http:// or https:// URL."]


# Batch runs --------------------------------------------------------------------------


@pytest.fixture
def run(db):
    source = SourceFactory(name="Bluesky Leads")
    config = FeedbackConfig.objects.create(
        source=source, kind="return", method="batch", batch_file_name="r.csv"
    )
    run = BatchRun.objects.create(
        config=config,
        source=source,
        period_start="2026-11-24T06:00Z",
        period_end="2026-11-25T06:00Z",
        status=BatchRun.Status.DEAD,
        row_count=2,
        attempt_count=1,
        file_name="returns-20261124.csv",
        content=b"event_id\r\nabc\r\ndef\r\n",
        sha256="0" * 64,
        reason="Could not connect",
    )
    BatchAttempt.objects.create(
        run=run,
        number=1,
        started_at="2026-11-25T06:00Z",
        outcome="error",
        reason="Could not connect to sftp.bluesky.example:22",
        destination="sftp://sftp.bluesky.example:22/incoming",
    )
    return run


def test_the_run_list_shows_period_status_rows_and_attempts(staff_client, run):
    response = staff_client.get(reverse("admin:feedback_batchrun_changelist"))

    page = response.content.decode()
    assert response.status_code == 200
    assert run.public_id in page
    assert "Dead (retries exhausted)" in page
    assert "Nov. 24, 2026, 6 a.m." in page
    assert 'class="field-row_count">2<' in page
    assert 'class="field-attempt_count">1<' in page
    assert reverse("admin:feedback_batchrun_download", args=[run.pk]) in page


def test_the_run_page_shows_its_attempts(staff_client, run):
    response = staff_client.get(
        reverse("admin:feedback_batchrun_change", args=[run.pk])
    )

    page = response.content.decode()
    assert "Could not connect to sftp.bluesky.example:22" in page
    assert "sftp://sftp.bluesky.example:22/incoming" in page


def test_the_file_downloads_as_sent(staff_client, run):
    response = staff_client.get(
        reverse("admin:feedback_batchrun_download", args=[run.pk])
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"] == (
        'attachment; filename="returns-20261124.csv"'
    )
    assert response.content == b"event_id\r\nabc\r\ndef\r\n"


def test_the_download_needs_staff(client, run):
    response = client.get(reverse("admin:feedback_batchrun_download", args=[run.pk]))

    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_resending_a_run_queues_it_again(staff_client, run):
    response = staff_client.post(
        reverse("admin:feedback_batchrun_changelist"),
        {"action": "resend", "_selected_action": [run.pk]},
        follow=True,
    )

    run.refresh_from_db()
    assert run.status == BatchRun.Status.PENDING
    assert run.schedule_tries == 0
    assert run.next_attempt_at is not None
    assert "Resent 1 run: its file is queued for sending again." in (
        response.content.decode()
    )


def test_an_empty_run_is_not_resent(staff_client, run):
    BatchRun.objects.filter(pk=run.pk).update(status=BatchRun.Status.EMPTY)

    response = staff_client.post(
        reverse("admin:feedback_batchrun_changelist"),
        {"action": "resend", "_selected_action": [run.pk]},
        follow=True,
    )

    run.refresh_from_db()
    assert run.status == BatchRun.Status.EMPTY
    assert "1 run was not resent" in response.content.decode()


PREVIEW_ADD = reverse("admin:sources_feedbackconfig_preview_add")


def test_the_preview_shows_the_file_name_and_this_feedbacks_row(staff_client):
    feedback = FeedbackFactory(kind="return", reason="=1+1")
    data = batch_form(feedback.source)
    data["_preview_event_id"] = feedback.delivery.event_id

    page = staff_client.post(PREVIEW_ADD, data).content.decode()

    assert "File <code>returns-20261124.csv</code>" in page
    file_text = page.split('id="config-preview-file">')[1].split("</pre>")[0]
    assert file_text == (
        f"event_id,reason\r\n{feedback.delivery.event_id},&#x27;=1+1\r\n"
    )
    assert "config-preview-request" not in page


def test_a_batch_config_has_no_test_send(staff_client):
    data = batch_form(SourceFactory()) | {"_action": "send"}

    page = staff_client.post(PREVIEW_ADD, data).content.decode()

    assert "Batch files are sent on their schedule, not as a test" in page


def test_the_config_list_shows_a_batch_configs_destination(staff_client):
    source = SourceFactory()
    staff_client.post(ADD, batch_form(source))

    page = staff_client.get(reverse("admin:sources_feedbackconfig_changelist"))

    assert '<td class="field-host">sftp.bluesky.example</td>' in page.content.decode()


def test_the_run_list_queries_do_not_grow_with_rows(staff_client, run):
    url = reverse("admin:feedback_batchrun_changelist")

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(url).status_code == 200
        return len(queries)

    before = count()
    for day in range(1, 6):
        config = FeedbackConfig.objects.create(
            source=SourceFactory(), kind="return", method="batch"
        )
        BatchRun.objects.create(
            config=config,
            source=config.source,
            period_start=f"2026-10-0{day}T00:00Z",
            period_end=f"2026-10-0{day + 1}T00:00Z",
        )
    assert count() == before
