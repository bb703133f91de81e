"""Webhooks to the seller's systems (DESIGN §11): emitting events in the
caller's transaction, Standard Webhooks signatures, delivery with attempts,
retries, dead messages and resend (the guarantees of forwarding), endpoints
as config-as-code, and the admin."""

import base64
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from feedback.configuration import (
    REDACTED,
    ConfigurationError,
    config_export,
    config_import,
    config_validate,
)
from feedback.models import BuyerPolicy, Feedback
from feedback.returns.services import return_decide
from feedback.sourcestatus.services import source_pause, source_resume
from feedback.webhooks import delivery
from feedback.webhooks.delivery import (
    webhook_message_deliver,
    webhook_messages_claim_due,
    webhook_messages_deliver_due,
    webhook_messages_resend,
)
from feedback.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from feedback.webhooks.services import UnknownEvent, webhook_emit, webhook_endpoint_save
from sources.outbound.signing import generate_secret
from tests.factories import (
    BuyerPolicyFactory,
    SourceFactory,
    UserFactory,
    return_requested,
)
from tests.sources.servers import RecordingServer, Reply

pytestmark = pytest.mark.django_db

Status = WebhookMessage.Status
SCHEDULE = [0, 5, 300]
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.LEADBACK_QUEUE_ON_COMMIT = False
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    settings.LEADBACK_RETRY_SCHEDULE_S = SCHEDULE
    settings.LEADBACK_RETRY_JITTER = 0.0
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings


@pytest.fixture
def receiver():
    with RecordingServer(Reply(204)) as server:
        yield server


def endpoint(url, *, slug="erp", events=("source.paused", "source.resumed"), **extra):
    return webhook_endpoint_save(
        slug=slug, url=url, secret=SECRET, events=list(events), **extra
    )


# Emitting -------------------------------------------------------------------


def test_emit_writes_one_message_per_subscribed_enabled_endpoint():
    endpoint("https://a.example/hooks", slug="a")
    endpoint("https://b.example/hooks", slug="b", events=["return.decided"])
    endpoint("https://c.example/hooks", slug="c", enabled=False)

    assert webhook_emit(event="source.paused", payload={"n": 1}) == 1
    message = WebhookMessage.objects.get()
    assert message.endpoint.slug == "a"
    assert message.status == Status.PENDING
    assert message.public_id.startswith("msg_")
    body = message.payload
    assert set(body) == {"type", "timestamp", "data"}
    assert body["type"] == "source.paused"
    assert body["data"] == {"n": 1}
    assert body["timestamp"].endswith("Z")

    assert webhook_emit(event="alert.firing", payload={}) == 0


def test_an_unknown_event_is_a_programming_error():
    with pytest.raises(UnknownEvent):
        webhook_emit(event="source.deleted", payload={})


def test_a_rolled_back_change_emits_nothing():
    endpoint("https://a.example/hooks")

    def failing_change():
        with transaction.atomic():
            webhook_emit(event="source.paused", payload={})
            raise RuntimeError("the caller's change failed")

    with pytest.raises(RuntimeError):
        failing_change()
    assert not WebhookMessage.objects.exists()


def test_with_the_fast_path_messages_are_queued_once_the_change_commits(
    webhook_settings, monkeypatch, django_capture_on_commit_callbacks
):
    from feedback.webhooks import tasks

    webhook_settings.LEADBACK_QUEUE_ON_COMMIT = True
    queued = []
    monkeypatch.setattr(tasks.deliver_webhook_messages_task, "delay", queued.append)
    endpoint("https://a.example/hooks")
    with django_capture_on_commit_callbacks(execute=True):
        webhook_emit(event="source.paused", payload={})
        assert queued == []  # not before the commit
    message = WebhookMessage.objects.get()
    assert queued == [[[message.pk, str(message.lease_token)]]]
    # Born leased: a sweep in the meantime leaves it to the queued message.
    assert webhook_messages_claim_due() == []


