"""Staff pause and resume a source and look after webhooks in a real browser:
the source list's Paused badge, the pause button and its reason, the status
history, the Paused badge on a report's row, a webhook endpoint added with a
generated secret, and a message's attempts with its Resend button.
Screenshots of each page at a laptop's and a phone's width go to
var/screenshots/."""

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from feedback.models import Feedback
from feedback.sourcestatus.services import source_pause
from feedback.webhooks.delivery import webhook_messages_deliver_due
from feedback.webhooks.models import WebhookEndpoint, WebhookMessage
from sources.models import Kind, Source
from tests.e2e.test_config_admin_browser import log_in, screenshot_on_failure
from tests.e2e.test_returns_admin_browser import snapshot
from tests.factories import (
    BuyerFactory,
    DeliveryEventFactory,
    FeedbackFactory,
    SourceFactory,
)
from tests.sources.servers import RecordingServer, Reply

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def browser_settings(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    settings.LEADBACK_QUEUE_ON_COMMIT = False


def test_staff_pause_a_source_and_see_it_everywhere(
    page: Page, live_server, staff_user
):
    bluesky = SourceFactory(slug="bluesky-leads", name="Bluesky Leads")
    SourceFactory(slug="harbor-data", name="Harbor Data")
    redwood = SourceFactory(slug="redwood-media", name="Redwood Media")
    source_pause(source=redwood, reason="Contract on hold", actor=None, via="api")
    buyer = BuyerFactory(slug="acme", name="Acme Insurance")
    for source in (bluesky, redwood):
        delivery = DeliveryEventFactory(
            buyer=buyer, lead__source=source, price=Decimal("20.00")
        )
        FeedbackFactory(
            delivery=delivery,
            kind=Kind.CONVERSION,
            outcome=Feedback.Outcome.SUCCESS,
            received_at=timezone.now(),
        )

    listing = reverse("admin:sources_source_changelist")
    with screenshot_on_failure(page):
        log_in(page, live_server, staff_user, listing)
        rows = page.locator("#result_list tbody tr")
        expect(rows).to_have_count(3)
        expect(
            rows.filter(has_text="Redwood Media").locator(".field-status_column")
        ).to_have_text("Paused")
        expect(
            rows.filter(has_text="Bluesky Leads").locator(".field-status_column")
        ).to_have_text("Active")
        snapshot(page, "sources-list-status")

        rows.filter(has_text="Bluesky Leads").get_by_role(
            "link", name="Bluesky Leads"
        ).click()
        expect(page.locator(".field-status_panel")).to_contain_text("Never paused.")
        page.get_by_role("link", name="Pause source").click()
        expect(page.locator("h1")).to_have_text("Pause Bluesky Leads")
        snapshot(page, "source-pause-form")
        page.get_by_label("Reason").fill("Return rate above 15% for two weeks")
        page.get_by_role("button", name="Pause Bluesky Leads").click()

        expect(
            page.locator(".messagelist .success, .messagelist .info")
        ).to_contain_text("1 source paused.")
        panel = page.locator(".field-status_panel")
        expect(panel.locator(".source-paused-badge")).to_have_text("Paused")
        expect(panel).to_contain_text("Return rate above 15% for two weeks")
        expect(panel).to_contain_text("paused via admin by admin")
        expect(page.get_by_role("link", name="Resume source")).to_be_visible()
        snapshot(page, "source-paused-change")

        report = reverse("reporting:report-detail", args=["by-source"])
        today = timezone.localdate().isoformat()
        page.goto(f"{live_server.url}{report}?start={today}&end={today}")
        table = page.locator("#report-table tbody tr")
        expect(
            table.filter(has_text="Bluesky Leads").locator(".report-badge")
        ).to_have_text("Paused")
        expect(
            table.filter(has_text="Redwood Media").locator(".report-badge")
        ).to_have_text("Paused")
        snapshot(page, "report-by-source-paused")

        change = reverse("admin:sources_source_change", args=[bluesky.pk])
        page.goto(f"{live_server.url}{change}")
        page.get_by_role("link", name="Resume source").click()
        expect(page.locator("h1")).to_have_text("Resume Bluesky Leads")
        page.get_by_role("button", name="Resume Bluesky Leads").click()
        expect(page.get_by_role("link", name="Pause source")).to_be_visible()

    bluesky.refresh_from_db()
    assert bluesky.status == Source.Status.ACTIVE


def test_staff_add_an_endpoint_and_resend_a_message(
    page: Page, live_server, staff_user
):
    with (
        screenshot_on_failure(page),
        RecordingServer(Reply(503, b"maintenance")) as receiver,
    ):
        add = reverse("admin:feedback_webhookendpoint_add")
        log_in(page, live_server, staff_user, add)
        page.get_by_label("Slug").fill("erp")
        page.get_by_label("URL").fill(receiver.url("/hooks"))
        page.get_by_label("A source was paused").check()
        page.get_by_label("A return was approved or rejected").check()
        snapshot(page, "webhook-endpoint-add")
        page.get_by_role("button", name="Save", exact=True).click()

        expect(page.locator(".messagelist .warning")).to_contain_text(
            "Generated secret"
        )
        endpoint = WebhookEndpoint.objects.get()
        assert endpoint.events == ["source.paused", "return.decided"]
        expect(page.locator(".messagelist .warning")).to_contain_text(endpoint.secret)
        snapshot(page, "webhook-endpoint-list")

        source_pause(
            source=SourceFactory(slug="bluesky-leads", name="Bluesky Leads"),
            reason="Quality review",
            actor=staff_user,
            via="admin",
        )
        webhook_messages_deliver_due()
        message = WebhookMessage.objects.get()

        page.goto(
            f"{live_server.url}{reverse('admin:feedback_webhookmessage_changelist')}"
        )
        expect(page.locator("#result_list tbody tr")).to_have_count(1)
        expect(page.locator(".field-status_column")).to_have_text("Retrying")
        snapshot(page, "webhook-messages")

        page.get_by_role("link", name=message.public_id).click()
        expect(page.locator("div.field-reason")).to_contain_text("Answered 503.")
        attempts = page.locator("#attempts-group tbody tr")
        expect(attempts.first).to_contain_text("error")
        snapshot(page, "webhook-message")
        page.get_by_role("button", name="Resend").click()
        expect(page.locator(".messagelist .success")).to_contain_text(
            "Resent 1 message"
        )
        expect(page.locator("div.field-status_column .webhook-status")).to_have_text(
            "Pending"
        )
