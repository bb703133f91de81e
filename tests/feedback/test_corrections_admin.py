"""Staff correct feedback in the admin (DESIGN §12): at any time, with the
permission for it; the feedback's page shows the history and which sources
were told, and says so of those that were not."""

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from feedback.corrections.services import feedback_amend
from feedback.forwarding.models import Notification
from feedback.models import Feedback, FeedbackCorrection
from sources.models import FeedbackConfig, Kind
from tests.factories import DeliveryEventFactory, FeedbackFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def forwarded(buyer):
    """A conversion forwarded to two configs of its source, one of which has a
    retraction request."""
    feedback = FeedbackFactory(
        delivery=DeliveryEventFactory(buyer=buyer), revenue=Decimal("250.00")
    )
    feedback.source.name = "Bluesky Leads"
    feedback.source.save()
    with_request = FeedbackConfig.objects.create(
        source=feedback.source,
        kind=Kind.CONVERSION,
        url="https://told.example/sales",
        on_retract={
            "method": "json",
            "url": "https://told.example/retractions",
            "mappings": [{"target": "id", "value": "{{ notification.original_id }}"}],
        },
    )
    other = FeedbackFactory(delivery=DeliveryEventFactory(buyer=buyer)).source
    other.name = "Quiet Leads"
    other.save()
    without = FeedbackConfig.objects.create(
        source=other, kind=Kind.CONVERSION, url="https://quiet.example/sales"
    )
    for config in (with_request, without):
        Notification.objects.create(
            feedback=feedback,
            config=config,
            source=config.source,
            kind=feedback.kind,
            lead_delivered_at=feedback.delivery.delivered_at,
            status=Notification.Status.SUCCEEDED,
        )
    return feedback


def correct_url(feedback, action):
    return reverse("admin:feedback_feedback_correct", args=[feedback.pk, action])


def test_staff_retract_past_the_buyers_window_and_the_page_says_who_was_told(
    staff_client, staff_user, forwarded
):
    change = reverse("admin:feedback_feedback_change", args=[forwarded.pk])
    page = staff_client.get(change).content.decode()
    assert correct_url(forwarded, "retract") in page
    assert correct_url(forwarded, "amend") in page
    form = staff_client.get(correct_url(forwarded, "retract")).content.decode()
    assert "Source Quiet Leads has no retraction mapping: it will not be told." in form

    # Long past the buyer's 72 hours.
    Feedback.objects.filter(pk=forwarded.pk).update(
        received_at=timezone.now() - timedelta(days=60)
    )

    response = staff_client.post(
        correct_url(forwarded, "retract"), {"reason": "Duplicate sale"}
    )

    assert response.status_code == 302
    assert response.url == change
    forwarded.refresh_from_db()
    assert forwarded.retracted_at is not None
    row = FeedbackCorrection.objects.get(feedback=forwarded)
    assert (row.user, row.channel, row.reason) == (
        staff_user,
        "admin",
        "Duplicate sale",
    )
    page = staff_client.get(change).content.decode()
    assert "Retracted</strong> on" in page
    assert "Duplicate sale" in page
    assert "Bluesky Leads was told (retracted)" in page
    assert "Source Quiet Leads has no retraction mapping: it was not told." in page
    # Retracted: no more corrections offered, and a second one is refused.
    assert correct_url(forwarded, "retract") not in page
    again = staff_client.post(correct_url(forwarded, "retract"), {"reason": "x"})
    assert "This feedback was retracted already." in again.content.decode()
    assert FeedbackCorrection.objects.filter(feedback=forwarded).count() == 1


def test_staff_amend_revenue_and_the_history_shows_each_value(staff_client, forwarded):
    feedback_amend(feedback=forwarded, revenue="240.00", reason="Discount")

    bad = staff_client.post(correct_url(forwarded, "amend"), {"revenue": "-5"})
    assert bad.status_code == 200
    assert "Cannot be negative." in bad.content.decode()
    response = staff_client.post(
        correct_url(forwarded, "amend"), {"revenue": "230", "reason": ""}
    )

    assert response.status_code == 302
    forwarded.refresh_from_db()
    assert forwarded.revenue == Decimal("230.00")
    page = staff_client.get(
        reverse("admin:feedback_feedback_change", args=[forwarded.pk])
    ).content.decode()
    assert "Revenue 250.00 → 240.00" in page
    assert "Revenue 240.00 → 230.00" in page
    assert "Source Bluesky Leads has no amendment mapping: it was not told." in page


def test_correcting_needs_its_own_permission(client, forwarded):
    call_command("setup_roles", stdout=io.StringIO())
    analyst = UserFactory(is_staff=True)
    analyst.groups.add(Group.objects.get(name="Analyst"))
    client.force_login(analyst)

    page = client.get(
        reverse("admin:feedback_feedback_change", args=[forwarded.pk])
    ).content.decode()
    response = client.post(correct_url(forwarded, "retract"), {"reason": "x"})

    assert correct_url(forwarded, "retract") not in page
    assert response.status_code == 403
    forwarded.refresh_from_db()
    assert forwarded.retracted_at is None
