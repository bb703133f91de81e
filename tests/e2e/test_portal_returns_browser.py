"""A buyer's person follows a return in headless Chromium against a live server:
open Returns, open a rejected return, dispute it with a comment and a PNG, see it
disputed with its history, download the evidence, then open Credits and download
the month's CSV. At a laptop's width and at a phone's, with no sideways
scrolling on the three pages, and a screenshot of each in var/screenshots/."""

import csv
import io
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.storage import FileSystemStorage
from django.utils import timezone
from playwright.sync_api import Page, expect

from feedback.intake.pipeline import feedback_receive
from feedback.models import BuyerPolicy, Feedback
from feedback.returns.models import ReturnTransition
from feedback.returns.services import return_approve, return_reject
from feedback.services import DeliveryInput, delivery_event_record
from sources.models import Kind
from tests.e2e.test_portal_browser import (
    UNLABELLED_JS,
    log_in,
    nav,
    screenshot_on_failure,
)
from tests.factories import BuyerFactory, BuyerMembershipFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
VIEWPORTS = {
    "desktop": {"width": 1366, "height": 900},
    "phone": {"width": 390, "height": 844},
}
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08"
    b"\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0"
    b"\x1f\x00\x05\x00\x01\xff\xa1\xb2\x8c\x12\x00\x00\x00\x00IEND\xaeB`\x82"
)
OVERFLOW_JS = "() => document.documentElement.scrollWidth - window.innerWidth"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def evidence_storage(tmp_path, monkeypatch):
    field = ReturnTransition._meta.get_field("evidence")
    storage = FileSystemStorage(location=tmp_path / "evidence", base_url=None)
    monkeypatch.setattr(field, "storage", storage)


def deliver(buyer, first_name, *, hours_ago, flow="auto", price="25.00"):
    event, _ = delivery_event_record(
        data=DeliveryInput(
            buyer=buyer.slug,
            source="bluesky",
            flow=flow,
            delivered_at=timezone.now() - timedelta(hours=hours_ago),
            price=Decimal(price),
            reference=f"CRM-{first_name.upper()}",
            lead_data={"first_name": first_name, "last_name": "Tester"},
        )
    )
    return event


def request_return(buyer, user, delivery, reason):
    return feedback_receive(
        buyer=buyer,
        data={"event_id": delivery.event_id, "type": "return", "reason": reason},
        channel=Feedback.Channel.PORTAL,
        user=user,
    ).feedback


@pytest.fixture
def world(db):
    """Acme, capped and reviewing by hand, with a pending, a rejected and two
    approved returns; Zenith with a return of its own."""
    acme = BuyerFactory(slug="acme-insurance", name="Acme Insurance")
    alice = UserFactory(username="alice")
    BuyerMembershipFactory(user=alice, buyer=acme)
    reviewer = UserFactory(
        username="jane.reviewer", email="jane@seller.example", is_staff=True
    )
    BuyerPolicy.objects.create(
        buyer=acme,
        kind=Kind.RETURN,
        review=BuyerPolicy.Review.MANUAL,
        cap_percent=Decimal("10"),
        cap_min=20,
        dispute_days=7,
    )
    deliveries = [deliver(acme, f"Person{i}", hours_ago=30 - i) for i in range(8)]
    request_return(acme, alice, deliveries[0], "Not interested")
    rejected = return_reject(
        feedback=request_return(acme, alice, deliveries[1], "Disconnected phone"),
        user=reviewer,
        note="The number answered when we called on Monday.",
    )
    return_approve(
        feedback=request_return(acme, alice, deliveries[2], "Wrong number"),
        user=reviewer,
        note="Confirmed: the number belongs to someone else.",
    )
    return_approve(
        feedback=request_return(
            acme, alice, deliveries[3], '=HYPERLINK("http://evil.example","x")'
        ),
        user=reviewer,
        credit_amount="12.50",
    )
    zenith = BuyerFactory(slug="zenith", name="Zenith Direct")
    BuyerPolicy.objects.create(buyer=zenith, kind=Kind.RETURN)
    request_return(zenith, None, deliver(zenith, "Foreign", hours_ago=2), "Duplicate")
    return {"rejected": rejected}


