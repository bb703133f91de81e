"""feedback_receive: the validation every channel shares (DESIGN §4.4)."""

import math
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from feedback.bulk import instances_copy
from feedback.intake.lookup import BULK_MIN_ITEMS
from feedback.intake.parse import ReceiveStatus
from feedback.intake.pipeline import feedback_receive, feedback_receive_many
from feedback.models import BuyerPolicy, Feedback
from sources.models import Kind
from tests.factories import DeliveryEventFactory, FlowFactory, SourceFactory

pytestmark = pytest.mark.django_db

API = Feedback.Channel.API


@pytest.fixture
def delivery(buyer):
    return DeliveryEventFactory(
        buyer=buyer, delivered_at=timezone.now() - timedelta(days=3)
    )


def receive(buyer, delivery, **data):
    return feedback_receive(
        buyer=buyer, data={"event_id": delivery.event_id, **data}, channel=API
    )


def test_accepted_feedback_copies_the_delivery_links(buyer, delivery):
    result = receive(
        buyer,
        delivery,
        type="conversion",
        revenue="1250.5",
        quality_score="4",
        reason="Sold",
        custom={"plan": "gold"},
        note="Closed on first call",
    )

    assert result.status == ReceiveStatus.ACCEPTED
    feedback = Feedback.objects.get()
    assert feedback == result.feedback
    assert (feedback.lead, feedback.buyer, feedback.source, feedback.flow) == (
        delivery.lead,
        delivery.buyer,
        delivery.source,
        delivery.flow,
    )
    assert feedback.revenue == Decimal("1250.50")
    assert feedback.quality_score == 4
    assert feedback.custom == {"plan": "gold"}
    assert feedback.outcome == Feedback.Outcome.SUCCESS
    assert feedback.channel == API


def test_outcome_code_implies_the_kind(buyer, delivery):
    result = receive(buyer, delivery, outcome_code="bad_info")

    assert result.status == ReceiveStatus.ACCEPTED
    assert result.feedback.kind == Kind.RETURN
    assert result.feedback.outcome_code.code == "bad_info"


def test_outcome_code_contradicting_type_is_invalid(buyer, delivery):
    result = receive(buyer, delivery, type="conversion", outcome_code="bad_info")

    assert result.status == ReceiveStatus.INVALID
    assert result.errors[0].field == "outcome_code"
    assert Feedback.objects.count() == 0


def test_identify_by_reference(buyer, delivery):
    result = feedback_receive(
        buyer=buyer,
        data={"reference": delivery.reference, "type": "status", "outcome_code": ""},
        channel=API,
    )

    assert result.status == ReceiveStatus.ACCEPTED
    assert result.feedback.delivery == delivery


def test_ambiguous_reference_asks_for_event_id(buyer, delivery):
    DeliveryEventFactory(buyer=buyer, reference=delivery.reference)

    result = feedback_receive(
        buyer=buyer,
        data={"reference": delivery.reference, "type": "status"},
        channel=API,
    )

    assert result.status == ReceiveStatus.INVALID
    assert "send the event_id instead" in result.errors[0].message


def test_disabled_kind_is_forbidden_and_recorded(buyer, delivery):
    BuyerPolicy.objects.create(buyer=buyer, kind=Kind.CONVERSION, enabled=False)

    result = receive(buyer, delivery, type="conversion")

    assert result.status == ReceiveStatus.FORBIDDEN
    assert result.reason == "Your account may not send this kind of feedback."
    assert Feedback.objects.get().outcome == Feedback.Outcome.FAILURE


def test_flow_policy_wins_over_buyer_policy(buyer, delivery):
    BuyerPolicy.objects.create(buyer=buyer, kind=Kind.RETURN, enabled=False)
    BuyerPolicy.objects.create(
        buyer=buyer, flow=delivery.flow, kind=Kind.RETURN, enabled=True
    )
    other_flow_delivery = DeliveryEventFactory(buyer=buyer, flow=FlowFactory())

    assert receive(buyer, delivery, type="return").status == ReceiveStatus.ACCEPTED
    assert (
        receive(buyer, other_flow_delivery, type="return").status
        == ReceiveStatus.FORBIDDEN
    )


