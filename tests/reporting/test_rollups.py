"""The daily rollups give the same figures as the independent computation, stay
current as feedback arrives about old deliveries, and step aside where they
cannot answer exactly."""

import datetime
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from feedback.corrections.services import feedback_amend, feedback_retract
from feedback.models import DeliveryEvent, Feedback
from reporting.filters import ReportFilters
from reporting.models import DailyRollup, RollupState
from reporting.reports import (
    BillingReport,
    BuyerBreakdownReport,
    FlowBreakdownReport,
    KindBreakdownReport,
    ReasonBreakdownReport,
    ScorecardReport,
    SourceBreakdownReport,
    TrendReport,
    breakdowns,
    rollup_usable,
)
from reporting.rollups import rollups_refresh
from sources.models import Kind
from tests.factories import LeadFactory, SourceFactory
from tests.reporting import dataset
from tests.reporting.dataset import END, START, UTC
from tests.reporting.test_reports import BREAKDOWN_FIGURES, assert_figures

pytestmark = pytest.mark.django_db

BREAKDOWNS = [
    (SourceBreakdownReport, "source"),
    (FlowBreakdownReport, "flow"),
    (BuyerBreakdownReport, "buyer"),
    (ReasonBreakdownReport, "reason"),
    (KindBreakdownReport, "kind"),
]


@pytest.fixture
def data():
    built = dataset.build()
    rollups_refresh()
    return built