def test_a_broker_that_refuses_releases_the_messages_for_the_sweep(
    webhook_settings, monkeypatch, django_capture_on_commit_callbacks
):
    from feedback.webhooks import tasks

    def refuse(*args):
        raise ConnectionError("broker down")

    webhook_settings.LEADBACK_QUEUE_ON_COMMIT = True
    monkeypatch.setattr(tasks.deliver_webhook_messages_task, "delay", refuse)
    endpoint("https://a.example/hooks")
    with django_capture_on_commit_callbacks(execute=True):
        webhook_emit(event="source.paused", payload={})
    message = WebhookMessage.objects.get()
    assert message.lease_expires_at is None
    assert [pk for pk, _ in webhook_messages_claim_due()] == [message.pk]


# Events from the services ---------------------------------------------------


def test_pause_and_resume_emit_their_events_with_the_status(receiver):
    endpoint(receiver.url("/hooks"))
    source = SourceFactory(slug="bluesky-leads", name="Bluesky Leads")
    source_pause(source=source, reason="Returns at 30%", actor=None, via="monitor:m1")
    source_pause(source=source, reason="again", actor=None, via="api")  # no change
    source_resume(source=source, actor=None, via="admin")

    bodies = [m.payload for m in WebhookMessage.objects.order_by("pk")]
    assert [b["type"] for b in bodies] == ["source.paused", "source.resumed"]
    paused = bodies[0]["data"]
    assert paused["source"] == {"slug": "bluesky-leads", "name": "Bluesky Leads"}
    assert paused["status"] == "paused"
    assert paused["paused_reason"] == "Returns at 30%"
    assert paused["paused_at"]
    assert paused["via"] == "monitor:m1"
    assert bodies[1]["data"]["status"] == "active"
    assert bodies[1]["data"]["paused_reason"] is None


@pytest.mark.parametrize(
    ("decision", "state", "credit"),
    [("approve", "approved", "25.00"), ("reject", "rejected", None)],
)
def test_a_return_decision_emits_return_decided(buyer, decision, state, credit):
    endpoint("https://a.example/hooks", events=["return.decided"])
    BuyerPolicyFactory(buyer=buyer, review=BuyerPolicy.Review.MANUAL)
    pending = return_requested(buyer=buyer, price=Decimal("25.00"))
    reviewer = UserFactory(is_staff=True)
    return_decide(feedback=pending, decision=decision, user=reviewer, note="checked")

    message = WebhookMessage.objects.get()
    data = message.payload["data"]
    assert message.event == "return.decided"
    assert data["feedback_id"] == str(pending.public_id)
    assert data["event_id"] == pending.delivery.event_id
    assert data["buyer"] == buyer.slug
    assert data["review_state"] == state
    assert data["decision_reason"] == "checked"
    assert data["decided_by"] == "staff"
    assert data["credit_amount"] == credit
    assert data["after_dispute"] is False
    # No contact details of the lead.
    assert pending.lead.email_normalized
    assert pending.lead.email_normalized not in message.body.lower()


def test_a_refused_decision_emits_nothing(buyer):
    endpoint("https://a.example/hooks", events=["return.decided"])
    BuyerPolicyFactory(buyer=buyer, review=BuyerPolicy.Review.MANUAL)
    pending = return_requested(buyer=buyer)
    return_decide(feedback=pending, decision="approve")
    with pytest.raises(Exception, match="approved"):
        return_decide(feedback=Feedback.objects.get(pk=pending.pk), decision="reject")
    assert WebhookMessage.objects.count() == 1


# Delivering -----------------------------------------------------------------


