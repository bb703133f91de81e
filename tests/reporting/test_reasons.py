"""By reason, the scorecard's sources that take no returns, returns by source and
reason, and the previous period: against figures computed in plain Python from
the records tests/reporting/dataset.py wrote."""

import csv
import datetime
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from feedback.models import Feedback
from feedback.returns.models import Credit
from reporting.filters import ReportFilters
from reporting.reports import (
    ReasonBreakdownReport,
    ReturnsMatrixReport,
    ScorecardReport,
    SourceBreakdownReport,
    source_score,
)
from reporting.rollups import rollups_refresh
from tests.factories import UserFactory
from tests.reporting import dataset
from tests.reporting.dataset import END, START, UTC

pytestmark = pytest.mark.django_db

# The range the tests ask for, and the 20 days before it.
NOW = (
    datetime.datetime(2025, 3, 1, tzinfo=UTC),
    datetime.datetime(2025, 3, 21, tzinfo=UTC),
)
BEFORE = (datetime.datetime(2025, 2, 9, tzinfo=UTC), NOW[0])


@pytest.fixture
def data():
    return dataset.build(groups=3, per_group=16)


def counted(data, basis, window):
    low, high = window
    deliveries = [d for d in data.deliveries if low <= d.delivered_at < high]
    if basis == "delivery":
        feedback = [f for d in deliveries for f in d.feedback]
    else:
        feedback = [f for f in data.feedback if low <= f.received_at < high]
    return deliveries, feedback


def expected_reasons(data, basis, window, kind="return"):
    deliveries, feedback = counted(data, basis, window)
    of_kind = [f for f in feedback if f.kind == kind]
    accepted = [f for f in of_kind if f.outcome == "success"]
    result = {}
    for reason in {f.reason for f in of_kind}:
        mine = [f for f in accepted if f.reason == reason]
        result[reason] = {
            "count": len(mine),
            "share": len(mine) / len(accepted),
            "per_delivery": len(mine) / len(deliveries),
            "refused": sum(
                1 for f in of_kind if f.reason == reason and f.outcome == "failure"
            ),
            "returned_cost": sum(
                (f.delivery.price for f in mine if kind == "return"), Decimal("0.00")
            ),
        }
    return result, len(deliveries)


def filters(basis="delivery", **extra):
    return ReportFilters(start=START, end=END, basis=basis, **extra)


def assert_reasons(table, expected):
    assert {row["key"] for row in table.rows} == set(expected)
    for row in table.rows:
        want = expected[row["key"]]
        assert row["count"] == want["count"], row["key"]
        assert row["share"] == pytest.approx(want["share"])
        assert row["per_delivery"] == pytest.approx(want["per_delivery"])
        assert row["refused"] == want["refused"]
        assert row["returned_cost"] == want["returned_cost"]


@pytest.mark.parametrize("basis", ["delivery", "feedback"])
def test_reasons_are_shares_of_the_returns_and_rates_on_every_delivery(data, basis):
    table = ReasonBreakdownReport(filters(basis, kind="return")).generate()
    expected, delivered = expected_reasons(data, basis, NOW)
    assert_reasons(table, expected)
    assert sum(row["share"] for row in table.rows) == pytest.approx(1.0)
    # Not the old 97-100 %: a reason's returns against every delivery in the filter.
    assert all(row["per_delivery"] < 0.5 for row in table.rows)
    assert table.totals["delivered_all"] == delivered
    assert table.totals["count"] == sum(w["count"] for w in expected.values())

    before, _ = expected_reasons(data, basis, BEFORE)
    for row in table.rows:
        previous = row["previous"]
        if row["key"] in before:
            assert previous["count"] == before[row["key"]]["count"]
            assert previous["share"] == pytest.approx(before[row["key"]]["share"])
        else:
            assert previous == {}