def test_return_after_the_policy_window_is_refused(buyer):
    BuyerPolicy.objects.create(buyer=buyer, kind=Kind.RETURN, max_age_days=7)
    fresh = DeliveryEventFactory(
        buyer=buyer, delivered_at=timezone.now() - timedelta(days=6)
    )
    stale = DeliveryEventFactory(
        buyer=buyer, delivered_at=timezone.now() - timedelta(days=8)
    )

    assert receive(buyer, fresh, type="return").status == ReceiveStatus.ACCEPTED
    result = receive(buyer, stale, type="return")
    assert result.status == ReceiveStatus.REFUSED
    assert "The return window of 7 days" in result.reason


def test_the_buyer_policy_rule_set_refuses_with_its_reason(buyer, delivery):
    BuyerPolicy.objects.create(
        buyer=buyer,
        kind=Kind.RETURN,
        rules={
            "op": "and",
            "rules": [
                {"lhv": "feedback.reason", "op": "is not blank"},
                {"lhv": "lead.state", "op": "is included in", "rhv": "TX, OK"},
            ],
        },
    )

    blank = receive(buyer, delivery, type="return")
    assert blank.status == ReceiveStatus.REFUSED
    assert blank.reason.startswith("Your rules refused it: feedback.reason")
    assert "blank" in blank.reason
    accepted = receive(buyer, delivery, type="return", reason="Wrong number")
    assert accepted.status == ReceiveStatus.ACCEPTED
    refused = Feedback.objects.get(outcome=Feedback.Outcome.FAILURE)
    assert refused.outcome_reason == blank.reason


def test_a_rule_set_reads_the_lead_and_spares_other_kinds(buyer):
    BuyerPolicy.objects.create(
        buyer=buyer,
        kind=Kind.RETURN,
        rules={"rules": [{"lhv": "lead.state", "op": "is equal to", "rhv": "TX"}]},
    )
    texan, ohioan = (
        DeliveryEventFactory(buyer=buyer, lead__data={"state": state})
        for state in ("tx", "OH")
    )

    assert receive(buyer, texan, type="return").status == ReceiveStatus.ACCEPTED
    assert receive(buyer, ohioan, type="return").status == ReceiveStatus.REFUSED
    assert receive(buyer, ohioan, type="conversion").status == ReceiveStatus.ACCEPTED


def test_default_return_window_is_90_days(buyer):
    old = DeliveryEventFactory(
        buyer=buyer, delivered_at=timezone.now() - timedelta(days=91)
    )
    recent = DeliveryEventFactory(
        buyer=buyer, delivered_at=timezone.now() - timedelta(days=89)
    )

    assert receive(buyer, old, type="return").status == ReceiveStatus.REFUSED
    assert receive(buyer, recent, type="return").status == ReceiveStatus.ACCEPTED
    # Conversions have no age limit.
    assert receive(buyer, old, type="conversion").status == ReceiveStatus.ACCEPTED


def test_reason_must_be_in_the_sources_list_case_insensitively(buyer):
    source = SourceFactory(return_reasons=["Wrong number", "Disconnected phone"])
    delivery = DeliveryEventFactory(buyer=buyer, lead__source=source, source=source)

    accepted = receive(buyer, delivery, type="return", reason="wrong NUMBER")
    refused = receive(buyer, delivery, type="return", reason="Changed mind")

    assert accepted.status == ReceiveStatus.ACCEPTED
    assert accepted.feedback.reason == "Wrong number"  # the source's spelling
    assert refused.status == ReceiveStatus.REFUSED
    assert "“Changed mind” is not a return reason" in refused.reason