def rollup_queries(report) -> tuple[object, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        table = report.generate()
    return table, [q["sql"] for q in queries]


def reads_rollups(sql: list[str]) -> bool:
    return any(
        DailyRollup._meta.db_table in statement for statement in sql
    ) and not any(Feedback._meta.db_table in statement for statement in sql)


@pytest.mark.parametrize(("report_class", "dimension"), BREAKDOWNS)
def test_breakdowns_from_rollups_match_an_independent_computation(
    data, report_class, dimension
):
    table, sql = rollup_queries(report_class(ReportFilters(start=START, end=END)))
    assert reads_rollups(sql), "the report must read the rollups, not feedback"
    expected = dataset.expected_breakdown(data, dimension, "delivery")
    assert {row["key"] for row in table.rows} == set(expected)
    for row in table.rows:
        assert_figures(row, expected[row["key"]], BREAKDOWN_FIGURES)


@pytest.mark.parametrize(("report_class", "dimension"), BREAKDOWNS)
def test_rollups_narrowed_to_a_kind_match_the_live_count(data, report_class, dimension):
    for kind in Kind.values:
        filters = ReportFilters(start=START, end=END, kind=kind)
        table, sql = rollup_queries(report_class(filters))
        assert reads_rollups(sql)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("reporting.reports.breakdowns.rollup_state", lambda: None)
            live = report_class(filters).generate()
        assert len(table.rows) == len(live.rows)
        live_rows = {row["key"]: row for row in live.rows}
        for row in table.rows:
            assert_figures(row, live_rows[row["key"]], BREAKDOWN_FIGURES)


@pytest.mark.parametrize("order", ["as read", "reversed"])
def test_reasons_narrowed_to_a_kind_count_that_kinds_deliveries(data, order):
    # A reason used with several kinds has an all-kinds rollup row beside each
    # kind's; narrowed to a kind, its delivered and cost are that kind's, whatever
    # order the database returns the rows in.
    several = {
        reason: row["delivered"]
        for reason, row in dataset.expected_breakdown(
            data, "reason", "delivery"
        ).items()
    }
    narrowed = {
        kind: dataset.expected_breakdown(data, "reason", "delivery", kind=kind)
        for kind in Kind.values
    }
    assert any(
        row["delivered"] != several[reason]
        for by_reason in narrowed.values()
        for reason, row in by_reason.items()
    ), "the data set must use reasons with several kinds"
    real_as_dicts = breakdowns.as_dicts
    for kind in Kind.values:
        filters = ReportFilters(start=START, end=END, kind=kind)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(breakdowns, "rollup_state", lambda: None)
            live = {r["key"]: r for r in ReasonBreakdownReport(filters).generate().rows}
        with pytest.MonkeyPatch.context() as patch:
            if order == "reversed":
                patch.setattr(
                    breakdowns, "as_dicts", lambda rows: real_as_dicts(rows)[::-1]
                )
            table, sql = rollup_queries(ReasonBreakdownReport(filters))
        assert reads_rollups(sql)
        expected = narrowed[kind]
        assert {row["key"] for row in table.rows} == set(expected) == set(live)
        for row in table.rows:
            assert_figures(row, expected[row["key"]], BREAKDOWN_FIGURES)
            assert_figures(row, live[row["key"]], BREAKDOWN_FIGURES)


@pytest.mark.parametrize("kind", [None, "conversion"])
def test_scorecard_shows_no_contact_as_zero(data, kind):
    quiet = SourceFactory(slug="quiet")
    DeliveryEvent.objects.create(
        event_id="f" * 24,
        lead=LeadFactory(source=quiet, flow=data.flows[0]),
        buyer=data.buyers[0],
        source=quiet,
        flow=data.flows[0],
        price=Decimal("5.00"),
        delivered_at=datetime.datetime(2025, 3, 10, tzinfo=UTC),
    )
    rollups_refresh()
    filters = ReportFilters(start=START, end=END, kind=kind)
    rolled_up, sql = rollup_queries(ScorecardReport(filters))
    assert reads_rollups(sql)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(breakdowns, "rollup_state", lambda: None)
        live = ScorecardReport(filters).generate()
    for table in (rolled_up, live):
        row = next(r for r in table.rows if r["key"] == quiet.pk)
        assert (row["contacted"], row["not_contacted"]) == (0, 0)
        assert row["contact_rate"] is None
        for row in table.rows:
            assert isinstance(row["contacted"], int), row["label"]
            assert isinstance(row["not_contacted"], int), row["label"]


def test_rollups_filtered_by_their_own_dimension(data):
    source = data.sources[0]
    filters = ReportFilters(start=START, end=END, source_id=source.pk)
    table, sql = rollup_queries(SourceBreakdownReport(filters))
    assert reads_rollups(sql)
    (row,) = table.rows
    expected = dataset.expected_breakdown(data, "source", "delivery")[source.pk]
    assert_figures(row, expected, BREAKDOWN_FIGURES)


def test_scorecard_from_rollups_matches_the_live_scorecard(data):
    filters = ReportFilters(start=START, end=END)
    table, sql = rollup_queries(ScorecardReport(filters))
    assert reads_rollups(sql)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("reporting.reports.breakdowns.rollup_state", lambda: None)
        live = ScorecardReport(filters).generate()
    assert [r["key"] for r in table.rows] == [r["key"] for r in live.rows]
    for mine, theirs in zip(table.rows, live.rows, strict=True):
        assert mine["score"] == pytest.approx(theirs["score"])


@pytest.mark.parametrize("kind", [None, "return"])
def test_trends_from_rollups_match_the_records(data, kind):
    for source_id in (None, data.sources[1].pk):
        filters = ReportFilters(start=START, end=END, kind=kind, source_id=source_id)
        table, sql = rollup_queries(TrendReport(filters))
        assert reads_rollups(sql)
        deliveries, _ = dataset.counted(data, "delivery")
        for row in table.rows:
            on_day = [
                f
                for d in deliveries
                if d.delivered_at.date() == row["day"]
                and source_id in (None, d.source_id)
                for f in d.feedback
                if f.outcome == "success" and kind in (None, f.kind)
            ]
            assert row["returns"] == sum(1 for f in on_day if f.kind == "return")
            assert row["conversions"] == sum(
                1 for f in on_day if f.kind == "conversion"
            )


def test_rollups_step_aside_where_they_cannot_answer(data):
    assert rollup_usable(ReportFilters(start=START, end=END), "buyer")
    # The feedback date and cross-dimension filters are counted live.
    assert not rollup_usable(
        ReportFilters(start=START, end=END, basis="feedback"), "buyer"
    )
    crossed = ReportFilters(start=START, end=END, source_id=data.sources[0].pk)
    assert not rollup_usable(crossed, "buyer")
    _table, sql = rollup_queries(BuyerBreakdownReport(crossed))
    assert not reads_rollups(sql)


def test_no_rollups_before_the_first_refresh():
    dataset.build()
    RollupState.objects.all().delete()
    assert not rollup_usable(ReportFilters(start=START, end=END), "source")


def test_refresh_picks_up_feedback_about_old_deliveries(data):
    old = next(
        d
        for d in data.deliveries
        if d.delivered_at.day == 5 and d.delivered_at.month == 3
    )
    before = {
        row["key"]: row
        for row in SourceBreakdownReport(ReportFilters(start=START, end=END))
        .generate()
        .rows
    }
    Feedback.objects.create(
        delivery=old.obj,
        lead=old.obj.lead,
        buyer=old.obj.buyer,
        source=old.obj.source,
        flow=old.obj.flow,
        kind=Kind.CONVERSION,
        outcome=Feedback.Outcome.SUCCESS,
        revenue=Decimal("500.00"),
        channel=Feedback.Channel.API,
    )
    # Not visible until the rollups are refreshed (the page says as of when).
    stale = SourceBreakdownReport(ReportFilters(start=START, end=END)).generate()
    assert {r["key"]: r["conversions"] for r in stale.rows} == {
        k: r["conversions"] for k, r in before.items()
    }
    rollups_refresh()
    after = SourceBreakdownReport(ReportFilters(start=START, end=END)).generate()
    row = next(r for r in after.rows if r["key"] == old.source_id)
    assert row["conversions"] == before[old.source_id]["conversions"] + 1
    assert row["revenue"] == before[old.source_id]["revenue"] + Decimal("500.00")


def test_refresh_only_rewrites_the_days_that_changed(data):
    # Rows written within the late-commit margin are read again; an hour on,
    # only the new delivery's day is.
    with time_machine.travel(timezone.now() + datetime.timedelta(hours=1)):
        _refresh_after_a_late_delivery(data)


def _refresh_after_a_late_delivery(data):
    rollups_refresh()
    untouched = DailyRollup.objects.filter(day__lt=datetime.date(2025, 3, 1)).count()
    assert untouched
    marker = DailyRollup.objects.filter(day__lt=datetime.date(2025, 3, 1)).first()
    source = data.sources[0]
    late = DeliveryEvent.objects.create(
        event_id="f" * 24,
        lead=data.deliveries[0].obj.lead,
        buyer=data.buyers[0],
        source=source,
        flow=data.flows[0],
        price=Decimal("99.00"),
        delivered_at=datetime.datetime(2025, 3, 18, 12, tzinfo=UTC),
    )
    rollups_refresh()
    assert DailyRollup.objects.filter(pk=marker.pk).exists()
    day = DailyRollup.objects.get(
        dimension="source", day=datetime.date(2025, 3, 18), key=str(source.pk), kind=""
    )
    expected = [
        d
        for d in data.deliveries
        if d.source_id == source.pk
        and d.delivered_at.date() == datetime.date(2025, 3, 18)
    ]
    assert day.delivered == len(expected) + 1
    assert day.cost == sum((d.price for d in expected), Decimal("0")) + late.price


def test_page_says_the_figures_come_from_rollups(client, staff_user, data):
    client.force_login(staff_user)
    from django.urls import reverse

    page = client.get(
        reverse("reporting:report-detail", args=["by-source"]),
        {"start": START.isoformat(), "end": END.isoformat()},
    ).content.decode()
    assert "Figures from the daily rollups refreshed at" in page
    live = client.get(
        reverse("reporting:report-detail", args=["by-source"]),
        {"start": START.isoformat(), "end": END.isoformat(), "basis": "feedback"},
    ).content.decode()
    assert "from the daily rollups" not in live


@pytest.mark.parametrize("narrow", [{}, {"kind": "return"}, {"buyer": 1}])
def test_billing_from_rollups_matches_the_records(data, narrow):
    forwarding = dataset.add_notifications(data)
    rollups_refresh(full=True)
    extra = {}
    if "kind" in narrow:
        extra["kind"] = narrow["kind"]
    if "buyer" in narrow:
        extra["buyer_id"] = data.buyers[narrow["buyer"]].pk
    filters = ReportFilters(
        start=datetime.date(2025, 2, 1), end=datetime.date(2025, 4, 30), **extra
    )
    table, sql = rollup_queries(BillingReport(filters))
    assert not any(
        Feedback._meta.db_table + '"' in s and "received_at" in s for s in sql
    )
    assert any(DailyRollup._meta.db_table in s for s in sql)

    def kept(f):
        return extra.get("kind") in (None, f.kind) and extra.get("buyer_id") in (
            None,
            f.buyer_id,
        )

    by_month = {row["month"]: row for row in table.rows}
    for month in (2, 3, 4):
        received = [
            f for f in data.feedback if f.received_at.month == month and kept(f)
        ]
        row = by_month.get(datetime.date(2025, month, 1))
        if row is None:
            assert not received
            continue
        assert row["received"] == len(received)
        assert row["received_accepted"] == sum(
            1 for f in received if f.outcome == "success"
        )
        assert row["received_refused"] == sum(
            1 for f in received if f.outcome == "failure"
        )
    assert forwarding  # the sent columns stay live and are tested in test_reports


def test_refresh_counts_new_feedback_by_the_day_it_arrived(data):
    today = timezone.localdate()
    month = today.replace(day=1)
    filters = ReportFilters(start=month, end=today)
    [empty] = BillingReport(filters).generate().rows  # this month, with zeros
    assert (empty["month"], empty["received"], empty["sent"]) == (month, 0, 0)
    old = data.deliveries[0]
    Feedback.objects.create(
        delivery=old.obj,
        lead=old.obj.lead,
        buyer=old.obj.buyer,
        source=old.obj.source,
        flow=old.obj.flow,
        kind=Kind.STATUS,
        outcome=Feedback.Outcome.SUCCESS,
        channel=Feedback.Channel.API,
    )
    rollups_refresh()
    (row,) = BillingReport(filters).generate().rows
    assert row["month"] == month
    assert row["received"] == 1


def test_command_rebuilds_every_day(data):
    from io import StringIO

    from django.core.management import call_command

    DailyRollup.objects.filter(day=datetime.date(2025, 3, 2)).delete()
    out = StringIO()
    call_command("refresh_report_rollups", "--full", stdout=out)
    assert "rollup row(s)" in out.getvalue()
    assert DailyRollup.objects.filter(day=datetime.date(2025, 3, 2)).exists()
    table = SourceBreakdownReport(ReportFilters(start=START, end=END)).generate()
    expected = dataset.expected_breakdown(data, "source", "delivery")
    for row in table.rows:
        assert_figures(row, expected[row["key"]], BREAKDOWN_FIGURES)


def _by_source(live: bool = False):
    filters = ReportFilters(start=START, end=END)
    if not live:
        return {r["key"]: r for r in SourceBreakdownReport(filters).generate().rows}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("reporting.reports.breakdowns.rollup_state", lambda: None)
        return {r["key"]: r for r in SourceBreakdownReport(filters).generate().rows}


def test_refresh_recounts_the_days_of_corrected_feedback(data):
    conversion = (
        Feedback.objects.filter(
            kind=Kind.CONVERSION,
            outcome=Feedback.Outcome.SUCCESS,
            revenue__isnull=False,
            delivery__delivered_at__gte=timezone.make_aware(
                datetime.datetime.combine(START, datetime.time.min)
            ),
            delivery__delivered_at__lt=timezone.make_aware(
                datetime.datetime.combine(END, datetime.time.min)
            ),
        )
        .order_by("pk")
        .first()
    )
    before = _by_source()[conversion.source_id]
    # An hour on: the refresh finds the corrected feedback by its correction,
    # not because it is new.
    with time_machine.travel(timezone.now() + datetime.timedelta(hours=1)):
        feedback_amend(
            feedback=conversion, revenue=conversion.revenue + 100, staff=True
        )
        rollups_refresh()
        amended = _by_source()[conversion.source_id]
        assert amended["revenue"] == before["revenue"] + 100
        assert amended["conversions"] == before["conversions"]

        feedback_retract(feedback=conversion, reason="Duplicate", staff=True)
        rollups_refresh()
        retracted = _by_source()[conversion.source_id]
        assert retracted["conversions"] == before["conversions"] - 1
        assert retracted["revenue"] == before["revenue"] - conversion.revenue
        live = _by_source(live=True)[conversion.source_id]
        assert_figures(retracted, live, BREAKDOWN_FIGURES)