def test_reasons_from_the_rollups_match_the_live_count(data):
    live = ReasonBreakdownReport(filters(kind="return"))
    live_table = live.generate()
    assert live.rollups_as_of is None
    rollups_refresh()
    rolled = ReasonBreakdownReport(filters(kind="return"))
    table = rolled.generate()
    assert rolled.rollups_as_of is not None
    expected, _ = expected_reasons(data, "delivery", NOW)
    assert_reasons(table, expected)
    assert table.totals["delivered_all"] == live_table.totals["delivered_all"]


def test_conversion_reasons_count_conversions_and_their_revenue(data):
    table = ReasonBreakdownReport(filters(kind="conversion")).generate()
    expected, _ = expected_reasons(data, "delivery", NOW, kind="conversion")
    assert {row["key"] for row in table.rows} == set(expected)
    for row in table.rows:
        assert row["count"] == expected[row["key"]]["count"]
    keys = [column.key for column in table.columns]
    assert "revenue" in keys
    assert "returned_cost" not in keys


def test_credits_per_reason_count_live_credits_of_the_counted_returns(data):
    _deliveries, _feedback = counted(data, "delivery", NOW)
    returns = Feedback.objects.filter(kind="return", outcome="success").select_related(
        "delivery"
    )
    expected: dict[str, Decimal] = {}
    for n, fb in enumerate(returns):
        credit = Credit.objects.create(
            buyer_id=fb.buyer_id,
            source_id=fb.source_id,
            flow_id=fb.flow_id,
            delivery=fb.delivery,
            feedback=fb,
            reason=fb.reason,
            amount=fb.delivery.price,
            voided_at=datetime.datetime(2025, 4, 1, tzinfo=UTC) if n % 5 == 0 else None,
        )
        in_range = NOW[0] <= fb.delivery.delivered_at < NOW[1]
        if in_range and credit.voided_at is None:
            expected[fb.reason] = expected.get(fb.reason, Decimal(0)) + credit.amount
    table = ReasonBreakdownReport(filters(kind="return")).generate()
    shown = {row["key"]: row["credits"] for row in table.rows if row["credits"]}
    assert shown == expected
    assert table.totals["credits"] == sum(expected.values())


@pytest.fixture
def staff_client(client):
    def login(*codenames):
        user = UserFactory(is_staff=True)
        user.user_permissions.add(
            *Permission.objects.filter(
                content_type__app_label="reporting", codename__in=codenames
            )
        )
        client.force_login(user)
        return client

    return login


RANGE = {"start": START.isoformat(), "end": END.isoformat()}


def csv_of(response):
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_the_page_narrows_to_returns_and_mixes_kinds_only_when_asked(
    data, staff_client
):
    client = staff_client("view_reports", "view_billing")
    url = reverse("reporting:report-detail", args=["by-reason"])
    header = csv_of(client.get(url, {**RANGE, "export": "csv"}))[0]
    assert "Returns" in header
    assert "Conversions" not in header
    assert "Credits" in header
    header = csv_of(client.get(url, {**RANGE, "kind": "all", "export": "csv"}))[0]
    assert {"Conversions", "Returns", "Status updates"} <= set(header)
    page = client.get(url, RANGE).content.decode()
    assert '<option value="return" selected>' in page


def test_credits_need_the_billing_permission(data, staff_client):
    client = staff_client("view_reports")
    url = reverse("reporting:report-detail", args=["by-reason"])
    header = csv_of(client.get(url, {**RANGE, "export": "csv"}))[0]
    assert "Cost of returned leads" in header
    assert "Credits" not in header
    assert ">Credits<" not in client.get(url, RANGE).content.decode()


def test_money_columns_have_two_decimals_in_the_csv(data, staff_client):
    client = staff_client("view_reports", "view_billing")
    url = reverse("reporting:report-detail", args=["by-reason"])
    rows = csv_of(client.get(url, {**RANGE, "export": "csv"}))
    money = [rows[0].index("Cost of returned leads")]
    for row in rows[1:]:
        for index in money:
            assert row[index] == "" or len(row[index].split(".")[1]) == 2, row


