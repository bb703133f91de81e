"""A buyer's person walks the portal in headless Chromium against a live server:
log in, filter and search, return one lead, convert a selection, create and
revoke a key, and the same pages at a phone's width with no sideways scrolling.
Forms are checked for labels and driven from the keyboard where a person would."""

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import Page, expect

from feedback.models import ApiKey, DeliveryEvent, Feedback
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
PHONE = {"width": 390, "height": 844}
SCREENSHOT = Path(tempfile.gettempdir()) / "leadback-e2e-portal.png"

# Every visible form control must be labelled (a <label for>, a wrapping label
# or an aria-label); returns the ones that are not.
UNLABELLED_JS = """
() => Array.from(document.querySelectorAll('input, select, textarea'))
  .filter(el => el.type !== 'hidden' && el.offsetParent !== null)
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
  .map(el => el.name || el.id || el.outerHTML)
"""
OVERFLOW_JS = (
    "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@contextmanager
def screenshot_on_failure(page: Page) -> Iterator[None]:
    try:
        yield
    except BaseException:
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        raise


@pytest.fixture
def world(db):
    """Acme with a person, deliveries from two sources; Zenith with one of its own."""
    acme = BuyerFactory(slug="acme-insurance", name="Acme Insurance")
    user = UserFactory(username="alice")
    BuyerMembershipFactory(user=user, buyer=acme)
    strict = SourceFactory(
        slug="bluesky",
        name="Bluesky Leads",
        return_reasons=["Wrong number", "Duplicate"],
    )
    open_source = SourceFactory(slug="northwind", name="Northwind Media")
    auto = FlowFactory(slug="auto", name="Auto insurance")
    home = FlowFactory(slug="home", name="Home insurance")
    now = timezone.now()
    deliveries = []
    for index in range(6):
        lead = LeadFactory(
            source=strict if index % 2 else open_source,
            flow=auto if index < 4 else home,
            data={
                "first_name": f"Person{index}",
                "last_name": "Tester",
                "email": f"person{index}@example.com",
                "phone_1": f"512555000{index}",
            },
            email_normalized=f"person{index}@example.com",
            phone_normalized=f"512555000{index}",
        )
        deliveries.append(
            DeliveryEventFactory(
                buyer=acme,
                lead=lead,
                reference=f"CRM-{100 + index}",
                delivered_at=now - timedelta(hours=index + 1),
            )
        )
    FeedbackFactory(delivery=deliveries[5], kind=Kind.CONVERSION)
    zenith = BuyerFactory(slug="zenith", name="Zenith Direct")
    foreign = DeliveryEventFactory(buyer=zenith, reference="CRM-101")
    return {"user": user, "deliveries": deliveries, "foreign": foreign}


def log_in(page: Page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/portal/")
    expect(page).to_have_url(f"{live_server.url}/accounts/login/?next=/portal/")
    assert page.evaluate(UNLABELLED_JS) == []
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(f"{live_server.url}/portal/")
    expect(page.get_by_role("heading", name="Deliveries")).to_be_visible()


def sideways_overflow(page: Page) -> int:
    """How many pixels the page is wider than the screen, once styles apply."""
    page.wait_for_load_state("load")
    return page.evaluate(OVERFLOW_JS)


def nav(page: Page):
    return page.get_by_role("navigation", name="Portal")


def rows(page: Page):
    return page.locator("table.deliveries tbody tr")


def test_a_buyer_finds_returns_and_converts_leads_and_manages_keys(
    page: Page, live_server, world
):
    deliveries = world["deliveries"]
    with screenshot_on_failure(page):
        log_in(page, live_server, "alice")
        expect(rows(page)).to_have_count(6)
        expect(rows(page).first).to_contain_text("Person0")
        assert page.evaluate(UNLABELLED_JS) == []

        # Search by reference: Zenith's delivery with the same reference never shows.
        page.get_by_label("Search").fill("CRM-101")
        page.get_by_role("button", name="Apply").click()
        expect(rows(page)).to_have_count(1)
        expect(rows(page).first).to_contain_text(deliveries[1].event_id)

        # Filter: one flow, no feedback yet.
        page.get_by_role("link", name="Clear filters").click()
        page.get_by_label("Flow").select_option("home")
        page.get_by_label("Feedback", exact=True).select_option("none")
        page.get_by_role("button", name="Apply").click()
        expect(rows(page)).to_have_count(1)
        expect(rows(page).first).to_contain_text("Person4")

        # Search by phone as a person types it, then open the lead.
        page.get_by_role("link", name="Clear filters").click()
        page.get_by_label("Search").fill("(512) 555-0003")
        page.get_by_label("Search").press("Enter")
        expect(rows(page)).to_have_count(1)
        page.get_by_role("link", name="Person3 Tester").click()
        expect(page.get_by_role("heading", name="Person3 Tester")).to_be_visible()
        assert page.evaluate(UNLABELLED_JS) == []

        # Return it with a reason from the source's list.
        returning = page.locator("#report-return")
        returning.get_by_label("Reason").select_option("Duplicate")
        returning.get_by_label("Note").fill("Already a customer")
        returning.get_by_role("button", name="Return lead").click()
        expect(page.get_by_role("status")).to_contain_text("Return recorded.")
        history = page.locator("ol.history > li")
        expect(history).to_have_count(1)
        expect(history.first).to_contain_text("Accepted")
        expect(history.first).to_contain_text("Duplicate")

        # The lead is returned: its page offers no second return, and says so.
        returning = page.locator("#report-return")
        expect(returning).to_contain_text("This lead was returned on")
        expect(returning.locator("form")).to_have_count(0)

        # Convert a selection from the list, choosing the rows from the keyboard.
        page.get_by_role("link", name="← Deliveries").click()
        page.get_by_label(f"Select {deliveries[0].event_id}").focus()
        page.keyboard.press("Space")
        page.get_by_label(f"Select {deliveries[2].event_id}").check()
        expect(page.locator("[data-selected-count]")).to_have_text("2 selected")
        page.get_by_label("Converted").check()
        page.get_by_label("Revenue (conversions)").fill("480.00")
        page.get_by_role("button", name="Record for selected").click()
        expect(page.get_by_role("status")).to_contain_text("2 accepted, 0 refused")
        page.get_by_role("link", name="Back to deliveries").click()
        expect(rows(page).nth(0).locator(".badge-converted")).to_be_visible()
        expect(rows(page).nth(2).locator(".badge-converted")).to_be_visible()

        # Select all on the page: the master box checks every row.
        page.get_by_label("Select all on this page").check()
        expect(page.locator("[data-selected-count]")).to_have_text("6 selected")

        # Create a key from the keyboard, see it once, then revoke it.
        nav(page).get_by_role("link", name="API keys").click()
        page.get_by_label("Key name").fill("Salesforce")
        page.get_by_label("Key name").press("Enter")
        raw_key = page.get_by_label("Your new API key").input_value()
        assert re.fullmatch(r"lb_[0-9a-f]{8}_\S+", raw_key)
        page.get_by_role("link", name="Done").click()
        expect(page.locator("table.keys")).to_contain_text(raw_key[:11])
        expect(page.locator("table.keys")).not_to_contain_text(raw_key)
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Revoke Salesforce").click()
        expect(page.get_by_role("status")).to_contain_text("revoked")
        expect(page.locator("table.keys")).to_contain_text("Revoked")

        # The integration page names this server's endpoints.
        nav(page).get_by_role("link", name="Integration").click()
        expect(page.locator("body")).to_contain_text(f"{live_server.url}/feedback")

        page.get_by_role("button", name="Log out alice").click()
        expect(page.get_by_role("heading", name="You are logged out")).to_be_visible()

    converted = Feedback.objects.filter(
        kind=Kind.CONVERSION, channel="portal", revenue=Decimal("480.00")
    )
    assert {f.delivery_id for f in converted} == {deliveries[0].pk, deliveries[2].pk}
    returned = Feedback.objects.get(kind=Kind.RETURN, outcome="success")
    assert (returned.delivery_id, returned.reason) == (deliveries[3].pk, "Duplicate")
    assert ApiKey.objects.get(name="Salesforce").revoked_at is not None
    assert not Feedback.objects.filter(delivery=world["foreign"]).exists()


def test_the_portal_fits_a_phone_without_sideways_scrolling(
    page: Page, live_server, world
):
    page.set_viewport_size(PHONE)
    deliveries = world["deliveries"]
    with screenshot_on_failure(page):
        log_in(page, live_server, "alice")
        assert sideways_overflow(page) <= 0
        # Cards, not a table: the header row is out of sight.
        expect(page.locator("table.deliveries thead")).not_to_be_in_viewport()
        expect(rows(page).first).to_contain_text("Person0")

        page.get_by_role("link", name="Person1 Tester").click()
        assert sideways_overflow(page) <= 0
        page.locator("#report-conversion").get_by_label("Revenue").fill("15")
        page.locator("#report-conversion").get_by_role(
            "button", name="Mark converted"
        ).click()
        expect(page.get_by_role("status")).to_contain_text("Conversion recorded.")
        assert sideways_overflow(page) <= 0

        page.goto(f"{live_server.url}/portal/")
        # The header's select-all is out of sight on a phone; the one by the
        # actions does the same, and the two stay in step.
        bottom = page.get_by_label("Select all 6 on this page")
        bottom.check()
        expect(page.locator("[data-selected-count]")).to_have_text("6 selected")
        expect(page.get_by_label("Select all on this page")).to_be_checked()
        page.get_by_label(f"Select {deliveries[0].event_id}").uncheck()
        expect(bottom).not_to_be_checked()
        expect(page.locator("[data-selected-count]")).to_have_text("5 selected")
        bottom.check()
        expect(page.locator("[data-selected-count]")).to_have_text("6 selected")
        bottom.uncheck()
        expect(page.locator("[data-selected-count]")).to_have_text("")
        page.get_by_label(f"Select {deliveries[2].event_id}").check()
        page.get_by_label("Status update").check()
        page.get_by_label("Or type a reason").fill("Left a voicemail")
        page.get_by_role("button", name="Record for selected").click()
        expect(page.get_by_role("status")).to_contain_text("1 accepted")
        assert sideways_overflow(page) <= 0

        for path in ("/portal/keys/", "/portal/integration/"):
            page.goto(f"{live_server.url}{path}")
            assert sideways_overflow(page) <= 0, path
            assert page.evaluate(UNLABELLED_JS) == [], path


UPLOAD_ROWS = 8000
CHUNK_ROWS = 100
# The last rows go to one delivery that the test locks, so the worker stops at
# their chunks and the bar holds part-filled however fast the machine is.
HELD_ROWS = 1000


@pytest.mark.service
def test_a_csv_upload_is_imported_by_the_worker_while_the_bar_fills(
    page: Page, live_server, world, celery_worker_process, settings, tmp_path
):
    # Fixed on the import at upload, so the worker cuts the file the same way.
    settings.LEADBACK_IMPORT_CHUNK_ROWS = CHUNK_ROWS
    deliveries = world["deliveries"]
    held = deliveries[-1]
    foreign = world["foreign"].event_id
    path = tmp_path / "feedback.csv"
    lines = ["Event_ID,TYPE,reason,Revenue,notes"]
    for index in range(UPLOAD_ROWS):
        if index % 500 == 7:
            lines.append(f"{foreign},status,Called,,")  # another buyer's: refused
        elif index >= UPLOAD_ROWS - HELD_ROWS:
            lines.append(f"{held.event_id},status,Called,,row {index}")
        else:
            target = deliveries[index % (len(deliveries) - 1)].event_id
            lines.append(f"{target},status,Called,,row {index}")
    lines.append(f"{deliveries[0].event_id},conversion,,-5,")  # refused too
    path.write_text("\r\n".join(lines) + "\r\n")
    refused = sum(1 for i in range(UPLOAD_ROWS) if i % 500 == 7) + 1

    with screenshot_on_failure(page):
        log_in(page, live_server, "alice")
        nav(page).get_by_role("link", name="Upload CSV").click()
        assert page.evaluate(UNLABELLED_JS) == []
        page.get_by_label("CSV file").set_input_files(str(path))

        def bar_value() -> int:
            return int(page.locator("#import-bar").get_attribute("value"))

        def watch_bar(until, seen: list[int]) -> None:
            deadline = 120
            while not until(seen[-1]) and deadline > 0:
                page.wait_for_timeout(250)
                deadline -= 0.25
                seen.append(bar_value())

        with transaction.atomic():
            # Held until the block ends: the held rows' feedback cannot be
            # written (its foreign key waits for the lock), the rest can.
            DeliveryEvent.objects.select_for_update().get(pk=held.pk)
            page.get_by_role("button", name="Upload and import").click()
            expect(
                page.get_by_role("heading", name="Import of feedback.csv")
            ).to_be_visible()
            page.evaluate("() => { window.notReloaded = true; }")
            seen = [bar_value()]
            watch_bar(lambda value: 0 < value < 100, seen)
            assert 0 < seen[-1] < 100, seen
        watch_bar(lambda value: value == 100, seen)
        assert seen[-1] == 100, seen
        assert page.evaluate("() => window.notReloaded") is True
        progress = page.locator("#import-progress")
        expect(progress).to_contain_text(
            f"{UPLOAD_ROWS + 1 - refused} accepted · {refused} refused"
        )
        results = progress.locator("table.import-results tbody tr")
        expect(results).to_have_count(500)
        expect(results.nth(7)).to_contain_text("Refused")
        expect(results.nth(7)).to_contain_text(
            "No delivery of yours has this event id."
        )
        expect(results.nth(0)).to_contain_text("Accepted")

        with page.expect_download() as download_info:
            progress.get_by_role("link", name="Download the refused rows (CSV)").click()
        report = Path(download_info.value.path()).read_text()
        report_lines = report.strip().splitlines()
        assert (
            report_lines[0] == "Event_ID,TYPE,reason,Revenue,notes,row,refusal_reason"
        )
        assert len(report_lines) == 1 + refused
        assert report_lines[-1].endswith(
            f",{UPLOAD_ROWS + 2},revenue cannot be negative."
        )

        # The same file again: the first import, and no feedback written twice.
        stored = Feedback.objects.count()
        nav(page).get_by_role("link", name="Upload CSV").click()
        page.get_by_label("CSV file").set_input_files(str(path))
        page.get_by_role("button", name="Upload and import").click()
        expect(page.get_by_role("status")).to_contain_text(
            "You uploaded this file before"
        )
        expect(page.locator("#import-bar")).to_have_attribute("value", "100")

        page.set_viewport_size(PHONE)
        assert sideways_overflow(page) <= 0

    assert Feedback.objects.count() == stored
    assert Feedback.objects.filter(channel="csv", outcome="success").count() == (
        UPLOAD_ROWS + 1 - refused
    )


def test_a_forgotten_password_is_reset_by_email(page: Page, live_server, world):
    from django.core import mail

    with screenshot_on_failure(page):
        page.goto(f"{live_server.url}/portal/")
        page.get_by_role("link", name="Forgot your password?").click()
        assert page.evaluate(UNLABELLED_JS) == []
        page.get_by_label("Email").fill("alice@example.com")
        page.get_by_role("button", name="Send the link").click()
        expect(page.get_by_role("heading", name="Check your email")).to_be_visible()

        assert len(mail.outbox) == 1
        link = re.search(r"https?://\S+/accounts/reset/\S+", mail.outbox[0].body)
        page.goto(link.group(0))
        page.get_by_label(re.compile(r"^New password\W*$")).fill("a-brand-new-pw-77")
        page.get_by_label("New password confirmation").fill("a-brand-new-pw-77")
        page.get_by_role("button", name="Set password").click()
        expect(page.get_by_role("heading", name="Your password is set")).to_be_visible()

        page.get_by_role("link", name="Log in").click()
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill("a-brand-new-pw-77")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Deliveries")).to_be_visible()


LOCKOUT_SCREENSHOT = Path(tempfile.gettempdir()) / "leadback-e2e-locked-out-{}.png"


@pytest.mark.parametrize("width", [1366, PHONE["width"]])
def test_wrong_passwords_lock_the_login_and_say_what_to_do(
    page: Page, live_server, world, width
):
    page.set_viewport_size({"width": width, "height": 800})
    with screenshot_on_failure(page):
        page.goto(f"{live_server.url}/accounts/login/")
        for attempt in range(1, 6):
            page.get_by_label("Username").fill("alice")
            page.get_by_label("Password").fill(f"wrong-{attempt}")
            page.get_by_role("button", name="Log in").click()
            if attempt < 5:
                expect(page.get_by_role("alert")).to_contain_text(
                    "correct username and password"
                )

        heading = page.get_by_role("heading", name="Too many failed logins")
        expect(heading).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("15 minutes")
        assert sideways_overflow(page) <= 0
        page.screenshot(path=str(LOCKOUT_SCREENSHOT).format(width), full_page=True)

        # The right password does not get through until the wait is over.
        page.get_by_role("link", name="Back to log in").click()
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(heading).to_be_visible()

        page.get_by_role("link", name="Reset it by email").click()
        expect(page.get_by_role("heading", name="Reset your password")).to_be_visible()
