"""An admin sets up a nightly FTP batch file in a real browser, then watches its run,
downloads the file and resends it (the batch admin's acceptance walk)."""

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from feedback.forwarding.batches import batch_runs_run_due
from feedback.forwarding.models import BatchRun, Notification
from feedback.intake.pipeline import feedback_receive
from feedback.models import Feedback
from sources.models import FeedbackConfig
from tests.e2e.test_config_admin_browser import (
    add_mapping,
    log_in,
    screenshot_on_failure,
)
from tests.factories import BuyerFactory, DeliveryEventFactory, SourceFactory
from tests.sources.file_servers import PASSWORD, USERNAME, FtpServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def allow_loopback(settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]


def test_an_admin_sets_up_a_batch_file_and_watches_it_go(
    page: Page, live_server, staff_user, tmp_path
):
    root = tmp_path / "ftp"
    (root / "incoming").mkdir(parents=True)
    source = SourceFactory(slug="bluesky-leads", name="Bluesky Leads")
    add_path = reverse("admin:sources_feedbackconfig_add")
    source_path = reverse("admin:sources_source_change", args=[source.pk])

    with FtpServer(root) as ftp, screenshot_on_failure(page):
        log_in(page, live_server, staff_user, source_path)
        page.get_by_role("link", name="Add a feedback config").click()
        expect(page).to_have_url(f"{live_server.url}{add_path}?source={source.pk}")
        page.locator("#id_kind").select_option("return")
        page.locator("#id_method").select_option("batch")
        page.locator("#id_batch_every").select_option("day")
        page.locator("#id_batch_at").fill("00:00")
        page.locator("#id_batch_timezone").fill("UTC")
        page.locator("#id_batch_transport").select_option("ftp")
        page.locator("#id_batch_host").fill("127.0.0.1")
        page.locator("#id_batch_port").fill(str(ftp.port))
        page.locator("#id_batch_username").fill(USERNAME)
        page.locator("#id_batch_password").fill(PASSWORD)
        page.locator("#id_batch_directory").fill("/incoming")
        page.locator("#id_batch_file_name").fill(
            "returns-{{ period.start|date('%Y%m%d') }}.csv"
        )
        add_mapping(page, 0, "event_id", "{{ event.id }}")
        add_mapping(page, 1, "reason", "{{ feedback.reason }}")

        result = page.locator("#config-preview-result")
        page.locator("#preview-request").click()
        preview = result.locator("#config-preview-file")
        expect(preview).to_contain_text("event_id,reason")
        expect(result).to_contain_text("File returns-20261124.csv")

        page.locator("input[name='_save']").click()
        expect(page.locator(".messagelist .success")).to_contain_text(
            "was added successfully"
        )
        page_html = page.content()
        config = FeedbackConfig.objects.get()
        assert PASSWORD not in page_html
        assert config.batch_password == PASSWORD

        buyer = BuyerFactory()
        events = []
        for reason in ("Wrong number", "@SUM(A1:A2)"):
            delivery = DeliveryEventFactory(buyer=buyer, lead__source=source)
            outcome = feedback_receive(
                buyer=buyer,
                data={
                    "event_id": delivery.event_id,
                    "type": "return",
                    "reason": reason,
                },
                channel=Feedback.Channel.API,
            )
            assert outcome.feedback is not None
            events.append(delivery.event_id)
        # Received two days ago: last night's file takes them.
        Notification.objects.filter(config=config).update(
            created_at=timezone.now() - timedelta(days=2)
        )
        assert batch_runs_run_due() >= 1
        run = BatchRun.objects.get(config=config, row_count=2)
        assert run.status == BatchRun.Status.SENT

        page.goto(f"{live_server.url}{reverse('admin:feedback_batchrun_changelist')}")
        row = page.locator("#result_list tbody tr", has_text=run.public_id)
        expect(row.locator(".field-status")).to_have_text("Sent")
        expect(row.locator(".field-row_count")).to_have_text("2")
        expect(row.locator(".field-attempt_count")).to_have_text("1")
        with page.expect_download() as download_info:
            row.locator(".field-download a").click()
        download = download_info.value
        assert download.suggested_filename == run.file_name
        with open(download.path(), encoding="utf-8", newline="") as downloaded:
            rows = list(csv.reader(downloaded))
        assert rows == [
            ["event_id", "reason"],
            [events[0], "Wrong number"],
            [events[1], "'@SUM(A1:A2)"],
        ]
        assert (root / "incoming" / run.file_name).read_bytes() == bytes(run.content)

        row.locator("input.action-select").check()
        page.locator("select[name='action']").select_option("resend")
        page.locator("button[name='index']").click()
        expect(page.locator(".messagelist .success")).to_contain_text(
            "Resent 1 run: its file is queued for sending again."
        )
        run.refresh_from_db()
        assert run.status == BatchRun.Status.PENDING

        assert batch_runs_run_due() == 1
        page.goto(
            f"{live_server.url}"
            f"{reverse('admin:feedback_batchrun_change', args=[run.pk])}"
        )
        attempts = page.locator("#attempts-group tbody tr.has_original")
        expect(attempts).to_have_count(2)
        expect(attempts.nth(1)).to_contain_text("was already complete")

    assert sorted(p.name for p in (root / "incoming").iterdir()) == [run.file_name]
    sent = (root / "incoming" / run.file_name).read_text(encoding="utf-8")
    assert list(csv.reader(io.StringIO(sent, newline=""))) == rows
