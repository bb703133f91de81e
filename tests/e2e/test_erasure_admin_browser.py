"""Staff erase a person in a real browser: the form refuses an entry with no
identifier, then erases by email and shows the receipt. Screenshots of each
page at a laptop's and a phone's width go to var/screenshots/."""

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from feedback.models import Lead
from feedback.privacy.models import Erasure
from feedback.suppression.models import SuppressionEntry, SuppressionList
from tests.e2e.test_config_admin_browser import log_in, screenshot_on_failure
from tests.e2e.test_returns_admin_browser import snapshot
from tests.factories import DeliveryEventFactory, LeadFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_staff_erase_a_person_and_read_the_receipt(page: Page, live_server, staff_user):
    lead = LeadFactory(
        data={"first_name": "Mel", "last_name": "Tester", "email": "mel@example.com"},
        email_normalized="mel@example.com",
    )
    DeliveryEventFactory(lead=lead)
    SuppressionList.objects.create(slug="erased", name="Erased people")
    receipts = reverse("admin:feedback_erasure_changelist")
    with screenshot_on_failure(page):
        log_in(page, live_server, staff_user, receipts)
        page.get_by_role("link", name="Erase a person's data").click()
        expect(page.locator("h1")).to_have_text("Erase a person's data")
        page.get_by_label("I understand this cannot be undone").check()
        page.get_by_role("button", name="Erase").click()
        expect(page.locator(".errornote, .errorlist").first).to_contain_text(
            "Give an email, a phone or a lead id to erase."
        )
        snapshot(page, "erasure-form-error")

        page.locator("#id_email").fill("MEL@example.com")
        page.locator("#id_suppression_list").select_option(label="Erased people")
        page.get_by_label("I understand this cannot be undone").check()
        snapshot(page, "erasure-form")
        page.get_by_role("button", name="Erase").click()

        expect(page.locator(".messagelist")).to_contain_text("Erased 1 lead(s)")
        expect(page.locator(".field-counts_table")).to_contain_text("leads: 1")
        expect(page.locator("#content")).not_to_contain_text("mel@example.com")
        snapshot(page, "erasure-receipt")

        page.goto(f"{live_server.url}{receipts}")
        expect(page.locator("#result_list tbody tr")).to_have_count(1)
        snapshot(page, "erasure-receipts")

    assert Lead.objects.get(pk=lead.pk).data == {}
    erasure = Erasure.objects.get()
    assert erasure.via == "admin"
    assert erasure.suppression_list == "erased"
    assert SuppressionEntry.objects.filter(list__slug="erased").count() == 1