def test_a_delivered_message_is_signed_the_standard_webhooks_way(receiver):
    endpoint(receiver.url("/hooks"))
    webhook_emit(event="source.paused", payload={"source": {"slug": "s"}})
    assert webhook_messages_deliver_due() == 1

    message = WebhookMessage.objects.get()
    assert message.status == Status.SUCCEEDED
    assert message.attempt_count == 1
    request = receiver.last
    assert request.method == "POST"
    assert request.path == "/hooks"
    assert request.header("Content-Type") == "application/json"
    assert request.header("webhook-id") == message.public_id
    # The receiver's side: the reference library verifies it with the secret.
    verified = Webhook(SECRET).verify(
        request.body,
        {
            "webhook-id": request.header("webhook-id"),
            "webhook-timestamp": request.header("webhook-timestamp"),
            "webhook-signature": request.header("webhook-signature"),
        },
    )
    assert verified["type"] == "source.paused"
    assert request.body.decode() == message.body
    with pytest.raises(Exception, match="signature"):
        Webhook(generate_secret()).verify(request.body, request.header_dict)

    attempt = WebhookAttempt.objects.get()
    assert (attempt.number, attempt.outcome, attempt.response_status) == (
        1,
        "success",
        204,
    )
    assert attempt.request_headers["webhook-id"] == message.public_id


def test_errors_retry_on_the_schedule_until_the_message_is_dead():
    with RecordingServer(Reply(503, b"down")) as server:
        endpoint(server.url("/hooks"))
        webhook_emit(event="source.paused", payload={})
        message = WebhookMessage.objects.get()
        for number in range(1, len(SCHEDULE) + 1):
            claims = webhook_messages_claim_due()
            assert [pk for pk, _ in claims] == [message.pk], number
            webhook_message_deliver(message_id=message.pk, token=claims[0][1])
            message.refresh_from_db()
            assert message.attempt_count == number
            if number < len(SCHEDULE):
                assert message.status == Status.RETRYING
                # Due again after the schedule's delay, not before.
                WebhookMessage.objects.filter(pk=message.pk).update(
                    next_attempt_at=timezone.now()
                )
        assert message.status == Status.DEAD
        assert message.finished_at is not None
        assert message.reason == "Answered 503."
        assert len(server.requests) == len(SCHEDULE)
        # Every try sent the same message under the same id, freshly signed.
        assert {r.header("webhook-id") for r in server.requests} == {message.public_id}
        assert {r.body for r in server.requests} == {message.body.encode()}
    outcomes = list(message.attempts.values_list("number", "outcome", "error_class"))
    assert outcomes == [(n, "error", "ServerError") for n in (1, 2, 3)]


def test_a_retry_waits_as_long_as_the_receiver_asks():
    with RecordingServer(Reply(429, headers={"Retry-After": "600"})) as server:
        endpoint(server.url("/hooks"))
        webhook_emit(event="source.paused", payload={})
        webhook_messages_deliver_due()
    message = WebhookMessage.objects.get()
    assert message.status == Status.RETRYING
    assert message.next_attempt_at > timezone.now() + timedelta(seconds=590)
    assert webhook_messages_claim_due() == []


def test_no_answer_is_an_error_with_the_reason():
    with RecordingServer() as server:
        url = server.url("/hooks")
    endpoint(url)  # the server is gone: connection refused
    webhook_emit(event="source.paused", payload={})
    webhook_messages_deliver_due()
    message = WebhookMessage.objects.get()
    assert message.status == Status.RETRYING
    assert "refused the connection" in message.reason


def test_410_gone_fails_the_message_and_disables_the_endpoint():
    with RecordingServer(Reply(410)) as server:
        endpoint(server.url("/hooks"))
        webhook_emit(event="source.paused", payload={})
        webhook_messages_deliver_due()
    message = WebhookMessage.objects.get()
    assert message.status == Status.FAILED
    hook = WebhookEndpoint.objects.get()
    assert hook.enabled is False
    assert "410" in hook.disabled_reason
    assert webhook_emit(event="source.paused", payload={}) == 0


