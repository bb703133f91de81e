"""The sent rollups show what the live count shows: delivery health and
billing's sent columns, after the full build and after refreshes in which
notifications change state, get attempts, are sent again and new ones arrive.
Counts are exact; response-time percentiles are within 1% (reporting/timing.py).
"""

import datetime
import math
import random

import pytest
import time_machine
from django.utils import timezone

from feedback.forwarding.engine import notifications_resend
from feedback.forwarding.models import Notification, NotificationAttempt
from feedback.models import Feedback
from reporting.filters import ReportFilters
from reporting.models import SentCounted, SentRollup
from reporting.reports.base import percentile
from reporting.reports.operations import BillingReport, DeliveryHealthReport
from reporting.rollups import rollups_refresh
from reporting.timing import GROWTH, whole_percentiles
from sources.models import Kind
from tests.reporting import dataset
from tests.reporting.dataset import UTC

pytestmark = pytest.mark.django_db

PERCENTILES = ("median_ms", "p95_ms")
RANGES = [
    (datetime.date(2025, 3, 1), datetime.date(2025, 3, 31)),
    (datetime.date(2025, 2, 14), datetime.date(2025, 4, 30)),
    (datetime.date(2025, 3, 4), datetime.date(2025, 3, 6)),
    (datetime.date(2025, 1, 1), datetime.date(2025, 12, 31)),
    # A whole year with days and months on either side.
    (datetime.date(2024, 11, 20), datetime.date(2026, 2, 10)),
]


def table(report_class, filters, *, rollups: bool, settings) -> tuple:
    settings.LEADBACK_REPORT_ROLLUPS = rollups
    report = report_class(filters)
    found = report.generate()
    rows = {row.get("key", row.get("month")): row for row in found.rows}
    return report, [c.key for c in found.columns], rows, found.totals


def assert_same_as_live(settings, *, narrows=None) -> None:
    """Every range, basis and narrowing: the rollups' page equals the live one."""
    source = Notification.objects.order_by("pk").values_list("source_id", flat=True)[0]
    today = timezone.localdate()
    recent = (today - datetime.timedelta(days=3), today + datetime.timedelta(days=1))
    for start, end in [*RANGES, recent]:
        for narrow in narrows or ({}, {"source_id": source}, {"kind": Kind.RETURN}):
            for basis in ("delivery", "feedback"):
                filters = ReportFilters(start=start, end=end, basis=basis, **narrow)
                for report_class in (DeliveryHealthReport, BillingReport):
                    report, keys, mine, totals = table(
                        report_class, filters, rollups=True, settings=settings
                    )
                    assert report.rollups_as_of is not None
                    _, _, live, live_totals = table(
                        report_class, filters, rollups=False, settings=settings
                    )
                    where = (report_class.code, start, end, basis, narrow)
                    assert mine.keys() == live.keys(), where
                    assert totals == live_totals, where
                    for key, row in live.items():
                        for name in keys:
                            expected, got = row.get(name), mine[key].get(name)
                            if name in PERCENTILES and expected is not None:
                                assert got == pytest.approx(expected, rel=0.01), where
                            elif name == "oldest_pending_s" and expected is not None:
                                # Measured from each page's own "now".
                                assert got == pytest.approx(expected, abs=60), where
                            else:
                                assert got == expected, (where, key, name)


def stored() -> dict:
    """Every sent rollup row's figures."""
    return {
        (r.basis, r.day, r.config_id, r.source_id, r.kind): (
            [getattr(r, name) for name in ("notifications", "succeeded", "failed")]
            + [r.dead, r.retried_then_succeeded, r.attempts, r.errors]
            + [r.sent, r.sent_5xx, {k: v for k, v in r.durations.items() if v}]
        )
        for r in SentRollup.objects.all()
    }


def attempt(notification: Notification, *, outcome: str, code, ms: int, status):
    """Record one attempt as the forwarding engine does: the attempt row, and
    the notification moved on with `updated_at`."""
    notification.attempt_count += 1
    NotificationAttempt.objects.create(
        notification=notification,
        number=notification.attempt_count,
        started_at=timezone.now(),
        duration_ms=ms,
        request_method="POST",
        request_url="https://example.com/hook",
        response_status=code,
        outcome=outcome,
    )
    notification.status = status
    notification.save(update_fields=["attempt_count", "status", "updated_at"])


def test_the_full_build_gives_the_live_pages(settings):
    data = dataset.build(groups=3, per_group=10)
    dataset.add_notifications(data)
    dataset.add_forwarding(data.sources)
    rollups_refresh(full=True)
    assert SentRollup.objects.filter(basis="month:created").exists()
    assert SentRollup.objects.filter(basis="year:delivered").exists()
    assert_same_as_live(settings)


