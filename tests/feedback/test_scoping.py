"""A buyer key reaching another buyer's delivery gets exactly what an unknown one
gets. Every intake and read endpoint is walked with two buyers' keys."""

import pytest

from feedback.models import Feedback
from tests.factories import DeliveryEventFactory, FeedbackFactory

pytestmark = pytest.mark.django_db

UNKNOWN_EVENT = "0" * 24
UNKNOWN_FEEDBACK = "00000000-0000-4000-8000-000000000000"


def lc_get(client, event_id, reference, feedback_id):
    return client.get(f"/feedback?event_id={event_id}&type=status")


def lc_post(client, event_id, reference, feedback_id):
    return client.post(
        f"/feedback?event_id={event_id}", {"type": "status"}, format="json"
    )


def api_post_by_event(client, event_id, reference, feedback_id):
    return client.post(
        "/api/v1/feedback", {"event_id": event_id, "type": "status"}, format="json"
    )


def api_post_by_reference(client, event_id, reference, feedback_id):
    return client.post(
        "/api/v1/feedback", {"reference": reference, "type": "status"}, format="json"
    )


def api_post_items(client, event_id, reference, feedback_id):
    response = client.post(
        "/api/v1/feedback",
        {"items": [{"event_id": event_id, "type": "status"}]},
        format="json",
    )
    return response


def api_list_by_event(client, event_id, reference, feedback_id):
    return client.get("/api/v1/feedback", {"event_id": event_id})


def api_list_by_reference(client, event_id, reference, feedback_id):
    return client.get("/api/v1/feedback", {"reference": reference})


def api_feedback_detail(client, event_id, reference, feedback_id):
    return client.get(f"/api/v1/feedback/{feedback_id}")


def api_event_detail(client, event_id, reference, feedback_id):
    return client.get(f"/api/v1/events/{event_id}")


ENDPOINTS = [
    lc_get,
    lc_post,
    api_post_by_event,
    api_post_by_reference,
    api_post_items,
    api_list_by_event,
    api_list_by_reference,
    api_feedback_detail,
    api_event_detail,
]


def comparable(response):
    body = response.json()
    if "results" in body and isinstance(body["results"], list):
        # listings: what matters is that nothing of the other buyer shows up
        body = {"results": body["results"]}
    return response.status_code, body


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda f: f.__name__)
def test_other_buyers_objects_look_unknown(
    endpoint, buyer, buyer_client, other_buyer_client
):
    delivery = DeliveryEventFactory(buyer=buyer, reference="CRM-SHARED-NAME")
    feedback = FeedbackFactory(delivery=delivery)
    before = Feedback.objects.count()

    own = endpoint(
        buyer_client, delivery.event_id, delivery.reference, feedback.public_id
    )
    foreign = endpoint(
        other_buyer_client, delivery.event_id, delivery.reference, feedback.public_id
    )
    unknown = endpoint(
        other_buyer_client, UNKNOWN_EVENT, "CRM-NOBODY", UNKNOWN_FEEDBACK
    )

    assert own.status_code in (200, 201), own.content
    assert comparable(foreign) == comparable(unknown)
    assert foreign.status_code in (200, 404)
    if foreign.status_code == 200:
        assert delivery.event_id not in foreign.content.decode()
        assert str(feedback.public_id) not in foreign.content.decode()
    # the foreign attempt wrote nothing
    own_writes = 1 if endpoint.__name__.startswith(("lc_", "api_post")) else 0
    assert Feedback.objects.count() == before + own_writes
