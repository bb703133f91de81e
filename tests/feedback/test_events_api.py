from datetime import timedelta

import pytest
from django.utils import timezone

from feedback.models import Buyer, DeliveryEvent, Flow, Lead
from sources.models import Source
from tests.factories import DeliveryEventFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/events"


def event_payload(**overrides):
    payload = {
        "event_id": "65a1f0c2e4b0a1b2c3d4e5f6",
        "delivered_at": "2026-11-20T10:30:00Z",
        "price": "45.00",
        "buyer": "acme-insurance",
        "source": "bluesky-leads",
        "flow": "auto-insurance",
        "step": "Deliver to Acme",
        "reference": "CRM-12345",
        "lead": {
            "id": "lead-0001",
            "first_name": "Mel",
            "last_name": "Gibson",
            "email": " Mel@Example.com ",
            "phone_1": "1 (512) 789-1111",
            "state": "TX",
        },
    }
    payload.update(overrides)
    return payload


def test_records_event_and_creates_unknown_slugs(integration_client):
    response = integration_client.post(URL, event_payload(), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["event_id"] == "65a1f0c2e4b0a1b2c3d4e5f6"
    assert body["buyer"] == "acme-insurance"
    assert body["lead"]["id"] == "lead-0001"
    assert body["price"] == "45.00"
    event = DeliveryEvent.objects.get(event_id="65a1f0c2e4b0a1b2c3d4e5f6")
    assert event.reference == "CRM-12345"
    assert event.source == event.lead.source
    assert Buyer.objects.get(slug="acme-insurance").name == "Acme Insurance"
    assert Source.objects.filter(slug="bluesky-leads").exists()
    assert Flow.objects.filter(slug="auto-insurance").exists()
    lead = Lead.objects.get(public_id="lead-0001")
    assert lead.email_normalized == "mel@example.com"
    assert lead.phone_normalized == "5127891111"


def test_generates_event_id_when_absent(integration_client):
    payload = event_payload()
    del payload["event_id"]

    response = integration_client.post(URL, payload, format="json")

    assert response.status_code == 201
    event_id = response.json()["event_id"]
    assert len(event_id) == 24
    assert int(event_id, 16) >= 0
    assert event_id == event_id.lower()
    assert DeliveryEvent.objects.filter(event_id=event_id).exists()


def test_same_payload_twice_gives_same_answer(integration_client):
    first = integration_client.post(URL, event_payload(), format="json")
    second = integration_client.post(URL, event_payload(), format="json")

    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert DeliveryEvent.objects.count() == 1


def test_same_event_id_with_other_payload_conflicts(integration_client):
    integration_client.post(URL, event_payload(), format="json")

    response = integration_client.post(URL, event_payload(price="46.00"), format="json")

    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "event_id"
    assert DeliveryEvent.objects.get().price == 45


def test_second_delivery_of_a_lead_links_to_the_same_lead(integration_client):
    integration_client.post(URL, event_payload(), format="json")
    integration_client.post(
        URL,
        event_payload(event_id="65a1f0c2e4b0a1b2c3d4e5f7", buyer="zenith-direct"),
        format="json",
    )

    assert Lead.objects.count() == 1
    assert Lead.objects.get().deliveries.count() == 2


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"event_id": "65A1F0C2E4B0A1B2C3D4E5F6"}, "event_id"),
        ({"event_id": "123"}, "event_id"),
        ({"price": "-1.00"}, "price"),
        ({"price": "12.345"}, "price"),
        ({"price": "abc"}, "price"),
        ({"buyer": "not a slug!"}, "buyer"),
        ({"buyer": None}, "buyer"),
        ({"delivered_at": "yesterday"}, "delivered_at"),
        ({"delivered_at": "2099-01-01T00:00:00Z"}, "delivered_at"),
        ({"delivered_at": "0001-01-01T00:00:00+05:00"}, "delivered_at"),
        ({"lead": "mel@example.com"}, "lead"),
        ({"lead": {"id": ""}}, "lead.id"),
        ({"reference": "x" * 201}, "reference"),
    ],
)
def test_bad_input_is_a_problem_naming_the_field(integration_client, overrides, field):
    response = integration_client.post(URL, event_payload(**overrides), format="json")

    assert response.status_code == 422, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 422
    assert field in [error["field"] for error in body["errors"]]
    assert field in body["detail"]
    assert DeliveryEvent.objects.count() == 0


def test_missing_required_fields_are_each_named(integration_client):
    response = integration_client.post(URL, {"price": "1.00"}, format="json")

    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["errors"]}
    assert {"buyer", "source", "flow"} <= fields


def test_unparseable_json_is_400_problem(integration_client):
    response = integration_client.post(
        URL, data="{not json", content_type="application/json"
    )

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert "JSON parse error" in response.json()["detail"]


def test_items_batch_records_each_and_reports_per_item(integration_client):
    integration_client.post(URL, event_payload(), format="json")
    items = [
        event_payload(event_id=f"{index:024x}", reference=f"R{index}")
        for index in range(1, 4)
    ]
    items.append(event_payload(price="-5"))  # invalid
    items.append(event_payload(price="99.00"))  # conflicts with the first event

    response = integration_client.post(URL, {"items": items}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert [r["status"] for r in body["results"]] == [201, 201, 201, 422, 409]
    assert body["results"][3]["errors"][0]["field"] == "items.3.price"
    assert body["results"][4]["errors"][0]["field"] == "items.4.event_id"
    assert body["recorded"] == 3
    assert body["failed"] == 2
    assert DeliveryEvent.objects.count() == 4


def test_items_batch_over_1000_is_refused(integration_client):
    items = [event_payload(event_id=None)] * 1001

    response = integration_client.post(URL, {"items": items}, format="json")

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "items"
    assert DeliveryEvent.objects.count() == 0


def test_buyer_key_cannot_record_events(buyer_client):
    response = buyer_client.post(URL, event_payload(), format="json")

    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    assert DeliveryEvent.objects.count() == 0


def test_no_key_is_401(client):
    response = client.post(URL, event_payload(), content_type="application/json")

    assert response.status_code == 401
    assert "Bearer" in response["WWW-Authenticate"]


def test_event_detail_for_its_buyer_and_integration(
    buyer, buyer_client, other_buyer_client, integration_client
):
    event = DeliveryEventFactory(buyer=buyer)
    url = f"{URL}/{event.event_id}"

    own = buyer_client.get(url)
    assert own.status_code == 200
    assert own.json()["event_id"] == event.event_id
    assert integration_client.get(url).status_code == 200

    foreign = other_buyer_client.get(url)
    unknown = other_buyer_client.get(f"{URL}/{'f' * 24}")
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json() == unknown.json()


def test_delivered_at_defaults_to_now(integration_client):
    payload = event_payload()
    del payload["delivered_at"]

    integration_client.post(URL, payload, format="json")

    delivered_at = DeliveryEvent.objects.get().delivered_at
    assert abs(delivered_at - timezone.now()) < timedelta(minutes=1)
