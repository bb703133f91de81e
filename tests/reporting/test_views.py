"""The report pages: staff only, the filter bar, charts, CSV, and a number of
queries that does not grow with the number of groups."""

import csv
import datetime
import io
import re

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from reporting.models import RollupState
from reporting.reports import REPORTS, SourceBreakdownReport
from reporting.rollups import rollups_refresh
from reporting.views import SECTIONS
from tests.factories import UserFactory
from tests.reporting import dataset
from tests.reporting.dataset import END, START

pytestmark = pytest.mark.django_db

RANGE = {"start": START.isoformat(), "end": END.isoformat()}


def url(code: str) -> str:
    return reverse("reporting:report-detail", args=[code])


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_every_report_is_listed_on_the_index():
    listed = [code for _, codes in SECTIONS for code in codes]
    assert sorted(listed) == sorted(REPORTS)


def test_reports_are_for_staff_only(client, buyer_user):
    for path in (reverse("reporting:report-index"), url("by-source")):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    client.force_login(buyer_user)
    response = client.get(url("by-source"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    response = client.get(url("by-source"), {"export": "csv"})
    assert response.status_code == 302


def report_urls() -> list[tuple[str, str, dict[str, str]]]:
    """Every report page and CSV, and the index, as (code, url, query)."""
    urls = [("", reverse("reporting:report-index"), {})]
    for code in REPORTS:
        urls.append((code, url(code), {}))
        urls.append((code, url(code), {"export": "csv"}))
    return urls


def staff_with(*codenames: str):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="reporting", codename__in=codenames
        )
    )
    return user


def test_staff_without_the_report_permission_get_403_everywhere(client):
    client.force_login(staff_with())
    for code, path, query in report_urls():
        response = client.get(path, query)
        assert response.status_code == 403, (code, query)
        assert b"revenue" not in response.content.lower()


def test_the_report_permission_opens_every_report_but_billing(client):
    client.force_login(staff_with("view_reports"))
    for code, path, query in report_urls():
        expected = 403 if code == "billing" else 200
        assert client.get(path, query).status_code == expected, (code, query)


def test_billing_needs_its_own_permission(client):
    client.force_login(staff_with("view_reports", "view_billing"))
    for code, path, query in report_urls():
        assert client.get(path, query).status_code == 200, (code, query)
    client.force_login(staff_with("view_billing"))
    assert client.get(url("billing")).status_code == 403


def test_an_unknown_report_is_403_without_the_permission(client):
    client.force_login(staff_with())
    assert client.get(url("nope")).status_code == 403


def test_the_admin_shows_only_the_reports_a_user_may_open(client):
    index = reverse("admin:index")
    client.force_login(staff_with())
    page = client.get(index).content.decode()
    assert 'id="reports-module"' not in page
    assert reverse("reporting:report-index") not in page

    client.force_login(staff_with("view_reports"))
    page = client.get(index).content.decode()
    assert f'href="{url("by-source")}"' in page
    assert f'href="{url("billing")}"' not in page
    listing = client.get(reverse("reporting:report-index")).content.decode()
    assert f'href="{url("by-source")}"' in listing
    assert f'href="{url("billing")}"' not in listing
    assert url("billing") not in client.get(url("by-source")).content.decode()

    client.force_login(staff_with("view_reports", "view_billing"))
    page = client.get(index).content.decode()
    assert f'href="{url("billing")}"' in page


def test_admin_index_links_the_reports(staff_client):
    page = staff_client.get(reverse("admin:index")).content.decode()
    assert f'href="{reverse("reporting:report-index")}"' in page
    assert f'href="{url("by-source")}"' in page
    assert "Sources" in page  # the admin's own app list is still there


def test_index_links_every_report(staff_client):
    page = staff_client.get(reverse("reporting:report-index")).content.decode()
    for code, report in REPORTS.items():
        assert f'href="{url(code)}"' in page
        assert report.name in page