def test_source_that_does_not_accept_a_kind_refuses_it(buyer):
    source = SourceFactory(accepts_conversion=False)
    delivery = DeliveryEventFactory(buyer=buyer, lead__source=source, source=source)

    result = receive(buyer, delivery, type="conversion")

    assert result.status == ReceiveStatus.REFUSED
    assert "does not accept conversion" in result.reason


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("revenue", "-1", "Cannot be negative"),
        ("revenue", "12.345", "at most 2 decimal places"),
        ("revenue", "abc", "decimal number"),
        ("revenue", "NaN", "decimal number"),
        ("revenue", "Infinity", "decimal number"),
        ("revenue", True, "decimal number"),
        ("revenue", "1e12", "less than"),
        ("quality_score", "0", "1 to 5"),
        ("quality_score", 6, "1 to 5"),
        ("quality_score", "4.5", "1 to 5"),
        ("occurred_at", "next tuesday", "ISO 8601"),
        ("occurred_at", "2099-01-01T00:00:00Z", "future"),
        ("custom", "not an object", "JSON object"),
        ("custom", {"blob": "x" * 5000}, "4096 bytes"),
        ("reason", "x" * 256, "255 characters"),
    ],
)
def test_invalid_values_are_refused_and_recorded(
    buyer, delivery, field, value, message
):
    result = receive(buyer, delivery, type="conversion", **{field: value})

    assert result.status == ReceiveStatus.REFUSED
    assert result.errors[0].field == field
    assert message in result.errors[0].message
    feedback = Feedback.objects.get()
    assert feedback.outcome == Feedback.Outcome.FAILURE
    assert field in feedback.outcome_reason


def test_occurred_at_before_delivery_is_refused(buyer, delivery):
    before = (delivery.delivered_at - timedelta(hours=1)).isoformat()

    result = receive(buyer, delivery, type="conversion", occurred_at=before)

    assert result.status == ReceiveStatus.REFUSED
    assert result.errors[0].field == "occurred_at"


def test_occurred_at_a_little_ahead_is_tolerated_as_clock_skew(buyer, delivery):
    soon = (timezone.now() + timedelta(minutes=4)).isoformat()

    assert receive(buyer, delivery, type="conversion", occurred_at=soon).status == (
        ReceiveStatus.ACCEPTED
    )


def test_second_successful_return_is_refused_as_already_returned(buyer, delivery):
    first = receive(buyer, delivery, type="return", reason="Wrong number")
    second = receive(buyer, delivery, type="return", reason="Wrong number")

    assert first.status == ReceiveStatus.ACCEPTED
    assert second.status == ReceiveStatus.ALREADY_RETURNED
    assert second.reason == "This lead was already returned."
    assert list(Feedback.objects.values_list("outcome", flat=True).order_by("id")) == [
        "success",
        "failure",
    ]


def test_two_returns_of_one_delivery_in_one_batch(buyer, delivery):
    results = feedback_receive_many(
        buyer=buyer,
        items=[{"event_id": delivery.event_id, "type": "return"}] * 2,
        channel=API,
    )

    assert [r.status for r in results] == [
        ReceiveStatus.ACCEPTED,
        ReceiveStatus.ALREADY_RETURNED,
    ]


def test_unknown_and_foreign_deliveries_are_not_found_and_not_recorded(
    buyer, other_buyer
):
    foreign = DeliveryEventFactory(buyer=other_buyer)

    unknown = feedback_receive(
        buyer=buyer, data={"event_id": "c" * 24, "type": "return"}, channel=API
    )
    other = receive(buyer, foreign, type="return")

    assert unknown.status == other.status == ReceiveStatus.NOT_FOUND
    assert unknown.errors == other.errors
    assert Feedback.objects.count() == 0


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"type": "return"}, "event_id"),
        ({"event_id": "xyz", "type": "return"}, "event_id"),
        ({"event_id": "a" * 24}, "type"),
        ({"event_id": "a" * 24, "type": "refund"}, "type"),
        ({"event_id": "a" * 24, "outcome_code": "nope"}, "outcome_code"),
    ],
)
def test_unidentifiable_feedback_is_invalid(buyer, data, field):
    result = feedback_receive(buyer=buyer, data=data, channel=API)

    assert result.status == ReceiveStatus.INVALID
    assert result.errors[0].field == field


def test_batch_queries_do_not_grow_with_items(buyer):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries_for(count):
        deliveries = [DeliveryEventFactory(buyer=buyer) for _ in range(count)]
        items = [{"event_id": d.event_id, "type": "conversion"} for d in deliveries]
        items += [{"reference": d.reference, "type": "status"} for d in deliveries]
        with CaptureQueriesContext(connection) as context:
            results = feedback_receive_many(buyer=buyer, items=items, channel=API)
        assert {r.status for r in results} == {ReceiveStatus.ACCEPTED}
        return len(context)

    # SQLite caps the parameters of one statement, so bulk inserts come in chunks;
    # everything else must be a fixed number of queries.
    fields = [f for f in Feedback._meta.concrete_fields if not f.primary_key]
    chunk = connection.ops.bulk_batch_size(fields, [None] * 80) or 80
    extra_inserts = math.ceil(80 / chunk) - math.ceil(40 / chunk)
    assert queries_for(40) == queries_for(20) + extra_inserts
    assert Feedback.objects.count() == 120


