"""Time to feedback from the timing rollups: bucket counts exact, percentiles
within 1% of an independent computation, whole months from the rollups and
the days around them counted live."""

import datetime
import math
import random
import statistics

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from feedback.corrections.services import feedback_retract
from feedback.models import Feedback
from reporting.filters import ReportFilters
from reporting.models import TimingRollup
from reporting.reports import BuyerTimeToFeedbackReport, SourceTimeToFeedbackReport
from reporting.rollups import rollups_refresh
from reporting.timing import BOUNDS, RELATIVE_ERROR, TTF_BUCKETS, Histogram, bin_value
from sources.models import Kind
from tests.factories import (
    BuyerFactory,
    DeliveryEventFactory,
    FeedbackFactory,
    LeadFactory,
    SourceFactory,
)

pytestmark = pytest.mark.django_db

UTC = datetime.UTC
FIRST_DAY = datetime.datetime(2025, 1, 10, tzinfo=UTC)
DAYS = 100  # deliveries from 10 January to 19 April 2025
HOUR = 3600.0
DAY = 24 * HOUR
# Durations the bucket bounds must place exactly, and clock skew.
EXACT = [HOUR, DAY, 7 * DAY, 30 * DAY, HOUR - 0.001, -120.0, 0.0, 0.4]


def exact_percentile(values: list[float], fraction: float) -> float:
    """percentile_cont, computed independently (statistics' inclusive method)."""
    if len(values) == 1:
        return values[0]
    if fraction == 0.5:
        return statistics.median(values)
    return statistics.quantiles(values, n=10, method="inclusive")[8]


@pytest.fixture
def records():
    """About 400 feedback over 100 delivery days, two sources and three buyers,
    durations from clock skew to 80 days; returns (group keys, duration) pairs."""
    rng = random.Random(7)
    sources = [SourceFactory(), SourceFactory()]
    buyers = [BuyerFactory(), BuyerFactory(), BuyerFactory()]
    leads = {source.pk: LeadFactory(source=source) for source in sources}
    found = []
    for n in range(400):
        source = sources[n % 2]
        buyer = buyers[n % 3]
        delivered = FIRST_DAY + datetime.timedelta(
            days=rng.randrange(DAYS), seconds=rng.randrange(86400)
        )
        if n < len(EXACT):
            seconds = EXACT[n]
        else:
            seconds = math.exp(rng.uniform(0, math.log(80 * DAY)))
        received = delivered + datetime.timedelta(seconds=round(seconds, 3))
        delivery = DeliveryEventFactory(
            lead=leads[source.pk], buyer=buyer, delivered_at=delivered
        )
        FeedbackFactory(
            delivery=delivery,
            kind=Kind.CONVERSION if n % 4 else Kind.RETURN,
            outcome=(
                Feedback.Outcome.FAILURE if n % 7 == 0 else Feedback.Outcome.SUCCESS
            ),
            occurred_at=delivered,
            received_at=received,
        )
        found.append(
            {
                "source": source.pk,
                "buyer": buyer.pk,
                "delivered": delivered,
                "seconds": (received - delivered).total_seconds(),
            }
        )
    rollups_refresh()
    return found


def expected(records, dimension, start, end, **only):
    since = datetime.datetime.combine(start, datetime.time.min, tzinfo=UTC)
    until = datetime.datetime.combine(
        end + datetime.timedelta(days=1), datetime.time.min, tzinfo=UTC
    )
    groups: dict[int, list[float]] = {}
    for record in records:
        if not since <= record["delivered"] < until:
            continue
        if any(record[name] != value for name, value in only.items()):
            continue
        groups.setdefault(record[dimension], []).append(record["seconds"])
    result = {}
    for key, seconds in groups.items():
        result[key] = {
            "feedback": len(seconds),
            "median": exact_percentile(seconds, 0.5),
            "p90": exact_percentile(seconds, 0.9),
            "under_1h": sum(1 for s in seconds if s < HOUR),
            "1h_24h": sum(1 for s in seconds if HOUR <= s < DAY),
            "1d_7d": sum(1 for s in seconds if DAY <= s < 7 * DAY),
            "7d_30d": sum(1 for s in seconds if 7 * DAY <= s < 30 * DAY),
            "over_30d": sum(1 for s in seconds if s >= 30 * DAY),
        }
    return result


def generate(report_class, filters):
    report = report_class(filters)
    with CaptureQueriesContext(connection) as queries:
        table = report.generate()
    return report, table, [q["sql"] for q in queries]


