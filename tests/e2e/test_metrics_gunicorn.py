"""/metrics under gunicorn with several workers: each worker counts in
PROMETHEUS_MULTIPROC_DIR and a scrape, whichever worker answers it, adds them
all up (config/gunicorn.py marks exited workers dead)."""

import os
import secrets
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from feedback.models import ApiKey
from feedback.services import api_key_create
from tests.e2e.processes import PROJECT_DIR, free_port, session_database_url, wait_for
from tests.factories import BuyerFactory, DeliveryEventFactory

pytestmark = [pytest.mark.service, pytest.mark.django_db(transaction=True)]

REQUESTS = 40


def accepted_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "leadback_feedback_received_total" and sample.labels == {
                "channel": "api",
                "outcome": "accepted",
            }:
                return sample.value
    return 0.0


def test_two_workers_counts_add_up_in_one_scrape(tmp_path):
    buyer = BuyerFactory()
    _, key = api_key_create(scope=ApiKey.Scope.BUYER, name="crm", buyer=buyer)
    deliveries = [DeliveryEventFactory(buyer=buyer) for _ in range(REQUESTS)]
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": session_database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "DEBUG": "false",
        "LEADBACK_HTTPS": "false",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "2",
    }
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi"],
        cwd=PROJECT_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
        try:
            return requests.get(f"{base}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def post(event_id: str) -> int:
        return requests.post(
            f"{base}/api/v1/feedback",
            json={"event_id": event_id, "type": "conversion"},
            headers={"X-API-Key": key},
            timeout=30,
        ).status_code

    def writers() -> set[str]:
        return {path.name.split("_")[-1] for path in metrics_dir.glob("counter_*.db")}

    posted = 0
    try:
        wait_for(up, timeout=60, what="gunicorn to serve")
        # The kernel decides which worker accepts a connection, and on a busy
        # machine one may take a whole round: post rounds (a delivery may be
        # converted again) until both workers have counted some.
        for _ in range(10):
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(post, [d.event_id for d in deliveries]))
            assert statuses == [201] * REQUESTS
            posted += REQUESTS
            if len(writers()) == 2:
                break
        scrapes = [requests.get(f"{base}/metrics", timeout=10) for _ in range(4)]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

    assert {s.status_code for s in scrapes} == {200}
    # Every scrape, whichever worker served it, sees all the workers' counts.
    assert [accepted_count(s.text) for s in scrapes] == [float(posted)] * 4
    assert len(writers()) == 2, sorted(metrics_dir.iterdir())
