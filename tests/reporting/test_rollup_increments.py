"""The incremental refresh adds what is new and nothing twice: after any mix of
new deliveries, first and repeated feedback, retractions and amendments, late
commits and rollbacks, its rollups are the rows a full rebuild writes."""

import datetime
import random
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from feedback.corrections.services import feedback_amend, feedback_retract
from feedback.models import DeliveryEvent, Feedback
from reporting.filters import ReportFilters
from reporting.models import DailyRollup, RollupState, TimingRollup
from reporting.rollups import FEEDBACK_SIDE, LATE_COMMIT_MARGIN, rollups_refresh
from sources.models import Kind
from tests.factories import LeadFactory
from tests.reporting import dataset
from tests.reporting.dataset import UTC

pytestmark = pytest.mark.django_db

MEASURES = ("delivered", "cost", "covered", *FEEDBACK_SIDE)


def snapshot() -> tuple[dict, dict]:
    """Every rollup row's figures, without the rows that count nothing."""
    daily = {}
    for row in DailyRollup.objects.all():
        figures = tuple(getattr(row, name) for name in MEASURES)
        if any(figures):
            daily[row.dimension, row.day, row.key, row.kind] = figures
    timing = {
        (r.dimension, r.month, r.key, r.bucket, r.bin): r.count
        for r in TimingRollup.objects.all()
        if r.count
    }
    return daily, timing


def rebuilt() -> tuple[dict, dict]:
    """What a full rebuild gives, leaving the incremental state as it was."""
    state = RollupState.objects.values().get()
    kept = snapshot()
    rollups_refresh(full=True)
    expected = snapshot()
    # Put the incremental rows and state back: the test goes on from them.
    DailyRollup.objects.all().delete()
    TimingRollup.objects.all().delete()
    RollupState.objects.update(**{k: v for k, v in state.items() if k != "id"})
    _restore(kept)
    return expected


def _restore(kept: tuple[dict, dict]) -> None:
    daily, timing = kept
    DailyRollup.objects.bulk_create(
        DailyRollup(
            dimension=d,
            day=day,
            key=key,
            kind=kind,
            **dict(zip(MEASURES, f, strict=True)),
        )
        for (d, day, key, kind), f in daily.items()
    )
    TimingRollup.objects.bulk_create(
        TimingRollup(dimension=d, month=m, key=k, bucket=b, bin=n, count=c)
        for (d, m, k, b, n), c in timing.items()
    )


def new_feedback(rng: random.Random, delivery: DeliveryEvent, **fields) -> Feedback:
    kind = fields.pop("kind", rng.choice([Kind.CONVERSION, Kind.STATUS, Kind.RETURN]))
    outcome = Feedback.Outcome.SUCCESS
    if (
        kind == Kind.RETURN
        and delivery.feedback.filter(
            kind=Kind.RETURN, outcome=Feedback.Outcome.SUCCESS
        ).exists()
    ):
        outcome = Feedback.Outcome.FAILURE
    return Feedback.objects.create(
        delivery=delivery,
        lead=delivery.lead,
        buyer=delivery.buyer,
        source=delivery.source,
        flow=delivery.flow,
        kind=kind,
        outcome=fields.pop("outcome", outcome),
        reason=rng.choice(dataset.REASONS),
        revenue=Decimal("42.50") if kind == Kind.CONVERSION else None,
        quality_score=rng.choice([None, 2, 4]),
        received_at=delivery.delivered_at
        + datetime.timedelta(hours=rng.randrange(1, 2000)),
        channel=Feedback.Channel.API,
        **fields,
    )


def new_delivery(rng: random.Random, data, index: int) -> DeliveryEvent:
    source = rng.choice(data.sources)
    return DeliveryEvent.objects.create(
        event_id=f"abc{index:021x}",
        lead=LeadFactory(source=source, flow=data.flows[0]),
        buyer=rng.choice(data.buyers),
        source=source,
        flow=rng.choice(data.flows),
        price=Decimal(rng.choice(["9.99", "30.00"])),
        delivered_at=datetime.datetime(2025, 3, 1, tzinfo=UTC)
        + datetime.timedelta(hours=rng.randrange(0, 40 * 24)),
    )


def test_rounds_of_new_rows_and_corrections_add_up_to_the_full_rebuild():
    rng = random.Random(11)
    data = dataset.build(groups=3, per_group=10)
    rollups_refresh()
    deliveries = list(DeliveryEvent.objects.all())
    for round_ in range(4):
        for index in range(rng.randrange(2, 5)):
            deliveries.append(new_delivery(rng, data, round_ * 10 + index))
        for _ in range(rng.randrange(5, 15)):
            # Old and new deliveries alike, some of them a second time.
            new_feedback(rng, rng.choice(deliveries))
        # Staff correct earlier feedback: one retracted, one revenue amended.
        standing = Feedback.objects.filter(
            outcome=Feedback.Outcome.SUCCESS, retracted_at__isnull=True
        )
        feedback_retract(
            feedback=rng.choice(list(standing)), reason="Sent in error", staff=True
        )
        feedback_amend(
            feedback=rng.choice(list(standing.filter(kind=Kind.CONVERSION))),
            revenue=f"{rng.randrange(1, 900)}.00",
            staff=True,
        )
        written = rollups_refresh()
        assert written > 0
        assert snapshot() == rebuilt(), f"round {round_}"