def test_refreshes_recount_the_days_of_changed_notifications(settings):
    """Refreshes an hour apart, so only what changed since the last one (and
    within the late-commit margin) is read again."""
    rng = random.Random(3)
    data = dataset.build(groups=3, per_group=10)
    made = dataset.add_notifications(data)
    start = timezone.now()
    rollups_refresh()
    config = made["configs"][0]
    carriers = list(Feedback.objects.filter(notifications__isnull=True)[:6])
    for hour, round_ in enumerate(range(3), 1):
        with time_machine.travel(start + datetime.timedelta(hours=hour)):
            open_rows = list(
                Notification.objects.filter(status__in=["pending", "retrying"])
            )
            for row in open_rows:
                if rng.random() < 0.5:
                    attempt(
                        row,
                        outcome="error",
                        code=503,
                        ms=rng.randrange(10, 5000),
                        status="retrying",
                    )
                else:
                    attempt(
                        row,
                        outcome="success",
                        code=200,
                        ms=rng.randrange(10, 900),
                        status="succeeded",
                    )
            # New notifications, created now or back in March.
            for index in range(2):
                carrier = carriers.pop()
                Notification.objects.create(
                    feedback=carrier,
                    config=config,
                    source=config.source,
                    kind=config.kind,
                    lead_delivered_at=carrier.delivery.delivered_at,
                    status="pending",
                    created_at=datetime.datetime(2025, 3, 10 + round_, 8, tzinfo=UTC)
                    if index
                    else timezone.now(),
                )
            # A finished one sent again: its success no longer counts.
            done = Notification.objects.filter(status="succeeded").order_by("pk")
            notifications_resend(ids=[done[round_].pk])
            rollups_refresh()
            assert_same_as_live(settings, narrows=({}, {"kind": Kind.CONVERSION}))
    incremental = stored()
    rollups_refresh(full=True)
    assert stored() == incremental


def test_a_deleted_config_counts_under_none_as_live(settings):
    data = dataset.build()
    made = dataset.add_notifications(data)
    rollups_refresh()
    made["configs"][1].delete()
    orphans = Notification.objects.filter(config__isnull=True)
    assert orphans.exists()
    assert_same_as_live(settings, narrows=({},))
    # One of them sent again: its day is counted again, under no config.
    with time_machine.travel(timezone.now() + datetime.timedelta(hours=1)):
        notifications_resend(ids=[orphans.filter(status="succeeded")[0].pk])
        rollups_refresh()
    assert_same_as_live(settings, narrows=({},))


def test_a_flow_or_buyer_filter_counts_live(settings):
    data = dataset.build()
    dataset.add_notifications(data)
    rollups_refresh()
    settings.LEADBACK_REPORT_ROLLUPS = True
    filters = ReportFilters(
        start=datetime.date(2025, 3, 1),
        end=datetime.date(2025, 3, 31),
        flow_id=data.flows[0].pk,
    )
    report = DeliveryHealthReport(filters)
    report.generate()
    assert report.rollups_as_of is None


def test_whole_percentiles_are_exact_at_zero_and_within_one_percent():
    rng = random.Random(9)
    values = [0] * 5 + [rng.randrange(1, 60_000) for _ in range(500)]
    counts: dict[int, int] = {}
    for value in values:
        log_bin = 0 if value < 1 else math.floor(math.log(value) / math.log(GROWTH)) + 1
        counts[log_bin] = counts.get(log_bin, 0) + 1
    assert whole_percentiles({0: 3}, 0.5) == [0.0]
    assert whole_percentiles({}, 0.5) == [None]
    for fraction in (0.1, 0.5, 0.95, 0.99):
        exact = percentile(values, fraction)
        (found,) = whole_percentiles(counts, fraction)
        assert found == pytest.approx(exact, rel=0.01)


def test_an_attempt_counts_once_the_notification_numbers_it(settings):
    """An attempt is committed with the `attempt_count` that numbers it; one
    seen without it (a refresh reading between two statements) waits for the
    change that moves the count, and is then counted once."""
    data = dataset.build()
    dataset.add_notifications(data)
    rollups_refresh()
    row = Notification.objects.filter(status="pending").order_by("pk")[0]
    with time_machine.travel(timezone.now() + datetime.timedelta(hours=1)):
        NotificationAttempt.objects.create(
            notification=row,
            number=row.attempt_count + 1,
            started_at=timezone.now(),
            duration_ms=321,
            request_method="POST",
            request_url="https://example.com/hook",
            response_status=503,
            outcome="error",
        )
        Notification.objects.filter(pk=row.pk).update(updated_at=timezone.now())
        rollups_refresh()
        attempts_before = sum(
            r.attempts for r in SentRollup.objects.filter(basis="created")
        )
        row.refresh_from_db()
        row.attempt_count += 1
        row.status = "retrying"
        row.save(update_fields=["attempt_count", "status", "updated_at"])
        rollups_refresh()
        rollups_refresh()  # within the margin: read again, added nothing
    attempts_after = sum(r.attempts for r in SentRollup.objects.filter(basis="created"))
    assert attempts_after == attempts_before + 1
    assert_same_as_live(settings, narrows=({},))
    incremental = stored()
    rollups_refresh(full=True)
    assert stored() == incremental


def test_rollups_built_before_counts_were_kept_are_built_again(settings):
    """An upgrade: sent rollup rows without what each notification counted.
    The first refresh builds them anew instead of adding to them."""
    data = dataset.build()
    dataset.add_notifications(data)
    rollups_refresh()
    expected = stored()
    SentCounted.objects.all().delete()
    SentRollup.objects.update(notifications=999)
    with time_machine.travel(timezone.now() + datetime.timedelta(hours=1)):
        rollups_refresh()
    assert stored() == expected
    assert SentCounted.objects.count() == Notification.objects.count()
