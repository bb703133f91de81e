"""Health checks and Prometheus metrics (/healthz, /readyz, /metrics)."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from config import health
from feedback.forwarding.models import Notification
from feedback.intake.pipeline import feedback_receive
from feedback.models import Feedback
from tests.factories import DeliveryEventFactory, FeedbackFactory

pytestmark = pytest.mark.django_db


def samples(response) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_healthz_answers_without_touching_anything(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_the_database_the_broker_and_migrations(client):
    response = client.get("/readyz")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "migrations", "broker"}
    assert all(check["ok"] for check in body["checks"].values())


def test_readyz_is_503_naming_the_failing_check(client, monkeypatch):
    def broker_down():
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    monkeypatch.setitem(health.CHECKS, "broker", broker_down)

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"] == {
        "ok": False,
        "error": "ConnectionRefusedError: [Errno 111] Connection refused",
        "ms": body["checks"]["broker"]["ms"],
    }
    assert body["checks"]["database"]["ok"] is True


def test_readyz_names_migrations_not_applied(client, monkeypatch):
    class Plan:
        def __init__(self, connection):
            self.loader = type(
                "L", (), {"graph": type("G", (), {"leaf_nodes": list})()}
            )

        def migration_plan(self, targets):
            migration = type("M", (), {"app_label": "feedback", "name": "0099_next"})
            return [(migration, False)]

    monkeypatch.setattr(health, "_migrations_applied", False)
    monkeypatch.setattr(health, "MigrationExecutor", Plan)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["migrations"]["error"] == (
        "RuntimeError: 1 migrations not applied (feedback.0099_next)"
    )


def test_metrics_are_refused_to_other_addresses(client):
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9")

    assert response.status_code == 403
    assert "LEADBACK_METRICS_ALLOW_FROM" in response.json()["detail"]


def test_metrics_take_a_bearer_token_from_anywhere(client, settings):
    settings.LEADBACK_METRICS_TOKEN = "scrape-me-please-0123456789"

    wrong = client.get(
        "/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer nope"
    )
    right = client.get(
        "/metrics",
        REMOTE_ADDR="203.0.113.9",
        HTTP_AUTHORIZATION="Bearer scrape-me-please-0123456789",
    )

    assert wrong.status_code == 403
    assert right.status_code == 200


def test_metrics_count_feedback_and_read_the_queue(client, buyer):
    def received(outcome):
        key = (
            "leadback_feedback_received_total",
            (("channel", "api"), ("outcome", outcome)),
        )
        return samples(client.get("/metrics")).get(key, 0.0)

    accepted_before, missing_before = received("accepted"), received("not_found")
    delivery = DeliveryEventFactory(buyer=buyer)
    for data in (
        {"event_id": delivery.event_id, "type": "conversion"},
        {"event_id": "0" * 24, "type": "conversion"},
    ):
        feedback_receive(buyer=buyer, data=data, channel=Feedback.Channel.API)
    feedback = FeedbackFactory(delivery=delivery)
    Notification.objects.create(
        feedback=feedback,
        source=feedback.source,
        kind=feedback.kind,
        lead_delivered_at=delivery.delivered_at,
        status=Notification.Status.PENDING,
        next_attempt_at=delivery.delivered_at,
    )

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    found = samples(response)
    assert received("accepted") == accepted_before + 1
    assert received("not_found") == missing_before + 1
    assert found[("leadback_notifications", (("state", "pending"),))] == 1
    assert found[("leadback_notifications", (("state", "retrying"),))] == 0
    assert found[("leadback_queue_depth", ())] == 1
    assert found[("leadback_imports_in_flight", ())] == 0


def test_a_delivered_notification_is_timed_and_counted(client, buyer, settings):
    from feedback.forwarding.engine import notifications_deliver_due
    from sources.models import FeedbackConfig, FieldMapping
    from tests.sources.servers import RecordingServer, Reply

    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    settings.LEADBACK_QUEUE_ON_COMMIT = False

    def value(name, labels=()):
        return samples(client.get("/metrics")).get((name, labels), 0.0)

    attempts = ("leadback_forwarding_attempt_seconds_count", (("outcome", "success"),))
    succeeded = ("leadback_notifications_finished_total", (("state", "succeeded"),))
    before = [
        value(*attempts),
        value(*succeeded),
        value("leadback_forwarding_latency_seconds_count"),
    ]
    delivery = DeliveryEventFactory(buyer=buyer)
    with RecordingServer(Reply(200, b'{"ok": true}')) as crm:
        config = FeedbackConfig.objects.create(
            source=delivery.source, kind="conversion", method="json", url=crm.url()
        )
        FieldMapping.objects.create(config=config, target="id", value="{{ event.id }}")
        feedback_receive(
            buyer=buyer,
            data={"event_id": delivery.event_id, "type": "conversion"},
            channel=Feedback.Channel.API,
        )
        assert notifications_deliver_due() == 1
        assert len(crm.requests) == 1

    after = [
        value(*attempts),
        value(*succeeded),
        value("leadback_forwarding_latency_seconds_count"),
    ]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_are_not_redirected_to_https(client, settings, path):
    settings.SECURE_SSL_REDIRECT = True

    assert client.get(path).status_code == 200
    assert client.get("/portal/").status_code == 301
