"""A staff member reads a report in a real browser: from the admin index to a
filtered breakdown, its chart, and the CSV download; then the dashboard and every
report at 1366 and 390 px, with screenshots in var/screenshots/."""

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import Page, expect

from feedback.models import Feedback
from reporting.reports import REPORTS
from sources.models import Kind
from tests.factories import DeliveryEventFactory, FeedbackFactory, LeadFactory
from tests.reporting import dataset
from tests.reporting.dataset import END, START

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-9"  # what UserFactory sets


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_staff_filters_a_report_and_downloads_its_csv(
    page: Page, live_server, staff_user
):
    data = dataset.build()
    source = data.sources[1]

    page.goto(f"{live_server.url}/admin/")
    page.locator("#id_username").fill(staff_user.username)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.locator("#reports-module").get_by_role(
        "link", name="By source", exact=True
    ).click()
    expect(page).to_have_url(f"{live_server.url}/reports/by-source/")
    expect(page.locator("#report-basis")).to_contain_text("Counted by delivery date")

    page.locator("#id_start").fill(START.isoformat())
    page.locator("#id_end").fill(END.isoformat())
    page.locator("#id_basis").select_option("feedback")
    page.locator("#id_source").select_option(label=source.name)
    page.get_by_role("button", name="Apply").click()

    expect(page.locator("#report-basis")).to_contain_text(
        f"Counted by feedback date: feedback received from {START.isoformat()} to "
        f"{END.isoformat()}"
    )
    body_rows = page.locator("#report-table tbody tr")
    expect(body_rows).to_have_count(1)
    expected = dataset.expected_breakdown(data, "source", "feedback")[source.pk]
    first = body_rows.first
    expect(first.locator("th")).to_have_text(source.name)
    expect(first.locator("td").nth(0)).to_have_text(f"{expected['delivered']:,}")
    # Feedback received is behind the column chooser; ticking it shows it.
    expect(page.locator('th[data-column="received"]')).to_have_count(0)
    page.locator("#report-columns summary").click()
    page.get_by_label("Feedback received").check()
    page.get_by_role("button", name="Apply").click()
    expect(first.locator("td").nth(1)).to_have_text(f"{expected['received']:,}")

    with page.expect_download() as download_info:
        page.locator("#export-csv").click()
    download = download_info.value
    assert download.suggested_filename == (
        f"leadback-by-source-{START.isoformat()}-{END.isoformat()}.csv"
    )
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text())))
    assert rows[0][:3] == ["Source", "Delivered", "Feedback received"]
    assert rows[1][0] == source.name
    assert int(rows[1][1]) == expected["delivered"]
    assert int(rows[1][2]) == expected["received"]
    assert rows[-1][0] == "Total"

    page.get_by_role("link", name="By reason").click()
    expect(page.locator("svg.report-chart title").first).to_have_text(
        "Returns by reason"
    )
    # The filters travel with the tabs.
    expect(page.locator("#id_source")).to_have_value(str(source.pk))


# What a seller compares first: visible at 1366 px without scrolling sideways.
MAIN_COLUMNS = [
    "label",
    "delivered",
    "conversions",
    "returns",
    "conversion_rate",
    "return_rate",
    "revenue",
    "cost",
    "cost_per_conversion",
]
BREAKDOWNS = {"by-source", "by-flow", "by-buyer", "by-kind"}
# Reports whose table ends with a Total row.
TOTALS = {
    "trends",
    "by-reason",
    "by-source",
    "by-flow",
    "by-buyer",
    "returns-by-source-and-reason",
    "billing",
}
SCREENSHOTS = Path(settings.VAR_DIR) / "screenshots"


def in_view(page: Page, selector: str) -> bool:
    """Whether the element is inside the window and not clipped by the box its
    table scrolls in."""
    return page.eval_on_selector(
        selector,
        """element => {
            const box = element.getBoundingClientRect();
            const frame = element.closest('.report-table').getBoundingClientRect();
            return box.width > 0 && box.left >= frame.left - 1
                && box.right <= Math.min(frame.right, window.innerWidth) + 1;
        }""",
    )


def page_overflow(page: Page) -> int:
    return page.evaluate(
        "() => document.documentElement.scrollWidth"
        " - document.documentElement.clientWidth"
    )


def walk_data():
    data = dataset.build(groups=4, per_group=24)
    closed = data.sources[0]
    closed.name = "Northwind Home Services (no returns)"
    closed.accepts_return = False
    closed.save(update_fields=["name", "accepts_return"])
    # The intake refuses returns about its leads.
    Feedback.objects.filter(source=closed, kind=Kind.RETURN).update(
        outcome=Feedback.Outcome.FAILURE,
        outcome_reason=f"{closed.name} does not accept return feedback.",
    )
    # This month's deliveries for the dashboard: five, two converted, one returned.
    lead = LeadFactory(source=data.sources[1], flow=data.flows[0])
    today = [
        DeliveryEventFactory(lead=lead, buyer=data.buyers[0], price=Decimal("30.00"))
        for _ in range(5)
    ]
    for delivery in today[:2]:
        FeedbackFactory(delivery=delivery, revenue=Decimal("150.00"))
    FeedbackFactory(delivery=today[4], kind=Kind.RETURN, reason="Wrong number")
    dataset.add_forwarding(data.sources)
    return data


@pytest.mark.parametrize(("width", "height"), [(1366, 900), (390, 844)])
def test_walk_the_dashboard_and_every_report(
    page: Page, live_server, staff_user, width, height
):
    data = walk_data()
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"{live_server.url}/admin/")
    page.locator("#id_username").fill(staff_user.username)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    page.goto(f"{live_server.url}/")
    delivered = page.locator(".dashboard-figure").filter(has_text="Delivered")
    expect(delivered.locator(".figure-value")).to_have_text("5")
    assert page_overflow(page) <= 0, "the dashboard scrolls sideways"
    page.screenshot(path=str(SCREENSHOTS / f"dashboard-{width}.png"), full_page=True)

    dates = f"start={START.isoformat()}&end={END.isoformat()}"
    for code in REPORTS:
        page.goto(f"{live_server.url}/reports/{code}/?{dates}")
        expect(page.locator("#report-basis")).to_be_visible()
        # Tables scroll inside their box; the page never scrolls sideways.
        assert page_overflow(page) <= 0, f"{code} scrolls sideways at {width} px"
        if code == "delivery-health":
            expect(page.locator("#report-table tbody tr")).to_have_count(
                len(data.sources)
            )
        if code in TOTALS:
            total = page.locator("#report-table tfoot th")
            expect(total).to_have_text("Total")
            total.scroll_into_view_if_needed()
            expect(total).to_be_visible()
        if width == 1366 and code in BREAKDOWNS:
            for key in MAIN_COLUMNS:
                selector = f'#report-table th[data-column="{key}"]'
                assert in_view(page, selector), f"{code}: {key} is off screen"
        if width == 1366 and page.locator("#report-table").count():
            # Every column shown by default fits: nothing to scroll to sideways.
            headers = page.locator("#report-table thead th")
            for n in range(headers.count()):
                key = headers.nth(n).get_attribute("data-column")
                selector = f'#report-table th[data-column="{key}"]'
                assert in_view(page, selector), f"{code}: {key} is off screen"
            total_cells = page.locator("#report-table tfoot td")
            for n in range(total_cells.count()):
                assert in_view(page, f"#report-table tfoot td:nth-of-type({n + 1})"), (
                    f"{code}: the Total row is cut"
                )
        page.screenshot(
            path=str(SCREENSHOTS / f"report-{code}-{width}.png"), full_page=True
        )
