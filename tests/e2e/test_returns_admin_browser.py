"""A reviewer works the returns queue in a real browser: filters it, rejects two
returns with one reason, opens a third and approves it with a partial credit,
then finds the credit (the returns admin's acceptance walk). Screenshots of
each page at a laptop's and a phone's width go to var/screenshots/."""

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from feedback.intake.pipeline import feedback_receive
from feedback.models import Feedback
from feedback.returns.models import Credit
from feedback.returns.services import return_dispute, return_reject
from sources.models import Kind
from tests.e2e.test_config_admin_browser import log_in, screenshot_on_failure
from tests.factories import (
    BuyerFactory,
    BuyerPolicyFactory,
    DeliveryEventFactory,
    FeedbackFactory,
    SourceFactory,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def delivered(buyer, source, *, price="25.00", **data):
    base = {"first_name": "Mel", "last_name": "Tester", "phone_1": "5125550123"}
    # The factory counts the delivery into its month, as the services do.
    return DeliveryEventFactory(
        buyer=buyer,
        lead__source=source,
        lead__data={**base, **data},
        price=Decimal(price),
    )


def returned(delivery, reason: str, *, days_ago: int = 0) -> Feedback:
    result = feedback_receive(
        buyer=delivery.buyer,
        data={"event_id": delivery.event_id, "type": "return", "reason": reason},
        channel=Feedback.Channel.API,
    )
    assert result.feedback is not None, result.reason
    if days_ago:
        Feedback.objects.filter(pk=result.feedback.pk).update(
            received_at=result.feedback.received_at - timedelta(days=days_ago, hours=2)
        )
    return result.feedback


def snapshot(page: Page, name: str) -> None:
    """Full-page screenshots at both widths; at the laptop's width nothing may
    scroll sideways."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        path = SCREENSHOTS / f"{name}-{viewport['width']}.png"
        page.screenshot(path=str(path), full_page=True)
        if viewport is DESKTOP:
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{name} scrolls sideways by {overflow}px"
    page.set_viewport_size(DESKTOP)


def test_a_reviewer_works_the_returns_queue(page: Page, live_server, staff_user):
    bluesky = SourceFactory(slug="bluesky", name="Bluesky Leads")
    acme = BuyerFactory(slug="acme-insurance", name="Acme Insurance")
    zenith = BuyerFactory(slug="zenith-direct", name="Zenith Direct")
    for buyer in (acme, zenith):
        BuyerPolicyFactory(buyer=buyer, kind=Kind.RETURN, review="manual")
    for _ in range(3):  # Acme's usual leads come from California
        delivered(acme, bluesky, state="CA")
    wrong = returned(
        delivered(acme, bluesky, phone_1="555"), "Wrong number", days_ago=4
    )
    duplicate = returned(delivered(acme, bluesky), "Duplicate lead", days_ago=2)
    area = returned(
        delivered(acme, bluesky, price="25.00", state="TX"), "Out of area", days_ago=1
    )
    converted = delivered(zenith, bluesky)
    FeedbackFactory(
        delivery=converted,
        kind=Kind.CONVERSION,
        revenue=Decimal(120),
        received_at=timezone.now() - timedelta(days=5),
    )
    returned(converted, "Not interested", days_ago=3)
    disputed = returned(delivered(acme, bluesky), "Disconnected phone", days_ago=6)
    return_reject(feedback=disputed, note="We reached the lead on the day.")
    return_dispute(feedback=disputed, comment="The number was disconnected.")

    queue = reverse("admin:feedback_returnreview_changelist")
    with screenshot_on_failure(page):
        page.set_viewport_size(DESKTOP)
        log_in(page, live_server, staff_user, queue)
        rows = page.locator("#result_list tbody tr")
        expect(rows).to_have_count(5)
        expect(rows.first).to_contain_text("Disconnected phone")  # oldest first
        expect(rows.first.locator(".field-state")).to_have_text("Disputed")
        zenith_row = rows.filter(has_text="Zenith Direct")
        expect(zenith_row.locator(".field-state")).to_have_text(
            "Pending Converted first"
        )
        wrong_row = rows.filter(has_text="Wrong number")
        expect(wrong_row.locator(".field-age")).to_have_text("4\xa0days")
        expect(wrong_row.locator(".field-evidence")).to_have_text("Phone: supports")
        expect(
            rows.filter(has_text="Out of area").locator(".field-evidence")
        ).to_have_text("State: supports")
        expect(wrong_row.locator(".field-return_rate")).to_have_text("4 of 7 (57.1 %)")
        snapshot(page, "returns-queue")

        page.locator("#changelist-filter").get_by_role(
            "link", name="Acme Insurance"
        ).click()
        expect(rows).to_have_count(4)
        expect(page.locator("#changelist-filter")).to_contain_text("Acme Insurance")

        for reason in ("Wrong number", "Duplicate lead"):
            rows.filter(has_text=reason).locator("input.action-select").check()
        page.locator("select[name='action']").select_option("reject_selected")
        page.locator("button[name='index']").click()

        expect(page.locator("h1")).to_have_text("Reject 2 returns")
        expect(page.locator("#selected-returns tbody tr")).to_have_count(2)
        reason = page.get_by_label("Reason")
        expect(reason).to_have_attribute("required", "")
        reason.fill("Contacted on the day; the lead was reachable.")
        page.get_by_role("button", name="Reject 2 returns").click()

        expect(page.locator(".messagelist .success")).to_have_text(
            "Rejected 2 returns."
        )
        expect(rows).to_have_count(2)  # the buyer filter is kept
        for feedback in (wrong, duplicate):
            feedback.refresh_from_db()
            assert feedback.review_state == Feedback.ReviewState.REJECTED

        rows.filter(has_text="Out of area").locator(".field-reason_column a").click()
        expect(page.locator("h1")).to_have_text(f"Return of {area.delivery.event_id}")
        expect(page.locator("#review-checks")).to_contain_text(
            "never received a lead from TX before"
        )
        expect(page.locator("#review-price")).to_have_text("25.00")
        snapshot(page, "returns-review")

        page.get_by_label("Credit amount").fill("30")
        page.get_by_role("button", name="Approve and credit").click()
        expect(page.locator(".errorlist")).to_contain_text(
            "Cannot be more than the delivery's price, 25.00."
        )
        page.get_by_label("Credit amount").fill("10.50")
        page.get_by_label("Reason").fill("Half: the lead was in TX but reachable.")
        page.get_by_role("button", name="Approve and credit").click()

        expect(page.locator(".messagelist .success")).to_have_text(
            "Approved: 10.50 credited to Acme Insurance."
        )
        expect(page.locator("#review-summary .review-state")).to_have_text("Approved")
        history = page.locator("#review-history tbody tr")
        expect(history).to_have_count(2)
        expect(history.last).to_contain_text("Pending review → Approved")
        expect(history.last).to_contain_text("Half: the lead was in TX but reachable.")
        expect(page.locator("#review-credits")).to_contain_text("10.50")
        expect(page.get_by_role("button", name="Approve and credit")).to_have_count(0)
        snapshot(page, "returns-review-decided")

        page.goto(f"{live_server.url}{reverse('admin:feedback_credit_changelist')}")
        expect(page.locator("#credits-total")).to_contain_text("Total credited: 10.50")
        credit_row = page.locator("#result_list tbody tr")
        expect(credit_row).to_have_count(1)
        expect(credit_row.locator(".field-amount")).to_have_text("10.50")
        expect(credit_row.locator(".field-decided_by_column")).to_have_text(
            staff_user.username
        )
        snapshot(page, "returns-credits")

    credit = Credit.objects.get()
    assert (credit.feedback_id, credit.amount) == (area.pk, Decimal("10.50"))
