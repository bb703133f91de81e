"""Every figure of every report against the same figure computed in plain Python
from the known data set (tests/reporting/dataset.py)."""

import datetime
import statistics
from decimal import Decimal

import pytest
import time_machine

from reporting.filters import ReportFilters
from reporting.reports import (
    BillingReport,
    BuyerTimeToFeedbackReport,
    DeliveryHealthReport,
    KindBreakdownReport,
    ReasonBreakdownReport,
    ScorecardReport,
    SourceBreakdownReport,
    SourceTimeToFeedbackReport,
    TrendReport,
    percentile,
)
from reporting.reports import (
    BuyerBreakdownReport as BuyerReport,
)
from reporting.reports import (
    FlowBreakdownReport as FlowReport,
)
from tests.reporting import dataset
from tests.reporting.dataset import END, START, UTC

pytestmark = pytest.mark.django_db

BREAKDOWN_FIGURES = (
    "delivered",
    "received",
    "accepted",
    "refused",
    "conversions",
    "returns",
    "status_updates",
    "conversion_rate",
    "return_rate",
    "revenue",
    "cost",
    "cost_per_conversion",
    "avg_quality",
    "coverage",
)


@pytest.fixture
def data():
    return dataset.build()


def filters(basis: str = "delivery", **extra) -> ReportFilters:
    return ReportFilters(start=START, end=END, basis=basis, **extra)


def assert_figures(actual: dict, expected: dict, keys) -> None:
    for key in keys:
        want, got = expected[key], actual[key]
        if isinstance(want, float):
            assert got == pytest.approx(want), key
        else:
            assert got == want, key


def test_the_data_set_has_what_the_reports_need(data):
    # Guards the tests below against a generator change that empties a case.
    _, feedback = dataset.counted(data, "delivery")
    assert {f.kind for f in feedback} == {"conversion", "return", "status"}
    assert {f.outcome for f in feedback} == {"success", "failure"}
    outside = [d for d in data.deliveries if not dataset.in_range(d.delivered_at)]
    assert outside, "some deliveries must fall outside the range"
    late = [f for f in data.feedback if not dataset.in_range(f.received_at)]
    assert late, "some feedback must arrive after the range"


@pytest.mark.parametrize("basis", ["delivery", "feedback"])
@pytest.mark.parametrize(
    ("report_class", "dimension"),
    [
        (SourceBreakdownReport, "source"),
        (FlowReport, "flow"),
        (BuyerReport, "buyer"),
        (ReasonBreakdownReport, "reason"),
        (KindBreakdownReport, "kind"),
    ],
)
def test_breakdowns_match_an_independent_computation(
    data, report_class, dimension, basis
):
    table = report_class(filters(basis)).generate()
    expected = dataset.expected_breakdown(data, dimension, basis)
    assert {row["key"] for row in table.rows} == set(expected)
    for row in table.rows:
        assert_figures(row, expected[row["key"]], BREAKDOWN_FIGURES)


def test_source_breakdown_total_adds_up(data):
    table = SourceBreakdownReport(filters()).generate()
    deliveries, feedback = dataset.counted(data, "delivery")
    assert table.totals["delivered"] == len(deliveries)
    assert table.totals["received"] == len(feedback)
    assert table.totals["cost"] == sum(d.price for d in deliveries)
    scores = [f.quality for f in feedback if f.outcome == "success" and f.quality]
    assert table.totals["avg_quality"] == pytest.approx(statistics.fmean(scores))


def test_dimension_and_kind_filters_narrow_every_figure(data):
    source, buyer = data.sources[1], data.buyers[0]
    table = SourceBreakdownReport(
        filters(source_id=source.pk, buyer_id=buyer.pk, kind="return")
    ).generate()
    deliveries = [
        d
        for d in data.deliveries
        if dataset.in_range(d.delivered_at)
        and d.source_id == source.pk
        and d.buyer_id == buyer.pk
    ]
    feedback = [f for d in deliveries for f in d.feedback if f.kind == "return"]
    (row,) = table.rows
    assert row["key"] == source.pk
    assert row["delivered"] == len(deliveries)
    assert row["received"] == len(feedback)
    assert row["returns"] == sum(1 for f in feedback if f.outcome == "success")
    assert row["conversions"] == 0
    covered = sum(1 for d in deliveries if any(f.kind == "return" for f in d.feedback))
    assert row["coverage"] == pytest.approx(covered / len(deliveries))