def assert_close(rows, wanted, *, estimated):
    assert {row["key"] for row in rows} == set(wanted)
    for row in rows:
        want = wanted[row["key"]]
        for name in ("feedback", *(bucket for bucket, _, _ in TTF_BUCKETS)):
            assert row[name] == want[name], name
        for name in ("median", "p90"):
            if estimated:
                tolerance = RELATIVE_ERROR * abs(want[name]) + 0.5
                assert abs(row[name] - want[name]) <= tolerance, name
            else:
                assert row[name] == pytest.approx(want[name]), name


@pytest.mark.parametrize(
    ("report_class", "dimension"),
    [(SourceTimeToFeedbackReport, "source"), (BuyerTimeToFeedbackReport, "buyer")],
)
def test_whole_months_come_from_the_rollups_and_the_edges_live(
    records, report_class, dimension
):
    # 15 January to 10 April: February and March whole, the rest live.
    start, end = datetime.date(2025, 1, 15), datetime.date(2025, 4, 10)
    report, table, sql = generate(report_class, ReportFilters(start=start, end=end))
    assert report.estimated
    assert any(TimingRollup._meta.db_table in statement for statement in sql)
    assert_close(table.rows, expected(records, dimension, start, end), estimated=True)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime.date(2025, 1, 1), datetime.date(2025, 12, 31)),
        # December and January whole, 2025 from its year rows.
        (datetime.date(2024, 11, 20), datetime.date(2026, 2, 5)),
    ],
)
@pytest.mark.parametrize("dimension", ["source", "buyer"])
def test_whole_years_come_from_the_year_rows(records, dimension, start, end):
    report_class = {
        "source": SourceTimeToFeedbackReport,
        "buyer": BuyerTimeToFeedbackReport,
    }[dimension]
    report, table, sql = generate(report_class, ReportFilters(start=start, end=end))
    assert report.estimated
    assert any(f"year:{dimension}" in statement for statement in sql)
    assert_close(table.rows, expected(records, dimension, start, end), estimated=True)


def test_year_rows_follow_new_feedback_and_corrections(records):
    """After a refresh adds feedback and recounts a retraction, the year rows
    are the sums of the month rows."""
    feedback = Feedback.objects.order_by("pk")
    FeedbackFactory(
        delivery=feedback[0].delivery,
        kind=Kind.STATUS,
        received_at=feedback[0].delivery.delivered_at + datetime.timedelta(hours=3),
    )
    feedback_retract(feedback=feedback[5], reason="Sent in error", staff=True)
    rollups_refresh()
    months = {}
    for row in TimingRollup.objects.filter(dimension__in=["source", "buyer"]):
        group = ("year:" + row.dimension, row.key, row.bucket, row.bin)
        months[group] = months.get(group, 0) + row.count
    years = {
        (row.dimension, row.key, row.bucket, row.bin): row.count
        for row in TimingRollup.objects.filter(dimension__startswith="year:")
    }
    assert {k: v for k, v in months.items() if v} == {
        k: v for k, v in years.items() if v
    }


def test_a_range_of_whole_months_reads_no_feedback(records):
    start, end = datetime.date(2025, 2, 1), datetime.date(2025, 3, 31)
    report, table, sql = generate(
        SourceTimeToFeedbackReport, ReportFilters(start=start, end=end)
    )
    assert report.estimated
    assert not any(Feedback._meta.db_table in statement for statement in sql)
    assert_close(table.rows, expected(records, "source", start, end), estimated=True)


def test_without_a_whole_month_every_figure_is_exact(records):
    start, end = datetime.date(2025, 2, 3), datetime.date(2025, 3, 20)
    report, table, sql = generate(
        SourceTimeToFeedbackReport, ReportFilters(start=start, end=end)
    )
    assert not report.estimated
    assert not any(TimingRollup._meta.db_table in statement for statement in sql)
    assert_close(table.rows, expected(records, "source", start, end), estimated=False)


def test_filtered_by_its_own_dimension_it_still_reads_the_rollups(records):
    start, end = datetime.date(2025, 1, 1), datetime.date(2025, 4, 30)
    source = records[0]["source"]
    report, table, _ = generate(
        SourceTimeToFeedbackReport,
        ReportFilters(start=start, end=end, source_id=source),
    )
    assert report.estimated
    assert_close(
        table.rows,
        expected(records, "source", start, end, source=source),
        estimated=True,
    )


