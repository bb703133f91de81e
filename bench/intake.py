"""Feedback intake benchmark: gunicorn on PostgreSQL, against a ceiling in the same run.

    .venv/bin/python bench/intake.py [--duration 10] [--rounds 3] [--concurrency 8]

Creates a fresh PostgreSQL database, seeds one buyer's deliveries, creates a buyer key
with `create_api_key`, and starts gunicorn serving the app plus a bare Django view that
does one INSERT through the ORM (the ceiling, bench/views.py). Then, in rounds:

1. maximum rates (closed loop) of the ceiling (POST /bench/ceiling), the intake
   (POST /api/v1/feedback, one feedback per request) and the LeadConduit-compatible
   URL (POST /feedback?event_id=...), in short interleaved slices so the noise of
   a shared machine hits the ceiling and the app alike;
2. the intake at half of its maximum rate, open loop, for p50/p99 latency;
3. the ceiling at that same rate, the latency floor for comparison;
4. POST /api/v1/feedback {"items": [...1000...]} back to back: feedback per second.

With --suppression a suppression list takes every conversion, so each accepted
feedback also writes the digests of its lead (compare the ratio with a run
without it; the results are printed, not written to the docs).

With --forwarding the source has an enabled real-time config and the broker is
Redis (--broker-url): each accepted feedback also writes its notification and
queues it on commit, as in production (no worker runs, so nothing is sent); the
target on that path is 35 % of the ceiling, and the results go to their own
section of docs/performance.md.

Maximum rates come from wrk (bench/intake.lua) when it is installed, else from a
Python client; the open-loop runs and the batches use the Python client. Every
feedback request quotes the next seeded delivery. Medians over the rounds are
compared with the targets, printed as markdown and kept in var/bench/intake.json;
--update-docs writes them into docs/performance.md. A handful of requests is then
profiled in-process (cProfile) to show where the time goes. gunicorn is stopped and
the database dropped at the end.
"""

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common import (
    free_port,
    load_average,
    median,
    percentile,
    replace_marked,
    revision,
    stop_process_group,
    verdict,
)

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
LUA = ROOT / "bench" / "intake.lua"
GUNICORN_LOG = VAR / "intake-gunicorn.log"
DOCS = ROOT / "docs" / "performance.md"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/leadback_bench"
BUYER, SOURCE, FLOW = "bench-buyer", "bench-source", "bench-flow"
WRK_THREADS = 1  # one epoll thread keeps up easily and leaves the cores to the server

# The acceptance targets of the intake issue.
TARGET_RATIO = 0.40
TARGET_RATIO_FORWARDING = 0.35
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/9"
TARGET_P99_MS = 50.0
TARGET_ITEMS_PER_S = 5000.0


# Results ----------------------------------------------------------------------


@dataclass
class Sample:
    """One measured phase of one round."""

    phase: str
    round: int
    seconds: float
    statuses: dict[str, int]
    errors: int = 0  # connect/read/write errors and timeouts
    accepted: int = 0  # requests answered as expected (201, or 200 for batches)
    feedback: int = 0  # feedback accepted (per item for batches)
    rows: int | None = None  # successful feedback rows the database gained
    offered_rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    # CPU seconds used meanwhile by gunicorn's processes and by the PostgreSQL
    # backends serving the bench database (maximum-rate phases on Linux only).
    server_cpu_s: float | None = None
    database_cpu_s: float | None = None

    @property
    def rate(self) -> float:
        """Feedback (or ceiling rows) per second."""
        return self.feedback / self.seconds if self.seconds else 0.0

    def cpu_ms(self) -> tuple[float, float] | None:
        """CPU milliseconds per request: (gunicorn, PostgreSQL)."""
        if self.server_cpu_s is None or self.database_cpu_s is None:
            return None
        answers = sum(self.statuses.values())
        if not answers:
            return None
        return (
            self.server_cpu_s * 1000 / answers,
            self.database_cpu_s * 1000 / answers,
        )

    @property
    def unexpected(self) -> int:
        """Answers other than the expected one, errors, or no answer at all."""
        answers = sum(self.statuses.values())
        return (answers - self.accepted + self.errors) or (0 if answers else 1)


PHASES = {
    "ceiling": "ceiling: POST /bench/ceiling, max rate (req/s)",
    "api": "intake: POST /api/v1/feedback, max rate (feedback/s)",
    "api_paced": "intake at half its max rate: p50 / p99 (ms)",
    "ceiling_paced": "ceiling at that same rate: p50 / p99 (ms)",
    "lc": "LeadConduit URL: POST /feedback, max rate (feedback/s)",
    "items": "items batches of 1,000: feedback/s",
}


# Load generation --------------------------------------------------------------


