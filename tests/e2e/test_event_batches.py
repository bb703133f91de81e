"""A batch of delivery events is recorded whole or not at all, even when the web
process is killed halfway: PostgreSQL and a real gunicorn, SIGKILLed mid-request."""

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from django.db import connection, transaction

from feedback.models import ApiKey, DeliveryEvent, Lead
from feedback.services import api_key_create
from tests.e2e.processes import session_database_url
from tests.factories import DeliveryEventFactory

pytestmark = [pytest.mark.service, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
ITEMS = 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


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


def test_a_worker_killed_mid_batch_leaves_no_event_and_no_lead(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the crash is PostgreSQL's to survive")
    _, key = api_key_create(scope=ApiKey.Scope.INTEGRATION, name="distribution")
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
    url = f"http://127.0.0.1:{port}/api/v1/events"
    headers = {"X-API-Key": key}
    try:

        def serving() -> bool:
            assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                requests.post(url, json={}, headers=headers, timeout=2)
            except requests.ConnectionError:
                return False
            return True

        wait_for(serving, timeout=60, what="gunicorn to serve")
        worker = gunicorn_worker_pid(server.pid)
        answers: list[object] = []

        def post(items: list[dict[str, object]]) -> None:
            try:
                answers.append(
                    requests.post(
                        url, json={"items": items}, headers=headers, timeout=60
                    )
                )
            except requests.RequestException as exc:
                answers.append(exc)

        # Insert the batch's last event id in a transaction left open: the
        # batch's INSERT waits on that key in the unique index, after the
        # batch has written every other row, and stays open while the worker
        # is killed. Foreign keys are checked at commit, so a lock on a row
        # they point at would hold the COMMIT instead, which nothing stops.
        items = batch("a" * 8)
        with transaction.atomic():
            DeliveryEventFactory(event_id=items[-1]["event_id"])
            request = threading.Thread(target=post, args=(items,))
            request.start()
            wait_for(backend_waiting_on_a_lock, timeout=30, what="the batch to block")
            os.kill(worker, signal.SIGKILL)
            request.join(30)
            transaction.set_rollback(True)
        assert isinstance(answers[0], requests.RequestException), answers

        # The killed worker's session rolls back once its statement ends.
        def rolled_back() -> bool:
            return not backend_waiting_on_a_lock()

        wait_for(rolled_back, timeout=30, what="the killed batch's session to end")
        time.sleep(0.5)
        assert DeliveryEvent.objects.filter(event_id__startswith="a" * 8).count() == 0
        assert Lead.objects.filter(public_id__startswith="lead-aaaaaaaa").count() == 0

        # The same kind of batch, not interrupted, is recorded whole by the
        # worker gunicorn starts in place of the killed one.
        wait_for(serving, timeout=60, what="gunicorn's new worker")
        post(batch("b" * 8))
        response = answers[-1]
        assert isinstance(response, requests.Response), response
        assert response.status_code == 200, response.text
        assert response.json()["recorded"] == ITEMS
        assert (
            DeliveryEvent.objects.filter(event_id__startswith="b" * 8).count() == ITEMS
        )
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
