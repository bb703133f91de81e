"""The evidence checks shown beside a pending return (DESIGN §10)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from feedback.models import Feedback
from feedback.returns.checks import (
    applicable,
    duplicate_check,
    duplicate_of,
    phone_check,
    phone_valid,
    return_checks,
    state_check,
)
from sources.models import Kind
from tests.factories import BuyerFactory, DeliveryEventFactory, FeedbackFactory


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"phone_1": "2025550143"}, True),  # Washington DC, valid
        ({"phone_1": "(202) 555-0143"}, True),
        ({"phone_1": "5550000000"}, False),  # 555 is no area code
        ({"phone_1": "12"}, False),
        ({"phone_1": "not a number"}, False),
        ({"phone_1": ""}, None),
        ({}, None),
        ({"phone_1": "020 7946 0958", "country": "GB"}, True),
        ({"phone_1": "020 7946 0958"}, False),  # read as a US number
    ],
)
def test_phone_valid_reads_the_number_for_its_region(data, expected):
    assert phone_valid(data) is expected


@pytest.mark.parametrize(
    ("reason", "checks"),
    [
        ("Wrong number", ["phone_valid"]),
        ("Disconnected phone", ["phone_valid"]),
        ("Duplicate", ["duplicate_of"]),
        ("Dupe lead", ["duplicate_of"]),
        ("Out of area", ["state"]),
        ("Wrong state", ["state"]),
        ("Did not request info", []),
        ("", []),
    ],
)
def test_the_reason_picks_the_checks(reason, checks):
    assert applicable(reason) == checks


def _return(delivery, reason):
    return FeedbackFactory(delivery=delivery, kind=Kind.RETURN, reason=reason)


@pytest.mark.django_db
def test_a_duplicate_is_an_earlier_delivery_to_the_same_buyer_with_the_email():
    buyer, other_buyer = BuyerFactory(), BuyerFactory()
    now = timezone.now()
    data = {"email": "ann@example.com", "phone_1": "2025550143"}
    earlier = DeliveryEventFactory(
        buyer=buyer,
        delivered_at=now - timedelta(days=3),
        lead__data=data,
        lead__email_normalized="ann@example.com",
        lead__phone_normalized="",
    )
    DeliveryEventFactory(  # to another buyer: not a duplicate for this one
        buyer=other_buyer,
        delivered_at=now - timedelta(days=5),
        lead__data=data,
        lead__email_normalized="ann@example.com",
    )
    returned = DeliveryEventFactory(
        buyer=buyer,
        delivered_at=now,
        lead__data=data,
        lead__email_normalized="ann@example.com",
    )
    DeliveryEventFactory(  # later: not what this lead duplicates
        buyer=buyer,
        delivered_at=now + timedelta(days=1),
        lead__data=data,
        lead__email_normalized="ann@example.com",
    )

    found = duplicate_of(
        buyer_id=buyer.pk,
        lead=returned.lead,
        delivery_id=returned.pk,
        delivered_at=returned.delivered_at,
    )

    assert found is not None
    assert (found.event_id, found.matched) == (earlier.event_id, "email")
    check = duplicate_check(_return(returned, "Duplicate"))
    assert check.verdict == "supports"
    assert earlier.event_id in check.detail


@pytest.mark.django_db
def test_the_same_phone_is_a_duplicate_too_and_a_fresh_lead_is_not():
    buyer = BuyerFactory()
    now = timezone.now()
    DeliveryEventFactory(
        buyer=buyer,
        delivered_at=now - timedelta(hours=2),
        lead__email_normalized="one@example.com",
        lead__phone_normalized="2025550143",
    )
    same_phone = DeliveryEventFactory(
        buyer=buyer,
        lead__email_normalized="two@example.com",
        lead__phone_normalized="2025550143",
    )
    fresh = DeliveryEventFactory(
        buyer=buyer,
        lead__email_normalized="three@example.com",
        lead__phone_normalized="2025550199",
    )

    assert duplicate_check(_return(same_phone, "Duplicate")).detail.startswith(
        "Delivered to this buyer before with the same phone"
    )
    fresh_check = duplicate_check(_return(fresh, "Duplicate"))
    assert fresh_check.verdict == "contradicts"


@pytest.mark.django_db
def test_the_state_check_compares_with_the_states_the_buyer_received():
    buyer = BuyerFactory()
    before = timezone.now() - timedelta(days=1)
    for state in ("TX", "TX", "OK"):
        DeliveryEventFactory(
            buyer=buyer, delivered_at=before, lead__data={"state": state}
        )
    usual = DeliveryEventFactory(buyer=buyer, lead__data={"state": "tx"})
    unusual = DeliveryEventFactory(buyer=buyer, lead__data={"state": "FL"})
    stateless = DeliveryEventFactory(buyer=buyer, lead__data={})

    assert state_check(_return(usual, "Out of area")).verdict == "contradicts"
    unusual_check = state_check(_return(unusual, "Wrong state"))
    assert unusual_check.verdict == "supports"
    assert unusual_check.detail == (
        "The buyer never received a lead from FL before (usually TX, OK)."
    )
    assert state_check(_return(stateless, "Out of area")).verdict == "unknown"


@pytest.mark.django_db
def test_a_phone_reason_gets_the_phone_check_with_its_verdict():
    bad = DeliveryEventFactory(lead__data={"phone_1": "5550000000"})
    good = DeliveryEventFactory(lead__data={"phone_1": "2025550143"})

    assert phone_check(_return(bad, "Wrong number")).verdict == "supports"
    assert phone_check(_return(good, "Wrong number")).verdict == "contradicts"
    checks = return_checks(Feedback.objects.get(delivery=bad))
    assert [(c.name, c.verdict) for c in checks] == [("phone_valid", "supports")]