def check_page(page: Page, name: str, viewport: str) -> None:
    """No sideways scrolling, every control labelled, and a screenshot to look at."""
    page.wait_for_load_state("load")
    assert page.evaluate(OVERFLOW_JS) <= 0, name
    assert page.evaluate(UNLABELLED_JS) == [], name
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{viewport}.png"), full_page=True)


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_a_buyer_disputes_a_rejected_return_and_downloads_credits(
    page: Page, live_server, world, tmp_path, viewport
):
    page.set_viewport_size(VIEWPORTS[viewport])
    rejected = world["rejected"]
    evidence = tmp_path / "call-log.png"
    evidence.write_bytes(PNG)
    month = timezone.localtime()
    with screenshot_on_failure(page):
        log_in(page, live_server, "alice")
        nav(page).get_by_role("link", name="Returns").click()
        expect(page.get_by_role("heading", name="Returns", exact=True)).to_be_visible()
        rows = page.locator("table.returns tbody tr")
        expect(rows).to_have_count(4)
        expect(page.locator("table.returns")).not_to_contain_text("Foreign")
        allowance = page.locator(".allowance")
        expect(allowance).to_contain_text(
            f"3 of 20 returns used for {month:%B %Y} deliveries (17 left)"
        )
        check_page(page, "returns-list", viewport)

        page.get_by_label("State").select_option("rejected")
        page.get_by_role("button", name="Apply").click()
        expect(rows).to_have_count(1)
        row = rows.first
        expect(row).to_contain_text("Rejected")
        expect(row).to_contain_text("The number answered when we called on Monday.")
        row.get_by_role("link", name="Person1 Tester").click()

        expect(
            page.get_by_role("heading", name="Return of Person1 Tester")
        ).to_be_visible()
        dispute = page.locator("#dispute")
        expect(dispute).to_contain_text("You can dispute this rejection once, until")
        check_page(page, "return-detail-rejected", viewport)

        dispute.get_by_label("Why the rejection is wrong").fill(
            "We called three times; the line is disconnected. Call log attached."
        )
        dispute.get_by_label("Evidence (optional)").set_input_files(str(evidence))
        dispute.get_by_role("button", name="Send the dispute").click()

        expect(page.get_by_role("status")).to_contain_text("Dispute sent.")
        expect(page.locator("h1 .badge")).to_have_text("Disputed")
        expect(page.locator("#dispute")).to_contain_text(
            "You disputed this rejection on"
        )
        expect(page.get_by_label("Why the rejection is wrong")).to_have_count(0)
        steps = page.locator("ol.steps > li")
        expect(steps).to_have_count(3)
        expect(steps.nth(0)).to_contain_text("Requested → Pending review")
        expect(steps.nth(0)).to_contain_text("You")
        expect(steps.nth(1)).to_contain_text("Pending review → Rejected")
        expect(steps.nth(1)).to_contain_text("Reviewer")
        expect(steps.nth(2)).to_contain_text("Rejected → Disputed")
        expect(steps.nth(2)).to_contain_text("You")
        expect(steps.nth(2)).to_contain_text("Call log attached.")
        expect(page.locator("main")).not_to_contain_text("jane")
        check_page(page, "return-detail-disputed", viewport)

        with page.expect_download() as download_info:
            steps.nth(2).get_by_role("link", name="call-log.png").click()
        assert download_info.value.suggested_filename == "call-log.png"
        assert Path(download_info.value.path()).read_bytes() == PNG

        nav(page).get_by_role("link", name="Credits").click()
        expect(page.get_by_role("heading", name="Credits")).to_be_visible()
        expect(page.locator(".credit-summary")).to_contain_text(
            f"Total for {month:%B %Y}"
        )
        expect(page.locator(".credit-summary strong")).to_have_text("37.50")
        expect(page.locator("table.credits tbody tr")).to_have_count(2)
        check_page(page, "credits", viewport)

        with page.expect_download() as download_info:
            page.get_by_role("link", name="Download CSV").click()
        assert download_info.value.suggested_filename == (
            f"credits-acme-insurance-{month:%Y-%m}.csv"
        )
        text = Path(download_info.value.path()).read_text()
        rows_out = list(csv.DictReader(io.StringIO(text)))
        assert sorted(row["amount"] for row in rows_out) == ["12.50", "25.00"]
        assert {row["reason"] for row in rows_out} == {
            "Wrong number",
            '\'=HYPERLINK("http://evil.example","x")',
        }

    rejected.refresh_from_db()
    assert rejected.review_state == Feedback.ReviewState.DISPUTED
    step = ReturnTransition.objects.get(feedback=rejected, to_state="disputed")
    assert step.evidence_type == "image/png"
