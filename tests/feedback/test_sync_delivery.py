"""Sync configs: the source is called while the buyer waits (DESIGN §4.4)."""

import time
from collections.abc import Iterator

import pytest

from feedback.forwarding.models import Notification
from feedback.models import Feedback
from sources.models import FeedbackConfig, FieldMapping
from tests.factories import DeliveryEventFactory, SourceFactory
from tests.sources.servers import RecordingServer, Reply

# The request commits before the source is called, as in production.
pytestmark = pytest.mark.django_db(transaction=True)

Status = Notification.Status


@pytest.fixture(autouse=True)
def engine_settings(settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    settings.LEADBACK_SYNC_DEADLINE_S = 10.0
    return settings


@pytest.fixture
def auth(buyer_key):
    return {"HTTP_X_API_KEY": buyer_key[1]}


def sync_config(source, url: str, **fields) -> FeedbackConfig:
    values = {
        "kind": "return",
        "method": "json",
        "url": url,
        "sync": True,
        "outcome_search_term": "accepted",
        "outcome_search_path": "status",
        "reason_path": "message",
    } | fields
    config = FeedbackConfig.objects.create(source=source, **values)
    FieldMapping.objects.create(config=config, target="event", value="{{ event.id }}")
    return config


def post_return(client, auth, delivery, **headers):
    return client.post(
        f"/feedback?event_id={delivery.event_id}",
        data="type=return&reason=Wrong+number",
        content_type="application/x-www-form-urlencoded",
        **auth,
        **headers,
    )


@pytest.fixture
def source():
    return SourceFactory(name="Bluesky Leads")


@pytest.fixture
def delivery(buyer, source):
    return DeliveryEventFactory(buyer=buyer, lead__source=source)


@pytest.fixture
def accepting() -> Iterator[RecordingServer]:
    with RecordingServer(Reply(200, b'{"status": "accepted"}')) as server:
        yield server


def test_the_reply_waits_for_the_source_and_carries_its_success(
    client, auth, source, delivery, accepting
):
    sync_config(source, accepting.url("/sync"))

    response = post_return(client, auth, delivery)

    assert response.status_code == 201
    assert response.json()["outcome"] == "success"
    # Sent before the reply, not by a worker later.
    assert len(accepting.requests) == 1
    notification = Notification.objects.get()
    assert notification.status == Status.SUCCEEDED
    assert notification.attempts.count() == 1


def test_a_source_refusal_refuses_the_feedback_with_its_reason(
    client, auth, source, delivery
):
    reply = Reply(200, b'{"status": "rejected", "message": "Duplicate lead"}')
    with RecordingServer(reply) as server:
        sync_config(source, server.url())
        response = post_return(client, auth, delivery)

    body = response.json()
    assert body["outcome"] == "failure"
    assert body["reason"] == "Bluesky Leads refused it: Duplicate lead"
    feedback = Feedback.objects.get()
    assert feedback.outcome == Feedback.Outcome.FAILURE
    assert feedback.outcome_reason == "Bluesky Leads refused it: Duplicate lead"
    assert Notification.objects.get().status == Status.FAILED


def test_a_return_the_source_refuses_leaves_the_review_and_its_credit_is_void(
    client, auth, source, delivery
):
    from feedback.models import BuyerMonth
    from feedback.returns.models import Credit, ReturnTransition

    reply = Reply(200, b'{"status": "rejected", "message": "Duplicate lead"}')
    with RecordingServer(reply) as server:
        sync_config(source, server.url())
        post_return(client, auth, delivery)

    feedback = Feedback.objects.get()
    assert feedback.review_state == ""  # refused feedback has no review state
    credit = Credit.objects.get()  # granted at intake, voided by the refusal
    assert credit.voided_at is not None
    assert credit.void_reason == "Bluesky Leads refused it: Duplicate lead"
    steps = list(
        ReturnTransition.objects.values_list("from_state", "to_state", "actor")
    )
    assert steps == [("", "approved", "buyer"), ("approved", "", "system")]
    assert BuyerMonth.objects.get().returns == 0  # no longer counted


def test_a_slow_source_leaves_the_feedback_accepted_and_queued(
    client, auth, source, delivery, engine_settings
):
    engine_settings.LEADBACK_SYNC_DEADLINE_S = 1.0
    with RecordingServer(Reply(200, b'{"status": "accepted"}', delay_s=3)) as server:
        sync_config(source, server.url(), timeout_s=10)
        started = time.monotonic()
        response = post_return(client, auth, delivery)
        waited = time.monotonic() - started

    assert response.json()["outcome"] == "success"
    assert waited < 2.5
    notification = Notification.objects.get()
    assert notification.status == Status.RETRYING
    assert notification.next_attempt_at is not None
    assert Feedback.objects.get().outcome == Feedback.Outcome.SUCCESS


def test_async_configs_are_not_called_during_the_request(
    client, auth, source, delivery, accepting
):
    sync_config(source, accepting.url(), sync=False)

    response = post_return(client, auth, delivery)

    assert response.json()["outcome"] == "success"
    assert accepting.requests == []
    assert Notification.objects.get().status in (Status.PENDING, Status.SENDING)


def test_with_an_idempotency_key_sync_configs_are_queued_instead(
    client, auth, source, delivery, accepting
):
    # The key's stored answer commits with the feedback, so nothing may be sent
    # inside that transaction: the notification goes through the queue.
    sync_config(source, accepting.url())

    response = post_return(client, auth, delivery, HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 201
    assert accepting.requests == []
    assert Notification.objects.get().status == Status.PENDING