def test_a_late_commit_is_counted_once_and_a_rollback_is_forgotten():
    rng = random.Random(5)
    data = dataset.build()
    rollups_refresh()
    delivery = data.deliveries[0].obj
    # Two transactions take ids; the first has not committed at the refresh.
    late = new_feedback(rng, delivery, kind=Kind.CONVERSION)
    new_feedback(rng, data.deliveries[1].obj, kind=Kind.STATUS)
    held = Feedback.objects.filter(pk=late.pk)
    row = held.values().get()
    held.delete()
    rollups_refresh()
    assert RollupState.objects.get().gaps["feedback"][0][1] == [late.pk]
    # It commits: the next refresh counts it, and the one after adds nothing.
    Feedback.objects.create(**row)
    rollups_refresh()
    assert snapshot() == rebuilt()
    assert RollupState.objects.get().gaps["feedback"] == []
    before = snapshot()
    rollups_refresh()
    assert snapshot() == before

    # A rolled-back id is given up once the margin has passed.
    gone = new_feedback(rng, delivery, kind=Kind.STATUS)
    new_feedback(rng, data.deliveries[2].obj, kind=Kind.STATUS)
    Feedback.objects.filter(pk=gone.pk).delete()
    rollups_refresh()
    assert RollupState.objects.get().gaps["feedback"][0][1] == [gone.pk]
    later = timezone.now() + LATE_COMMIT_MARGIN + datetime.timedelta(seconds=1)
    with time_machine.travel(later):
        rollups_refresh()
    assert RollupState.objects.get().gaps["feedback"] == []
    assert snapshot() == rebuilt()


def test_a_refresh_with_nothing_new_reads_no_records_and_writes_nothing():
    dataset.build()
    rollups_refresh()
    before = snapshot()
    with CaptureQueriesContext(connection) as queries:
        assert rollups_refresh() == 0
    statements = [q["sql"] for q in queries]
    # The state row, the two highest ids, the corrections since the last
    # refresh (none) and the state's update: no scans of the records.
    tables = [f'"{m._meta.db_table}"' for m in (Feedback, DeliveryEvent)]
    record_reads = [s for s in statements if any(t in s for t in tables)]
    assert len(record_reads) == 2, record_reads
    assert all("MAX(" in s.upper() for s in record_reads)
    assert snapshot() == before


# Reports whose every figure the rollups give exactly (time to feedback's
# whole months are estimates: tests/reporting/test_timing.py).
EXACT_REPORTS = (
    "by-source",
    "by-flow",
    "by-buyer",
    "by-reason",
    "by-kind",
    "scorecard",
    "returns-by-source-and-reason",
    "billing",
)


def shown(report_class, filters) -> tuple:
    """Every figure a report's table shows, with its previous period's."""
    table = report_class(filters).generate()
    keys = [column.key for column in table.columns]

    def figures(row: dict | None) -> list | None:
        return row and [row.get(key) for key in keys]

    rows = {
        row.get("key", row.get("month")): (figures(row), figures(row.get("previous")))
        for row in table.rows
    }
    totals = table.totals or {}
    return rows, figures(totals), figures(totals.get("previous"))


def test_month_and_source_reason_rows_give_the_live_figures_after_rounds(settings):
    """Ranges of whole months read the month rows and the days around them;
    after new rows, corrections and a late commit they still show the live
    figures, filtered by source or kind as well."""
    from reporting.reports import REPORTS

    rng = random.Random(23)
    data = dataset.build(groups=3, per_group=10)
    rollups_refresh()
    deliveries = list(DeliveryEvent.objects.all())
    for round_ in range(2):
        for index in range(3):
            deliveries.append(new_delivery(rng, data, 50 + round_ * 10 + index))
        for _ in range(12):
            new_feedback(rng, rng.choice(deliveries), kind=Kind.RETURN)
            new_feedback(rng, rng.choice(deliveries))
        standing = Feedback.objects.filter(
            outcome=Feedback.Outcome.SUCCESS,
            kind=Kind.RETURN,
            retracted_at__isnull=True,
        )
        feedback_retract(
            feedback=rng.choice(list(standing)), reason="Sent in error", staff=True
        )
        rollups_refresh()
    # A late commit: taken out at a refresh, committed before the next.
    late = new_feedback(rng, deliveries[-1], kind=Kind.RETURN)
    row = Feedback.objects.filter(pk=late.pk).values().get()
    Feedback.objects.filter(pk=late.pk).delete()
    new_feedback(rng, deliveries[0], kind=Kind.STATUS)
    rollups_refresh()
    Feedback.objects.create(**row)
    rollups_refresh()
    assert DailyRollup.objects.filter(dimension="month:source-reason").exists()

    source = data.sources[0].pk
    ranges = [
        (datetime.date(2025, 3, 1), datetime.date(2025, 3, 31)),
        (datetime.date(2025, 2, 14), datetime.date(2025, 4, 30)),
        (datetime.date(2025, 3, 9), datetime.date(2025, 5, 3)),
        (datetime.date(2025, 1, 1), datetime.date(2025, 12, 31)),
    ]
    for start, end in ranges:
        for narrow in ({}, {"source_id": source}, {"kind": Kind.RETURN}):
            filters = ReportFilters(start=start, end=end, **narrow)
            for code in EXACT_REPORTS:
                settings.LEADBACK_REPORT_ROLLUPS = True
                from_rollups = shown(REPORTS[code], filters)
                settings.LEADBACK_REPORT_ROLLUPS = False
                live = shown(REPORTS[code], filters)
                assert from_rollups == live, (code, start, end, narrow)