def test_a_message_for_a_disabled_endpoint_is_skipped_unsent(receiver):
    hook = endpoint(receiver.url("/hooks"))
    webhook_emit(event="source.paused", payload={})
    WebhookEndpoint.objects.filter(pk=hook.pk).update(enabled=False)
    webhook_messages_deliver_due()
    message = WebhookMessage.objects.get()
    assert message.status == Status.SKIPPED
    assert receiver.requests == []


def test_a_stale_claim_is_dropped(receiver):
    endpoint(receiver.url("/hooks"))
    webhook_emit(event="source.paused", payload={})
    ((pk, token),) = webhook_messages_claim_due()
    assert webhook_message_deliver(message_id=pk, token=token).status == "succeeded"
    # The same message again (a redelivered task): the row is final.
    assert webhook_message_deliver(message_id=pk, token=token) is None
    assert len(receiver.requests) == 1


def test_an_abandoned_send_is_due_again_when_its_lease_runs_out(receiver):
    endpoint(receiver.url("/hooks"))
    webhook_emit(event="source.paused", payload={})
    ((pk, _token),) = webhook_messages_claim_due()
    WebhookMessage.objects.filter(pk=pk).update(
        status=Status.SENDING, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert webhook_messages_deliver_due() == 1
    assert WebhookMessage.objects.get().status == Status.SUCCEEDED


def test_a_bad_secret_is_an_error_shown_on_the_attempt(receiver):
    hook = endpoint(receiver.url("/hooks"))
    WebhookEndpoint.objects.filter(pk=hook.pk).update(secret="not-a-secret")
    webhook_emit(event="source.paused", payload={})
    webhook_messages_deliver_due()
    attempt = WebhookAttempt.objects.get()
    assert attempt.error_class == "SecretError"
    assert "whsec_" in attempt.reason
    assert receiver.requests == []


def test_resend_sends_a_final_message_again_from_a_fresh_schedule(receiver):
    endpoint(receiver.url("/hooks"))
    webhook_emit(event="source.paused", payload={})
    webhook_messages_deliver_due()
    message = WebhookMessage.objects.get()
    assert webhook_messages_resend(ids=[message.pk]) == 1
    message.refresh_from_db()
    assert (message.status, message.schedule_tries) == (Status.PENDING, 0)
    webhook_messages_deliver_due()
    message.refresh_from_db()
    assert message.status == Status.SUCCEEDED
    assert message.attempt_count == 2
    assert [r.header("webhook-id") for r in receiver.requests] == [
        message.public_id
    ] * 2


def test_resend_leaves_a_message_being_sent_alone(receiver):
    endpoint(receiver.url("/hooks"))
    webhook_emit(event="source.paused", payload={})
    ((pk, _token),) = webhook_messages_claim_due()
    WebhookMessage.objects.filter(pk=pk).update(status=Status.SENDING)
    assert webhook_messages_resend(ids=[pk]) == 0


def test_after_an_error_the_rest_of_a_batch_is_handed_back_untried():
    with RecordingServer(Reply(500)) as server:
        endpoint(server.url("/hooks"))
        for _ in range(3):
            webhook_emit(event="source.paused", payload={})
        claims = webhook_messages_claim_due()
        tried = delivery.webhook_messages_deliver(claims=claims)
    assert len(tried) == 1
    assert len(server.requests) == 1
    untried = WebhookMessage.objects.exclude(pk=tried[0].pk)
    assert {m.lease_token for m in untried} == {None}
    assert {m.status for m in untried} == {Status.PENDING}
    # They wait as long as the one that failed, then go out.
    assert {m.next_attempt_at for m in untried} == {tried[0].next_attempt_at}
    assert webhook_messages_claim_due() == []


# Configuration as code ------------------------------------------------------


def test_endpoints_are_imported_and_exported_with_the_secret_redacted():
    document = {
        "webhooks": [
            {
                "slug": "erp",
                "url": "https://seller.example/hooks",
                "secret": SECRET,
                "events": ["source.paused", "return.decided"],
            }
        ]
    }
    report = config_import(document=document, dry_run=False)
    assert [str(c) for c in report.changes] == ["webhook erp: created"]
    hook = WebhookEndpoint.objects.get()
    assert (hook.enabled, hook.timeout_s, hook.secret) == (True, 10.0, SECRET)

    exported = config_export()["webhooks"]
    assert exported == [
        {
            "slug": "erp",
            "url": "https://seller.example/hooks",
            "secret": REDACTED,
            "events": ["source.paused", "return.decided"],
            "enabled": True,
            "timeout_s": 10.0,
            "description": "",
        }
    ]
    # Importing the export keeps the stored secret.
    report = config_import(document={"webhooks": exported}, dry_run=False)
    assert [str(c) for c in report.changes] == ["webhook erp: unchanged"]
    assert WebhookEndpoint.objects.get().secret == SECRET

    exported[0]["enabled"] = False
    report = config_import(document={"webhooks": exported}, dry_run=False)
    assert [str(c) for c in report.changes] == ["webhook erp: updated (enabled)"]
    assert WebhookEndpoint.objects.get().enabled is False


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"events": ["source.deleted"]}, "$.webhooks[0].events[0]"),
        ({"events": []}, "$.webhooks[0].events"),
        ({"secret": "plain-text"}, "$.webhooks[0].secret: A signing secret starts"),
        ({"url": "ftp://seller.example/"}, "$.webhooks[0].url: Must be an http"),
        ({"timeout_s": 0}, "$.webhooks[0].timeout_s"),
        ({"colour": "red"}, "$.webhooks[0].colour: unknown key"),
    ],
)
def test_invalid_endpoints_are_refused_with_the_path(item, problem):
    good = {
        "slug": "erp",
        "url": "https://seller.example/hooks",
        "secret": SECRET,
        "events": ["source.paused"],
    }
    document = {"webhooks": [{**good, **item}]}
    problems = [str(p) for p in config_validate(document=document)]
    assert any(p.startswith(problem) for p in problems), problems
    with pytest.raises(ConfigurationError):
        config_import(document=document, dry_run=False)
    assert not WebhookEndpoint.objects.exists()


