"""Idempotency-Key on every POST (DESIGN §4.2)."""

import concurrent.futures
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from feedback.models import DeliveryEvent, Feedback, IdempotencyKey
from feedback.services import idempotency_keys_purge
from feedback.tasks import purge_idempotency_keys_task
from tests.factories import DeliveryEventFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivery(buyer):
    return DeliveryEventFactory(buyer=buyer)


def post_feedback(client, payload, key):
    return client.post(
        "/api/v1/feedback", payload, format="json", HTTP_IDEMPOTENCY_KEY=key
    )


def test_same_key_and_body_replays_the_stored_response(buyer_client, delivery):
    payload = {"event_id": delivery.event_id, "type": "conversion"}

    first = post_feedback(buyer_client, payload, "retry-1")
    second = post_feedback(buyer_client, payload, "retry-1")

    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert "Idempotency-Replayed" not in first
    assert second["Idempotency-Replayed"] == "true"
    assert Feedback.objects.count() == 1


def test_refusals_are_replayed_too(buyer_client, delivery):
    payload = {"event_id": delivery.event_id, "type": "return", "revenue": "-1"}

    first = post_feedback(buyer_client, payload, "refused-1")
    second = post_feedback(buyer_client, payload, "refused-1")

    assert first.status_code == second.status_code == 422
    assert second["Content-Type"] == "application/problem+json"
    assert first.json() == second.json()
    assert Feedback.objects.count() == 1