def test_a_source_that_takes_no_returns_is_scored_without_the_return_rate(data):
    closed = data.sources[0]
    closed.accepts_return = False
    closed.save(update_fields=["accepts_return"])
    table = ScorecardReport(filters()).generate()
    rows = {row["key"]: row for row in table.rows}
    _deliveries, feedback = counted(data, "delivery", NOW)
    for source in data.sources:
        row = rows[source.pk]
        takes = source.pk != closed.pk
        assert row["score"] == pytest.approx(source_score(row, takes_returns=takes))
        assert bool(row["note"]) is not takes
        assert row["refused_returns"] == sum(
            1
            for f in feedback
            if f.source_id == source.pk
            and f.kind == "return"
            and f.outcome == "failure"
        )
    row = rows[closed.pk]
    # Without returns in the score, the other three are scaled to 100.
    components = {
        "conversion": min(row["conversion_rate"] / 0.25, 1.0) * 40,
        "coverage": row["coverage"] * 10,
    }
    weights = 50.0
    if row["contact_rate"] is not None:
        components["contact"] = row["contact_rate"] * 20
        weights += 20
    assert row["score"] == pytest.approx(100 * sum(components.values()) / weights)
    assert "no returns" in row["note"]


def test_the_matrix_counts_returns_per_source_and_reason(data):
    table = ReturnsMatrixReport(filters()).generate()
    _, feedback = counted(data, "delivery", NOW)
    accepted = [f for f in feedback if f.kind == "return" and f.outcome == "success"]
    by_label = {column.label: column.key for column in table.columns}
    for row in table.rows:
        mine = [f for f in accepted if f.source_id == row["key"]]
        assert row["returns"] == len(mine)
        for reason in {f.reason for f in accepted}:
            key = by_label[reason or "(no reason)"]
            count = sum(1 for f in mine if f.reason == reason)
            assert row[key][0] == count
            assert row[key][1] == pytest.approx(count / len(mine))
    assert table.totals["returns"] == len(accepted)
    _, before = counted(data, "delivery", BEFORE)
    assert table.totals["previous"]["returns"] == sum(
        1 for f in before if f.kind == "return" and f.outcome == "success"
    )


def test_breakdowns_carry_the_previous_period_of_the_same_length(data):
    table = SourceBreakdownReport(filters()).generate()
    assert table.previous.start == datetime.date(2025, 2, 9)
    assert table.previous.end == datetime.date(2025, 2, 28)
    deliveries, feedback = counted(data, "delivery", BEFORE)
    for row in table.rows:
        mine = [f for f in feedback if f.source_id == row["key"]]
        assert row["previous"]["returns"] == sum(
            1 for f in mine if f.kind == "return" and f.outcome == "success"
        )
        assert row["previous"]["delivered"] == sum(
            1 for d in deliveries if d.source_id == row["key"]
        )
    header = table.csv_header()
    assert header[header.index("Returns") + 1] == "Returns, previous period"


def test_the_column_chooser_shows_the_chosen_columns(data, staff_client):
    client = staff_client("view_reports")
    url = reverse("reporting:report-detail", args=["by-source"])
    page = client.get(url, RANGE).content.decode()
    assert 'data-column="cost_per_conversion"' in page
    assert 'data-column="received"' not in page
    page = client.get(url, {**RANGE, "col": ["received", "returns"]}).content.decode()
    assert 'data-column="received"' in page
    assert 'data-column="cost_per_conversion"' not in page
    # The CSV has every column whatever is shown.
    header = csv_of(client.get(url, {**RANGE, "col": "returns", "export": "csv"}))[0]
    assert "Feedback received" in header
    assert "Cost per conversion" in header


