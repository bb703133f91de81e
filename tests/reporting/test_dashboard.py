"""The front door: visitors get the login, buyers the portal, staff a dashboard
of this month against the last with links into the reports; the admin is
branded Leadback and its "View site" leads to `/`."""

import datetime
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Permission

from feedback.intake.pipeline import feedback_receive
from feedback.models import BuyerPolicy, Feedback
from reporting.dashboard import month_bounds
from sources.models import Kind
from tests.factories import (
    BuyerPolicyFactory,
    DeliveryEventFactory,
    FeedbackFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

NOW = datetime.datetime(2026, 3, 10, 12, 0, tzinfo=datetime.UTC)


def staff_with(*codenames):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def test_a_visitor_is_sent_to_the_login_and_back(client):
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_a_buyer_lands_in_the_portal(client, buyer_user):
    client.force_login(buyer_user)

    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/portal/"


@pytest.mark.parametrize(
    ("today", "previous_end"),
    [
        (datetime.date(2026, 3, 10), datetime.date(2026, 2, 10)),
        (datetime.date(2026, 3, 31), datetime.date(2026, 2, 28)),
        (datetime.date(2026, 1, 5), datetime.date(2025, 12, 5)),
    ],
)
def test_the_month_so_far_is_compared_with_the_same_days_of_the_last(
    today, previous_end
):
    current, previous = month_bounds(today)
    assert (current.start, current.end) == (today.replace(day=1), today)
    assert (previous.start, previous.end) == (previous_end.replace(day=1), previous_end)


@time_machine.travel(NOW, tick=False)
def test_staff_see_this_month_against_the_last_with_links(client, buyer):
    this_month = [
        DeliveryEventFactory(buyer=buyer, price=Decimal("20.00"), delivered_at=NOW)
        for _ in range(4)
    ]
    last_month = [
        DeliveryEventFactory(
            buyer=buyer,
            price=Decimal("10.00"),
            delivered_at=NOW - datetime.timedelta(days=30),  # 8 February
        )
        for _ in range(2)
    ]
    FeedbackFactory(
        delivery=this_month[0], kind=Kind.CONVERSION, revenue=Decimal("100.00")
    )
    FeedbackFactory(delivery=last_month[0], kind=Kind.CONVERSION)
    BuyerPolicyFactory(buyer=buyer, credit_percent=Decimal(50))
    feedback_receive(
        buyer=buyer,
        data={"event_id": this_month[1].event_id, "type": "return"},
        channel=Feedback.Channel.API,
    )
    DeliveryEventFactory(  # 12 February: after the same days of last month
        buyer=buyer, delivered_at=NOW - datetime.timedelta(days=26)
    )
    client.force_login(staff_with("view_reports", "view_billing", "view_feedback"))

    response = client.get("/")

    assert response.status_code == 200
    figures = {f.label: f for f in response.context["figures"]}
    assert (figures["Delivered"].current, figures["Delivered"].previous) == (4, 2)
    assert figures["Delivered"].change_text == "+100 %"
    assert (figures["Conversions"].current, figures["Conversions"].previous) == (1, 1)
    assert figures["Returns"].current == 1
    assert figures["Return rate"].current_text == "25.0 %"
    assert figures["Revenue"].current_text == "100.00"
    assert (figures["Cost"].current_text, figures["Cost"].previous_text) == (
        "80.00",
        "20.00",
    )
    assert figures["Cost"].trend == "bad"  # cost went up
    assert figures["Credits"].current_text == "10.00"  # half of 20.00
    text = response.content.decode()
    assert "/reports/by-buyer/?start=2026-03-01&amp;end=2026-03-10" in text
    assert "/reports/by-reason/?start=2026-03-01" in text
    assert "March 2026 so far" in text
    assert "Forwarding to sources, last 24 hours" in text


def test_money_needs_the_billing_permission_for_credits(client):
    client.force_login(staff_with("view_reports"))

    response = client.get("/")

    labels = [f.label for f in response.context["figures"]]
    assert "Credits" not in labels
    assert "Revenue" in labels


def test_staff_without_report_permissions_are_told_where_to_go(client):
    client.force_login(staff_with())

    response = client.get("/")

    assert response.status_code == 200
    assert "Your account has no report permissions" in response.content.decode()
    assert "figures" not in response.context


def test_pending_returns_are_counted_for_staff_who_can_see_feedback(client, buyer):
    BuyerPolicyFactory(buyer=buyer, review=BuyerPolicy.Review.MANUAL)
    for _ in range(2):
        feedback_receive(
            buyer=buyer,
            data={
                "event_id": DeliveryEventFactory(buyer=buyer).event_id,
                "type": "return",
            },
            channel=Feedback.Channel.API,
        )
    client.force_login(staff_with("view_reports", "view_returnreview"))

    response = client.get("/")

    assert response.context["review_link"] == {
        "count": 2,
        "url": "/admin/feedback/returnreview/",
    }
    assert 'href="/admin/feedback/returnreview/"' in response.content.decode()


def test_the_admin_is_branded_and_leads_to_the_front_door(client, staff_user):
    client.force_login(staff_user)

    text = client.get("/admin/").content.decode()

    assert "<title>Administration | Leadback</title>" in text
    assert '<div id="site-name"><a href="/">Leadback</a></div>' in text
    assert 'href="/static/leadback/favicon.svg"' in text
    assert '<a href="/">View site</a>' in text
