"""A return config that waits for approval, end to end: the buyer's CRM
returns a lead through the API, nothing is forwarded while the return waits,
the approval makes the notification and a real worker sends it to a real HTTP
receiver; a rejected return is never sent (DESIGN §10)."""

import json
import time

import pytest

from feedback.forwarding.models import Notification
from feedback.models import BuyerPolicy, Feedback
from feedback.returns.services import return_decide, return_dispute
from sources.models import FeedbackConfig, FieldMapping
from tests.factories import BuyerPolicyFactory, DeliveryEventFactory, UserFactory
from tests.sources.servers import RecordingServer, Reply

pytestmark = pytest.mark.service


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


def test_a_return_waiting_for_approval_is_forwarded_once_approved_and_never_rejected(
    outbound_to_localhost, celery_worker_process, buyer, buyer_client
):
    BuyerPolicyFactory(buyer=buyer, review=BuyerPolicy.Review.MANUAL)
    approved, rejected = (
        DeliveryEventFactory(buyer=buyer),
        DeliveryEventFactory(buyer=buyer),
    )
    with RecordingServer(Reply(200, b'{"ok": true}')) as crm:
        for source in {approved.source, rejected.source}:
            config = FeedbackConfig.objects.create(
                source=source,
                kind="return",
                method="json",
                url=crm.url("/returns"),
                forward_on=FeedbackConfig.ForwardOn.APPROVED,
            )
            FieldMapping.objects.create(
                config=config, position=0, target="event", value="{{ event.id }}"
            )
            FieldMapping.objects.create(
                config=config,
                position=1,
                target="reason",
                value="{{ feedback.reason }}",
            )

        answers = [
            buyer_client.post(
                "/api/v1/feedback",
                {"event_id": d.event_id, "type": "return", "reason": "Wrong number"},
                format="json",
            )
            for d in (approved, rejected)
        ]
        assert [a.status_code for a in answers] == [201, 201]
        assert [a.json()["review_state"] for a in answers] == ["pending", "pending"]
        assert [a.json()["notifications"] for a in answers] == [[], []]
        assert not Notification.objects.exists()

        reviewer = UserFactory(is_staff=True)
        to_approve = Feedback.objects.get(delivery=approved)
        to_reject = Feedback.objects.get(delivery=rejected)
        return_decide(feedback=to_reject, decision="reject", user=reviewer)
        return_dispute(feedback=to_reject, comment="It rang out", user=reviewer)
        return_decide(feedback=to_reject, decision="reject", user=reviewer)
        return_decide(feedback=to_approve, decision="approve", user=reviewer)

        assert wait_for(lambda: len(crm.requests) >= 1), "nothing was forwarded"
        notification = Notification.objects.get()
        assert notification.feedback_id == to_approve.pk
        assert wait_for(
            lambda: Notification.objects.get().status == Notification.Status.SUCCEEDED
        )
        time.sleep(1.0)  # room for a wrongly queued send of the rejected one
        assert len(crm.requests) == 1
        sent = json.loads(crm.requests[0].body)
        assert sent == {"event": approved.event_id, "reason": "Wrong number"}
        assert not Notification.objects.filter(feedback=to_reject).exists()