@pytest.mark.parametrize("code", sorted(REPORTS))
def test_every_report_renders_with_filters_and_csv_link(staff_client, code):
    dataset.build()
    response = staff_client.get(url(code), {**RANGE, "basis": "feedback"})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="report-filters"' in page
    sections = REPORTS[code].sections
    if sections:
        for section in sections:
            assert f'id="report-table-{section.key}"' in page
    else:
        assert 'id="report-table"' in page
    assert "export=csv" in page
    if REPORTS[code].uses_basis:
        assert "Counted by feedback date" in page
    else:
        assert "The date basis does not apply" in page


def test_page_says_which_date_it_counts_by(staff_client):
    page = staff_client.get(url("by-source"), RANGE).content.decode()
    assert "Counted by delivery date: deliveries delivered from 2025-03-01 to " in page


def test_filters_default_to_the_last_30_days(staff_client):
    response = staff_client.get(url("by-source"))
    report = response.context["report"]
    assert (report.filters.end - report.filters.start).days == 29
    assert report.filters.basis == "delivery"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "2025-03-10", "end": "2025-03-01"}, "is after the end date"),
        ({"start": "2020-01-01", "end": "2025-03-01"}, "at most 731 days"),
        ({"start": "yesterday"}, "Enter a valid date"),
        ({"basis": "moon"}, "Select a valid choice"),
        ({"source": "999999"}, "Select a valid choice"),
    ],
)
def test_bad_filters_say_what_is_wrong(staff_client, params, message):
    response = staff_client.get(url("by-source"), params)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert "report" not in response.context


def test_unknown_report_is_404(staff_client):
    assert staff_client.get(url("nope")).status_code == 404


def test_csv_matches_the_table_and_is_formula_safe(staff_client):
    dataset.build()
    response = staff_client.get(url("by-reason"), {**RANGE, "export": "csv"})
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        'filename="leadback-by-reason-2025-03-01-2025-03-20.csv"'
        in response["Content-Disposition"]
    )
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    header, body = rows[0], rows[1:]
    # Narrowed to returns unless the query names a kind.
    assert header[:3] == ["Reason", "Returns", "Returns, previous period"]
    assert "Rate on all deliveries (%)" in header
    assert "Delivered" not in header
    labels = [row[0] for row in body]
    # The reason a buyer typed as a formula is text in the spreadsheet.
    assert '\'=HYPERLINK("x")' in labels
    assert '=HYPERLINK("x")' not in labels
    table = REPORTS["by-reason"](_filters(kind="return")).generate()
    by_label = {row["label"]: row for row in table.rows}
    rate_column = header.index("Share of returns (%)")
    for row in body[:-1]:
        label = row[0].removeprefix("'")
        expected = by_label[label]
        assert int(row[1]) == expected["returns"]
        assert float(row[rate_column]) == round(expected["share"] * 100, 2)
    assert body[-1][0] == "Total"


def _filters(**extra):
    from reporting.filters import ReportFilters

    return ReportFilters(start=START, end=END, **extra)


def test_csv_of_a_breakdown_ends_with_the_total(staff_client):
    data = dataset.build()
    response = staff_client.get(url("by-source"), {**RANGE, "export": "csv"})
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[-1][0] == "Total"
    deliveries, _ = dataset.counted(data, "delivery")
    assert int(rows[-1][1]) == len(deliveries)


def test_charts_are_inline_svg_readable_without_colour(staff_client):
    data = dataset.build()
    page = staff_client.get(url("by-reason"), RANGE).content.decode()
    assert '<svg class="report-chart" role="img"' in page
    assert "<title>Returns by reason</title>" in page
    start = page.index("<title>Returns by reason")
    chart = page[start : page.index("</svg>", start)]
    expected = dataset.expected_breakdown(data, "reason", "delivery")
    # Each bar carries its reason and its value as text; no bar for no returns.
    for reason, row in expected.items():
        label = reason.replace('"', "&quot;") or "(no reason)"
        if row["returns"]:
            assert f"{label}</text>" in chart
            assert f">{row['returns']}</text>" in chart
        else:
            assert f"{label}</text>" not in chart
    assert "=HYPERLINK(&quot;x&quot;)" in page
    trends = staff_client.get(url("trends"), RANGE).content.decode()
    assert "<title>Daily conversions and returns</title>" in trends
    assert 'stroke-dasharray="8 4"' in trends  # returns are dashed, not just coloured
    assert "Conversions (total " in trends
    assert "Returns (total " in trends
    assert "cdn" not in trends.lower()


