"""Recording many delivery events at once (`delivery_events_record_many`): each
item as `delivery_event_record` would record it, in a fixed number of
statements, in one transaction."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from feedback import services
from feedback.models import Buyer, DeliveryEvent, Flow, Lead
from feedback.services import (
    ConflictError,
    DeliveryInput,
    delivery_event_record,
    delivery_events_record_many,
)
from sources.models import Source
from tests.feedback.test_events_api import URL, event_payload

pytestmark = pytest.mark.django_db


def delivery(index: int, **fields) -> DeliveryInput:
    values = {
        "event_id": f"{index:024x}",
        "buyer": "acme-insurance",
        "source": "bluesky-leads",
        "flow": "auto",
        "lead_id": f"lead-{index}",
        "lead_data": {"email": f" P{index}@Example.com ", "phone_1": "1-512-555-0100"},
    } | fields
    return DeliveryInput(**values)


def test_each_item_is_recorded_as_one_at_a_time_would_record_it():
    items = [delivery(i) for i in range(1, 4)]

    events = delivery_events_record_many(items=items)

    assert [e.event_id for e in events] == [d.event_id for d in items]
    for event, data in zip(events, items, strict=True):
        stored = DeliveryEvent.objects.select_related("lead").get(pk=event.pk)
        assert stored.payload_hash == data.fingerprint()
        assert stored.lead.public_id == data.lead_id
        assert stored.lead.email_normalized == f"p{items.index(data) + 1}@example.com"
        assert stored.lead.phone_normalized == "5125550100"
    assert [b.slug for b in Buyer.objects.all()] == ["acme-insurance"]
    assert Source.objects.get().name == "Bluesky Leads"
    assert Flow.objects.get().slug == "auto"


def test_repeats_answer_with_the_stored_event_and_conflicts_are_listed():
    first = delivery(1)
    recorded, _ = delivery_event_record(data=first)
    other_payload = delivery(1, reference="CHANGED")

    results = delivery_events_record_many(
        items=[first, other_payload, delivery(2), delivery(2), delivery(2, price=9)]
    )

    assert results[0] == recorded
    assert isinstance(results[1], ConflictError)
    assert results[1].field == "event_id"
    assert isinstance(results[2], DeliveryEvent)
    assert results[3] == results[2]  # a repeat inside the batch
    assert isinstance(results[4], ConflictError)
    assert DeliveryEvent.objects.count() == 2


def test_one_lead_for_items_that_name_it_and_generated_ids_otherwise():
    shared = [delivery(i, lead_id="lead-shared") for i in (1, 2)]
    anonymous = delivery(3, event_id=None, lead_id=None)

    events = delivery_events_record_many(items=[*shared, anonymous])

    assert events[0].lead_id == events[1].lead_id
    assert Lead.objects.filter(public_id="lead-shared").count() == 1
    assert len(events[2].event_id) == 24
    assert events[2].lead.public_id != "lead-shared"
    assert Lead.objects.count() == 2


def test_statements_do_not_grow_with_the_batch():
    def statements(items: list[DeliveryInput]) -> int:
        with CaptureQueriesContext(connection) as queries:
            delivery_events_record_many(items=items)
        return len(queries)

    delivery_events_record_many(items=[delivery(0)])  # slugs exist from now on
    small = statements([delivery(i) for i in range(1, 4)])
    large = statements([delivery(i) for i in range(100, 160)])

    assert large == small


def test_a_concurrent_insert_falls_back_to_one_item_at_a_time(monkeypatch):
    """Another request records one of the ids between our read and our write:
    the bulk write fails on the constraint and each item is recorded alone."""
    real = services._events_record_bulk
    calls = []

    def raced(items):
        calls.append(len(items))
        real(items)  # written, then undone with the savepoint
        raise IntegrityError("duplicate key value violates unique constraint")

    monkeypatch.setattr(services, "_events_record_bulk", raced)
    items = [delivery(i) for i in range(1, 4)]

    results = delivery_events_record_many(items=items)

    assert calls == [3]
    assert [r.event_id for r in results] == [d.event_id for d in items]
    assert DeliveryEvent.objects.count() == 3


def test_a_batch_answer_is_the_answer_a_repeat_gets(integration_client):
    items = [
        event_payload(event_id=f"{i:024x}", lead={"id": f"L{i}", "state": "TX"})
        for i in range(1, 4)
    ]
    items.append(event_payload(event_id=None, price=None, lead={"first_name": "A"}))
    items[-1].pop("event_id")
    items[-1].pop("price")

    first = integration_client.post(URL, {"items": items}, format="json").json()
    generated = first["results"][3]["event"]["event_id"]
    items[-1]["event_id"] = generated
    repeat = integration_client.post(URL, {"items": items}, format="json").json()

    assert first["recorded"] == repeat["recorded"] == 4
    assert first["results"] == repeat["results"]
    single = integration_client.post(URL, items[0], format="json").json()
    assert single == first["results"][0]["event"]
    assert first["results"][3]["event"]["price"] == "0.00"


@pytest.mark.parametrize("zone", ["UTC", "America/Chicago"])
def test_the_written_out_answer_is_the_serializers(settings, zone):
    from django.utils import timezone

    from feedback.api.serializers import EventOutputSerializer
    from feedback.api.views import event_answer

    settings.TIME_ZONE = zone
    events = delivery_events_record_many(
        items=[
            delivery(1, price=Decimal("45")),
            delivery(2, lead_id=None, lead_data={}),
            delivery(3, delivered_at=datetime(2026, 11, 20, 10, 30, 0, 123456, UTC)),
        ]
    )
    stored = DeliveryEvent.objects.select_related("lead", "buyer", "source", "flow")
    with timezone.override(zone):
        for event in events:
            expected = EventOutputSerializer(stored.get(pk=event.pk)).data
            current = timezone.get_current_timezone()
            assert event_answer(event, zone=current) == expected
