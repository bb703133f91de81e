"""The buyer corrects its feedback on the lead's page (DESIGN §12): retract
with a reason, amend a conversion's revenue, within the policy's window, and
never another buyer's feedback."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from feedback.models import Feedback, FeedbackCorrection
from tests.factories import DeliveryEventFactory, FeedbackFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def portal(client, buyer_user):
    client.force_login(buyer_user)
    return client


@pytest.fixture
def conversion(buyer):
    return FeedbackFactory(
        delivery=DeliveryEventFactory(buyer=buyer),
        revenue=Decimal("250.00"),
        channel="portal",
    )


def page_of(feedback):
    return reverse("portal:delivery-detail", args=[feedback.delivery.event_id])


def correct(client, feedback, action, data):
    return client.post(
        reverse("portal:feedback-correct", args=[feedback.public_id, action]),
        data,
        follow=True,
    )


def test_the_lead_page_offers_retract_and_amend_within_the_window(portal, conversion):
    page = portal.get(page_of(conversion)).content.decode()

    assert "Amend revenue" in page
    assert "Retract conversion" in page
    assert "You can correct this until" in page


def test_the_buyer_amends_then_retracts_and_the_page_tells_the_story(
    portal, buyer_user, conversion
):
    amended = correct(portal, conversion, "amend", {"revenue": "225.5", "reason": ""})

    assert "Revenue amended to 225.50." in amended.content.decode()
    conversion.refresh_from_db()
    assert conversion.revenue == Decimal("225.50")

    retracted = correct(portal, conversion, "retract", {"reason": "Sold twice"})

    page = retracted.content.decode()
    assert "Feedback retracted." in page
    assert "Revenue amended</strong> from 250.00 to 225.50" in page
    assert "“Sold twice”" in page
    assert "no longer counted in reports" in page
    assert "Retract conversion" not in page  # nothing more to correct
    conversion.refresh_from_db()
    assert conversion.retracted_at is not None
    rows = FeedbackCorrection.objects.filter(feedback=conversion)
    assert {(r.action, r.user, r.channel) for r in rows} == {
        ("amend", buyer_user, "portal"),
        ("retract", buyer_user, "portal"),
    }


def test_a_bad_revenue_is_said_at_the_feedback(portal, conversion):
    response = correct(portal, conversion, "amend", {"revenue": "-3"})

    assert "Revenue: Cannot be negative." in response.content.decode()
    conversion.refresh_from_db()
    assert conversion.revenue == Decimal("250.00")


def test_a_retraction_needs_a_reason(portal, conversion):
    response = correct(portal, conversion, "retract", {"reason": "  "})

    assert "Reason: Say why, in a few words." in response.content.decode()
    conversion.refresh_from_db()
    assert conversion.retracted_at is None


def test_past_the_window_the_page_offers_nothing_and_a_post_is_refused(
    portal, conversion
):
    Feedback.objects.filter(pk=conversion.pk).update(
        received_at=timezone.now() - timedelta(hours=73)
    )

    page = portal.get(page_of(conversion)).content.decode()
    response = correct(portal, conversion, "retract", {"reason": "Late"})

    assert "Retract conversion" not in page
    assert "72 hours to correct this feedback have passed" in (
        response.content.decode()
    )
    conversion.refresh_from_db()
    assert conversion.retracted_at is None


def test_another_buyers_feedback_is_not_found(client, other_buyer_user, conversion):
    client.force_login(other_buyer_user)

    response = client.post(
        reverse("portal:feedback-correct", args=[conversion.public_id, "retract"]),
        {"reason": "Not mine"},
    )

    assert response.status_code == 404
    conversion.refresh_from_db()
    assert conversion.retracted_at is None


def test_a_retracted_return_lets_the_lead_be_returned_again(portal, buyer):
    returned = FeedbackFactory(
        delivery=DeliveryEventFactory(buyer=buyer), kind="return", reason="Bad"
    )
    page = portal.get(page_of(returned)).content.decode()
    assert "This lead was returned on" in page

    page = correct(portal, returned, "retract", {"reason": "Reached"}).content.decode()

    assert "This lead was returned on" not in page
    assert "Return lead" in page


def test_a_retracted_conversion_no_longer_marks_the_lead_converted(portal, conversion):
    listed = portal.get(reverse("portal:delivery-list") + "?feedback=converted")
    assert conversion.delivery.event_id in listed.content.decode()

    correct(portal, conversion, "retract", {"reason": "Wrong lead"})

    listed = portal.get(reverse("portal:delivery-list") + "?feedback=converted")
    assert conversion.delivery.event_id not in listed.content.decode()