def test_reason_labels_the_blank_reason(data):
    table = ReasonBreakdownReport(filters()).generate()
    labels = {row["key"]: row["label"] for row in table.rows}
    assert labels[""] == "(no reason)"
    assert labels["Duplicate"] == "Duplicate"


@pytest.mark.parametrize("basis", ["delivery", "feedback"])
@pytest.mark.parametrize(
    ("report_class", "dimension"),
    [(SourceTimeToFeedbackReport, "source"), (BuyerTimeToFeedbackReport, "buyer")],
)
def test_time_to_feedback_matches_an_independent_computation(
    data, report_class, dimension, basis
):
    table = report_class(filters(basis)).generate()
    expected = dataset.expected_time_to_feedback(data, dimension, basis)
    assert {row["key"] for row in table.rows} == set(expected)
    keys = ("feedback", "median", "p90", "under_1h", "1h_24h", "1d_7d", "7d_30d")
    for row in table.rows:
        assert_figures(row, expected[row["key"]], (*keys, "over_30d"))


def test_percentile_interpolates_like_percentile_cont():
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile([10, 20, 30, 40, 50], 0.9) == pytest.approx(46.0)
    assert percentile([7], 0.9) == 7
    assert percentile([], 0.5) is None


def test_trends_count_accepted_conversions_and_returns_per_day(data):
    table = TrendReport(filters("feedback")).generate()
    assert len(table.rows) == 20  # every day of the range, empty days included
    _, feedback = dataset.counted(data, "feedback")
    for row in table.rows:
        on_day = [
            f
            for f in feedback
            if f.received_at.date() == row["day"] and f.outcome == "success"
        ]
        assert row["conversions"] == sum(1 for f in on_day if f.kind == "conversion")
        assert row["returns"] == sum(1 for f in on_day if f.kind == "return")
    assert table.totals["returns"] == sum(
        1 for f in feedback if f.kind == "return" and f.outcome == "success"
    )


def test_trends_on_the_delivery_basis_date_by_delivery(data):
    table = TrendReport(filters("delivery")).generate()
    deliveries, _ = dataset.counted(data, "delivery")
    for row in table.rows:
        on_day = [
            f
            for d in deliveries
            if d.delivered_at.date() == row["day"]
            for f in d.feedback
            if f.outcome == "success"
        ]
        assert row["conversions"] == sum(1 for f in on_day if f.kind == "conversion")


def expected_score(row: dict) -> float:
    # docs/reports.md, written out again: 40 conversion (full at 25 %), 30 returns
    # (none at 50 %), 20 contact, 10 coverage; a missing contact rate drops out.
    parts = {
        40: min(row["conversion_rate"] / 0.25, 1),
        30: max(0, 1 - row["return_rate"] / 0.5),
        20: row["contact_rate"],
        10: row["coverage"],
    }
    present = {w: v for w, v in parts.items() if v is not None}
    return 100 * sum(w * v for w, v in present.items()) / sum(present)


def test_scorecard_ranks_sources_by_the_documented_score(data):
    table = ScorecardReport(filters()).generate()
    expected = dataset.expected_breakdown(data, "source", "delivery")
    scores = {key: expected_score(row) for key, row in expected.items()}
    assert [row["key"] for row in table.rows] == sorted(
        scores, key=lambda key: -scores[key]
    )
    for rank, row in enumerate(table.rows, 1):
        assert row["rank"] == rank
        assert row["score"] == pytest.approx(scores[row["key"]])
        assert 0 <= row["score"] <= 100
        assert_figures(
            row,
            expected[row["key"]],
            ("contacted", "not_contacted", "contact_rate", "coverage", "return_rate"),
        )


def test_scorecard_without_coded_feedback_scales_the_other_components():
    from reporting.reports import source_score

    row = {
        "delivered": 10,
        "conversion_rate": 0.1,
        "return_rate": 0.2,
        "contact_rate": None,
        "coverage": 0.5,
    }
    # (40 * 0.4 + 30 * 0.6 + 10 * 0.5) / 80 * 100
    assert source_score(row) == pytest.approx(48.75)
    assert source_score({**row, "delivered": 0}) is None


