"""Correcting feedback in headless Chromium against a live server (DESIGN
§12): the buyer amends a conversion's revenue and retracts a return on the
lead's page; staff retract feedback in the admin and read who was told. At a
laptop's width and a phone's, with no sideways scrolling, and screenshots in
var/screenshots/."""

from decimal import Decimal
from pathlib import Path

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from feedback.forwarding.models import Notification
from feedback.models import BuyerPolicy, Feedback
from sources.models import FeedbackConfig, Kind
from tests.e2e.test_config_admin_browser import log_in as admin_log_in
from tests.e2e.test_portal_browser import (
    OVERFLOW_JS,
    UNLABELLED_JS,
    log_in,
    screenshot_on_failure,
)
from tests.factories import (
    BuyerFactory,
    BuyerMembershipFactory,
    DeliveryEventFactory,
    FeedbackFactory,
    LeadFactory,
    SourceFactory,
    UserFactory,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
VIEWPORTS = {
    "desktop": {"width": 1366, "height": 900},
    "phone": {"width": 390, "height": 844},
}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def check_page(page: Page, name: str, viewport: str) -> None:
    """No sideways scrolling, every control labelled, and a screenshot."""
    page.wait_for_load_state("load")
    assert page.evaluate(OVERFLOW_JS) <= 0, name
    assert page.evaluate(UNLABELLED_JS) == [], name
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{viewport}.png"), full_page=True)


@pytest.fixture
def world(db):
    """Acme's lead, converted for 250.00, and another returned."""
    acme = BuyerFactory(slug="acme-insurance", name="Acme Insurance")
    BuyerMembershipFactory(user=UserFactory(username="alice"), buyer=acme)
    BuyerPolicy.objects.create(buyer=acme, kind=Kind.RETURN)
    source = SourceFactory(slug="bluesky", name="Bluesky Leads")

    def delivered(first_name):
        lead = LeadFactory(
            source=source, data={"first_name": first_name, "last_name": "Tester"}
        )
        return DeliveryEventFactory(buyer=acme, lead=lead)

    converted = FeedbackFactory(
        delivery=delivered("Carla"), revenue=Decimal("250.00"), channel="portal"
    )
    returned = FeedbackFactory(
        delivery=delivered("Rob"), kind=Kind.RETURN, reason="Wrong number"
    )
    return {"converted": converted, "returned": returned, "source": source}


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_a_buyer_amends_revenue_and_retracts_a_return(
    page: Page, live_server, world, viewport
):
    page.set_viewport_size(VIEWPORTS[viewport])
    converted, returned = world["converted"], world["returned"]
    with screenshot_on_failure(page):
        log_in(page, live_server, "alice")
        page.goto(f"{live_server.url}/portal/deliveries/{converted.delivery.event_id}/")
        item = page.locator(f"#feedback-{converted.public_id}")
        expect(item).to_contain_text("You can correct this until")
        item.locator("summary", has_text="Amend revenue").click()
        item.get_by_label("New revenue").fill("225.50")
        item.get_by_label("Why (optional)").fill("Discount applied at signing")
        check_page(page, "corrections-amend-open", viewport)
        item.get_by_role("button", name="Save new revenue").click()

        item = page.locator(f"#feedback-{converted.public_id}")
        expect(item.get_by_role("status")).to_have_text("Revenue amended to 225.50.")
        expect(item.locator(".corrections")).to_contain_text(
            "Revenue amended from 250.00 to 225.50"
        )
        expect(item.locator("dl.facts")).to_contain_text("225.50")
        check_page(page, "corrections-amended", viewport)

        page.goto(f"{live_server.url}/portal/deliveries/{returned.delivery.event_id}/")
        expect(page.locator("[data-returned]")).to_contain_text(
            "This lead was returned on"
        )
        item = page.locator(f"#feedback-{returned.public_id}")
        item.locator("summary", has_text="Retract").click()
        item.get_by_label("Why are you retracting it?").fill(
            "Reached the lead after all"
        )
        check_page(page, "corrections-retract-open", viewport)
        item.get_by_role("button", name="Retract return").click()

        item = page.locator(f"#feedback-{returned.public_id}")
        expect(item.get_by_role("status")).to_have_text("Feedback retracted.")
        expect(item.locator(".feedback-head")).to_contain_text("Retracted")
        expect(item).to_contain_text("no longer counted in reports")
        expect(item.locator("summary")).to_have_count(0)
        expect(page.locator("[data-returned]")).to_have_count(0)
        expect(page.get_by_role("button", name="Return lead")).to_be_visible()
        check_page(page, "corrections-retracted", viewport)

    returned.refresh_from_db()
    converted.refresh_from_db()
    assert returned.retracted_at is not None
    assert converted.revenue == Decimal("225.50")


def test_staff_retract_in_the_admin_and_read_who_was_told(
    page: Page, live_server, world, staff_user
):
    converted, source = world["converted"], world["source"]
    quiet = FeedbackConfig.objects.create(
        source=source, kind=Kind.CONVERSION, url="https://bluesky.example/sales"
    )
    Notification.objects.create(
        feedback=converted,
        config=quiet,
        source=source,
        kind=Kind.CONVERSION,
        lead_delivered_at=converted.delivery.delivered_at,
        status=Notification.Status.SUCCEEDED,
    )
    change = reverse("admin:feedback_feedback_change", args=[converted.pk])
    with screenshot_on_failure(page):
        page.set_viewport_size(VIEWPORTS["desktop"])
        admin_log_in(page, live_server, staff_user, change)
        page.get_by_role("link", name="Retract…").click()
        expect(page.locator("#correction-not-told")).to_have_text(
            "Source Bluesky Leads has no retraction mapping: it will not be told."
        )
        page.get_by_label("Reason").fill("Duplicate sale, confirmed by phone")
        for viewport, size in VIEWPORTS.items():
            page.set_viewport_size(size)
            check_page(page, "corrections-admin-retract", viewport)
        page.set_viewport_size(VIEWPORTS["desktop"])
        page.get_by_role("button", name="Retract").click()

        expect(page.locator(".messagelist")).to_contain_text(
            "The feedback was retracted."
        )
        block = page.locator(".field-corrections")
        expect(block).to_contain_text("Retracted on")
        expect(block).to_contain_text("Duplicate sale, confirmed by phone")
        expect(block).to_contain_text(staff_user.username)
        expect(block).to_contain_text(
            "Source Bluesky Leads has no retraction mapping: it was not told."
        )
        expect(page.get_by_role("link", name="Retract…")).to_have_count(0)
        for viewport, size in VIEWPORTS.items():
            page.set_viewport_size(size)
            page.locator(".field-corrections").scroll_into_view_if_needed()
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(
                path=str(SCREENSHOTS / f"corrections-admin-feedback-{viewport}.png"),
                full_page=True,
            )

    assert Feedback.objects.get(pk=converted.pk).retracted_at is not None


def test_an_admin_gives_a_config_its_retraction_request(
    page: Page, live_server, world, staff_user
):
    config = FeedbackConfig.objects.create(
        source=world["source"],
        kind=Kind.CONVERSION,
        url="https://bluesky.example/sales",
    )
    change = reverse("admin:sources_feedbackconfig_change", args=[config.pk])
    request = (
        '{"method": "json", "url": "https://bluesky.example/retractions", '
        '"mappings": [{"target": "original", '
        '"value": "{{ notification.original_id }}"}]}'
    )
    with screenshot_on_failure(page):
        page.set_viewport_size(VIEWPORTS["desktop"])
        admin_log_in(page, live_server, staff_user, change)
        section = page.locator("fieldset", has_text="Corrections")
        expect(section).to_contain_text("notification.original_id")
        section.get_by_label("On retraction").fill('{"method": "batch"}')
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.locator(".errorlist").first).to_be_visible()
        expect(page.locator("fieldset", has_text="Corrections")).to_contain_text(
            "method must be one of"
        )
        page.locator("fieldset", has_text="Corrections").get_by_label(
            "On retraction"
        ).fill(request)
        for viewport, size in VIEWPORTS.items():
            page.set_viewport_size(size)
            page.locator(
                "fieldset", has_text="Corrections"
            ).scroll_into_view_if_needed()
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(
                path=str(SCREENSHOTS / f"corrections-config-admin-{viewport}.png")
            )
        page.set_viewport_size(VIEWPORTS["desktop"])
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.locator(".messagelist")).to_contain_text("was changed successfully")

    config.refresh_from_db()
    assert config.on_retract["url"] == "https://bluesky.example/retractions"
