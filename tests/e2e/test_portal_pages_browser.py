"""The portal's pages as a buyer sees them, at a laptop's 1366 px and a phone's
390 px: a page of fifty deliveries that stays short on a phone with the bulk
bar in reach and nothing chosen, a lead's page with readable field names and
no second return, the summary and the integration page. Screenshots go to
var/screenshots/ (`make screenshots`)."""

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import Page, expect

from sources.models import Kind
from tests.factories import (
    BuyerFactory,
    BuyerMembershipFactory,
    DeliveryEventFactory,
    FeedbackFactory,
    FlowFactory,
    LeadFactory,
    SourceFactory,
    UserFactory,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-9"  # what UserFactory sets
SCREENSHOTS = Path(settings.VAR_DIR) / "screenshots"
WIDTHS = {
    "laptop": {"width": 1366, "height": 768},
    "phone": {"width": 390, "height": 844},
}
OVERFLOW_JS = (
    "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(db):
    """Acme with fifty deliveries from two sources over two months, some
    converted and some returned."""
    acme = BuyerFactory(slug="acme-insurance", name="Acme Insurance")
    BuyerMembershipFactory(user=UserFactory(username="alice"), buyer=acme)
    bluesky = SourceFactory(
        slug="bluesky", name="Bluesky Leads", return_reasons=["Duplicate", "Bad phone"]
    )
    northwind = SourceFactory(slug="northwind", name="Northwind Media")
    flows = [FlowFactory(name="Auto insurance"), FlowFactory(name="Home insurance")]
    now = timezone.now()
    deliveries = []
    for index in range(50):
        source = bluesky if index % 3 else northwind
        lead = LeadFactory(
            source=source,
            data={
                "first_name": f"Person{index}",
                "last_name": "Tester",
                "email": f"person{index}@example.com",
                "phone_1": f"51255500{index:02d}",
                "state": "TX",
                "postal_code": "78701",
            },
        )
        deliveries.append(
            DeliveryEventFactory(
                buyer=acme,
                lead=lead,
                source=source,
                flow=flows[index % 2],
                price=Decimal("24.00"),
                delivered_at=now - timedelta(days=index),
            )
        )
    for made in deliveries[::4]:
        FeedbackFactory(delivery=made, kind=Kind.CONVERSION, revenue=Decimal("300"))
    for made in deliveries[1::7]:
        FeedbackFactory(delivery=made, kind=Kind.RETURN, reason="Duplicate")
    return {"deliveries": deliveries}


def log_in(page: Page, live_server) -> None:
    page.goto(f"{live_server.url}/portal/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page.get_by_role("heading", name="Deliveries")).to_be_visible()


def shot(page: Page, name: str, width: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(
        path=str(SCREENSHOTS / f"portal-{name}-{width}.png"), full_page=True
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_the_portal_pages_fit_the_screen(page: Page, live_server, world, width):
    page.set_viewport_size(WIDTHS[width])
    log_in(page, live_server)
    deliveries = world["deliveries"]

    # The list: fifty rows, nothing chosen for the buyer, the bulk bar in reach.
    expect(page.locator("table.deliveries tbody tr")).to_have_count(50)
    assert page.evaluate(OVERFLOW_JS) <= 0
    assert page.locator('input[name="kind"]:checked').count() == 0
    bar = page.locator("[data-bulk]")
    box = bar.bounding_box()
    assert box is not None
    viewport = WIDTHS[width]["height"]
    # Sticky at the bottom of the screen, its button in reach at the top of the page.
    assert box["y"] < viewport
    expect(bar.get_by_role("button", name="Record for selected")).to_be_in_viewport()
    # Until a kind is chosen, the bar is small: no revenue, reason or note.
    expect(bar.get_by_label("Note")).to_be_hidden()
    if width == "phone":
        height = page.evaluate("() => document.documentElement.scrollHeight")
        assert height < 9000, f"the list is {height} px tall on a phone"
        assert box["height"] < viewport / 3
    shot(page, "deliveries", width)
    bar.get_by_label("Returned").check()
    expect(bar.get_by_label("Reason", exact=True)).to_be_visible()
    groups = bar.locator("optgroup")
    expect(groups).to_have_count(2)
    expect(groups.first).to_have_attribute("label", "Accepted by Bluesky Leads")
    shot(page, "deliveries-returning", width)

    # A returned lead: field names a person reads, and no second return.
    page.goto(f"{live_server.url}/portal/deliveries/{deliveries[1].event_id}/")
    assert page.evaluate(OVERFLOW_JS) <= 0
    lead = page.get_by_role("region", name="Lead", exact=True)
    expect(lead).to_contain_text("Phone")
    expect(lead).to_contain_text("ZIP code")
    expect(lead).not_to_contain_text("phone_1")
    expect(page.locator("#report-return")).to_contain_text("This lead was returned on")
    expect(page.locator("#report-conversion").get_by_label("Reason")).to_have_count(0)
    shot(page, "lead-returned", width)

    # A converted lead asks before a return, and says what it will do.
    page.goto(f"{live_server.url}/portal/deliveries/{deliveries[4].event_id}/")
    page.locator("#report-return").get_by_label("Reason").select_option("Bad phone")
    page.locator("#report-return").get_by_role("button", name="Return lead").click()
    expect(page.locator("[data-conflict]")).to_contain_text(
        "count the lead as both converted and returned"
    )
    assert page.evaluate(OVERFLOW_JS) <= 0
    shot(page, "lead-conflict", width)

    # The summary: the named columns are all on screen, no sideways scroll.
    page.goto(f"{live_server.url}/portal/summary/")
    assert page.evaluate(OVERFLOW_JS) <= 0
    for column in ("Delivered", "Converted", "Conversion rate", "Return rate"):
        if width == "laptop":
            expect(
                page.get_by_role("columnheader", name=column, exact=True).first
            ).to_be_in_viewport()
    expect(page.locator(".summary tfoot")).to_contain_text("All")
    shot(page, "summary", width)

    page.goto(f"{live_server.url}/portal/integration/")
    assert page.evaluate(OVERFLOW_JS) <= 0
    expect(page.locator("#return-reasons")).to_contain_text("Duplicate, Bad phone")
    shot(page, "integration", width)