class Events:
    """Hands out seeded deliveries in order; event ids are the hex of 0..total-1.

    The counter wraps after `total`: conversions may repeat on a delivery, so a
    wrapped request is still accepted feedback.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.next = 0

    def take(self, count: int = 1) -> int:
        start = self.next
        self.next += count
        return start

    def event_id(self, index: int) -> str:
        return f"{index % self.total:024x}"


def feedback_body(event_id: str) -> dict[str, Any]:
    # The same fields as bench/intake.lua sends.
    return {
        "event_id": event_id,
        "type": "conversion",
        "revenue": "1250.00",
        "quality_score": 5,
        "note": "bench",
    }


def raw_post(port: int, path: str, body: bytes, key: str | None) -> bytes:
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if key:
        head.append(f"X-API-Key: {key}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def request_builder(
    mode: str, port: int, key: str, events: Events
) -> Callable[[], bytes]:
    def build() -> bytes:
        event_id = events.event_id(events.take())
        body = feedback_body(event_id)
        if mode == "ceiling":
            return raw_post(port, "/bench/ceiling", json.dumps(body).encode(), None)
        if mode == "lc":
            del body["event_id"]
            path = f"/feedback?event_id={event_id}"
            return raw_post(port, path, json.dumps(body).encode(), key)
        return raw_post(port, "/api/v1/feedback", json.dumps(body).encode(), key)

    return build


async def http(port: int, raw: bytes) -> tuple[int, bytes]:
    """One request on its own connection; (0, b"") when the connection fails."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0, b""
    try:
        writer.write(raw)
        data = await reader.read()  # until the server closes (Connection: close)
    except OSError:
        return 0, b""
    finally:
        writer.close()
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return (int(match.group(1)), data) if match else (0, data)


def run_wrk(
    *,
    mode: str,
    port: int,
    key: str,
    events: Events,
    duration: int,
    concurrency: int,
) -> tuple[float, dict[str, int], int]:
    """Closed loop with wrk: (seconds, statuses, errors)."""
    start = events.next
    command = [
        "wrk",
        f"-t{WRK_THREADS}",
        f"-c{concurrency}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}",
        "--",
        mode,
        key or "-",
        str(start),
        str(events.total),
        str(WRK_THREADS),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    summary = re.search(r"^BENCH (.*)$", output, re.MULTILINE)
    if summary is None:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    numbers = {
        name: int(value) for name, value in re.findall(r"(\w+)=(\d+)", summary[1])
    }
    statuses = {
        name: int(count)
        for name, count in re.findall(r"^STATUS (\d+) (\d+)$", output, re.MULTILINE)
    }
    # Requests still in flight when wrk stopped may have used deliveries too.
    events.next = start + numbers["requests"] + concurrency * WRK_THREADS
    errors = sum(numbers[name] for name in ("connect", "read", "write", "timeout"))
    return numbers["duration_us"] / 1e6, statuses, errors


async def closed_loop(
    build: Callable[[], bytes], port: int, duration: float, concurrency: int
) -> tuple[float, dict[str, int], int]:
    """Closed loop in Python, for machines without wrk: (seconds, statuses, errors)."""
    loop = asyncio.get_running_loop()
    statuses: Counter[str] = Counter()
    started = loop.time()
    deadline = started + duration

    async def worker() -> None:
        while loop.time() < deadline:
            status, _ = await http(port, build())
            statuses[str(status)] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    errors = statuses.pop("0", 0)
    return loop.time() - started, dict(statuses), errors


async def open_loop(
    build: Callable[[], bytes], port: int, rate: float, duration: float
) -> tuple[float, dict[str, int], int, list[float]]:
    """Send at a constant rate whatever the answers take (wrk2-style).

    Latency runs from when a request was due, not when it went out, so a stalled
    server or client cannot hide queueing (coordinated omission).
    """
    loop = asyncio.get_running_loop()
    count = max(1, int(rate * duration))
    started = loop.time() + 0.05

    async def one(due: float) -> tuple[int, float]:
        status, _ = await http(port, build())
        return status, loop.time() - due

    tasks = []
    for index in range(count):
        due = started + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    answers = await asyncio.gather(*tasks)
    statuses = Counter(str(status) for status, _ in answers)
    errors = statuses.pop("0", 0)
    latencies = [seconds * 1000 for status, seconds in answers if status]
    return loop.time() - started, dict(statuses), errors, latencies


async def item_batches(
    *,
    port: int,
    key: str,
    events: Events,
    size: int,
    duration: float,
    concurrency: int,
) -> tuple[float, dict[str, int], int, int]:
    """POST {"items": [...]} back to back: (seconds, statuses, errors, accepted)."""
    loop = asyncio.get_running_loop()
    statuses: Counter[str] = Counter()
    accepted = 0
    started = loop.time()
    deadline = started + duration
    finished = started

    async def worker() -> None:
        nonlocal accepted, finished
        while loop.time() < deadline:
            first = events.take(size)
            items = [
                feedback_body(events.event_id(i)) for i in range(first, first + size)
            ]
            body = json.dumps({"items": items}).encode()
            status, data = await http(
                port, raw_post(port, "/api/v1/feedback", body, key)
            )
            statuses[str(status)] += 1
            found = re.search(rb'\r\n\r\n\{"accepted":\s*(\d+)', data[:4096])
            if status == 200 and found:
                accepted += int(found.group(1))
            finished = loop.time()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    errors = statuses.pop("0", 0)
    return finished - started, dict(statuses), errors, accepted


# Setup and teardown -------------------------------------------------------------


def configure_environment(database_url: str, broker_url: str = "") -> None:
    """The same environment for this process (seeding, profiling) and gunicorn."""
    if broker_url:
        os.environ["CELERY_BROKER_URL"] = broker_url
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DATABASE_URL": database_url,
            "LEADBACK_VAR_DIR": str(VAR),
            "DEBUG": "false",
            # The settings refuse the embedded key outside DEBUG.
            "SECRET_KEY": secrets.token_urlsafe(50),
            # One key sends thousands of requests a second: the limit is still
            # counted on every request, as in production, but never reached.
            "LEADBACK_API_RATE_KEY": "100000000/min",
            "LEADBACK_HTTPS": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "WARNING",
        }
    )
    sys.path.insert(0, str(ROOT))


