"""A paused source is marked "Paused" on the reports' rows for it (DESIGN §11),
read in one query per table, and never written into the CSV."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from feedback.sourcestatus.services import source_pause
from tests.reporting import dataset
from tests.reporting.dataset import END, START

pytestmark = pytest.mark.django_db

RANGE = {"start": START.isoformat(), "end": END.isoformat()}
BADGE = '<span class="report-badge">Paused</span>'
SOURCE_REPORTS = ["by-source", "scorecard", "time-to-feedback-by-source"]


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def page(client, code, **query):
    response = client.get(
        reverse("reporting:report-detail", args=[code]), {**RANGE, **query}
    )
    assert response.status_code == 200
    return response


@pytest.mark.parametrize("code", SOURCE_REPORTS)
def test_the_paused_sources_row_has_the_badge(staff_client, code):
    data = dataset.build(groups=3, per_group=6, seed=3)
    paused = data.sources[1]
    source_pause(source=paused, reason="Returns too high", actor=None, via="api")

    html = page(staff_client, code).content.decode()
    assert html.count(BADGE) == 1
    row = next(line for line in html.splitlines() if BADGE in line)
    assert paused.name in row

    csv_text = page(staff_client, code, export="csv").content.decode()
    assert paused.name in csv_text
    assert "Paused" not in csv_text


def test_no_badge_while_every_source_is_active(staff_client):
    dataset.build(groups=2, per_group=6, seed=4)
    for code in SOURCE_REPORTS:
        assert BADGE not in page(staff_client, code).content.decode()


@pytest.mark.parametrize("code", SOURCE_REPORTS)
def test_badges_cost_the_same_queries_for_one_paused_source_or_all(staff_client, code):
    data = dataset.build(groups=4, per_group=6, seed=5)
    source_pause(source=data.sources[0], reason="r", actor=None, via="api")
    with CaptureQueriesContext(connection) as one:
        page(staff_client, code)
    for source in data.sources[1:]:
        source_pause(source=source, reason="r", actor=None, via="api")
    with CaptureQueriesContext(connection) as every:
        html = page(staff_client, code).content.decode()
    assert html.count(BADGE) == len(data.sources)
    assert len(every) == len(one)


def test_the_credits_by_source_table_marks_the_paused_source(staff_client, buyer):
    from django.utils import timezone

    from feedback.returns.services import return_approve
    from tests.factories import return_requested

    kept = return_requested(buyer=buyer)
    paused = return_requested(buyer=buyer)
    for feedback in (kept, paused):
        return_approve(feedback=feedback)
    source_pause(source=paused.source, reason="r", actor=None, via="api")
    today = timezone.localdate().isoformat()
    response = staff_client.get(
        reverse("reporting:report-detail", args=["returns-resolution"]),
        {"start": today, "end": today},
    )
    html = response.content.decode()
    assert html.count(BADGE) == 1
    row = next(line for line in html.splitlines() if BADGE in line)
    assert paused.source.name in row
    assert kept.source.name not in row
