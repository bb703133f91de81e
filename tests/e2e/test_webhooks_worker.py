"""Webhooks end to end (DESIGN §11): PostgreSQL, the broker, a real Celery
worker and beat, and local HTTP receivers that verify every request's
Standard Webhooks signature as a seller's system would.

A source paused through the API sends `source.paused`; the receiver answers
503 twice, the message is retried on the schedule by the sweep and delivered
on the third try, each try an attempt row with the same webhook-id. A
receiver that stays down gets its message to dead; once it is back, a resend
from the admin delivers it.
"""

import os
import threading
from collections.abc import Iterator

import pytest
from django.urls import reverse
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from feedback.webhooks.models import WebhookMessage
from feedback.webhooks.services import webhook_endpoint_save
from sources.outbound.signing import generate_secret
from tests.e2e.processes import (
    WORKER_POOL_OPTIONS,
    CeleryProcess,
    CeleryWorker,
    session_database_url,
    wait_for,
)
from tests.factories import SourceFactory
from tests.sources.servers import Recorded, RecordingServer, Reply

pytestmark = pytest.mark.service

Status = WebhookMessage.Status
RETRY_SCHEDULE_S = "1,1,1"


class VerifyingReceiver(RecordingServer):
    """Verifies each request's signature with the endpoint's secret, then
    answers from `statuses` in turn (the last one from then on)."""

    def __init__(self, secret: str, statuses: list[int]) -> None:
        super().__init__(self._answer)
        self.webhook = Webhook(secret)
        self.statuses = list(statuses)
        self.verified: list[tuple[str, dict]] = []
        self.refused: list[str] = []
        self._answer_lock = threading.Lock()

    def _answer(self, recorded: Recorded) -> Reply:
        with self._answer_lock:
            try:
                payload = self.webhook.verify(recorded.body, recorded.header_dict)
            except WebhookVerificationError as exc:
                self.refused.append(str(exc))
                return Reply(400, b"bad signature")
            self.verified.append((recorded.header("webhook-id") or "", payload))
            status = (
                self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            )
            return Reply(status)

    def recover(self) -> None:
        with self._answer_lock:
            self.statuses = [200]


@pytest.fixture
def engine_env(transactional_db, settings, tmp_path) -> dict[str, str]:
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    settings.LEADBACK_RETRY_SCHEDULE_S = [1.0, 1.0, 1.0]
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    return {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "LEADBACK_VAR_DIR": str(var_dir),
        "LEADBACK_SWEEP_INTERVAL_S": "1",
        "LEADBACK_RETRY_SCHEDULE_S": RETRY_SCHEDULE_S,
        "LEADBACK_RETRY_JITTER": "0",
        "LEADBACK_OUTBOUND_ALLOWLIST": "127.0.0.1/32",
    }


@pytest.fixture
def worker_and_beat(engine_env, tmp_path) -> Iterator[CeleryWorker]:
    worker = CeleryWorker(
        ["worker", "--loglevel=INFO", *WORKER_POOL_OPTIONS], env=engine_env
    )
    beat = CeleryProcess(
        "beat",
        ["beat", "--loglevel=WARNING", f"--schedule={tmp_path / 'beat-schedule'}"],
        env=engine_env,
    )
    try:
        worker.start()
        worker.wait_ready()
        beat.start()
        yield worker
    finally:
        beat.stop()
        worker.stop()


def attempts_of(message: WebhookMessage) -> list[tuple[int, str, int | None]]:
    return list(
        message.attempts.order_by("number").values_list(
            "number", "outcome", "response_status"
        )
    )


def test_webhooks_are_signed_retried_recorded_and_resent_by_a_real_worker(
    worker_and_beat, integration_client, client, staff_user
):
    flaky_secret, down_secret = generate_secret(), generate_secret()
    source = SourceFactory(slug="bluesky-leads", name="Bluesky Leads")
    with (
        VerifyingReceiver(flaky_secret, [503, 503, 200]) as flaky,
        VerifyingReceiver(down_secret, [500]) as down,
    ):
        webhook_endpoint_save(
            slug="erp",
            url=flaky.url("/hooks"),
            secret=flaky_secret,
            events=["source.paused"],
        )
        webhook_endpoint_save(
            slug="crm",
            url=down.url("/hooks"),
            secret=down_secret,
            events=["source.paused", "source.resumed"],
        )

        answer = integration_client.post(
            "/api/v1/sources/bluesky-leads/pause",
            {"reason": "Return rate above 15%"},
            format="json",
        )
        assert answer.status_code == 200

        erp = WebhookMessage.objects.get(endpoint__slug="erp")
        crm = WebhookMessage.objects.get(endpoint__slug="crm")

        # Retried by the sweep on the schedule until the receiver takes it.
        wait_for(
            lambda: WebhookMessage.objects.get(pk=erp.pk).status == Status.SUCCEEDED,
            timeout=60,
            what="the flaky receiver's message to succeed",
        )
        assert attempts_of(erp) == [
            (1, "error", 503),
            (2, "error", 503),
            (3, "success", 200),
        ]
        assert [webhook_id for webhook_id, _ in flaky.verified] == [erp.public_id] * 3
        payload = flaky.verified[-1][1]
        assert payload["type"] == "source.paused"
        assert payload["data"]["source"]["slug"] == source.slug
        assert payload["data"]["paused_reason"] == "Return rate above 15%"
        assert payload["data"]["via"] == "api"

        # The receiver that stays down: tries until the schedule is spent.
        wait_for(
            lambda: WebhookMessage.objects.get(pk=crm.pk).status == Status.DEAD,
            timeout=60,
            what="the down receiver's message to be dead",
        )
        crm.refresh_from_db()
        assert [outcome for _, outcome, _ in attempts_of(crm)] == ["error"] * 3
        assert flaky.refused == down.refused == []

        # Back up: staff resend it from the admin and the worker delivers it.
        down.recover()
        client.force_login(staff_user)
        client.post(
            reverse("admin:feedback_webhookmessage_changelist"),
            {"action": "resend", "_selected_action": [str(crm.pk)]},
        )
        wait_for(
            lambda: WebhookMessage.objects.get(pk=crm.pk).status == Status.SUCCEEDED,
            timeout=30,
            what="the resent message to succeed",
        )
        crm.refresh_from_db()
        assert attempts_of(crm)[-1] == (4, "success", 200)
        assert {webhook_id for webhook_id, _ in down.verified} == {crm.public_id}
        assert len(flaky.verified) == 3  # nothing sent twice to the other one