def database_name(database_url: str) -> str:
    name = urlsplit(database_url).path.lstrip("/")
    if "bench" not in name:
        # This database is dropped and created again: refuse a real one.
        raise SystemExit(f"refusing to drop {name!r}: its name must contain 'bench'")
    return name


def recreate_database(database_url: str, *, drop_only: bool = False) -> None:
    import psycopg
    from psycopg import sql

    name = database_name(database_url)
    admin_url = urlsplit(database_url)._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            )
        )
        if not drop_only:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def seed(events: int) -> str:
    """Migrate, seed `events` deliveries to one buyer; returns a buyer API key."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from bench.models import CEILING_TABLE_SQL
    from feedback.models import DeliveryEvent, Lead
    from feedback.services import (
        buyer_get_or_create,
        flow_get_or_create,
        source_get_or_create,
    )

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(CEILING_TABLE_SQL)
    buyer = buyer_get_or_create(slug=BUYER)
    source = source_get_or_create(slug=SOURCE)
    flow = flow_get_or_create(slug=FLOW)
    delivered_at = datetime.now(UTC) - timedelta(days=1)
    # Bulk inserts rather than delivery_event_record: the bench measures feedback,
    # and recording 100,000 events one by one would take minutes.
    chunk = 10_000
    for first in range(0, events, chunk):
        numbers = range(first, min(events, first + chunk))
        leads = Lead.objects.bulk_create(
            Lead(
                public_id=f"bench-lead-{n}",
                source=source,
                flow=flow,
                data={
                    "first_name": "Bench",
                    "last_name": f"Lead {n}",
                    "email": f"lead{n}@example.com",
                    "phone_1": "5127891111",
                },
                email_normalized=f"lead{n}@example.com",
                phone_normalized="5127891111",
                received_at=delivered_at,
            )
            for n in numbers
        )
        DeliveryEvent.objects.bulk_create(
            DeliveryEvent(
                event_id=f"{n:024x}",
                lead=lead,
                buyer=buyer,
                source=source,
                flow=flow,
                reference=f"bench-{n}",
                price=Decimal("45.00"),
                delivered_at=delivered_at,
            )
            for n, lead in zip(numbers, leads, strict=True)
        )
    out = io.StringIO()
    call_command(
        "create_api_key", buyer=BUYER, name="bench", stdout=out, stderr=io.StringIO()
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return out.getvalue().strip().splitlines()[-1]


def forwarding_configure() -> None:
    """An enabled real-time config on the bench source: every accepted
    feedback writes a notification and queues it after commit."""
    from sources.models import FeedbackConfig, FieldMapping, Source

    source = Source.objects.get(slug=SOURCE)
    for kind in ("conversion", "return"):
        config = FeedbackConfig.objects.create(
            source=source,
            kind=kind,
            method=FeedbackConfig.Method.JSON,
            url="http://127.0.0.1:9/bench-feedback",
            timeout_s=5,
        )
        FieldMapping.objects.create(
            config=config, position=0, target="event", value="{{ event.id }}"
        )


def suppression_configure() -> None:
    """A suppression list that every accepted conversion adds its lead to: each
    feedback also writes the digests of its lead's email and phone."""
    from feedback.suppression.services import suppression_list_save

    suppression_list_save(
        slug="bench-converted",
        name="Converted (bench)",
        ttl_days=365,
        add_kinds=["conversion"],
    )


def broker_flush(broker_url: str) -> None:
    """Empty the bench's Redis database: its queued messages are never consumed."""
    import redis

    client = redis.Redis.from_url(broker_url)
    client.flushdb()
    client.close()


def notifications_written() -> int:
    from feedback.forwarding.models import Notification

    return Notification.objects.count()


def successful_feedback_rows() -> int:
    from feedback.models import Feedback

    return Feedback.objects.filter(outcome=Feedback.Outcome.SUCCESS).count()


