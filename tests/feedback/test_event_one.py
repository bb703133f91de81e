"""One delivery event on PostgreSQL: the two-statement path (`_event_record_one`)
and when the general path takes over. Transactional: the fast path only runs
outside a transaction, as a request runs."""

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from feedback import services
from feedback.models import DeliveryEvent, Lead
from feedback.services import ConflictError, DeliveryInput, delivery_event_record
from tests.factories import BuyerFactory, FlowFactory, SourceFactory

pytestmark = [pytest.mark.service, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("the two-statement path is PostgreSQL's")


@pytest.fixture
def slugs():
    return BuyerFactory().slug, SourceFactory().slug, FlowFactory().slug


def delivery(slugs, index: int, **fields) -> DeliveryInput:
    buyer, source, flow = slugs
    values = {
        "event_id": f"{index:024x}",
        "buyer": buyer,
        "source": source,
        "flow": flow,
        "price": Decimal("45"),
        "step": "Deliver",
        "reference": f"CRM-{index}",
        "lead_id": f"lead-{index}",
        "lead_data": {"email": " Mel@Example.com ", "phone_1": "1 (512) 789-1111"},
    } | fields
    return DeliveryInput(**values)


def stored(event_id: str) -> dict[str, object]:
    event = DeliveryEvent.objects.select_related("lead").get(event_id=event_id)
    return {
        "buyer": event.buyer_id,
        "source": event.source_id,
        "flow": event.flow_id,
        "step": event.step,
        "price": event.price,
        "payload_hash": len(event.payload_hash),
        "lead_source": event.lead.source_id,
        "lead_flow": event.lead.flow_id,
        "lead_data": event.lead.data,
        "email": event.lead.email_normalized,
        "phone": event.lead.phone_normalized,
        "received_at_is_delivered_at": event.lead.received_at == event.delivered_at,
    }


def test_a_new_event_is_one_read_and_one_insert_without_a_transaction(slugs):
    with CaptureQueriesContext(connection) as queries:
        event, created = delivery_event_record(data=delivery(slugs, 1))

    sql = [q["sql"] for q in queries]
    assert created is True
    assert len(sql) == 2, sql
    assert sql[0].startswith("SELECT")
    assert sql[1].startswith("WITH l AS (INSERT")
    assert event.pk is not None
    assert event.lead.pk is not None
    assert event.buyer.slug == slugs[0]


def test_it_stores_what_the_general_path_stores(slugs):
    fast, _ = delivery_event_record(data=delivery(slugs, 1))
    with transaction.atomic():  # inside a transaction the general path runs
        general, _ = delivery_event_record(data=delivery(slugs, 2))

    assert stored(fast.event_id) == stored(general.event_id)
    assert DeliveryEvent.objects.get(pk=fast.pk).payload_hash == (
        delivery(slugs, 1).fingerprint()
    )


def test_a_known_lead_is_linked_with_a_single_insert(slugs):
    first, _ = delivery_event_record(data=delivery(slugs, 1, lead_id="shared"))
    with CaptureQueriesContext(connection) as queries:
        second, _ = delivery_event_record(data=delivery(slugs, 2, lead_id="shared"))

    assert len(queries) == 2
    assert queries[1]["sql"].startswith("WITH e AS (INSERT INTO")
    assert second.lead.pk == first.lead.pk
    assert Lead.objects.filter(public_id="shared").count() == 1


def test_unknown_slugs_repeats_and_conflicts_take_the_general_path(slugs):
    new_slugs = ("new-buyer", slugs[1], slugs[2])
    created_event, created = delivery_event_record(data=delivery(new_slugs, 1))
    assert created is True
    assert created_event.buyer.name == "New Buyer"

    repeat, created = delivery_event_record(data=delivery(new_slugs, 1))
    assert (repeat.pk, created) == (created_event.pk, False)
    with pytest.raises(ConflictError):
        delivery_event_record(data=delivery(new_slugs, 1, reference="OTHER"))


def test_losing_a_race_for_the_event_id_answers_as_a_repeat(slugs, monkeypatch):
    """Another request inserts the event id between the read and the INSERT: the
    constraint refuses ours and the general path answers with the winner's."""
    winner, _ = delivery_event_record(data=delivery(slugs, 1))
    blind = services._event_read_sql().replace(
        "e.event_id = %s", "e.event_id = %s AND 1 = 0"
    )
    monkeypatch.setattr(services, "_event_read_sql", lambda: blind)

    again, created = delivery_event_record(data=delivery(slugs, 1))

    assert (again.pk, created) == (winner.pk, False)
    assert DeliveryEvent.objects.count() == 1
    assert Lead.objects.count() == 1
