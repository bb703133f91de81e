"""Reports read from a real PostgreSQL streaming replica (DATABASE_REPLICA_URL).

The test builds its own primary (initdb) and a standby of it (pg_basebackup),
serves the app with gunicorn on both, and pauses the standby's replay: new
deliveries and a buyer's feedback are written (on the primary, the only place
a write can go) while the report and its CSV still show the replica's older
figures and say how far behind it is; once replay resumes they catch up.
"""

import csv
import io
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from tests.e2e.clusters import PrivatePostgres
from tests.e2e.processes import PROJECT_DIR, free_port, wait_for

pytestmark = pytest.mark.service

PASSWORD = "replica-test-password"


@contextmanager
def primary_and_replica() -> Iterator[tuple[PrivatePostgres, PrivatePostgres]]:
    primary = PrivatePostgres()
    replica: PrivatePostgres | None = None
    try:
        primary.start()
        primary.value("CREATE DATABASE leadback")
        replica = PrivatePostgres(standby_of=primary)
        replica.start()
        yield primary, replica
    finally:
        if replica is not None:
            replica.stop()
        primary.stop()


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


SEED = """
from django.contrib.auth.models import User
from feedback.models import ApiKey
from feedback.services import api_key_create
from tests.factories import BuyerFactory, DeliveryEventFactory, SourceFactory

source = SourceFactory(slug="replica-source", name="Replica Source")
buyer = BuyerFactory(slug="replica-buyer")
deliveries = [DeliveryEventFactory(buyer=buyer, lead__source=source) for _ in range(30)]
User.objects.create_superuser("staff", "staff@example.com", "{password}")
_, key = api_key_create(scope=ApiKey.Scope.BUYER, name="crm", buyer=buyer)
print(key, deliveries[0].event_id)
"""

MORE = """
from feedback.models import Buyer
from sources.models import Source
from tests.factories import DeliveryEventFactory

buyer = Buyer.objects.get(slug="replica-buyer")
source = Source.objects.get(slug="replica-source")
for _ in range(20):
    DeliveryEventFactory(buyer=buyer, lead__source=source)
"""


def delivered(session: requests.Session, base: str) -> tuple[int, str]:
    """The source's delivered count in the by-source CSV; the page's replica note."""
    page = session.get(f"{base}/reports/by-source/", timeout=30)
    assert page.status_code == 200, page.text[-2000:]
    note = re.search(r'id="report-replica">([^<]*)<', page.text)
    assert note, "the report page says nothing of the replica"
    export = session.get(f"{base}/reports/by-source/?export=csv", timeout=30)
    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(export.text)))
    row = next(r for r in rows if r[next(iter(r))] == "Replica Source")
    return int(row["Delivered"]), note.group(1)


def caught_up(primary: PrivatePostgres, replica: PrivatePostgres) -> bool:
    position = primary.value("SELECT pg_current_wal_lsn()::text")
    return bool(
        replica.value(
            f"SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '{position}') >= 0"
        )
    )


def test_reports_read_the_replica_and_say_how_far_behind(tmp_path):
    with primary_and_replica() as (primary, replica):
        assert replica.value("SELECT pg_is_in_recovery()") is True
        env = {
            "PATH": os.environ["PATH"],
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "DEBUG": "false",
            "LEADBACK_HTTPS": "false",
            "ALLOWED_HOSTS": "127.0.0.1",
            "LEADBACK_VAR_DIR": str(tmp_path / "var"),
            "DATABASE_URL": primary.url("leadback"),
            "DATABASE_REPLICA_URL": replica.url("leadback"),
        }
        manage(env, "migrate", "--noinput")
        seeded = manage(env, "shell", "-c", SEED.format(password=PASSWORD))
        key, _ = seeded.strip().splitlines()[-1].split()

        port = free_port()
        log = (tmp_path / "gunicorn.log").open("w")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "config/gunicorn.py",
                "config.wsgi",
            ],
            cwd=PROJECT_DIR,
            env=env | {"GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:

            def up() -> bool:
                assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
                try:
                    return requests.get(f"{base}/healthz", timeout=2).ok
                except requests.RequestException:
                    return False

            wait_for(up, timeout=60, what="gunicorn to serve")
            session = requests.Session()
            session.get(f"{base}/admin/login/", timeout=10)
            login = session.post(
                f"{base}/admin/login/?next=/admin/",
                data={
                    "username": "staff",
                    "password": PASSWORD,
                    "csrfmiddlewaretoken": session.cookies["csrftoken"],
                    "next": "/admin/",
                },
                headers={"Referer": f"{base}/admin/login/"},
                timeout=10,
            )
            assert login.url.endswith("/admin/"), login.text[-1000:]

            wait_for(lambda: caught_up(primary, replica), timeout=30, what="replay")
            count, note = delivered(session, base)
            assert count == 30
            assert note == (
                "These figures were read from the read replica, which is up to date."
            )

            # Replay stops: what is written now reaches the primary only.
            replica.value("SELECT pg_wal_replay_pause()")
            manage(env, "shell", "-c", MORE)
            answer = requests.post(
                f"{base}/api/v1/feedback",
                json={"event_id": _first_event(primary), "type": "conversion"},
                headers={"X-API-Key": key},
                timeout=30,
            )
            assert answer.status_code == 201, answer.text
            count_deliveries = "SELECT count(*) FROM feedback_deliveryevent"
            count_feedback = "SELECT count(*) FROM feedback_feedback"
            assert primary.value(count_deliveries, "leadback") == 50
            assert primary.value(count_feedback, "leadback") == 1
            assert replica.value(count_feedback, "leadback") == 0

            count, note = delivered(session, base)
            assert count == 30
            assert re.fullmatch(
                r"These figures were read from the read replica, "
                r"[0-9.]+ (s|min|h) behind the primary\.",
                note,
            ), note

            replica.value("SELECT pg_wal_replay_resume()")
            wait_for(lambda: caught_up(primary, replica), timeout=30, what="replay")
            count, note = delivered(session, base)
            assert count == 50
            assert note.endswith("which is up to date.")

            # With the replica gone, the report falls back to the primary and says so.
            replica.halt()
            count, note = delivered(session, base)
            assert count == 50
            assert note == (
                "The read replica could not be reached; "
                "these figures were read from the primary."
            )
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()


def _first_event(primary: PrivatePostgres) -> str:
    return str(
        primary.value(
            "SELECT event_id FROM feedback_deliveryevent ORDER BY id LIMIT 1",
            "leadback",
        )
    )
