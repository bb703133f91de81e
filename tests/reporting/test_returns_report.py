"""The returns resolution report against figures worked out by hand from the
story in tests/reporting/returns_story.py (its docstring has the table), read on
2025-04-10 00:00."""

import csv
import datetime
import io
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from feedback.intake.pipeline import feedback_receive
from feedback.models import BuyerPolicy, Feedback
from feedback.returns.models import Credit
from feedback.returns.services import (
    return_approve,
    return_decide,
    return_dispute,
    return_reject,
)
from reporting.filters import ReportFilters
from reporting.reports import ReturnsResolutionReport
from sources.models import Kind
from tests.factories import (
    BuyerFactory,
    BuyerPolicyFactory,
    DeliveryEventFactory,
    FlowFactory,
    SourceFactory,
    UserFactory,
)
from tests.reporting.returns_story import UTC, Story, at

pytestmark = pytest.mark.django_db

MARCH = {"start": "2025-03-01", "end": "2025-03-31"}
NOW = datetime.datetime(2025, 4, 10, tzinfo=UTC)
HOUR = 3600
DAY = 24 * HOUR


@pytest.fixture
def story():
    return Story().write()


def tables(**filters) -> dict[str, dict]:
    """Each table of the report as {label: row}, plus its totals under None."""
    filters = {
        "start": datetime.date(2025, 3, 1),
        "end": datetime.date(2025, 3, 31),
        **filters,
    }
    report = ReturnsResolutionReport(ReportFilters(**filters))
    with time_machine.travel(NOW, tick=False):
        generated = report.generate_sections(report.sections)
    result = {}
    for section, table in zip(report.sections, generated, strict=True):
        rows = {row["label"]: row for row in table.rows}
        assert len(rows) == len(table.rows)
        rows[None] = table.totals
        result[section.key] = rows
    return result


def test_the_story_is_what_the_services_wrote(story):
    states = {n: f.review_state for n, f in story.returns.items()}
    assert states == {
        1: "approved",
        2: "approved",
        3: "rejected",
        4: "disputed",
        5: "approved",
        6: "approved",
        7: "pending",
        8: "pending",
        9: "approved",
        10: "approved",
        11: "",
    }
    assert Credit.objects.filter(voided_at__isnull=False).count() == 1


def _credits(rows):
    return {
        label: (row["credits"], row["amount"], row["share"])
        for label, row in rows.items()
    }


def test_credits_by_source_reason_and_buyer(story):
    found = tables()
    # Live credits granted in March: 1 (40.00), 2 (12.50), 5 (30.00), 6 (10.00),
    # 10 (10.00). Not 9 (April) nor 11 (voided).
    total = Decimal("102.50")
    assert _credits(found["credits-by-source"]) == {
        "Bluesky": (4, Decimal("92.50"), pytest.approx(92.5 / 102.5)),
        "Redwood": (1, Decimal("10.00"), pytest.approx(10 / 102.5)),
        None: (5, total, 1.0),
    }
    assert _credits(found["credits-by-reason"]) == {
        "Wrong number": (3, Decimal("80.00"), pytest.approx(80 / 102.5)),
        "Duplicate": (1, Decimal("12.50"), pytest.approx(12.5 / 102.5)),
        "(no reason)": (1, Decimal("10.00"), pytest.approx(10 / 102.5)),
        None: (5, total, 1.0),
    }
    assert _credits(found["credits-by-buyer"]) == {
        "Acme": (2, Decimal("52.50"), pytest.approx(52.5 / 102.5)),
        "Zenith": (2, Decimal("40.00"), pytest.approx(40 / 102.5)),
        "Autobuy": (1, Decimal("10.00"), pytest.approx(10 / 102.5)),
        None: (5, total, 1.0),
    }
    # Largest amount first.
    table_order = [label for label in found["credits-by-buyer"] if label]
    assert table_order == ["Acme", "Zenith", "Autobuy"]


