"""Staff keep a suppression list in a real browser: create the list, add
contacts by email and phone, find one by its email, export the digests and
remove an entry. Screenshots of each page at a laptop's and a phone's width
go to var/screenshots/."""

import hashlib
import re

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from feedback.suppression.models import SuppressionEntry, SuppressionList
from tests.e2e.test_config_admin_browser import log_in, screenshot_on_failure
from tests.e2e.test_returns_admin_browser import snapshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_staff_keep_a_suppression_list(page: Page, live_server, staff_user):
    lists = reverse("admin:feedback_suppressionlist_changelist")
    with screenshot_on_failure(page):
        log_in(page, live_server, staff_user, lists)
        page.get_by_role("link", name="Add suppression list").click()
        page.locator("#id_slug").fill("returns")
        page.locator("#id_name").fill("Returned leads")
        page.locator("#id_ttl_days").fill("365")
        page.get_by_label("Return", exact=True).check()
        page.locator("#id_add_reasons").fill("Wrong number\nDisconnected phone")
        snapshot(page, "suppression-list-form")
        page.get_by_role("button", name="Save", exact=True).click()

        rows = page.locator("#result_list tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("365 days")
        expect(rows.first).to_contain_text("return (Wrong number; Disconnected phone)")
        snapshot(page, "suppression-lists")

        rows.first.locator(".field-entries_column a").click()
        page.get_by_role("link", name="Add suppression entry").click()
        page.locator("#id_suppression_list").select_option(label="Returned leads")
        page.locator("#id_emails").fill("Mel.Tester@Example.com\nann@example.com")
        page.locator("#id_phones").fill("(512) 555-0100")
        snapshot(page, "suppression-entries-add")
        page.get_by_role("button", name="Add").click()

        expect(page.locator(".messagelist")).to_contain_text(
            "Added 3 entries to Returned leads."
        )
        expect(rows).to_have_count(3)
        expect(page.locator("#content")).not_to_contain_text("mel.tester")
        snapshot(page, "suppression-entries")

        page.locator("#searchbar").fill("MEL.tester@example.com")
        page.locator("#changelist-search input[type=submit]").click()
        expect(rows).to_have_count(1)
        expect(rows.first.locator(".field-sha256_column code")).to_have_attribute(
            "title", sha256("mel.tester@example.com")
        )
        export = page.get_by_role("link", name="Export CSV")
        expect(export).to_have_attribute("href", re.compile(r"export\.csv\?"))

        rows.first.locator("input.action-select").check()
        page.locator("select[name='action']").select_option("remove_entries")
        page.locator("button[name='index']").click()
        expect(page.locator(".messagelist")).to_contain_text("Removed 1 entry.")

    listed = SuppressionList.objects.get()
    assert listed.add_reasons == ["Wrong number", "Disconnected phone"]
    assert sorted(SuppressionEntry.objects.values_list("field", flat=True)) == [
        "email",
        "phone",
    ]
