"""PostgreSQL and Redis restarted under load: nothing acknowledged is lost.

Feedback is posted to gunicorn at a steady rate while the database is restarted
twice and the broker once (SIGKILL, no persistence: every queued message is gone).
Afterwards every feedback answered 201 is stored, its notification was delivered
with its stable `webhook-id`, and the web processes and the worker served on
without being restarted.

The test runs its own PostgreSQL cluster (initdb in a temporary directory, on a
free port) and its own redis-server, with the same binaries as the machine's:
restarting the cluster the test session itself runs on would cut every other
test's connection too.
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import requests

from tests.e2e.clusters import PrivatePostgres
from tests.e2e.processes import (
    PROJECT_DIR,
    WORKER_POOL_OPTIONS,
    CeleryProcess,
    CeleryWorker,
    free_port,
    this_process_publishes_to,
    wait_for,
)
from tests.sources.servers import RecordingServer, Reply

pytestmark = pytest.mark.service

DELIVERIES = 200
LOAD_SECONDS = 45
RATE = 10  # feedback per second


class PrivateRedis:
    """A redis-server of the test's own, without persistence."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("needs redis-server")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self.answers, timeout=20, what="redis-server")

    def answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port).ping())
        except redis.ConnectionError:
            return False

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


SEED = """
import json
from decimal import Decimal
from feedback.models import ApiKey, Buyer, DeliveryEvent, Flow, Lead
from feedback.services import api_key_create
from sources.models import FeedbackConfig, FieldMapping, Source
buyer = Buyer.objects.create(slug="acme", name="Acme")
source = Source.objects.create(slug="bluesky", name="Bluesky")
flow = Flow.objects.create(slug="auto", name="Auto")
config = FeedbackConfig.objects.create(
    source=source, kind="conversion", method="json", url="{url}", timeout_s=5
)
FieldMapping.objects.create(config=config, position=0, target="event",
                            value="{{{{ event.id }}}}")
ids = []
for i in range({count}):
    lead = Lead.objects.create(public_id=f"lead-{{i}}", source=source, flow=flow)
    event = DeliveryEvent.objects.create(event_id=f"{{i:024x}}", lead=lead,
        buyer=buyer, source=source, flow=flow, price=Decimal("10"))
    ids.append(event.event_id)
_, key = api_key_create(scope=ApiKey.Scope.BUYER, name="crm", buyer=buyer)
print(json.dumps({{"key": key, "event_ids": ids}}))
"""