def test_a_new_endpoint_cannot_be_imported_with_a_redacted_secret():
    document = {
        "webhooks": [
            {
                "slug": "erp",
                "url": "https://seller.example/hooks",
                "secret": REDACTED,
                "events": ["source.paused"],
            }
        ]
    }
    with pytest.raises(ConfigurationError):
        config_import(document=document, dry_run=False)


# Admin ----------------------------------------------------------------------


def test_staff_add_an_endpoint_and_a_secret_is_generated(client, staff_user):
    client.force_login(staff_user)
    response = client.post(
        reverse("admin:feedback_webhookendpoint_add"),
        {
            "slug": "erp",
            "url": "https://seller.example/hooks",
            "events": ["source.paused", "alert.firing"],
            "secret": "",
            "enabled": "on",
            "timeout_s": "10",
            "description": "",
        },
        follow=True,
    )
    assert response.status_code == 200
    hook = WebhookEndpoint.objects.get()
    assert hook.events == ["source.paused", "alert.firing"]
    assert hook.secret.startswith("whsec_")
    assert hook.secret in response.content.decode()  # shown once

    change = client.get(
        reverse("admin:feedback_webhookendpoint_change", args=[hook.pk])
    )
    assert hook.secret not in change.content.decode()  # never again


def test_the_endpoint_form_names_a_bad_secret(client, staff_user):
    client.force_login(staff_user)
    response = client.post(
        reverse("admin:feedback_webhookendpoint_add"),
        {
            "slug": "erp",
            "url": "https://seller.example/hooks",
            "events": ["source.paused"],
            "secret": "plain",
            "enabled": "on",
            "timeout_s": "10",
        },
    )
    assert response.status_code == 200
    assert "A signing secret starts with whsec_." in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_the_message_page_shows_attempts_and_resends(client, staff_user):
    with RecordingServer(Reply(500, b"oops")) as server:
        endpoint(server.url("/hooks"))
        webhook_emit(event="source.paused", payload={})
        webhook_messages_deliver_due()
        message = WebhookMessage.objects.get()
        client.force_login(staff_user)
        change = reverse("admin:feedback_webhookmessage_change", args=[message.pk])
        page = client.get(change).content.decode()
        assert message.public_id in page
        assert "Answered 500." in page
        assert "webhook-signature" in page
        resend_url = reverse("admin:feedback_webhookmessage_resend", args=[message.pk])
        assert resend_url in page

        listing = client.get(
            reverse("admin:feedback_webhookmessage_changelist"),
            {"status__exact": "retrying"},
        ).content.decode()
        assert message.public_id in listing

        client.post(resend_url, follow=True)
        message.refresh_from_db()
        assert (message.status, message.schedule_tries) == (Status.PENDING, 0)
        client.post(
            reverse("admin:feedback_webhookmessage_changelist"),
            {"action": "resend", "_selected_action": [str(message.pk)]},
        )
        message.refresh_from_db()
        assert message.status == Status.PENDING


