"""Staff preview a source's digest in a real browser, on a laptop and on a
phone, and send themselves a test. Screenshots go to var/screenshots/."""

import datetime
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django.utils import timezone
from playwright.sync_api import Page, expect

from reporting.models import Digest
from sources.models import Kind
from tests.factories import DeliveryEventFactory, FeedbackFactory, SourceFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-9"  # what UserFactory sets
SCREENSHOTS = Path(settings.VAR_DIR) / "screenshots"
REASONS = ["Bad phone", "Bad phone", "Duplicate", "=Wrong state", "Bad phone"]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def write_digest() -> Digest:
    source = SourceFactory(slug="bluesky-leads", name="Bluesky Leads")
    for days_ago in range(1, 14):
        day = timezone.now() - datetime.timedelta(days=days_ago)
        for n in range(3):
            delivery = DeliveryEventFactory(lead__source=source, delivered_at=day)
            if n == 0:
                FeedbackFactory(
                    delivery=delivery,
                    kind=Kind.RETURN,
                    reason=REASONS[days_ago % len(REASONS)],
                    quality_score=2,
                    received_at=day,
                )
            elif n == 1 and days_ago % 2:
                FeedbackFactory(
                    delivery=delivery,
                    kind=Kind.CONVERSION,
                    quality_score=4,
                    received_at=day,
                )
    return Digest.objects.create(
        slug="bluesky-weekly",
        source=source,
        every=Digest.Every.WEEK,
        timezone="UTC",
        recipients=["ops@bluesky.example"],
    )


def log_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/admin/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


@pytest.mark.parametrize(("width", "height"), [(1366, 900), (390, 844)])
def test_staff_preview_a_digest_and_send_a_test(
    page: Page, live_server, staff_user, width, height
):
    digest = write_digest()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": width, "height": height})
    log_in(page, live_server.url, staff_user.username)

    page.goto(f"{live_server.url}/admin/reporting/digest/")
    expect(page.locator("#result_list")).to_contain_text("Mondays at 08:00 UTC")
    page.screenshot(path=str(SCREENSHOTS / f"digest-list-{width}.png"), full_page=True)
    page.locator("#result_list").get_by_role("link", name="bluesky-weekly").click()
    page.screenshot(
        path=str(SCREENSHOTS / f"digest-change-{width}.png"), full_page=True
    )
    page.locator("#digest-preview-link").click()

    expect(page.locator("#digest-subject")).to_contain_text(
        "Bluesky Leads: feedback digest for"
    )
    frame = page.frame_locator("#digest-preview-frame")
    expect(frame.locator('tr[data-measure="delivered"] td').first).to_have_text("21")
    expect(frame.locator('tr[data-measure="returns"] td').first).to_have_text("7")
    expect(frame.locator("#digest-reasons")).to_contain_text("Bad phone")
    # The page fits the screen: no sideways scrolling on a phone.
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    page.screenshot(
        path=str(SCREENSHOTS / f"digest-preview-{width}.png"), full_page=True
    )

    page.locator("#id_to").fill("me@seller.example")
    page.locator("#digest-send-test").click()
    expect(page.locator(".messagelist")).to_contain_text(
        "Test digest sent to me@seller.example"
    )
    assert [m.to for m in mail.outbox] == [["me@seller.example"]]
    assert digest.sends.count() == 0