APPROVAL_KEYS = (
    "approved",
    "approved_at_intake",
    "rejected",
    "decided",
    "approval_rate",
    "pending",
    "disputed",
)


def _approvals(rows):
    return {
        label: tuple(row[key] for key in APPROVAL_KEYS) for label, row in rows.items()
    }


def test_approval_rate_by_buyer_and_by_reason(story):
    found = tables()
    # By the latest decision in March: 1, 2, 5, 6 (approved after its dispute),
    # 10 (at intake) approved; 3 rejected; 4's rejection is disputed: waiting.
    # 7 is pending since March; 8 (February) and 9 (decided in April) are not
    # counted; 11 left the review.
    assert _approvals(found["approval-by-buyer"]) == {
        "Acme": (2, 0, 1, 3, pytest.approx(2 / 3), 0, 1),
        "Zenith": (2, 0, 0, 2, 1.0, 1, 0),
        "Autobuy": (1, 1, 0, 1, 1.0, 0, 0),
        None: (5, 1, 1, 6, pytest.approx(5 / 6), 1, 1),
    }
    assert _approvals(found["approval-by-reason"]) == {
        "Wrong number": (3, 1, 1, 4, 0.75, 0, 0),
        "Duplicate": (1, 0, 0, 1, 1.0, 1, 1),
        "(no reason)": (1, 0, 0, 1, 1.0, 0, 0),
        None: (5, 1, 1, 6, pytest.approx(5 / 6), 1, 1),
    }


def test_time_to_decision_per_buyer_and_what_waits(story):
    rows = tables()["time-to-decision"]
    # First decisions after review in March, in seconds from arrival:
    # Acme 3: 6 h, 1 and 4: 24 h, 2: 72 h; Zenith 6: 24 h, 5: 9 days.
    # Autobuy's return was approved at intake: never waited, not timed.
    assert set(rows) == {"Acme", "Zenith", None}
    acme, zenith, total = rows["Acme"], rows["Zenith"], rows[None]
    assert acme["decided"] == 4
    assert acme["median"] == pytest.approx(1 * DAY)
    # percentile_cont: rank 0.9 * 3 = 2.7 between 24 h and 72 h.
    assert acme["p90"] == pytest.approx(DAY + 0.7 * 2 * DAY)
    assert zenith["decided"] == 2
    assert zenith["median"] == pytest.approx(5 * DAY)
    assert zenith["p90"] == pytest.approx(DAY + 0.9 * 8 * DAY)
    assert total["decided"] == 6
    assert total["median"] == pytest.approx(DAY)
    assert total["p90"] == pytest.approx(3 * DAY + 0.5 * 6 * DAY)
    # Waiting now, whatever the dates: 4 (disputed), 7 and 8 (pending).
    assert acme["waiting"] == 1
    assert acme["oldest_waiting_s"] == (NOW - at(3, 6, 9)).total_seconds()
    assert zenith["waiting"] == 2
    assert zenith["oldest_waiting_s"] == (NOW - at(2, 10)).total_seconds()
    assert total["waiting"] == 3
    assert total["oldest_waiting_s"] == (NOW - at(2, 10)).total_seconds()


def test_filters_narrow_every_table(story):
    found = tables(source_id=story.redwood.pk)
    assert _credits(found["credits-by-buyer"]) == {
        "Zenith": (1, Decimal("10.00"), 1.0),
        None: (1, Decimal("10.00"), 1.0),
    }
    assert _approvals(found["approval-by-buyer"]) == {
        "Acme": (0, 0, 1, 1, 0.0, 0, 1),
        "Zenith": (1, 0, 0, 1, 1.0, 0, 0),
        None: (1, 0, 1, 2, 0.5, 0, 1),
    }
    timing = found["time-to-decision"]
    assert timing["Acme"]["decided"] == 2
    assert timing["Acme"]["median"] == pytest.approx((6 * HOUR + DAY) / 2)
    assert timing["Zenith"]["waiting"] == 1  # 8, pending since February

    found = tables(buyer_id=story.zenith.pk)
    assert set(found["credits-by-source"]) == {"Bluesky", "Redwood", None}
    assert found["credits-by-source"][None]["amount"] == Decimal("40.00")
    assert set(found["approval-by-reason"]) == {
        "Wrong number",
        "Duplicate",
        "(no reason)",
        None,
    }

    found = tables(flow_id=FlowFactory(slug="other").pk)
    assert all(set(rows) == {None} for rows in found.values())