@time_machine.travel(datetime.datetime(2025, 4, 5, 9, tzinfo=UTC), tick=False)
def test_delivery_health_per_config(data):
    forwarding = dataset.add_notifications(data)
    json_config, form_config = forwarding["configs"]
    table = DeliveryHealthReport(filters("feedback")).generate()
    rows = {row["key"]: row for row in table.rows}
    assert set(rows) == {json_config.pk, form_config.pk}

    in_range = [p for p in forwarding["plans"] if dataset.in_range(p[3])]
    for config in (json_config, form_config):
        plans = [p for p in in_range if p[0] == config]
        row = rows[config.pk]
        statuses = [p[1] for p in plans]
        durations = [a[2] for p in plans for a in p[2]]
        assert row["notifications"] == len(plans)
        assert row["succeeded"] == statuses.count("succeeded")
        assert row["failed"] == statuses.count("failed")
        assert row["dead"] == statuses.count("dead")
        assert row["errors"] == sum(1 for p in plans for a in p[2] if a[0] == "error")
        finished = sum(statuses.count(s) for s in ("succeeded", "failed", "dead"))
        assert row["success_rate"] == pytest.approx(
            statuses.count("succeeded") / finished
        )
        assert row["median_ms"] == pytest.approx(statistics.median(durations))
        if len(durations) > 1:
            p95 = statistics.quantiles(durations, n=20, method="inclusive")[18]
            assert row["p95_ms"] == pytest.approx(p95)
        assert row["retried_then_succeeded"] == sum(
            1 for p in plans if p[1] == "succeeded" and len(p[2]) > 1
        )
    # Queue depth is now, whatever the dates: the April notification counts.
    now = datetime.datetime(2025, 4, 5, 9, tzinfo=UTC)
    assert rows[json_config.pk]["queue_depth"] == 2  # retrying + pending
    assert (
        rows[json_config.pk]["oldest_pending_s"]
        == (now - datetime.datetime(2025, 3, 6, 9, tzinfo=UTC)).total_seconds()
    )
    assert rows[form_config.pk]["queue_depth"] == 1
    assert rows[json_config.pk]["label"] == str(json_config)


def test_billing_counts_events_per_month_and_5xx_apart(data):
    forwarding = dataset.add_notifications(data)
    report = BillingReport(
        ReportFilters(start=datetime.date(2025, 2, 1), end=datetime.date(2025, 4, 30))
    )
    table = report.generate()
    by_month = {row["month"]: row for row in table.rows}
    for month in (2, 3, 4):
        received = [f for f in data.feedback if f.received_at.month == month]
        row = by_month.get(datetime.date(2025, month, 1))
        if not received and row is None:
            continue
        assert row["received"] == len(received)
        assert row["received_accepted"] == sum(
            1 for f in received if f.outcome == "success"
        )
        sent = [p for p in forwarding["plans"] if p[3].month == month and p[2]]
        got_5xx = [p for p in sent if any((a[1] or 0) >= 500 for a in p[2])]
        assert row["sent_5xx"] == len(got_5xx)
        assert row["sent"] == len(sent) - len(got_5xx)
    assert by_month[datetime.date(2025, 3, 1)]["sent_5xx"] == 3
    assert table.totals["received"] == sum(
        1
        for f in data.feedback
        if f.received_at < datetime.datetime(2025, 5, 1, tzinfo=UTC)
    )


def test_empty_range_gives_empty_tables(data):
    quiet = ReportFilters(
        start=datetime.date(2024, 1, 1), end=datetime.date(2024, 1, 2)
    )
    assert SourceBreakdownReport(quiet).generate().rows == []
    assert ReasonBreakdownReport(quiet).generate().rows == []
    assert ScorecardReport(quiet).generate().rows == []
    assert SourceTimeToFeedbackReport(quiet).generate().rows == []
    assert DeliveryHealthReport(quiet).generate().rows == []
    trend = TrendReport(quiet).generate()
    assert [row["conversions"] for row in trend.rows] == [0, 0]


def test_cost_per_conversion_rounds_to_cents():
    from reporting.reports import finish_row

    row = finish_row({"delivered": 3, "cost": Decimal("10.00"), "conversions": 3})
    assert row["cost_per_conversion"] == Decimal("3.33")


def test_csv_money_keeps_two_decimals():
    from reporting.reports import Column, csv_value

    money = Column("revenue", "Revenue", "money")
    # What SQLite's SUM gives back for 40.00 + 40.00.
    assert str(csv_value(money, Decimal("80"))) == "80.00"
    assert str(csv_value(money, Decimal("12.5"))) == "12.50"
    assert csv_value(money, None) is None
