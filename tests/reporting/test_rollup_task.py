"""Beat's rollup refresh runs in a real worker on the real broker and database."""

import time

import pytest

from reporting.filters import ReportFilters
from reporting.models import RollupState
from reporting.reports import SourceBreakdownReport
from reporting.tasks import refresh_rollups_task
from tests.reporting import dataset
from tests.reporting.dataset import END, START
from tests.reporting.test_reports import BREAKDOWN_FIGURES, assert_figures

pytestmark = [pytest.mark.service, pytest.mark.django_db(transaction=True)]


def test_worker_builds_the_rollups_the_reports_then_read(celery_worker_process):
    data = dataset.build()
    assert not RollupState.objects.exists()
    refresh_rollups_task.delay()
    deadline = time.monotonic() + 60
    while not RollupState.objects.filter(refreshed_at__isnull=False).exists():
        assert time.monotonic() < deadline, "the worker did not refresh the rollups"
        time.sleep(0.2)
    report = SourceBreakdownReport(ReportFilters(start=START, end=END))
    table = report.generate()
    assert report.rollups_as_of is not None
    expected = dataset.expected_breakdown(data, "source", "delivery")
    assert {row["key"] for row in table.rows} == set(expected)
    for row in table.rows:
        assert_figures(row, expected[row["key"]], BREAKDOWN_FIGURES)