def test_returns_only_under_the_kind_filter(story):
    for key, rows in tables(kind=Kind.CONVERSION).items():
        assert set(rows) == {None}, key
    assert tables(kind=Kind.RETURN) == tables()


def test_a_period_with_nothing_gives_empty_tables_with_zero_totals(story):
    found = tables(start=datetime.date(2024, 1, 1), end=datetime.date(2024, 1, 31))
    assert found["credits-by-source"] == {
        None: {"label": "Total", "credits": 0, "amount": Decimal("0.00"), "share": None}
    }
    assert found["approval-by-buyer"][None]["approval_rate"] is None
    # What waits now does not depend on the dates.
    assert found["time-to-decision"][None]["waiting"] == 3


def test_a_second_rejection_is_the_decision_that_counts(story):
    """Disputed, then rejected for good in April: a March report no longer
    counts its March rejection (the April one is its latest decision)."""
    with time_machine.travel(at(4, 3), tick=False):
        return_decide(feedback=story.returns[4], decision="reject")
    march = tables()["approval-by-buyer"]["Acme"]
    assert (march["rejected"], march["disputed"]) == (1, 0)
    april = tables(start=datetime.date(2025, 4, 1), end=datetime.date(2025, 4, 30))
    assert _approvals(april["approval-by-buyer"])["Acme"] == (1, 0, 1, 2, 0.5, 0, 0)
    # Its first decision (March 7) still times the review in March.
    assert tables()["time-to-decision"]["Acme"]["decided"] == 4


# The page, its CSV and who may see the money --------------------------------


def url(**query) -> str:
    from urllib.parse import urlencode

    path = reverse("reporting:report-detail", args=["returns-resolution"])
    return f"{path}?{urlencode({**MARCH, **query})}"


def staff_with(*codenames: str):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="reporting", codename__in=codenames
        )
    )
    return user


@time_machine.travel(NOW, tick=False)
def test_the_page_shows_three_groups_with_totals(client, story):
    client.force_login(staff_with("view_reports", "view_billing"))
    page = client.get(url()).content.decode()
    for heading in ("Credits", "Approval rate", "Time to decision"):
        assert f'<h2 class="report-group">{heading}</h2>' in page
    for key in (
        "credits-by-source",
        "credits-by-reason",
        "credits-by-buyer",
        "approval-by-buyer",
        "approval-by-reason",
        "time-to-decision",
    ):
        assert f'id="report-table-{key}"' in page
        assert f"table={key}" in page
    assert page.count("<tfoot>") == 6
    assert "102.50" in page  # the credits' total
    assert "83.3 %" in page  # 5 approved of 6 decided
    assert "<title>Credits by reason</title>" in page
    assert ">12.50</text>" in page  # the chart's money keeps its cents
    assert ">80.00</text>" in page
    assert "The date basis does not apply" in page


