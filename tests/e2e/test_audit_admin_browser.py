"""A seller's administrator reads the audit log in a real browser: a buyer
downloads its deliveries, the administrator renames the buyer, then finds both
in the log, filters it and opens an entry. Screenshots of each page at a
laptop's and a phone's width go to var/screenshots/."""

import pytest
from django.test import Client
from django.urls import reverse
from playwright.sync_api import Page, expect

from feedback.audit.models import AuditEntry
from tests.e2e.test_config_admin_browser import log_in, screenshot_on_failure
from tests.e2e.test_returns_admin_browser import snapshot
from tests.factories import DeliveryEventFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_an_administrator_reads_the_audit_log(
    page: Page, live_server, staff_user, buyer, buyer_user
):
    delivery = DeliveryEventFactory(buyer=buyer)
    portal = Client(REMOTE_ADDR="203.0.113.24")
    portal.force_login(buyer_user)
    download = portal.get(
        "/portal/deliveries.csv", {"q": delivery.lead.data["email"], "feedback": ""}
    )
    assert download.status_code == 200
    AuditEntry.objects.exclude(kind=AuditEntry.Kind.EXPORT).delete()
    change = reverse("admin:feedback_buyer_change", args=[buyer.pk])

    with screenshot_on_failure(page):
        log_in(page, live_server, staff_user, change)
        page.locator("#id_name").fill("Acme Insurance Co")
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.locator(".messagelist")).to_contain_text("was changed")

        page.goto(f"{live_server.url}{reverse('admin:index')}")
        page.get_by_role("link", name="Audit log entries").click()
        rows = page.locator("#result_list tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.nth(0)).to_contain_text("buyer “Acme Insurance Co”")
        expect(rows.nth(0)).to_contain_text("127.0.0.1")
        expect(rows.nth(1)).to_contain_text("deliveries.csv for Acme Insurance")
        expect(rows.nth(1)).to_contain_text("alice")
        expect(rows.nth(1)).to_contain_text("203.0.113.24")
        expect(page.locator("#content")).not_to_contain_text(
            delivery.lead.data["email"]
        )
        snapshot(page, "audit-log")

        page.locator("#changelist-filter").get_by_role(
            "link", name="exported personal data"
        ).click()
        expect(rows).to_have_count(1)
        rows.first.locator("th a").click()
        expect(page.locator(".field-filters")).to_contain_text("q=(withheld)")
        expect(page.locator(".field-row_count")).to_contain_text("1")
        expect(page.locator(".field-what")).to_contain_text("deliveries.csv")
        expect(page.get_by_role("button", name="Save")).to_have_count(0)
        expect(page.get_by_role("link", name="Delete")).to_have_count(0)
        snapshot(page, "audit-entry")

        page.goto(f"{live_server.url}{reverse('admin:feedback_auditentry_changelist')}")
        page.locator("#searchbar").fill("Acme Insurance Co")
        page.locator("#changelist-search input[type=submit]").click()
        expect(rows).to_have_count(1)
        rows.first.locator("th a").click()
        expect(page.locator(".field-changed_fields")).to_contain_text("Name")
        expect(page.locator(".field-address")).to_contain_text("127.0.0.1")
        snapshot(page, "audit-entry-change")
