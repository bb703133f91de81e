"""A digest's numbers are the reports' numbers for the same period and source."""

import csv
import dataclasses
import datetime
import io
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from feedback.models import Lead
from reporting.digests.figures import digest_figures
from reporting.digests.periods import Period
from reporting.digests.render import digest_render
from reporting.filters import Basis, ReportFilters
from reporting.models import Digest
from reporting.reports.breakdowns import SourceBreakdownReport
from reporting.reports.reasons import ReasonBreakdownReport
from sources.models import Kind
from tests.reporting import dataset

pytestmark = pytest.mark.django_db

WEEK = Period(datetime.date(2025, 3, 3), datetime.date(2025, 3, 9))
DAY = Period(datetime.date(2025, 3, 5), datetime.date(2025, 3, 5))


def report_row(filters: ReportFilters) -> dict:
    table = SourceBreakdownReport(filters).generate()
    [row] = [r for r in table.rows if r["key"] == filters.source_id] or [None]
    return row


def report_reasons(filters: ReportFilters) -> dict[str, int]:
    narrowed = dataclasses.replace(filters, kind=Kind.RETURN)
    table = ReasonBreakdownReport(narrowed).generate()
    return {row["label"]: row["returns"] for row in table.rows if row["returns"]}


@pytest.mark.parametrize(
    ("zone", "every", "period"),
    [
        ("UTC", Digest.Every.WEEK, WEEK),
        ("Europe/Berlin", Digest.Every.WEEK, WEEK),
        ("America/Chicago", Digest.Every.DAY, DAY),
    ],
)
def test_the_digest_shows_the_reports_figures_for_both_periods(zone, every, period):
    data = dataset.build(groups=2, per_group=40)
    source = data.sources[0]
    digest = Digest.objects.create(
        slug="d", source=source, every=every, timezone=zone, recipients=["a@b.example"]
    )

    figures = digest_figures(digest=digest, period=period)

    for shown, dates in ((False, period), (True, period.previous())):
        filters = ReportFilters(
            start=dates.start, end=dates.end, basis=Basis.FEEDBACK, source_id=source.pk
        )
        # The reports page counts days in the current time zone: the digest's.
        with timezone.override(ZoneInfo(zone)):
            row = report_row(filters)
            reasons = report_reasons(filters)
        if not shown:
            assert row is not None
            assert row["delivered"]
        for measure in figures.measures:
            value = measure.previous if shown else measure.current
            expected = row[measure.key] if row else None
            if measure.key == "delivered" and row is None:
                expected = 0
            assert value == expected, (zone, dates, measure.key)
        lines = figures.top_reasons
        if not shown:
            assert {line.reason: line.returns for line in lines} == dict(
                sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
            )
        else:
            assert {line.reason: line.previous for line in lines} == {
                line.reason: reasons.get(line.reason, 0) for line in lines
            }


def test_the_figures_match_a_count_by_hand():
    """The same figures counted in plain Python from the records written."""
    data = dataset.build(groups=2, per_group=40)
    source = data.sources[1]
    zone = ZoneInfo("Europe/Berlin")
    digest = Digest.objects.create(
        slug="d", source=source, timezone="Europe/Berlin", recipients=["a@b.example"]
    )
    since = datetime.datetime.combine(WEEK.start, datetime.time.min, zone)
    until = datetime.datetime.combine(
        WEEK.end + datetime.timedelta(days=1), datetime.time.min, zone
    )

    figures = digest_figures(digest=digest, period=WEEK)

    delivered = [
        d
        for d in data.deliveries
        if d.source_id == source.pk and since <= d.delivered_at < until
    ]
    accepted = [
        f
        for f in data.feedback
        if f.source_id == source.pk
        and since <= f.received_at < until
        and f.outcome == "success"
    ]
    returns = [f for f in accepted if f.kind == Kind.RETURN]
    conversions = [f for f in accepted if f.kind == Kind.CONVERSION]
    assert delivered
    assert returns
    assert figures.measure("delivered").current == len(delivered)
    assert figures.measure("returns").current == len(returns)
    assert figures.measure("conversions").current == len(conversions)
    assert figures.measure("return_rate").current == pytest.approx(
        len(returns) / len(delivered)
    )
    assert len(figures.returns) == len(returns)


def test_the_returns_csv_is_formula_safe_and_holds_no_contact_data():
    data = dataset.build(groups=1, per_group=60)
    source = data.sources[0]
    digest = Digest.objects.create(slug="d", source=source, recipients=["a@b.example"])
    rendered = digest_render(
        digest_figures(
            digest=digest,
            period=Period(datetime.date(2025, 2, 20), datetime.date(2025, 4, 30)),
        )
    )

    text = rendered.returns_csv.decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["event_id", "lead_id", "reason", "outcome_code", "returned_on"]
    assert len(rows) > 2
    # '=HYPERLINK("x")' is one of the data set's reasons: written as text.
    assert sorted({r[2] for r in rows[1:] if "HYPERLINK" in r[2]}) == [
        '\'=HYPERLINK("x")'
    ]
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r)
    # Ids, reason and date: no contact data of the person.
    leads = Lead.objects.filter(source=source)
    for lead in leads:
        for value in (lead.data.get("email"), lead.data.get("phone_1")):
            assert not value or value not in text
    assert {r[1] for r in rows[1:]} <= set(leads.values_list("public_id", flat=True))