@time_machine.travel(NOW, tick=False)
def test_credits_need_the_billing_permission(client, story):
    client.force_login(staff_with("view_reports"))
    response = client.get(url())
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="report-table-approval-by-buyer"' in page
    assert 'id="report-table-time-to-decision"' in page
    assert "report-table-credits" not in page
    assert "102.50" not in page
    assert "Credits needs the view billing permission" in page
    for key in ("credits-by-source", "credits-by-reason", "credits-by-buyer"):
        assert client.get(url(export="csv", table=key)).status_code == 403
    # Without a table named, the CSV is the first one this user may see.
    response = client.get(url(export="csv"))
    assert response.status_code == 200
    assert (
        'filename="leadback-returns-resolution-approval-by-buyer-2025-03-01-'
        '2025-03-31.csv"' in response["Content-Disposition"]
    )
    assert client.get(url(export="csv", table="nope")).status_code == 404

    client.force_login(staff_with("view_billing"))
    assert client.get(url()).status_code == 403


@time_machine.travel(NOW, tick=False)
def test_csv_of_each_table_money_with_two_decimals_and_formula_safe(client, story):
    story.receive(12, story.acme, story.bluesky, "=SUM(A1)", "40.00", at(3, 16))
    story.step(at(3, 16), return_approve, 12, credit_amount="5")
    client.force_login(staff_with("view_reports", "view_billing"))
    response = client.get(url(export="csv", table="credits-by-reason"))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        'filename="leadback-returns-resolution-credits-by-reason-2025-03-01-'
        '2025-03-31.csv"' in response["Content-Disposition"]
    )
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["Reason", "Credits", "Amount", "Share of amount (%)"]
    body = {row[0]: row[1:] for row in rows[1:]}
    assert body["Wrong number"] == ["3", "80.00", "74.42"]
    assert body["'=SUM(A1)"] == ["1", "5.00", "4.65"]
    assert "=SUM(A1)" not in body
    assert rows[-1] == ["Total", "6", "107.50", "100.0"]

    rows = list(
        csv.reader(
            io.StringIO(
                client.get(url(export="csv", table="time-to-decision")).content.decode()
            )
        )
    )
    assert rows[0] == [
        "Buyer",
        "Median (seconds)",
        "90th percentile (seconds)",
        "Decided after review",
        "Waiting now",
        "Oldest waiting (seconds)",
    ]
    assert rows[-1][0] == "Total"
    assert (rows[-1][1], rows[-1][3]) == (str(float(DAY)), "7")


def _returns_for(buyers: int, prefix: str) -> None:
    """Per buyer: a return approved with a credit, one rejected and disputed,
    one pending, each with its own reason and source."""
    flow = FlowFactory(slug="bulk")
    for n in range(buyers):
        buyer = BuyerFactory(slug=f"{prefix}-{n}")
        source = SourceFactory(slug=f"{prefix}-source-{n}")
        BuyerPolicyFactory(buyer=buyer, review=BuyerPolicy.Review.MANUAL)
        made = []
        for _ in range(3):
            delivery = DeliveryEventFactory(
                buyer=buyer, lead__source=source, lead__flow=flow, delivered_at=at(2, 1)
            )
            with time_machine.travel(at(3, 2), tick=False):
                made.append(
                    feedback_receive(
                        buyer=buyer,
                        data={
                            "event_id": delivery.event_id,
                            "type": "return",
                            "reason": f"{prefix} reason {n}",
                        },
                        channel=Feedback.Channel.API,
                    ).feedback
                )
        with time_machine.travel(at(3, 3), tick=False):
            return_approve(feedback=made[0])
            return_reject(feedback=made[1])
            return_dispute(feedback=made[1], comment="no")


def _queries(client) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as page:
        assert client.get(url()).status_code == 200
    with CaptureQueriesContext(connection) as export:
        assert (
            client.get(url(export="csv", table="credits-by-buyer")).status_code == 200
        )
    return len(page), len(export)


@time_machine.travel(NOW, tick=False)
def test_queries_do_not_grow_with_the_number_of_buyers(client):
    client.force_login(staff_with("view_reports", "view_billing"))
    _returns_for(2, "few")
    few = _queries(client)
    _returns_for(8, "many")
    many = _queries(client)
    assert few == many
    assert many[0] <= 20
