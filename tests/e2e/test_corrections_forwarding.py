"""Corrections reaching sources, end to end (DESIGN §12): a buyer's CRM sends
feedback through the API, a real worker forwards it to real receivers, then
the buyer amends and retracts it over the API and the worker tells each source
whose config has the request for it: JSON to an HTTP receiver, SOAP to a SOAP
service, each notice carrying the original notification's id. A config with
no such request gets nothing."""

import json
import time

import pytest

from feedback.forwarding.models import Notification
from feedback.models import BuyerPolicy, Feedback
from sources.models import FeedbackConfig, FieldMapping
from tests.factories import BuyerPolicyFactory, DeliveryEventFactory
from tests.sources.servers import RecordingServer, Reply, SoapServer

pytestmark = pytest.mark.service

Status = Notification.Status


@pytest.fixture
def outbound_to_localhost(monkeypatch, settings):
    # Read by the worker process (its environment) and by this one.
    monkeypatch.setenv("LEADBACK_OUTBOUND_ALLOWLIST", "127.0.0.1/32")
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]


def wait_for(condition, seconds=30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def config(source, kind, url, mappings, **fields):
    made = FeedbackConfig.objects.create(
        source=source, kind=kind, method="json", url=url, **fields
    )
    for position, (target, value) in enumerate(mappings):
        FieldMapping.objects.create(
            config=made, position=position, target=target, value=value
        )
    return made


def finished(feedback):
    return lambda: (
        all(
            n.status == Status.SUCCEEDED
            for n in Notification.objects.filter(feedback=feedback)
        )
        and Notification.objects.filter(feedback=feedback).exists()
    )


def test_a_conversion_amended_then_retracted_reaches_json_and_soap_receivers(
    outbound_to_localhost, celery_worker_process, buyer, buyer_client
):
    delivery = DeliveryEventFactory(buyer=buyer)
    source = delivery.source
    with RecordingServer(Reply(200, b'{"ok": true}')) as crm, SoapServer() as soap:
        told = config(
            source,
            "conversion",
            crm.url("/sales"),
            [("event", "{{ event.id }}"), ("amount", "{{ feedback.revenue }}")],
            on_retract={
                "method": "json",
                "url": crm.url("/retractions"),
                "mappings": [
                    {"target": "original", "value": "{{ notification.original_id }}"},
                    {"target": "notice", "value": "{{ notification.id }}"},
                    {"target": "why", "value": "{{ correction.reason }}"},
                    {"target": "event", "value": "{{ event.id }}"},
                ],
            },
            on_amend={
                "method": "soap",
                "url": soap.wsdl_url,
                "soap_operation": "RecordConversion",
                "mappings": [
                    {"target": "EventId", "value": "{{ notification.original_id }}"},
                    {"target": "Amount", "value": "{{ correction.revenue }}"},
                ],
            },
        )
        silent = config(
            source, "conversion", crm.url("/ledger"), [("event", "{{ event.id }}")]
        )

        sent = buyer_client.post(
            "/api/v1/feedback",
            {"event_id": delivery.event_id, "type": "conversion", "revenue": "250"},
            format="json",
        )
        assert sent.status_code == 201, sent.content
        feedback = Feedback.objects.get(delivery=delivery)
        assert wait_for(finished(feedback)), "the feedback was not forwarded"
        original = Notification.objects.get(feedback=feedback, config=told)

        amended = buyer_client.post(
            f"/api/v1/feedback/{feedback.public_id}/amend",
            {"revenue": "225.50", "reason": "Discount applied"},
            format="json",
        )
        assert amended.status_code == 200, amended.content
        assert wait_for(lambda: len(soap.calls) == 1), "the amendment was not sent"
        call = soap.calls[0]
        assert call.operation == "RecordConversion"
        assert call.arguments["EventId"] == original.public_id
        assert str(call.arguments["Amount"]) == "225.50"

        retracted = buyer_client.post(
            f"/api/v1/feedback/{feedback.public_id}/retract",
            {"reason": "Customer cancelled"},
            format="json",
        )
        assert retracted.status_code == 200, retracted.content
        assert wait_for(lambda: any(r.path == "/retractions" for r in crm.requests)), (
            "the retraction was not sent"
        )
        assert wait_for(finished(feedback))

        notice = Notification.objects.get(
            feedback=feedback, correction__action="retract"
        )
        (request,) = [r for r in crm.requests if r.path == "/retractions"]
        assert json.loads(request.body) == {
            "original": original.public_id,
            "notice": notice.public_id,
            "why": "Customer cancelled",
            "event": delivery.event_id,
        }
        assert dict(request.headers)["webhook-id"] == notice.public_id
        assert notice.original == original
        assert notice.attempts.get().response_status == 200
        # The config without correction requests was told nothing.
        assert [r.path for r in crm.requests].count("/ledger") == 1
        assert not Notification.objects.filter(
            config=silent, correction__isnull=False
        ).exists()
        assert Notification.objects.filter(correction__isnull=False).count() == 2


def test_a_retracted_return_reaches_a_soap_receiver(
    outbound_to_localhost, celery_worker_process, buyer, buyer_client
):
    BuyerPolicyFactory(buyer=buyer, review=BuyerPolicy.Review.AUTO)
    delivery = DeliveryEventFactory(buyer=buyer)
    with RecordingServer(Reply(200, b"ok")) as crm, SoapServer() as soap:
        config(
            delivery.source,
            "return",
            crm.url("/returns"),
            [("event", "{{ event.id }}")],
            on_retract={
                "method": "soap",
                "url": soap.wsdl_url,
                "soap_operation": "RecordReturn",
                "mappings": [
                    {"target": "EventId", "value": "{{ notification.original_id }}"},
                    {"target": "Reason", "value": "{{ correction.reason }}"},
                ],
            },
        )
        sent = buyer_client.post(
            "/api/v1/feedback",
            {"event_id": delivery.event_id, "type": "return", "reason": "Wrong number"},
            format="json",
        )
        assert sent.status_code == 201, sent.content
        feedback = Feedback.objects.get(delivery=delivery)
        assert wait_for(finished(feedback))
        original = Notification.objects.get(feedback=feedback)

        retracted = buyer_client.post(
            f"/api/v1/feedback/{feedback.public_id}/retract",
            {"reason": "Reached them after all"},
            format="json",
        )

        assert retracted.status_code == 200, retracted.content
        assert wait_for(lambda: len(soap.calls) == 1), "the retraction was not sent"
        assert soap.calls[0].operation == "RecordReturn"
        assert soap.calls[0].arguments["EventId"] == original.public_id
        assert soap.calls[0].arguments["Reason"] == "Reached them after all"
        assert wait_for(finished(feedback))
        notice = Notification.objects.get(correction__isnull=False)
        assert notice.status == Status.SUCCEEDED
        assert notice.attempts.count() == 1
