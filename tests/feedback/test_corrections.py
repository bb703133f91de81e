"""Retraction and revenue amendment (DESIGN §12): the API, the rules of who may
correct what until when, and what a correction implies for returns, caps,
credits, suppression, reports and the history."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from feedback.corrections.services import (
    CorrectionRefused,
    feedback_amend,
    feedback_retract,
)
from feedback.forwarding.models import Notification
from feedback.intake.pipeline import feedback_receive
from feedback.models import BuyerMonth, BuyerPolicy, FeedbackCorrection
from feedback.months import months_recount
from feedback.returns.models import Credit, ReturnTransition
from feedback.returns.services import TransitionRefused, return_approve
from feedback.suppression.models import SuppressionEntry, SuppressionList
from feedback.suppression.services import suppression_rules_forget
from feedback.webhooks.models import WebhookEndpoint, WebhookMessage
from sources.models import FeedbackConfig, Kind
from tests.factories import (
    DeliveryEventFactory,
    FeedbackFactory,
    return_requested,
)

pytestmark = pytest.mark.django_db

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def retract(client, feedback, payload):
    return client.post(
        f"/api/v1/feedback/{feedback.public_id}/retract", payload, format="json"
    )


def amend(client, feedback, payload):
    return client.post(
        f"/api/v1/feedback/{feedback.public_id}/amend", payload, format="json"
    )


@pytest.fixture
def conversion(buyer):
    return FeedbackFactory(
        delivery=DeliveryEventFactory(buyer=buyer), revenue=Decimal("250.00")
    )


# Retraction over the API ------------------------------------------------------


def test_buyer_retracts_its_feedback_and_the_history_says_who_and_why(
    buyer_client, buyer_key, conversion
):
    key, _raw = buyer_key
    response = retract(buyer_client, conversion, {"reason": "Sent by mistake"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["feedback_id"] == str(conversion.public_id)
    assert body["action"] == "retract"
    assert body["reason"] == "Sent by mistake"
    assert body["retracted_at"] is not None
    conversion.refresh_from_db()
    assert conversion.retracted_at is not None
    row = FeedbackCorrection.objects.get(feedback=conversion)
    assert (row.action, row.reason, row.api_key, row.channel) == (
        "retract",
        "Sent by mistake",
        key,
        "api",
    )
    assert row.actor == f"API key {key.name}"


def test_the_feedback_reads_retracted_over_the_api(buyer_client, conversion):
    before = buyer_client.get(f"/api/v1/feedback/{conversion.public_id}").json()
    assert before["retracted_at"] is None

    retract(buyer_client, conversion, {"reason": "Sent by mistake"})

    after = buyer_client.get(f"/api/v1/feedback/{conversion.public_id}").json()
    conversion.refresh_from_db()
    assert after["retracted_at"] == conversion.retracted_at.isoformat().replace(
        "+00:00", "Z"
    )


def test_retracting_twice_answers_409(buyer_client, conversion):
    assert retract(buyer_client, conversion, {"reason": "Mistake"}).status_code == 200

    again = retract(buyer_client, conversion, {"reason": "Mistake"})

    assert again.status_code == 409
    assert again.json()["detail"] == "This feedback was retracted already."
    assert FeedbackCorrection.objects.filter(feedback=conversion).count() == 1


def test_another_buyers_feedback_answers_404_like_an_unknown_id(
    other_buyer_client, buyer_client, conversion
):
    response = retract(other_buyer_client, conversion, {"reason": "Mine?"})

    assert response.status_code == 404
    assert response.json()["detail"] == "Unknown feedback id."
    unknown = buyer_client.post(
        f"/api/v1/feedback/{UNKNOWN}/retract", {"reason": "x"}, format="json"
    )
    assert unknown.status_code == 404
    conversion.refresh_from_db()
    assert conversion.retracted_at is None


def test_a_retraction_needs_a_reason(buyer_client, conversion):
    response = retract(buyer_client, conversion, {})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "reason"


def test_integration_keys_cannot_retract(integration_client, conversion):
    response = retract(integration_client, conversion, {"reason": "x"})

    assert response.status_code == 403


def test_the_buyer_window_is_the_policys_retract_hours(buyer, buyer_client):
    BuyerPolicy.objects.create(buyer=buyer, kind=Kind.CONVERSION, retract_hours=2)
    feedback = FeedbackFactory(delivery=DeliveryEventFactory(buyer=buyer))

    with time_machine.travel(timezone.now() + timedelta(hours=3)):
        late = retract(buyer_client, feedback, {"reason": "Too late"})

    assert late.status_code == 409
    assert "2 hours to correct this feedback have passed" in late.json()["detail"]
    # Staff may at any time.
    with time_machine.travel(timezone.now() + timedelta(days=30)):
        feedback_retract(feedback=feedback, reason="Seller's call", staff=True)
    feedback.refresh_from_db()
    assert feedback.retracted_at is not None


def test_the_default_window_is_72_hours(buyer_client, conversion):
    with time_machine.travel(timezone.now() + timedelta(hours=71)):
        assert retract(buyer_client, conversion, {"reason": "x"}).status_code == 200


# What a retracted return takes with it ------------------------------------------


def _month(feedback):
    return BuyerMonth.objects.get(buyer=feedback.buyer, flow=feedback.flow)


def test_a_retracted_return_frees_the_slot_voids_the_credit_and_the_cap_count(
    buyer, buyer_client
):
    returned = return_requested(buyer=buyer, review=BuyerPolicy.Review.AUTO)
    assert Credit.objects.get(feedback=returned).voided_at is None
    assert _month(returned).returns == 1

    response = retract(buyer_client, returned, {"reason": "Reached them after all"})

    assert response.status_code == 200, response.content
    returned.refresh_from_db()
    assert returned.review_state == ""
    credit = Credit.objects.get(feedback=returned)
    assert credit.voided_at is not None
    assert "Reached them after all" in credit.void_reason
    assert _month(returned).returns == 0
    step = ReturnTransition.objects.filter(feedback=returned).last()
    assert (step.from_state, step.to_state) == ("approved", "")
    assert step.note == "Retracted: Reached them after all"
    # The counters rebuilt from the rows agree.
    months_recount()
    assert _month(returned).returns == 0
    # The return slot is free: the delivery can be returned again.
    again = feedback_receive(
        buyer=buyer,
        data={
            "event_id": returned.delivery.event_id,
            "type": "return",
            "reason": "Wrong number",
        },
        channel="api",
    )
    assert again.status == "accepted", again
    assert _month(returned).returns == 1


def test_a_pending_return_retracted_leaves_the_review_queue(buyer, buyer_client):
    pending = return_requested(buyer=buyer)

    assert retract(buyer_client, pending, {"reason": "Mistake"}).status_code == 200

    pending.refresh_from_db()
    assert pending.review_state == ""
    assert _month(pending).returns == 0
    assert not Credit.objects.filter(feedback=pending).exists()


def test_a_retracted_return_takes_its_suppression_entries_out(buyer):
    SuppressionList.objects.create(
        slug="returned", name="Returned", add_kinds=["return"]
    )
    suppression_rules_forget()
    returned = return_requested(buyer=buyer, review=BuyerPolicy.Review.AUTO)
    assert SuppressionEntry.objects.count() == 2  # email and phone

    feedback_retract(feedback=returned, reason="Mistake")

    assert SuppressionEntry.objects.count() == 0


def test_a_retracted_return_approved_later_is_refused(buyer):
    pending = return_requested(buyer=buyer)
    feedback_retract(feedback=pending, reason="Mistake")

    with pytest.raises(TransitionRefused, match="not under review"):
        return_approve(feedback=pending)


# Amendment -------------------------------------------------------------------


def test_buyer_amends_a_conversions_revenue_and_the_history_keeps_both(
    buyer_client, conversion
):
    first = amend(buyer_client, conversion, {"revenue": "225.00", "reason": "Typo"})
    second = amend(buyer_client, conversion, {"revenue": 230})

    assert first.status_code == 200, first.content
    assert first.json()["previous_revenue"] == "250.00"
    assert first.json()["revenue"] == "225.00"
    assert second.json()["revenue"] == "230.00"
    conversion.refresh_from_db()
    assert conversion.revenue == Decimal("230.00")
    history = list(
        FeedbackCorrection.objects.filter(feedback=conversion).values_list(
            "previous_revenue", "revenue", "reason"
        )
    )
    assert history == [
        (Decimal("250.00"), Decimal("225.00"), "Typo"),
        (Decimal("225.00"), Decimal("230.00"), ""),
    ]


@pytest.mark.parametrize(
    ("revenue", "message"),
    [
        ("-1", "Cannot be negative."),
        ("abc", "Must be a decimal number."),
        ("1e12", "Must be less than 10,000,000,000."),
        ("10000000000", "Must be less than 10,000,000,000."),
        ("1.234", "Must have at most 2 decimal places."),
        ("", "Enter the new revenue, e.g. 225.00."),
        ("NaN", "Must be a decimal number."),
    ],
)
def test_bad_revenue_answers_400_naming_the_field(
    buyer_client, conversion, revenue, message
):
    response = amend(buyer_client, conversion, {"revenue": revenue})

    assert response.status_code == 400, response.content
    assert response.json()["errors"] == [{"field": "revenue", "message": message}]
    conversion.refresh_from_db()
    assert conversion.revenue == Decimal("250.00")


def test_a_revenue_of_another_type_answers_400(buyer_client, conversion):
    for value in (True, None, ["1"], {"a": 1}):
        response = amend(buyer_client, conversion, {"revenue": value})
        assert response.status_code == 400, (value, response.content)
        assert response.json()["errors"][0]["field"] == "revenue"


def test_only_a_conversion_can_be_amended(buyer, buyer_client):
    returned = return_requested(buyer=buyer, review=BuyerPolicy.Review.AUTO)

    response = amend(buyer_client, returned, {"revenue": "1.00"})

    assert response.status_code == 409
    assert response.json()["detail"] == "Only a conversion's revenue can be amended."


def test_a_retracted_feedback_cannot_be_amended(buyer_client, conversion):
    feedback_retract(feedback=conversion, reason="Mistake")

    response = amend(buyer_client, conversion, {"revenue": "1.00"})

    assert response.status_code == 409


def test_refused_feedback_cannot_be_corrected(buyer):
    refused = FeedbackFactory(
        delivery=DeliveryEventFactory(buyer=buyer), outcome="failure"
    )

    with pytest.raises(CorrectionRefused, match="Only accepted feedback"):
        feedback_retract(feedback=refused, reason="x", staff=True)


# Forwarding and webhooks -------------------------------------------------------


def test_sources_with_a_retraction_request_get_a_notice_others_nothing(buyer):
    feedback = FeedbackFactory(delivery=DeliveryEventFactory(buyer=buyer))
    told = FeedbackConfig.objects.create(
        source=feedback.source,
        kind=Kind.CONVERSION,
        url="http://127.0.0.1:9/told",
        on_retract={
            "method": "json",
            "url": "http://127.0.0.1:9/retract",
            "mappings": [{"target": "id", "value": "{{ notification.original_id }}"}],
        },
    )
    silent = FeedbackConfig.objects.create(
        source=feedback.source, kind=Kind.CONVERSION, url="http://127.0.0.1:9/quiet"
    )
    sent = [
        Notification.objects.create(
            feedback=feedback,
            config=config,
            source=feedback.source,
            kind=feedback.kind,
            lead_delivered_at=feedback.delivery.delivered_at,
            status=Notification.Status.SUCCEEDED,
        )
        for config in (told, silent)
    ]

    correction = feedback_retract(feedback=feedback, reason="Mistake", staff=True)

    notice = Notification.objects.get(correction=correction)
    assert notice.config == told
    assert notice.original == sent[0]
    assert notice.status == Notification.Status.PENDING
    assert notice.public_id != sent[0].public_id


def test_an_unsent_notification_is_skipped_when_its_feedback_is_retracted(buyer):
    feedback = FeedbackFactory(delivery=DeliveryEventFactory(buyer=buyer))
    config = FeedbackConfig.objects.create(
        source=feedback.source, kind=Kind.CONVERSION, url="http://127.0.0.1:9/x"
    )
    waiting = Notification.objects.create(
        feedback=feedback,
        config=config,
        source=feedback.source,
        kind=feedback.kind,
        lead_delivered_at=feedback.delivery.delivered_at,
        status=Notification.Status.RETRYING,
        next_attempt_at=timezone.now(),
    )

    feedback_retract(feedback=feedback, reason="Mistake", staff=True)

    waiting.refresh_from_db()
    assert waiting.status == Notification.Status.SKIPPED
    assert waiting.reason == "The feedback was retracted before it was sent."
    assert not Notification.objects.filter(correction__isnull=False).exists()


def test_corrections_emit_webhook_events(buyer, conversion):
    WebhookEndpoint.objects.create(
        slug="crm",
        url="http://127.0.0.1:9/hooks",
        events=["feedback.retracted", "feedback.amended"],
    )

    feedback_amend(feedback=conversion, revenue="10.00")
    feedback_retract(feedback=conversion, reason="Mistake")

    events = list(WebhookMessage.objects.order_by("pk").values_list("event", flat=True))
    assert events == ["feedback.amended", "feedback.retracted"]
    body = WebhookMessage.objects.order_by("pk").first().body
    assert '"previous_revenue":"250.00"' in body
    assert "email" not in body
