"""A batch (delivery events, or feedback) is recorded whole or not at all, even
when the web process is killed halfway: PostgreSQL and a real gunicorn, SIGKILLed
mid-request."""

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from django.db import connection, transaction

from feedback.models import ApiKey, DeliveryEvent, Feedback, Lead
from feedback.services import api_key_create
from sources.models import Kind
from tests.e2e.processes import free_port, session_database_url, wait_for
from tests.factories import (
    BuyerFactory,
    DeliveryEventFactory,
    FeedbackFactory,
    LeadFactory,
)

pytestmark = [pytest.mark.service, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
ITEMS = 1000


def batch(tag: str) -> list[dict[str, object]]:
    """ITEMS events of one buyer."""
    return [
        {
            "event_id": f"{tag}{i:016x}",
            "buyer": "acme-insurance",
            "source": "bluesky-leads",
            "flow": "auto",
            "price": "12.50",
            "lead": {"id": f"lead-{tag}-{i}", "email": f"p{i}@example.com"},
        }
        for i in range(ITEMS)
    ]


def gunicorn_worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def backend_waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


@contextmanager
def serving(
    tmp_path: Path, key: str
) -> Iterator[tuple[Callable[[str, object], object], int]]:
    """gunicorn with one worker on this session's database; yields a function
    posting JSON to a path (the answer, or the exception) and the master's pid."""
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": session_database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "DEBUG": "false",
    }
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            f"--bind=127.0.0.1:{port}",
            "--workers=1",
            "--timeout=120",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def post(path: str, body: object) -> object:
        try:
            return requests.post(
                f"http://127.0.0.1:{port}{path}",
                json=body,
                headers={"X-API-Key": key},
                timeout=60,
            )
        except requests.RequestException as exc:
            return exc

    def up() -> bool:
        assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
        return not isinstance(post("/api/v1/events", {}), requests.RequestException)

    try:
        wait_for(up, timeout=60, what="gunicorn to serve")
        yield post, server.pid
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def kill_mid_request(
    post: Callable[[str, object], object], master: int, path: str, body: object
) -> object:
    """Post `body`, wait until its transaction waits on a lock the caller holds,
    SIGKILL the worker; returns what the client got."""
    answers: list[object] = []
    request = threading.Thread(target=lambda: answers.append(post(path, body)))
    request.start()
    wait_for(backend_waiting_on_a_lock, timeout=30, what="the batch to block")
    os.kill(gunicorn_worker_pid(master), signal.SIGKILL)
    request.join(30)
    return answers[0]


def test_a_worker_killed_mid_batch_leaves_no_event_and_no_lead(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the crash is PostgreSQL's to survive")
    _, key = api_key_create(scope=ApiKey.Scope.INTEGRATION, name="distribution")
    with serving(tmp_path, key) as (post, master):
        # Insert the batch's last event id in a transaction left open: the
        # batch's INSERT waits on that key in the unique index, after the
        # batch has written every other row, and stays open while the worker
        # is killed. Foreign keys are checked at commit, so a lock on a row
        # they point at would hold the COMMIT instead, which nothing stops.
        items = batch("a" * 8)
        with transaction.atomic():
            DeliveryEventFactory(event_id=items[-1]["event_id"])
            answer = kill_mid_request(post, master, "/api/v1/events", {"items": items})
            transaction.set_rollback(True)
        assert isinstance(answer, requests.RequestException), answer
        time.sleep(0.5)
        assert DeliveryEvent.objects.filter(event_id__startswith="a" * 8).count() == 0
        assert Lead.objects.filter(public_id__startswith="lead-aaaaaaaa").count() == 0

        # The same kind of batch, not interrupted, is recorded whole by the
        # worker gunicorn starts in place of the killed one.
        wait_for(
            lambda: not isinstance(post("/api/v1/events", {}), Exception),
            timeout=60,
            what="gunicorn's new worker",
        )
        response = post("/api/v1/events", {"items": batch("b" * 8)})
        assert isinstance(response, requests.Response), response
        assert response.status_code == 200, response.text
        assert response.json()["recorded"] == ITEMS
        recorded = DeliveryEvent.objects.filter(event_id__startswith="b" * 8)
        assert recorded.count() == ITEMS


def test_a_worker_killed_mid_feedback_batch_leaves_no_feedback(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the crash is PostgreSQL's to survive")
    buyer = BuyerFactory()
    lead = LeadFactory()
    deliveries = DeliveryEventFactory.create_batch(200, buyer=buyer, lead=lead)
    _, key = api_key_create(scope=ApiKey.Scope.BUYER, name="crm", buyer=buyer)
    items = [{"event_id": d.event_id, "type": "conversion"} for d in deliveries[:-1]]
    items.append({"event_id": deliveries[-1].event_id, "type": "return"})
    with serving(tmp_path, key) as (post, master):
        # A successful return of the last delivery, left uncommitted: the
        # batch's write waits on the one-return-per-delivery index.
        with transaction.atomic():
            FeedbackFactory(delivery=deliveries[-1], kind=Kind.RETURN)
            answer = kill_mid_request(
                post, master, "/api/v1/feedback", {"items": items}
            )
            transaction.set_rollback(True)
        assert isinstance(answer, requests.RequestException), answer
        time.sleep(0.5)
        assert Feedback.objects.filter(buyer=buyer).count() == 0

        wait_for(
            lambda: not isinstance(post("/api/v1/events", {}), Exception),
            timeout=60,
            what="gunicorn's new worker",
        )
        response = post("/api/v1/feedback", {"items": items})
        assert isinstance(response, requests.Response), response
        assert response.status_code == 200, response.text
        assert Feedback.objects.filter(buyer=buyer, outcome="success").count() == 200
