"""Reports read from a real PostgreSQL streaming replica (DATABASE_REPLICA_URL).

The test builds its own primary (initdb) and a standby of it (pg_basebackup),
serves the app with gunicorn on both, and pauses the standby's replay: new
deliveries and a buyer's feedback are written (on the primary, the only place
a write can go) while the report and its CSV still show the replica's older
figures and say how far behind it is; once replay resumes they catch up.
"""

import csv
import glob
import io
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.e2e.processes import PROJECT_DIR, free_port, wait_for

pytestmark = pytest.mark.service

PASSWORD = "replica-test-password"


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        found = [shutil.which(name) or ""]
    assert found[-1], f"PostgreSQL's {name} is not installed"
    return found[-1]


class Cluster:
    """A throwaway PostgreSQL cluster run as the postgres user (root cannot)."""

    def __init__(self, root: Path, name: str, port: int) -> None:
        self.data = root / name
        self.log = root / f"{name}.log"
        self.root = root
        self.port = port

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=120, check=check
        )

    def configure(self) -> None:
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                textwrap.dedent(f"""
                port = {self.port}
                listen_addresses = '127.0.0.1'
                unix_socket_directories = '{self.root}'
                wal_level = replica
                max_wal_senders = 4
                fsync = off
                synchronous_commit = off
                full_page_writes = off
                """)
            )

    def start(self) -> None:
        self.run(
            pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "start"
        )

    def stop(self) -> None:
        self.run(
            pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-m",
            "immediate",
            "stop",
            check=False,
        )

    def sql(self, statement: str, database: str = "postgres") -> str:
        result = self.run(
            pg_bin("psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-Atc",
            statement,
        )
        return result.stdout.strip()

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"


@contextmanager
def primary_and_replica() -> Iterator[tuple[Cluster, Cluster]]:
    root = Path(tempfile.mkdtemp(prefix="leadback-replica-", dir="/tmp"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        os.chown(root, postgres.pw_uid, postgres.pw_gid)
    primary = Cluster(root, "primary", free_port())
    replica = Cluster(root, "replica", free_port())
    try:
        primary.run(
            pg_bin("initdb"),
            "-D",
            str(primary.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        )
        primary.configure()
        primary.start()
        primary.sql("CREATE DATABASE leadback")
        primary.run(
            pg_bin("pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(replica.data),
            "-R",
            "-X",
            "stream",
        )
        with (replica.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nport = {replica.port}\n")
        replica.start()
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)


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


def caught_up(primary: Cluster, replica: Cluster) -> bool:
    position = primary.sql("SELECT pg_current_wal_lsn()")
    return (
        replica.sql(
            f"SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '{position}') >= 0"
        )
        == "t"
    )


def test_reports_read_the_replica_and_say_how_far_behind(tmp_path):
    with primary_and_replica() as (primary, replica):
        assert replica.sql("SELECT pg_is_in_recovery()") == "t"
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
            replica.sql("SELECT pg_wal_replay_pause()")
            manage(env, "shell", "-c", MORE)
            answer = requests.post(
                f"{base}/api/v1/feedback",
                json={"event_id": _first_event(primary), "type": "conversion"},
                headers={"X-API-Key": key},
                timeout=30,
            )
            assert answer.status_code == 201, answer.text
            assert (
                primary.sql("SELECT count(*) FROM feedback_deliveryevent", "leadback")
                == "50"
            )
            assert (
                primary.sql("SELECT count(*) FROM feedback_feedback", "leadback") == "1"
            )
            assert (
                replica.sql("SELECT count(*) FROM feedback_feedback", "leadback") == "0"
            )

            count, note = delivered(session, base)
            assert count == 30
            assert re.fullmatch(
                r"These figures were read from the read replica, "
                r"[0-9.]+ (s|min|h) behind the primary\.",
                note,
            ), note

            replica.sql("SELECT pg_wal_replay_resume()")
            wait_for(lambda: caught_up(primary, replica), timeout=30, what="replay")
            count, note = delivered(session, base)
            assert count == 50
            assert note.endswith("which is up to date.")

            # With the replica gone, the report falls back to the primary and says so.
            replica.stop()
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


def _first_event(primary: Cluster) -> str:
    return primary.sql(
        "SELECT event_id FROM feedback_deliveryevent ORDER BY id LIMIT 1", "leadback"
    )