@contextmanager
def gunicorn(
    port: int, *, workers: int, worker_class: str, threads: int
) -> Iterator[tuple[list[str], int]]:
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi:application",
        f"--bind=127.0.0.1:{port}",
        f"--workers={workers}",
        f"--worker-class={worker_class}",
        f"--threads={threads}",
        "--log-level=warning",
        "--backlog=2048",
        # A busy shared machine can slow a 1,000-item batch past the default 30 s;
        # a killed worker would stall every measure after it.
        "--timeout=120",
    ]
    log = GUNICORN_LOG.open("w")
    # Its own process group, so stopping it also stops every worker it forked.
    server = subprocess.Popen(
        command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_until_serving(port, server)
        yield command, server.pid  # its own session: the pid is the process group
    finally:
        if server.poll() is None:
            stop_process_group(server, 15)
        log.close()


def wait_until_serving(port: int, server: subprocess.Popen[bytes]) -> None:
    raw = f"GET /bench/ceiling HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    raw += "Connection: close\r\n\r\n"
    for _ in range(150):
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited; see {GUNICORN_LOG}")
        status, _ = asyncio.run(http(port, raw.encode()))
        if status == 405:  # the ceiling only takes POST: Django is answering
            return
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer; see {GUNICORN_LOG}")


def cpu_seconds(server_group: int, database: str) -> tuple[float, float] | None:
    """CPU seconds used so far by the processes of gunicorn's process group and
    by the PostgreSQL backends connected to `database`; None without /proc.

    A backend that exits takes its count with it: gunicorn's workers keep their
    connections (DATABASE_CONN_MAX_AGE), so that is rare within a slice."""
    if not Path("/proc/self/stat").exists():
        return None
    server = backends = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            command = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = sum(int(value) for value in fields[11:13])  # utime, stime
        if int(fields[2]) == server_group:  # the process group
            server += ticks
        elif command.startswith(b"postgres: ") and f" {database} ".encode() in command:
            backends += ticks
    tick = os.sysconf("SC_CLK_TCK")
    return server / tick, backends / tick


# Profiling ----------------------------------------------------------------------

CATEGORIES = [
    ("PostgreSQL (driver and round trips)", ("psycopg",)),
    ("Django ORM", ("/django/db/",)),
    ("DRF", ("/rest_framework/",)),
    ("Django test client (not in production)", ("/django/test/",)),
    ("Django request/response and middleware", ("/django/",)),
]


def category(filename: str, function: str) -> str:
    where = filename.replace("\\", "/") if filename != "~" else function
    for name, needles in CATEGORIES:
        if any(needle in where for needle in needles):
            return name
    if where.startswith(str(ROOT)) and "/.venv/" not in where:
        return "Leadback code"
    return "other (stdlib, json, uuid, decimal, ...)"


def statement(sql: str) -> str:
    """`SELECT feedback_apikey`: the verb and the first table of a statement;
    `INSERT feedback_feedback + feedback_notification` for INSERTs joined by a
    WITH into one statement."""
    if sql.startswith("WITH"):
        tables = re.findall(r'\bINTO\s+"(\w+)"', sql)
        if tables:
            return f"INSERT {' + '.join(tables)}"
    table = re.search(r'\b(?:FROM|INTO|UPDATE)\s+"(\w+)"', sql)
    return f"{sql.split(None, 1)[0]} {table.group(1) if table else '?'}"


def profile(key: str, events: Events, requests: int) -> dict[str, Any]:
    """Profile `requests` requests per endpoint in this process (test client)."""
    from django.db import connection
    from django.test import Client

    client = Client(headers={"Host": "127.0.0.1", "X-API-Key": key})

    def single(path: str, lc: bool = False) -> Callable[[], None]:
        def call() -> None:
            body = feedback_body(events.event_id(events.take()))
            url = path
            if lc:
                url = f"{path}?event_id={body.pop('event_id')}"
            response = client.post(url, json.dumps(body), "application/json")
            assert response.status_code == 201, response.content[:300]

        return call

    def batch() -> None:
        first = events.take(1000)
        items = [feedback_body(events.event_id(i)) for i in range(first, first + 1000)]
        body = json.dumps({"items": items})
        response = client.post("/api/v1/feedback", body, "application/json")
        assert response.status_code == 200
        assert response.json()["accepted"] == 1000

    executed: list[tuple[float, str]] = []

    def record(execute: Any, sql: str, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, *args)
        finally:
            executed.append((time.perf_counter() - started, sql))

    report: dict[str, Any] = {}
    for name, call, count, per in (
        ("ceiling", single("/bench/ceiling"), requests, 1),
        ("api", single("/api/v1/feedback"), requests, 1),
        ("lc", single("/feedback", lc=True), requests, 1),
        ("items", batch, max(2, requests // 100), 1000),
    ):
        for _ in range(max(1, min(count // 4, 20))):  # warm caches, the connection
            call()
        executed.clear()
        started = time.perf_counter()
        with connection.execute_wrapper(record):
            for _ in range(count):
                call()
        plain_ms = (time.perf_counter() - started) * 1000 / count
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(count):
            call()
        profiler.disable()
        stats = pstats.Stats(profiler)
        shares: Counter[str] = Counter()
        for (filename, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
            shares[category(filename, function)] += row[2]  # tottime
        total = sum(shares.values())
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        (VAR / f"profile-{name}.txt").write_text(text.getvalue())
        report[name] = {
            "ms_per_request": round(plain_ms, 3),
            "ms_per_feedback": round(plain_ms / per, 4),
            "queries_per_request": round(len(executed) / count, 2),
            "sql_ms_per_request": round(
                sum(seconds for seconds, _ in executed) * 1000 / count, 3
            ),
            # BEGIN and COMMIT are not statements here: psycopg sends them itself.
            "statements": list(dict.fromkeys(statement(sql) for _, sql in executed)),
            "shares": {
                name: round(seconds / total, 3)
                for name, seconds in shares.most_common()
            },
        }
    return report


# Reporting ------------------------------------------------------------------------


def machine() -> dict[str, str]:
    from django.db import connection

    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    memory = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
        cursor.execute("SHOW synchronous_commit")
        synchronous_commit = cursor.fetchone()[0]
    import django
    import gunicorn as gunicorn_package

    wrk = shutil.which("wrk")
    wrk_version = ""
    if wrk:
        wrk_version = subprocess.run(
            [wrk, "--version"], capture_output=True, text=True
        ).stdout.split(" [")[0]
    return {
        "cpus": str(len(os.sched_getaffinity(0))),
        "cpu": model.group(1).strip() if model else platform.processor(),
        "memory": f"{int(memory.group(1)) / 1024 / 1024:.1f} GiB" if memory else "?",
        "kernel": platform.release(),
        "postgresql": f"{pg_version} (synchronous_commit={synchronous_commit})",
        "python": platform.python_version(),
        "django": django.get_version(),
        "gunicorn": gunicorn_package.__version__,
        "wrk": wrk_version or "not installed (Python client)",
        "code": revision(),
        "load before the rounds": load_average(),
    }


def server_errors() -> str:
    """Errors gunicorn logged (worker timeouts, unhandled exceptions)."""
    log = GUNICORN_LOG.read_text(errors="replace")
    counts = Counter(re.findall(r"\[(ERROR|CRITICAL)\] ([A-Z][\w ]+)", log))
    if not counts:
        return "none"
    return ", ".join(f"{what.strip()}: {n}" for (_, what), n in counts.items())


def summarise(samples: list[Sample]) -> dict[str, Any]:
    def of(phase: str) -> list[Sample]:
        return [s for s in samples if s.phase == phase]

    def ratios(phase: str) -> list[float]:
        return [
            app.rate / ceiling.rate
            for app, ceiling in zip(of(phase), of("ceiling"), strict=True)
            if ceiling.rate
        ]

    return {
        "ceiling_rate": median([s.rate for s in of("ceiling")]),
        "api_rate": median([s.rate for s in of("api")]),
        "ratio": median(ratios("api")),
        "ratios": ratios("api"),
        "lc_ratio": median(ratios("lc")),
        "lc_ratios": ratios("lc"),
        "paced_rate": median([s.offered_rate or 0 for s in of("api_paced")]),
        "api_p50": median([s.p50_ms or 0 for s in of("api_paced")]),
        "api_p99": median([s.p99_ms or 0 for s in of("api_paced")]),
        "ceiling_p50": median([s.p50_ms or 0 for s in of("ceiling_paced")]),
        "ceiling_p99": median([s.p99_ms or 0 for s in of("ceiling_paced")]),
        "lc_rate": median([s.rate for s in of("lc")]),
        "items_rate": median([s.rate for s in of("items")]),
        "items_ratios": ratios("items"),
        "unexpected": sum(s.unexpected for s in samples),
        # Accepted answers without a successful row (the LeadConduit URL answers
        # 201 for refused feedback too).
        "missing_rows": sum(
            max(0, s.feedback - s.rows) for s in samples if s.rows is not None
        ),
    }


CPU_ROWS = {
    "ceiling": "ceiling: CPU per request, gunicorn / PostgreSQL (ms)",
    "api": "intake: CPU per feedback, gunicorn / PostgreSQL (ms)",
    "lc": "LeadConduit URL: CPU per feedback, gunicorn / PostgreSQL (ms)",
}


def cpu_rows(by: dict[tuple[str, int], Sample], rounds: list[int]) -> list[str]:
    """Where the maximum rates spent the machine (missing without /proc)."""
    rows = []
    for phase, label in CPU_ROWS.items():
        measured = [by[(phase, r)].cpu_ms() for r in rounds]
        if any(cpu is None for cpu in measured):
            return []
        cells = [f"{server:.2f} / {database:.2f}" for server, database in measured]
        server = median([cpu[0] for cpu in measured if cpu])
        database = median([cpu[1] for cpu in measured if cpu])
        rows.append(
            f"| {label} | " + " | ".join(cells) + f" | {server:.2f} / {database:.2f} |"
        )
    return rows


def render(
    *,
    samples: list[Sample],
    summary: dict[str, Any],
    info: dict[str, str],
    command: str,
    server: str,
    options: argparse.Namespace,
    client: str,
    profile_report: dict[str, Any] | None,
    started: datetime,
    warnings: list[str],
) -> str:
    rounds = sorted({s.round for s in samples})
    by = {(s.phase, s.round): s for s in samples}
    target = TARGET_RATIO_FORWARDING if options.forwarding else TARGET_RATIO
    out = [
        f"Run of {started:%Y-%m-%d %H:%M} UTC: `{command}`",
        "",
        *(f"**{warning}**\n" for warning in warnings),
        "| machine and software | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in info.items()),
        "",
        f"Server: `{server}` (the same process serves the app and the ceiling). "
        f"Load: {client}, {options.concurrency} connections for maximum rates, "
        f"{options.batch_concurrency} concurrent batches; rounds: {options.rounds}, "
        f"{options.duration} s per measure in each; maximum rates measured in "
        f"{options.slice} s slices interleaving ceiling, intake and LeadConduit "
        "URL; "
        f"{options.events:,} seeded deliveries.",
        "",
        "| measure | " + " | ".join(f"round {r}" for r in rounds) + " | median |",
        "|---|" + "---:|" * (len(rounds) + 1),
    ]

    def rate_row(phase: str, value: float) -> str:
        cells = [f"{by[(phase, r)].rate:,.0f}" for r in rounds]
        return f"| {PHASES[phase]} | " + " | ".join(cells) + f" | {value:,.0f} |"

    def latency_row(phase: str, p50: float, p99: float) -> str:
        def cell(sample: Sample) -> str:
            if sample.p50_ms is None or sample.p99_ms is None:
                return "no answer"
            return f"{sample.p50_ms:.1f} / {sample.p99_ms:.1f}"

        cells = [cell(by[(phase, r)]) for r in rounds]
        return (
            f"| {PHASES[phase]} | " + " | ".join(cells) + f" | {p50:.1f} / {p99:.1f} |"
        )

    offered = [f"{by[('api_paced', r)].offered_rate:,.0f}" for r in rounds]
    ratio_cells = [f"{ratio:.0%}" for ratio in summary["ratios"]]
    out += [
        rate_row("ceiling", summary["ceiling_rate"]),
        rate_row("api", summary["api_rate"]),
        "| intake / ceiling | "
        + " | ".join(ratio_cells)
        + f" | {summary['ratio']:.0%} |",
        "| offered rate for the latency runs (req/s) | "
        + " | ".join(offered)
        + f" | {summary['paced_rate']:,.0f} |",
        latency_row("api_paced", summary["api_p50"], summary["api_p99"]),
        latency_row("ceiling_paced", summary["ceiling_p50"], summary["ceiling_p99"]),
        rate_row("lc", summary["lc_rate"]),
        "| LeadConduit URL / ceiling | "
        + " | ".join(f"{ratio:.0%}" for ratio in summary["lc_ratios"])
        + f" | {summary['lc_ratio']:.0%} |",
        rate_row("items", summary["items_rate"]),
        "| items feedback/s ÷ ceiling req/s (noise-normalised) | "
        + " | ".join(f"{ratio:.1f}" for ratio in summary["items_ratios"])
        + f" | {median(summary['items_ratios']):.1f} |",
        *cpu_rows(by, rounds),
        "",
    ]
    unexpected = [s for s in samples if s.unexpected]
    if unexpected:
        out.append("Unexpected answers, connection errors, or no answer at all:")
        out.append("")
        out += [
            f"- {s.phase}, round {s.round}: {s.statuses or 'no answer'}, "
            f"{s.errors} errors"
            for s in unexpected
        ]
    else:
        out.append(
            "Every request got the expected answer (201; 200 with all items accepted "
            "for batches)."
        )
    if summary["missing_rows"]:
        out.append(
            f"**{summary['missing_rows']} accepted feedback have no successful row.**"
        )
    else:
        out.append("The database gained a successful feedback row for each of them.")
    out += [
        "",
        "| target | median | result |",
        "|---|---:|---|",
        f"| single-feedback intake{' with forwarding' if options.forwarding else ''} "
        f"≥ {target:.0%} of the ceiling's rate "
        f"| {summary['ratio']:.0%} | {verdict(summary['ratio'] >= target)} |",
        f"| p99 ≤ {TARGET_P99_MS:.0f} ms at half the maximum rate "
        f"| {summary['api_p99']:.1f} ms | "
        f"{verdict(summary['api_p99'] <= TARGET_P99_MS)} |",
        f"| `items` batches ≥ {TARGET_ITEMS_PER_S:,.0f} feedback/s "
        f"| {summary['items_rate']:,.0f} /s | "
        f"{verdict(summary['items_rate'] >= TARGET_ITEMS_PER_S)} |",
    ]
    if profile_report:
        names = {
            "ceiling": "ceiling",
            "api": "POST /api/v1/feedback",
            "lc": "POST /feedback",
            "items": "items batch of 1,000",
        }
        out += [
            "",
            "In-process, one request after another (Django test client, no HTTP "
            f"server; {options.profile_requests} requests each, batches "
            f"{max(2, options.profile_requests // 100)}): time per request, time "
            "inside SQL statements, and the share of a cProfile run spent in each "
            "layer (full profiles in `var/bench/profile-*.txt`).",
            "",
            "| endpoint | ms per request | SQL statements | ms in SQL | "
            "where the time goes (cProfile) |",
            "|---|---:|---:|---:|---|",
        ]
        for name, row in profile_report.items():
            shares = ", ".join(
                f"{label} {share:.0%}"
                for label, share in row["shares"].items()
                if share >= 0.03
            )
            out.append(
                f"| {names[name]} | {row['ms_per_request']:.2f} | "
                f"{row['queries_per_request']:g} | {row['sql_ms_per_request']:.2f} | "
                f"{shares} |"
            )
        out += ["", "Statements per request (besides BEGIN/COMMIT):", ""]
        out += [
            f"- {names[name]}: " + ", ".join(f"`{s}`" for s in row["statements"])
            for name, row in profile_report.items()
        ]
    return "\n".join(out) + "\n"


# Main -----------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measure")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--concurrency", type=int, default=8, help="connections for maximum rates"
    )
    parser.add_argument(
        "--slice",
        type=int,
        default=2,
        help="seconds per interleaved slice of the maximum-rate measures",
    )
    parser.add_argument("--batch-concurrency", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--worker-class", default="sync")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--events", type=int, default=30_000, help="deliveries")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--profile-requests", type=int, default=100)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--update-docs", action="store_true", help=f"write results into {DOCS}"
    )
    parser.add_argument(
        "--keep-db", action="store_true", help="do not drop the database"
    )
    parser.add_argument(
        "--forwarding",
        action="store_true",
        help="a real-time config on the source and a Redis broker (see above)",
    )
    parser.add_argument(
        "--suppression",
        action="store_true",
        help="a suppression list of conversions: every feedback adds two entries",
    )
    parser.add_argument(
        "--broker-url",
        default=DEFAULT_BROKER_URL,
        help="the Redis database --forwarding queues into (flushed)",
    )
    return parser.parse_args()


def main() -> None:
    if "--returns" in sys.argv[1:]:
        # Returns with review and a cap against plain returns (intake_returns.py).
        import intake_returns

        intake_returns.main(sys.argv[1:])
        return
    options = parse_args()
    started = datetime.now(UTC)
    command = shlex.join(["bench/intake.py", *sys.argv[1:]])
    command = f".venv/bin/python {command}"
    use_wrk = options.client == "wrk" or (
        options.client == "auto" and shutil.which("wrk") is not None
    )
    if options.client == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    client = (
        f"wrk ({WRK_THREADS} thread, bench/intake.lua) for maximum rates and a "
        "Python asyncio client for open-loop latency and batches"
        if use_wrk
        else "a Python asyncio client for everything (no wrk; it takes more CPU "
        "from the server than wrk would)"
    )
    VAR.mkdir(parents=True, exist_ok=True)
    broker_url = options.broker_url if options.forwarding else ""
    if broker_url and not broker_url.startswith("redis://"):
        raise SystemExit("--broker-url must be a redis:// URL (it is flushed)")
    configure_environment(options.database_url, broker_url)
    print(f"seeding {options.events:,} deliveries in a fresh database …", flush=True)
    recreate_database(options.database_url)
    samples: list[Sample] = []
    profile_report = None
    load_before = 0.0
    try:
        t0 = time.monotonic()
        key = seed(options.events)
        if options.forwarding:
            forwarding_configure()
            broker_flush(broker_url)
        if options.suppression:
            suppression_configure()
        print(f"  seeded in {time.monotonic() - t0:.1f} s", flush=True)
        info = machine()
        load_before = os.getloadavg()[0]
        from django.db import connection

        connection.close()
        events = Events(options.events)
        port = options.port or free_port()
        with gunicorn(
            port,
            workers=options.workers,
            worker_class=options.worker_class,
            threads=options.threads,
        ) as (server_command, server_group):
            server = shlex.join(["gunicorn", *server_command[3:]])
            phase_runner = PhaseRunner(
                options, port, key, events, use_wrk, server_group
            )
            print("warming up …", flush=True)
            phase_runner.warm_up()
            for round_number in range(1, options.rounds + 1):
                samples += phase_runner.round(round_number)
        info["load after the rounds (includes the bench)"] = load_average()
        info["server errors"] = server_errors()
        if options.forwarding:
            info["notifications written (one per accepted feedback)"] = (
                f"{notifications_written():,} for {successful_feedback_rows():,}"
            )
        if options.profile_requests:
            print("profiling in-process …", flush=True)
            profile_report = profile(key, events, options.profile_requests)
    finally:
        from django.db import connections

        connections.close_all()
        if not options.keep_db:
            recreate_database(options.database_url, drop_only=True)
        if broker_url:
            broker_flush(broker_url)

    summary = summarise(samples)
    warnings = []
    cpus = len(os.sched_getaffinity(0))
    if load_before > cpus:
        warnings.append(
            f"Other work kept the machine busy (load {load_before:.1f} on {cpus} "
            "CPUs before the rounds): "
            "absolute rates and latencies are pessimistic; ratios to the ceiling "
            "hold up better."
        )
    block = render(
        samples=samples,
        summary=summary,
        info=info,
        command=command,
        server=server,
        options=options,
        client=client,
        profile_report=profile_report,
        started=started,
        warnings=warnings,
    )
    (VAR / "intake.json").write_text(
        json.dumps(
            {
                "command": command,
                "started": started.isoformat(),
                "machine": info,
                "server": server,
                "options": vars(options),
                "summary": summary,
                "samples": [asdict(s) for s in samples],
                "profile": profile_report,
            },
            indent=2,
        )
    )
    print()
    print(block)
    elapsed = datetime.now(UTC) - started
    print(f"finished in {elapsed.total_seconds():.0f} s")
    if options.update_docs:
        marker = (
            "bench/intake.py --forwarding" if options.forwarding else "bench/intake.py"
        )
        replace_marked(DOCS, marker, block)
        print(f"results written to {DOCS.relative_to(ROOT)}")


@dataclass
class PhaseRunner:
    options: argparse.Namespace
    port: int
    key: str
    events: Events
    use_wrk: bool
    server_group: int

    def max_rate(self, mode: str, duration: int) -> tuple[float, dict[str, int], int]:
        if self.use_wrk:
            return run_wrk(
                mode=mode,
                port=self.port,
                key=self.key,
                events=self.events,
                duration=duration,
                concurrency=self.options.concurrency,
            )
        build = request_builder(mode, self.port, self.key, self.events)
        return asyncio.run(
            closed_loop(build, self.port, duration, self.options.concurrency)
        )

    def warm_up(self) -> None:
        for mode in ("ceiling", "api", "lc"):
            self.max_rate(mode, 2)
        asyncio.run(self._batches(2))

    def _batches(self, duration: float) -> Any:
        return item_batches(
            port=self.port,
            key=self.key,
            events=self.events,
            size=self.options.batch_size,
            duration=duration,
            concurrency=self.options.batch_concurrency,
        )

    def round(self, number: int) -> list[Sample]:
        duration = self.options.duration
        samples = []

        def counted(phase: str, run: Callable[[], Sample]) -> Sample:
            before = None if phase.startswith("ceiling") else successful_feedback_rows()
            sample = run()
            if before is not None:
                sample.rows = successful_feedback_rows() - before
            return sample

        def report(sample: Sample) -> Sample:
            samples.append(sample)
            print(f"  round {number} {sample.phase:14} {describe(sample)}", flush=True)
            return sample

        def maximum(phase: str, seconds: int) -> Sample:
            database = database_name(self.options.database_url)
            before = cpu_seconds(self.server_group, database)
            elapsed, statuses, errors = self.max_rate(phase, seconds)
            after = cpu_seconds(self.server_group, database)
            ok = statuses.get("201", 0)
            sample = Sample(phase, number, elapsed, statuses, errors, ok, ok)
            if before is not None and after is not None:
                sample.server_cpu_s = after[0] - before[0]
                sample.database_cpu_s = after[1] - before[1]
            return sample

        def paced(phase: str, mode: str, rate: float) -> Sample:
            build = request_builder(mode, self.port, self.key, self.events)
            seconds, statuses, errors, latencies = asyncio.run(
                open_loop(build, self.port, rate, duration)
            )
            ok = statuses.get("201", 0)
            return Sample(
                phase,
                number,
                seconds,
                statuses,
                errors,
                ok,
                ok,
                offered_rate=rate,
                p50_ms=percentile(latencies, 50) if latencies else None,
                p99_ms=percentile(latencies, 99) if latencies else None,
            )

        def batches() -> Sample:
            seconds, statuses, errors, accepted = asyncio.run(self._batches(duration))
            ok = statuses.get("200", 0)
            return Sample("items", number, seconds, statuses, errors, ok, accepted)

        # Maximum rates in short interleaved slices (ceiling, intake, LeadConduit
        # URL, again...): the load of other tenants changes within seconds, and
        # slices share it far more evenly than one long run each.
        slices = max(1, duration // self.options.slice)
        parts: dict[str, list[Sample]] = {"ceiling": [], "api": [], "lc": []}
        for _ in range(slices):
            for phase, runs in parts.items():
                runs.append(
                    counted(phase, lambda p=phase: maximum(p, duration // slices))
                )
        merged = {phase: report(merge(runs)) for phase, runs in parts.items()}
        half = max(1.0, merged["api"].rate / 2)
        time.sleep(0.5)
        report(counted("api_paced", lambda: paced("api_paced", "api", half)))
        time.sleep(0.5)
        report(paced("ceiling_paced", "ceiling", half))
        time.sleep(0.5)
        report(counted("items", batches))
        return samples


def merge(runs: list[Sample]) -> Sample:
    """The slices of one measure as one sample."""
    statuses: Counter[str] = Counter()
    for run in runs:
        statuses.update(run.statuses)
    rows = [run.rows for run in runs if run.rows is not None]
    measured = all(run.server_cpu_s is not None for run in runs)
    return Sample(
        runs[0].phase,
        runs[0].round,
        sum(run.seconds for run in runs),
        dict(statuses),
        sum(run.errors for run in runs),
        sum(run.accepted for run in runs),
        sum(run.feedback for run in runs),
        rows=sum(rows) if rows else None,
        server_cpu_s=sum(run.server_cpu_s or 0 for run in runs) if measured else None,
        database_cpu_s=sum(run.database_cpu_s or 0 for run in runs)
        if measured
        else None,
    )


def describe(sample: Sample) -> str:
    text = f"{sample.rate:8,.0f}/s"
    if sample.p99_ms is not None:
        text += f"  p50 {sample.p50_ms:.1f} ms  p99 {sample.p99_ms:.1f} ms"
        text += f"  (offered {sample.offered_rate:,.0f}/s)"
    if sample.unexpected:
        text += f"  unexpected: {sample.statuses} errors={sample.errors}"
    if sample.rows is not None and sample.rows < sample.feedback:
        text += f"  only {sample.rows} rows for {sample.feedback} accepted!"
    return text


if __name__ == "__main__":
    main()
