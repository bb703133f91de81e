"""Staff read the alerts page in a real browser: a firing monitor with its
numbers and sparkline, the recent alerts, one alert's actions, and the report
the alert links to. Screenshots at a laptop's and a phone's width go to
var/screenshots/."""

import re

import pytest
from playwright.sync_api import Page, expect

from monitoring.services import alert_actions_run, monitors_evaluate
from tests.e2e.test_config_admin_browser import log_in, screenshot_on_failure
from tests.e2e.test_returns_admin_browser import snapshot
from tests.factories import BuyerFactory, SourceFactory
from tests.monitoring.test_evaluate import deliver, make_monitor

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def seed():
    bluesky = SourceFactory(slug="bluesky-leads", name="Bluesky Leads")
    acme = BuyerFactory(slug="acme-insurance", name="Acme Insurance")
    for days_ago, returned in ((9, 4), (7, 6), (5, 9), (3, 12), (1, 14)):
        deliver(30, days_ago=days_ago, returned=returned, lead__source=bluesky)
    deliver(80, days_ago=2, returned=3, converted=8, buyer=acme)
    make_monitor(
        "bluesky-returns",
        name="Bluesky returns",
        source=bluesky,
        actions=[{"type": "notify", "url": "json://127.0.0.1:9/never"}],
    )
    make_monitor(
        "acme-conversions",
        name="Acme conversions",
        buyer=acme,
        metric="conversion_rate",
        op="below",
        threshold=0.3,
    )
    monitors_evaluate()
    # A resolved alert too: the rate falls back once many clean leads arrive,
    # then fires again.
    deliver(400, days_ago=0, lead__source=bluesky)
    monitors_evaluate()
    deliver(200, days_ago=0, returned=150, lead__source=bluesky)
    monitors_evaluate()


def test_staff_read_the_alerts_page(page: Page, live_server, staff_user, settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    seed()
    alert_actions_run()  # nothing listens on port 9: the action will retry
    path = "/admin/monitoring/alert/"

    with screenshot_on_failure(page):
        log_in(page, live_server, staff_user, path)
        expect(page.get_by_role("heading", name="Alerts", exact=True)).to_be_visible()
        firing = page.locator(".alerts-table").first
        expect(firing.get_by_role("link", name="Bluesky returns")).to_be_visible()
        expect(firing.get_by_role("link", name="Acme conversions")).to_be_visible()
        expect(firing.locator("svg.sparkline")).to_have_count(2)
        recent = page.locator(".alerts-table").nth(1)
        expect(recent.locator("tbody tr")).to_have_count(4)
        expect(recent.get_by_text("Resolved")).to_be_visible()
        snapshot(page, "monitoring-alerts")

        firing.get_by_role("link", name="Bluesky returns").click()
        expect(page.get_by_text("json", exact=False).first).to_be_visible()
        expect(page.get_by_text("Retrying").first).to_be_visible()
        snapshot(page, "monitoring-alert")

        page.goto(f"{live_server.url}{path}")
        page.locator(".alerts-table").first.locator(
            "td a[href*='/reports/by-source/']"
        ).click()
        expect(page).to_have_url(re.compile(r"/reports/by-source/\?start="))
        # The row of the alert's source shows the alert's rate: 195 of 750.
        # Delivered, then conversions (with the previous period), then returns.
        row = page.get_by_role("row", name=re.compile(r"^Bluesky Leads 750 .* 195 "))
        expect(row).to_contain_text("26.0 %")
        snapshot(page, "monitoring-alert-report")

        page.goto(f"{live_server.url}/admin/monitoring/monitor/")
        expect(page.get_by_text("Acme conversions")).to_be_visible()
        snapshot(page, "monitoring-monitors")

        page.get_by_role("link", name="Bluesky returns").click()
        expect(page.get_by_text("notify via json://…")).to_be_visible()
        snapshot(page, "monitoring-monitor")

        page.goto(f"{live_server.url}/admin/monitoring/alertaction/")
        expect(page.get_by_text("Retrying").first).to_be_visible()
        snapshot(page, "monitoring-alert-actions")