def test_deliver_notifications_once_sends_due_webhook_messages_too(receiver):
    from io import StringIO

    from django.core.management import call_command

    endpoint(receiver.url("/hooks"))
    webhook_emit(event="source.paused", payload={})
    out = StringIO()
    call_command("deliver_notifications", "--once", stdout=out)
    assert out.getvalue().splitlines() == [
        "Delivered 0 notification(s).",
        "Delivered 1 webhook message(s).",
    ]
    assert WebhookMessage.objects.get().status == Status.SUCCEEDED


def test_support_resends_messages_but_cannot_change_endpoints_or_pause(client):
    from django.contrib.auth.models import Group

    from feedback.roles import roles_setup

    roles_setup()
    support = UserFactory(username="support", is_staff=True)
    support.groups.add(Group.objects.get(name="Support"))
    hook = endpoint("https://a.example/hooks")
    webhook_emit(event="source.paused", payload={})
    message = WebhookMessage.objects.get()
    WebhookMessage.objects.filter(pk=message.pk).update(status=Status.DEAD)
    source = SourceFactory()
    client.force_login(support)

    resend = reverse("admin:feedback_webhookmessage_resend", args=[message.pk])
    client.post(resend)
    message.refresh_from_db()
    assert message.status == Status.PENDING

    change = reverse("admin:feedback_webhookendpoint_change", args=[hook.pk])
    page = client.get(change)
    assert page.status_code == 200
    assert 'name="url"' not in page.content.decode()  # read-only for them
    pause = reverse("admin:sources_source_pause", args=[source.pk])
    assert client.post(pause, {"reason": "x"}).status_code == 403


def test_an_answer_with_a_nul_byte_is_recorded_and_the_schedule_moves_on():
    with RecordingServer(Reply(500, b"broken \x00 answer")) as server:
        endpoint(server.url("/hooks"))
        webhook_emit(event="source.paused", payload={})
        webhook_messages_deliver_due()
    message = WebhookMessage.objects.get()
    assert message.status == Status.RETRYING
    assert message.attempt_count == 1
    assert WebhookAttempt.objects.get().response_body == "broken \ufffd answer"


def test_an_unexpected_error_while_sending_is_an_attempt_on_the_schedule(monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(delivery, "send", broken)
    endpoint("https://a.example/hooks")
    webhook_emit(event="source.paused", payload={})
    webhook_messages_deliver_due()
    message = WebhookMessage.objects.get()
    assert message.status == Status.RETRYING
    attempt = WebhookAttempt.objects.get()
    assert attempt.error_class == "KeyError"
    assert "see the worker's log" in attempt.reason
