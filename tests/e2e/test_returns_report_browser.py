"""A seller reads the returns resolution report in a real browser, on a laptop
and on a phone: from the admin's reports box to the three groups of tables,
each ending with its Total row. Screenshots go to var/screenshots/."""

from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import Page, expect

from tests.reporting.returns_story import Story

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-9"  # what UserFactory sets
SCREENSHOTS = Path(settings.VAR_DIR) / "screenshots"
MARCH = "start=2025-03-01&end=2025-03-31"
GROUPS = ["Credits", "Approval rate", "Time to decision"]
TABLES = {
    "credits-by-source": "Credits by source",
    "credits-by-reason": "Credits by reason",
    "credits-by-buyer": "Credits by buyer",
    "approval-by-buyer": "Approval rate by buyer",
    "approval-by-reason": "Approval rate by reason",
    "time-to-decision": "Time to decision by buyer",
}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def log_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/admin/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


@pytest.mark.parametrize(("width", "height"), [(1366, 900), (390, 844)])
def test_seller_reads_the_returns_report(
    page: Page, live_server, staff_user, width, height
):
    Story().write()
    page.set_viewport_size({"width": width, "height": height})
    log_in(page, live_server.url, staff_user.username)
    page.locator("#reports-module").get_by_role(
        "link", name="Returns resolution"
    ).click()
    expect(page).to_have_url(f"{live_server.url}/reports/returns-resolution/")
    page.goto(f"{live_server.url}/reports/returns-resolution/?{MARCH}")

    expect(page.locator("#report-basis")).to_contain_text(
        "The date basis does not apply"
    )
    expect(page.locator("h2.report-group")).to_have_text(GROUPS)
    for key, title in TABLES.items():
        table = page.locator(f"#report-table-{key}")
        expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
        # The accessible name of each table is its heading.
        expect(page.get_by_role("table", name=title, exact=True)).to_have_count(1)
        total = table.locator("tfoot th")
        total.scroll_into_view_if_needed()
        expect(total).to_have_text("Total")
        expect(total).to_be_visible()
        expect(page.locator(f"#export-csv-{key}")).to_be_visible()
    credits = page.locator("#report-table-credits-by-buyer tfoot td")
    expect(credits.nth(0)).to_have_text("5")
    expect(credits.nth(1)).to_have_text("102.50")
    approvals = page.locator("#report-table-approval-by-buyer tfoot td")
    expect(approvals.nth(0)).to_have_text("83.3 %")
    expect(page.locator("svg.report-chart > title")).to_have_text("Credits by reason")

    # Wide tables scroll inside their box; the page itself does not.
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth"
        " - document.documentElement.clientWidth"
    )
    assert overflow <= 0

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(
        path=str(SCREENSHOTS / f"returns-resolution-{width}.png"), full_page=True
    )


@pytest.mark.parametrize(("width", "height"), [(1366, 900), (390, 844)])
def test_seller_reads_why_leads_come_back_and_what_they_credit(
    page: Page, live_server, staff_user, width, height
):
    """By reason counts the story's March returns by feedback date: their credits
    (the story's table) are 40.00 + 40.00 + 10.00 for Wrong number (#1, #9
    approved in April, #10 at 50 %), 12.50 for Duplicate (#2) and 10.00 for the
    blank reason (#6); #11's credit is voided."""
    Story().write()
    page.set_viewport_size({"width": width, "height": height})
    log_in(page, live_server.url, staff_user.username)
    page.goto(f"{live_server.url}/reports/by-reason/?{MARCH}&basis=feedback")

    expect(page.locator("#id_kind")).to_have_value("return")
    rows = page.locator("#report-table tbody tr")
    credits = {
        "Wrong number": "90.00",
        "Duplicate": "12.50",
        "(no reason)": "10.00",
    }
    column = page.locator("#report-table thead th").all_inner_texts()
    index = [text.strip().lower() for text in column].index("credits")
    for reason, amount in credits.items():
        row = rows.filter(has=page.locator("th", has_text=reason))
        expect(row.locator("th, td").nth(index)).to_have_text(amount)
    total = page.locator("#report-table tfoot")
    total.scroll_into_view_if_needed()
    expect(total.locator("th")).to_have_text("Total")
    expect(total.locator("th, td").nth(index)).to_have_text("112.50")
    if width == 1366:
        box = page.locator('#report-table th[data-column="credits"]').bounding_box()
        assert box is not None
        assert box["x"] + box["width"] <= width
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth"
        " - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(
        path=str(SCREENSHOTS / f"by-reason-credits-{width}.png"), full_page=True
    )

    page.get_by_role("link", name="Returns by source and reason").click()
    expect(page.locator("#report-table thead th").first).to_have_text("Source")
    expect(page.locator("#report-table tfoot th")).to_have_text("Total")
    page.screenshot(
        path=str(SCREENSHOTS / f"returns-matrix-story-{width}.png"), full_page=True
    )