def test_same_key_with_another_body_is_422(buyer_client, delivery):
    post_feedback(buyer_client, {"event_id": delivery.event_id, "type": "status"}, "k")

    response = post_feedback(
        buyer_client, {"event_id": delivery.event_id, "type": "conversion"}, "k"
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"
    assert Feedback.objects.count() == 1


def test_keys_are_scoped_to_the_owner(
    buyer_client, other_buyer_client, delivery, other_buyer
):
    foreign = DeliveryEventFactory(buyer=other_buyer)

    mine = post_feedback(
        buyer_client, {"event_id": delivery.event_id, "type": "status"}, "k"
    )
    theirs = post_feedback(
        other_buyer_client, {"event_id": foreign.event_id, "type": "status"}, "k"
    )

    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["feedback_id"] != theirs.json()["feedback_id"]


def test_other_keys_of_the_same_buyer_share_the_scope(buyer, buyer_client, delivery):
    from rest_framework.test import APIClient

    from feedback.models import ApiKey
    from feedback.services import api_key_create

    second_client = APIClient()
    second_client.credentials(
        HTTP_X_API_KEY=api_key_create(scope=ApiKey.Scope.BUYER, name="b", buyer=buyer)[
            1
        ]
    )
    payload = {"event_id": delivery.event_id, "type": "status"}

    post_feedback(buyer_client, payload, "shared")
    replay = post_feedback(second_client, payload, "shared")

    assert replay["Idempotency-Replayed"] == "true"
    assert Feedback.objects.count() == 1


def test_events_api_honours_the_key(integration_client):
    payload = {"buyer": "b", "source": "s", "flow": "f"}  # event id generated

    first = integration_client.post(
        "/api/v1/events", payload, format="json", HTTP_IDEMPOTENCY_KEY="ev-1"
    )
    second = integration_client.post(
        "/api/v1/events", payload, format="json", HTTP_IDEMPOTENCY_KEY="ev-1"
    )

    assert first.json()["event_id"] == second.json()["event_id"]
    assert DeliveryEvent.objects.count() == 1


def test_leadconduit_url_honours_the_key(client, buyer_key, delivery):
    def send():
        return client.post(
            f"/feedback?event_id={delivery.event_id}",
            data="type=conversion",
            content_type="application/x-www-form-urlencoded",
            HTTP_X_API_KEY=buyer_key[1],
            HTTP_IDEMPOTENCY_KEY="lc-1",
        )

    first, second = send(), send()

    assert first.json() == second.json()
    assert second["Idempotency-Replayed"] == "true"
    assert Feedback.objects.count() == 1


def test_replays_are_byte_identical(buyer_client, delivery):
    payload = {"event_id": delivery.event_id, "type": "conversion", "revenue": "12"}

    first = post_feedback(buyer_client, payload, "bytes-1")
    second = post_feedback(buyer_client, payload, "bytes-1")

    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second["Content-Type"] == first["Content-Type"]
    stored = IdempotencyKey.objects.get(key="bytes-1")
    assert bytes(stored.response_content) == first.content


def test_leadconduit_replay_keeps_the_first_answers_format(client, buyer_key, delivery):
    def send(accept):
        return client.post(
            f"/feedback?event_id={delivery.event_id}",
            data="type=conversion",
            content_type="application/x-www-form-urlencoded",
            HTTP_ACCEPT=accept,
            HTTP_X_API_KEY=buyer_key[1],
            HTTP_IDEMPOTENCY_KEY="lc-xml",
        )

    first = send("application/xml")
    again = send("application/xml")
    other_accept = send("application/json")

    assert first.content.startswith(b"<?xml")
    assert again.content == other_accept.content == first.content
    assert other_accept["Content-Type"] == first["Content-Type"]
    assert other_accept["Idempotency-Replayed"] == "true"
    assert Feedback.objects.count() == 1


def test_an_unknown_event_is_not_kept_so_a_retry_after_recording_it_succeeds(
    buyer, buyer_client
):
    event_id = "a" * 24
    payload = {"event_id": event_id, "type": "conversion"}

    missing = post_feedback(buyer_client, payload, "early-1")
    DeliveryEventFactory(buyer=buyer, event_id=event_id)
    retried = post_feedback(buyer_client, payload, "early-1")
    replayed = post_feedback(buyer_client, payload, "early-1")

    assert missing.status_code == 404
    assert "Idempotency-Replayed" not in retried
    assert retried.status_code == 201
    assert replayed["Idempotency-Replayed"] == "true"
    assert replayed.content == retried.content
    assert Feedback.objects.count() == 1


def test_invalid_input_is_not_kept(buyer_client, delivery):
    payload = {"event_id": delivery.event_id, "type": "refund"}

    first = post_feedback(buyer_client, payload, "invalid-1")
    second = post_feedback(buyer_client, payload, "invalid-1")

    assert first.status_code == second.status_code == 422
    assert "Idempotency-Replayed" not in second
    assert not IdempotencyKey.objects.exists()


def test_unknown_fields_and_malformed_bodies_are_not_kept(buyer_client, delivery):
    unknown = post_feedback(
        buyer_client, {"event_id": delivery.event_id, "type": "status", "x": 1}, "k"
    )
    malformed = buyer_client.post(
        "/api/v1/feedback",
        data="{not json",
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k2",
    )

    assert unknown.status_code == 422
    assert malformed.status_code == 400
    assert not IdempotencyKey.objects.exists()


def test_an_unauthenticated_request_is_not_kept(client, delivery):
    response = client.post(
        "/api/v1/feedback",
        {"event_id": delivery.event_id, "type": "status"},
        content_type="application/json",
        HTTP_X_API_KEY="lb_wrong",
        HTTP_IDEMPOTENCY_KEY="unauth-1",
    )

    assert response.status_code == 401
    assert not IdempotencyKey.objects.exists()


def test_items_are_kept_only_if_one_of_them_was_stored(buyer_client, delivery):
    unknown = {"event_id": "b" * 24, "type": "status"}

    nothing = post_feedback(buyer_client, {"items": [unknown]}, "items-1")
    some = post_feedback(
        buyer_client,
        {"items": [unknown, {"event_id": delivery.event_id, "type": "status"}]},
        "items-2",
    )

    assert nothing.status_code == some.status_code == 200
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["items-2"]


def test_leadconduit_unknown_event_is_not_kept(client, buyer, buyer_key):
    event_id = "c" * 24

    def send():
        return client.post(
            f"/feedback?event_id={event_id}",
            data="type=conversion",
            content_type="application/x-www-form-urlencoded",
            HTTP_X_API_KEY=buyer_key[1],
            HTTP_IDEMPOTENCY_KEY="lc-early",
        )

    missing = send()
    DeliveryEventFactory(buyer=buyer, event_id=event_id)
    retried = send()

    assert missing.status_code == 404
    assert retried.status_code == 201
    assert retried.json()["outcome"] == "success"


def test_events_api_keeps_nothing_when_no_item_was_recorded(integration_client):
    bad = {"items": [{"event_id": "not-hex", "buyer": "b", "source": "s"}]}

    first = integration_client.post(
        "/api/v1/events", bad, format="json", HTTP_IDEMPOTENCY_KEY="ev-bad"
    )

    assert first.status_code == 200
    assert first.json()["recorded"] == 0
    assert not IdempotencyKey.objects.exists()


def test_a_key_stored_before_bytes_were_kept_still_replays(buyer, buyer_client):
    payload = {"event_id": "d" * 24, "type": "status"}
    IdempotencyKey.objects.create(
        owner=f"buyer:{buyer.pk}",
        key="legacy-1",
        request_hash=_fingerprint_of(buyer_client, payload),
        status_code=201,
        response_body={"outcome": "success", "feedback_id": "old"},
        content_type="application/json",
    )

    replay = post_feedback(buyer_client, payload, "legacy-1")

    assert replay["Idempotency-Replayed"] == "true"
    assert replay.status_code == 201
    assert replay.json() == {"outcome": "success", "feedback_id": "old"}


def _fingerprint_of(client, payload):
    """The request hash a POST of `payload` gets (the probe is a 404: not kept)."""
    from feedback.api import idempotency

    captured = {}
    real = idempotency.request_fingerprint
    with pytest.MonkeyPatch.context() as patch:

        def spy(request):
            captured["hash"] = real(request)
            return captured["hash"]

        patch.setattr(idempotency, "request_fingerprint", spy)
        post_feedback(client, payload, "probe")
    return captured["hash"]


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
def test_malformed_key_is_400(buyer_client, delivery, key):
    response = post_feedback(
        buyer_client, {"event_id": delivery.event_id, "type": "status"}, key
    )

    assert response.status_code == 400
    assert Feedback.objects.count() == 0


def test_expired_keys_are_purged_after_24_hours(buyer_client, delivery):
    post_feedback(
        buyer_client, {"event_id": delivery.event_id, "type": "status"}, "old"
    )
    post_feedback(
        buyer_client, {"event_id": delivery.event_id, "type": "status"}, "new"
    )
    IdempotencyKey.objects.filter(key="old").update(
        created_at=timezone.now() - timedelta(hours=25)
    )
    IdempotencyKey.objects.filter(key="new").update(
        created_at=timezone.now() - timedelta(hours=23)
    )

    assert purge_idempotency_keys_task() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
    assert idempotency_keys_purge() == 0


def test_an_expired_key_is_not_replayed(buyer_client, delivery):
    payload = {"event_id": delivery.event_id, "type": "status"}
    post_feedback(buyer_client, payload, "stale")
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))

    response = post_feedback(buyer_client, payload, "stale")

    assert "Idempotency-Replayed" not in response
    assert Feedback.objects.count() == 2


@pytest.mark.service
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_identical_requests_make_one_feedback(
    live_server, buyer, buyer_key
):
    delivery = DeliveryEventFactory(buyer=buyer)
    url = f"{live_server.url}/api/v1/feedback"
    payload = {"event_id": delivery.event_id, "type": "return", "reason": "Duplicate"}
    headers = {"X-API-Key": buyer_key[1], "Idempotency-Key": "concurrent-1"}

    def send(_):
        response = requests.post(url, json=payload, headers=headers, timeout=30)
        return response.status_code, response.json()

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(send, range(20)))

    assert Feedback.objects.count() == 1
    assert {status for status, _ in answers} == {201}
    assert all(body == answers[0][1] for _, body in answers)
    assert IdempotencyKey.objects.count() == 1