def test_chart_text_is_escaped():
    from reporting.charts import bar_chart

    svg = str(bar_chart([("<script>alert(1)</script>", 3)], title="t", description="d"))
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert ">3</text>" in svg


def _query_counts(client) -> dict[str, int]:
    counts = {}
    for code in REPORTS:
        for basis in ("delivery", "feedback"):
            with CaptureQueriesContext(connection) as queries:
                response = client.get(url(code), {**RANGE, "basis": basis})
            assert response.status_code == 200
            counts[f"{code}/{basis}"] = len(queries)
            with CaptureQueriesContext(connection) as queries:
                client.get(url(code), {**RANGE, "basis": basis, "export": "csv"})
            counts[f"{code}/{basis}/csv"] = len(queries)
    return counts


@pytest.mark.parametrize("rollups", [False, True], ids=["live", "rollups"])
def test_queries_do_not_grow_with_the_number_of_groups(staff_client, rollups):
    few = dataset.build(groups=2, per_group=6, seed=1)
    dataset.add_forwarding(few.sources)
    if rollups:
        rollups_refresh()
    small = _query_counts(staff_client)
    table = SourceBreakdownReport(_filters()).generate()
    assert len(table.rows) == 2

    many = dataset.build(groups=20, per_group=6, seed=2)
    dataset.add_forwarding(many.sources[2:])  # the first two are the same sources
    if rollups:
        rollups_refresh()
    large = _query_counts(staff_client)
    table = SourceBreakdownReport(_filters()).generate()
    assert len(table.rows) == 20
    health = REPORTS["delivery-health"](_filters()).generate()
    assert len(health.rows) == 20
    assert large == small
    assert max(large.values()) <= 20
    assert RollupState.objects.exists() is rollups


def test_line_labels_that_end_together_do_not_overlap():
    from reporting.charts import Series, line_chart

    svg = str(
        line_chart(
            [datetime.date(2025, 3, 1), datetime.date(2025, 3, 2)],
            [Series("Conversions", [1, 0]), Series("Returns", [2, 0])],
            title="t",
            description="d",
        )
    )
    ends = [
        float(svg.split(f">{name}</text>")[0].rsplit('y="', 1)[1].split('"')[0])
        for name in ("Conversions", "Returns")
    ]
    assert abs(ends[0] - ends[1]) >= 13


def test_a_refused_report_page_says_why_and_what_to_ask_for(client):
    client.force_login(staff_with())

    response = client.get("/reports/")

    assert response.status_code == 403
    text = response.content.decode()
    assert "You can&#x27;t open this page" in text or "You can't open this page" in text
    assert "Reports need the view reports permission." in text
    assert "Analyst" in text


def test_billing_csv_lists_every_month_and_labels_its_total(staff_client):
    dataset.build()
    response = staff_client.get(
        url("billing"), {"start": "2024-11-01", "end": END.isoformat(), "export": "csv"}
    )
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    months = [row[0] for row in rows[1:-1]]
    # Every month of the range, the quiet ones (before the data) as zeros.
    expected, month = [], datetime.date(2024, 11, 1)
    while month <= END:
        expected.append(month.strftime("%Y-%m"))
        month = (month + datetime.timedelta(days=32)).replace(day=1)
    assert months == expected
    assert rows[1][1:] == ["0", "0", "0", "0", "0"]
    assert rows[-1][0] == "Total"


def test_money_in_csv_has_two_decimals(staff_client):
    dataset.build()
    response = staff_client.get(url("by-source"), {**RANGE, "export": "csv"})
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    header = rows[0]
    money = [i for i, name in enumerate(header) if name in ("Revenue", "Cost")]
    assert money
    cells = [row[i] for row in rows[1:] for i in money if row[i]]
    assert cells
    assert all(re.fullmatch(r"-?\d+\.\d\d", cell) for cell in cells), cells