def test_the_scorecard_compares_each_score_with_the_previous_period(data):
    table = ScorecardReport(filters()).generate()
    before = {
        row["key"]: row
        for row in SourceBreakdownReport(
            ReportFilters(
                start=datetime.date(2025, 2, 9), end=datetime.date(2025, 2, 28)
            )
        )
        .generate()
        .rows
    }
    for row in table.rows:
        assert row["previous"]["score"] == pytest.approx(
            source_score(before[row["key"]])
        )
    header = table.csv_header()
    assert header[header.index("Score") + 1] == "Score, previous period"


def test_refused_returns_and_returned_cost_from_the_rollups_match_the_live_count(
    data,
):
    live = {r["key"]: r for r in SourceBreakdownReport(filters()).generate().rows}
    rollups_refresh()
    report = SourceBreakdownReport(filters())
    table = report.generate()
    assert report.rollups_as_of is not None
    _, feedback = counted(data, "delivery", NOW)
    for row in table.rows:
        mine = [f for f in feedback if f.source_id == row["key"] and f.kind == "return"]
        assert row["refused_returns"] == live[row["key"]]["refused_returns"]
        assert row["refused_returns"] == sum(1 for f in mine if f.outcome == "failure")
        assert row["returned_cost"] == live[row["key"]]["returned_cost"]
        assert row["returned_cost"] == sum(
            (f.delivery.price for f in mine if f.outcome == "success"), Decimal("0.00")
        )


def test_the_matrix_csv_has_a_count_and_a_share_per_reason_and_safe_headers(
    data, staff_client
):
    client = staff_client("view_reports")
    url = reverse("reporting:report-detail", args=["returns-by-source-and-reason"])
    rows = csv_of(client.get(url, {**RANGE, "export": "csv"}))
    header = rows[0]
    # A reason a buyer typed as a formula heads a column: text in the spreadsheet.
    assert '\'=HYPERLINK("x")' in header
    assert '\'=HYPERLINK("x"), share (%)' in header
    assert header[-2:] == ["All returns", "All returns, previous period"]
    table = ReturnsMatrixReport(filters()).generate()
    assert rows[-1][0] == "Total"
    assert int(rows[-1][-2]) == table.totals["returns"]
    page = client.get(url, RANGE).content.decode()
    assert "Other reasons" not in page  # four reasons: each has its column


def test_the_matrix_adds_up_the_reasons_beyond_six_under_other_reasons(data):
    free = [
        d
        for d in data.deliveries
        if NOW[0] <= d.delivered_at < NOW[1]
        and not any(f.kind == "return" and f.outcome == "success" for f in d.feedback)
    ]
    extra = ["Fake name", "Fake name", "Fake name", "No intent", "No intent", "Spam"]
    for delivery, reason in zip(free, extra, strict=False):
        d = delivery.obj
        Feedback.objects.create(
            delivery=d,
            lead=d.lead,
            buyer=d.buyer,
            source=d.source,
            flow=d.flow,
            kind="return",
            outcome="success",
            reason=reason,
            occurred_at=delivery.delivered_at,
            received_at=delivery.delivered_at,
            channel=Feedback.Channel.API,
        )
    table = ReturnsMatrixReport(filters()).generate()
    _, feedback = counted(data, "delivery", NOW)
    accepted = [
        f.reason for f in feedback if f.kind == "return" and f.outcome == "success"
    ]
    accepted += extra[: len(free)]
    counts = {reason: accepted.count(reason) for reason in set(accepted)}
    ranked = sorted(counts, key=lambda r: (-counts[r], r))
    labels = [column.label for column in table.columns[1:-2]]
    assert labels == [reason or "(no reason)" for reason in ranked[:6]]
    other = table.columns[-2]
    assert other.label == f"Other reasons ({len(ranked) - 6})"
    assert table.totals[other.key][0] == sum(counts[r] for r in ranked[6:])
    assert table.totals["returns"] == len(accepted)