@pytest.mark.parametrize(
    "narrowing",
    [{"kind": Kind.RETURN}, {"buyer_id": None}, {"flow_id": 1}, {"basis": "feedback"}],
)
def test_filters_the_rollups_cannot_answer_are_counted_live(records, narrowing):
    if "buyer_id" in narrowing:
        narrowing = {"buyer_id": records[0]["buyer"]}
    filters = ReportFilters(
        start=datetime.date(2025, 1, 1), end=datetime.date(2025, 4, 30), **narrowing
    )
    report, _, sql = generate(SourceTimeToFeedbackReport, filters)
    assert not report.estimated
    assert not any(TimingRollup._meta.db_table in statement for statement in sql)


def test_refresh_adds_feedback_about_old_deliveries(records):
    start, end = datetime.date(2025, 2, 1), datetime.date(2025, 2, 28)
    filters = ReportFilters(start=start, end=end)
    before = {
        r["key"]: r["feedback"]
        for r in generate(SourceTimeToFeedbackReport, filters)[1].rows
    }
    old = (
        Feedback.objects.filter(delivery__delivered_at__month=2)
        .select_related("delivery")
        .first()
    )
    FeedbackFactory(
        delivery=old.delivery,
        kind=Kind.STATUS,
        received_at=old.delivery.delivered_at + datetime.timedelta(days=200),
    )
    unchanged = {
        r["key"]: r["feedback"]
        for r in generate(SourceTimeToFeedbackReport, filters)[1].rows
    }
    assert unchanged == before  # until the next refresh
    rollups_refresh()
    _, table, _ = generate(SourceTimeToFeedbackReport, filters)
    after = {r["key"]: r for r in table.rows}
    assert after[old.source_id]["feedback"] == before[old.source_id] + 1
    assert after[old.source_id]["over_30d"] >= 1


def test_queries_do_not_grow_with_the_number_of_groups(records):
    filters = ReportFilters(
        start=datetime.date(2025, 1, 5), end=datetime.date(2025, 4, 25)
    )
    counts = []
    for _ in range(2):
        _, table, sql = generate(SourceTimeToFeedbackReport, filters)
        counts.append((len(table.rows), len(sql)))
        for _ in range(3):
            lead = LeadFactory(source=SourceFactory())
            FeedbackFactory(
                delivery=DeliveryEventFactory(
                    lead=lead, delivered_at=datetime.datetime(2025, 2, 2, tzinfo=UTC)
                ),
                received_at=datetime.datetime(2025, 2, 3, tzinfo=UTC),
            )
        rollups_refresh()
    (groups_before, queries_before), (groups_after, queries_after) = counts
    assert groups_after == groups_before + 3
    assert queries_after == queries_before


def test_histogram_percentiles_stay_within_one_percent():
    rng = random.Random(11)
    for size in (1, 2, 10, 1000):
        values = [math.exp(rng.uniform(0, math.log(90 * DAY))) for _ in range(size)]
        histogram = Histogram()
        for value in values:
            bucket = sum(1 for bound in BOUNDS if value >= bound)
            log_bin = (
                1 + math.floor(math.log(value) / math.log(1.02)) if value >= 1 else 0
            )
            histogram.add(bucket, log_bin, 1)
        assert histogram.total == size
        for fraction in (0.5, 0.9):
            exact = exact_percentile(values, fraction)
            found = histogram.percentile(fraction)
            assert abs(found - exact) <= RELATIVE_ERROR * exact + 0.5


def test_a_bin_value_stays_inside_its_bucket():
    # The bin holding one hour straddles the bound: each part stays on its side.
    log_bin = 1 + math.floor(math.log(HOUR) / math.log(1.02))
    assert bin_value(0, log_bin) <= HOUR <= bin_value(1, log_bin)
    assert Histogram().percentile(0.5) is None


def test_the_page_says_when_percentiles_are_estimated(client, staff_user, records):
    client.force_login(staff_user)
    url = reverse("reporting:report-detail", args=["time-to-feedback-by-source"])
    estimated = client.get(url, {"start": "2025-01-01", "end": "2025-04-30"})
    assert "within 1% of the exact values" in estimated.content.decode()
    exact = client.get(url, {"start": "2025-02-03", "end": "2025-03-20"})
    assert exact.status_code == 200
    assert "within 1%" not in exact.content.decode()