@contextmanager
def stack(tmp_path: Path) -> Iterator[dict[str, object]]:
    """The private database and broker, migrated and seeded; gunicorn, a worker
    and beat running on them; a receiver for the notifications."""
    database = PrivatePostgres()
    broker = PrivateRedis()
    receiver = RecordingServer(Reply(200, b'{"ok": true}'))
    processes: list[CeleryProcess] = []
    web: subprocess.Popen[bytes] | None = None
    try:
        database.start()
        broker.start()
        with psycopg.connect(database.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE leadback")
        var = tmp_path / "var"
        var.mkdir()
        env = os.environ | {
            "DATABASE_URL": database.url("leadback"),
            "CELERY_BROKER_URL": broker.url,
            "LEADBACK_VAR_DIR": str(var),
            "SECRET_KEY": secrets.token_urlsafe(40),
            "DEBUG": "false",
            "LEADBACK_OUTBOUND_ALLOWLIST": "127.0.0.1/32",
            "LEADBACK_SWEEP_INTERVAL_S": "1",
            "LEADBACK_QUEUE_LEASE_S": "10",
            "LEADBACK_RETRY_SCHEDULE_S": "0,1,1,2,2,3,3,5,5,5,5,5,5,5,5,5,5,5,5,5",
        }
        manage = [sys.executable, "manage.py"]
        subprocess.run(
            [*manage, "migrate", "--noinput"], cwd=PROJECT_DIR, env=env, check=True,
            capture_output=True,
        )  # fmt: skip
        receiver.__enter__()
        seeded = subprocess.run(
            [*manage, "shell", "-c",
             SEED.format(url=receiver.url("/hook"), count=DELIVERIES)],
            cwd=PROJECT_DIR, env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        seed = json.loads(seeded.stdout.strip().splitlines()[-1])
        port = free_port()
        web_log = (var / "gunicorn.log").open("w")
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi:application",
             f"--bind=127.0.0.1:{port}", "--workers=2", "--timeout=60"],
            cwd=PROJECT_DIR, env=env, stdout=web_log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        worker = CeleryWorker(
            ["worker", "--loglevel=WARNING", *WORKER_POOL_OPTIONS], env=env
        )
        beat = CeleryProcess(
            "beat",
            ["beat", "--loglevel=WARNING", f"--schedule={var / 'beat-schedule'}"],
            env=env,
        )
        processes += [worker, beat]
        with this_process_publishes_to(broker.url):
            worker.start()
            worker.wait_ready()
        beat.start()
        base = f"http://127.0.0.1:{port}"

        def serving() -> bool:
            assert web is not None
            assert web.poll() is None, (var / "gunicorn.log").read_text()
            try:
                requests.get(f"{base}/api/schema/", timeout=2)
            except requests.ConnectionError:
                return False
            return True

        wait_for(serving, timeout=60, what="gunicorn")
        # Under a supervisor, as in production: kombu's Redis transport can
        # crash a worker whose ack meets the broker going away ("Unrecoverable
        # error: 'NoneType' object has no attribute 'hostname'"); what it held
        # unacknowledged is delivered again once a worker is back.
        with worker.supervised():
            yield {
                "base": base,
                "key": seed["key"],
                "event_ids": seed["event_ids"],
                "database": database,
                "broker": broker,
                "receiver": receiver,
                "web": web,
                "worker": worker,
                "beat": beat,
            }
    finally:
        for process in processes:
            process.stop()
        if web is not None:
            os.killpg(web.pid, signal.SIGTERM)
            web.wait(10)
        receiver.__exit__(None, None, None)
        broker.kill()
        database.stop()


def test_nothing_acknowledged_is_lost_across_database_and_broker_restarts(
    tmp_path,
):
    with stack(tmp_path) as env:
        base, key = env["base"], env["key"]
        event_ids: list[str] = env["event_ids"]  # type: ignore[assignment]
        database: PrivatePostgres = env["database"]  # type: ignore[assignment]
        broker: PrivateRedis = env["broker"]  # type: ignore[assignment]
        receiver: RecordingServer = env["receiver"]  # type: ignore[assignment]
        acknowledged: list[str] = []
        refused: list[int] = []
        stop = threading.Event()

        def load() -> None:
            index = 0
            session = requests.Session()
            while not stop.is_set():
                body = {
                    "event_id": event_ids[index % len(event_ids)],
                    "type": "conversion",
                    "revenue": "100.00",
                }
                index += 1
                try:
                    answer = session.post(
                        f"{base}/api/v1/feedback",
                        json=body,
                        headers={"X-API-Key": key},
                        timeout=10,
                    )
                except requests.RequestException:
                    refused.append(0)
                else:
                    if answer.status_code == 201:
                        acknowledged.append(answer.json()["feedback_id"])
                    else:
                        refused.append(answer.status_code)
                time.sleep(1 / RATE)

        client = threading.Thread(target=load)
        client.start()
        try:
            time.sleep(LOAD_SECONDS / 5)
            database.restart()
            time.sleep(LOAD_SECONDS / 5)
            broker.kill()  # every queued message is lost
            time.sleep(2)
            broker.start()
            time.sleep(LOAD_SECONDS / 5)
            database.restart()
            time.sleep(LOAD_SECONDS / 5)
            after_faults = len(acknowledged)
            time.sleep(LOAD_SECONDS / 5)
        finally:
            stop.set()
            client.join(30)

        # What was not acknowledged was refused as unavailable, to be retried:
        # never a server error.
        assert set(refused) <= {0, 503}, Counter(refused)
        # The web served on after the last restart, without being restarted.
        assert len(acknowledged) > after_faults + RATE, (len(acknowledged), refused)
        assert env["web"].poll() is None  # type: ignore[union-attr]

        with psycopg.connect(database.url("leadback")) as conn:

            def delivered() -> dict[str, tuple[str, str]]:
                rows = conn.execute(
                    "SELECT f.public_id::text, n.public_id, n.status "
                    "FROM feedback_feedback f "
                    "JOIN feedback_notification n ON n.feedback_id = f.id"
                ).fetchall()
                conn.commit()
                return {fid: (nid, status) for fid, nid, status in rows}

            def all_sent() -> bool:
                found = delivered()
                return all(
                    found.get(fid, ("", ""))[1] == "succeeded" for fid in acknowledged
                )

            wait_for(all_sent, timeout=180, what="every notification to be sent")
            found = delivered()

        print(
            f"acknowledged {len(acknowledged)}, not acknowledged "
            f"{dict(Counter(refused))} (0: no answer), requests at the receiver "
            f"{len(receiver.requests)}"
        )
        # Every acknowledged feedback is stored, with its notification sent.
        assert set(acknowledged) <= set(found)
        sent_ids = {found[fid][0] for fid in acknowledged}
        received = {request.header("webhook-id") for request in receiver.requests}
        assert sent_ids <= received
        # At least once: a repeat carries the same webhook-id, never a new one.
        assert received <= {nid for nid, _ in found.values()}
        # The worker was never restarted by the test; its supervisor started it
        # again only if it exited by itself (see `stack`), which is reported.
        worker: CeleryWorker = env["worker"]  # type: ignore[assignment]
        assert worker.starts == 1 + worker.restarts
        print(f"worker restarted by its supervisor {worker.restarts} times")