@pytest.mark.service
@pytest.mark.django_db(transaction=True)
def test_concurrent_returns_through_the_service_leave_one_success():
    import threading

    from django.db import connection

    from tests.factories import BuyerFactory

    buyer = BuyerFactory()
    delivery = DeliveryEventFactory(buyer=buyer)
    barrier = threading.Barrier(6)
    statuses: list[ReceiveStatus] = []

    def send() -> None:
        try:
            barrier.wait()
            result = feedback_receive(
                buyer=buyer,
                data={"event_id": delivery.event_id, "type": "return"},
                channel=API,
            )
            statuses.append(result.status)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == sorted(
        [ReceiveStatus.ACCEPTED] + [ReceiveStatus.ALREADY_RETURNED] * 5
    )
    assert Feedback.objects.filter(outcome="success").count() == 1
    assert Feedback.objects.filter(outcome="failure").count() == 5


def test_return_racing_past_the_check_is_caught_by_the_constraint(
    buyer, delivery, monkeypatch
):
    """If another request returns the delivery between our read and our insert,
    the database constraint decides and the loser is stored as already returned."""
    receive(buyer, delivery, type="return")
    monkeypatch.setattr(
        "feedback.intake.lookup._returned_delivery_ids", lambda _: set()
    )

    results = feedback_receive_many(
        buyer=buyer,
        items=[
            {"event_id": delivery.event_id, "type": "return"},
            {"event_id": delivery.event_id, "type": "conversion"},
        ],
        channel=API,
    )

    assert [r.status for r in results] == [
        ReceiveStatus.ALREADY_RETURNED,
        ReceiveStatus.ACCEPTED,
    ]
    assert Feedback.objects.filter(kind="return", outcome="success").count() == 1
    assert Feedback.objects.filter(kind="return", outcome="failure").count() == 1
    assert Feedback.objects.filter(kind="conversion").count() == 1


def test_a_large_batch_is_stored_whole_or_item_by_item_on_a_race(buyer, monkeypatch):
    """From BULK_MIN_ITEMS items PostgreSQL takes COPY; a return that raced past
    the check still loses to the constraint, alone, and the rest is stored."""
    from feedback.intake import lookup, store

    copies = []
    monkeypatch.setattr(
        store,
        "instances_copy",
        lambda rows: copies.append(len(rows)) or instances_copy(rows),
    )
    deliveries = [DeliveryEventFactory(buyer=buyer) for _ in range(BULK_MIN_ITEMS)]
    items = [{"event_id": d.event_id, "type": "conversion"} for d in deliveries]

    first = feedback_receive_many(buyer=buyer, items=items, channel=API)
    receive(buyer, deliveries[3], type="return")
    monkeypatch.setattr(lookup, "_returned_delivery_ids", lambda _: set())
    second = feedback_receive_many(
        buyer=buyer,
        items=[*items, {"event_id": deliveries[3].event_id, "type": "return"}],
        channel=API,
    )

    assert [r.status for r in first] == [ReceiveStatus.ACCEPTED] * BULK_MIN_ITEMS
    assert [r.status for r in second] == [ReceiveStatus.ACCEPTED] * BULK_MIN_ITEMS + [
        ReceiveStatus.ALREADY_RETURNED
    ]
    stored = Feedback.objects.filter(pk__in=[r.feedback.pk for r in first + second])
    assert sorted(stored.values_list("public_id", flat=True)) == sorted(
        r.feedback.public_id for r in first + second
    )
    assert Feedback.objects.get(pk=first[0].feedback.pk).delivery == deliveries[0]
    assert Feedback.objects.filter(kind="return", outcome="success").count() == 1
    expect_copy = connection.vendor == "postgresql"
    # The second batch's COPY failed on the constraint and was rolled back.
    assert copies == ([BULK_MIN_ITEMS, BULK_MIN_ITEMS + 1] if expect_copy else [])
