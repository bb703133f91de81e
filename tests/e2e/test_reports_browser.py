"""A staff member reads a report in a real browser: from the admin index to a
filtered breakdown, its chart, and the CSV download."""

import csv
import io
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

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
    page.locator("#reports-module").get_by_role("link", name="By source").click()
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
