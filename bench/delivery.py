"""Delivery engine benchmark: Celery workers forwarding feedback to a local source.

    .venv/bin/python bench/delivery.py [--notifications 800] [--rounds 3]

Creates a fresh PostgreSQL database with one buyer, source and enabled JSON config
pointing at a fast local receiver (bench/delivery_receiver.py, its own process),
flushes a Redis database for the broker, and starts beat (1 s sweep) and gunicorn
(the real intake, 2 workers). Then, for each worker layout (two worker processes:
one prefork worker with two children, two thread-pool workers):

1. throughput, in rounds: a plain `requests.Session` loop in two processes posts
   the engine's own request to the receiver (the ceiling), then N feedback are
   received through `feedback_receive_many` while the workers' consumers are
   cancelled (the on-commit fast path queues N tasks), the consumers are added
   back and the clock runs until every notification has succeeded;
2. latency: feedback posted to `POST /api/v1/feedback` at a steady rate (open
   loop) and, per notification, the time from the feedback's `received_at` (set
   before the intake commits) to its first attempt's `started_at`.

Finally 200 notifications are delivered one by one in this process, timed and
under cProfile, to show where a delivery's time goes. Medians are compared with
the targets, printed as markdown and kept in var/bench/delivery-latest.md and
var/bench/delivery.json. Every process is stopped (by process group), the
database dropped and the Redis database flushed at the end, also after a failure.
"""

import argparse
import contextlib
import cProfile
import io
import json
import multiprocessing
import os
import platform
import pstats
import re
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from common import (
    free_port,
    load_average,
    median,
    percentile,
    revision,
    stop_process_group,
    verdict,
)

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
WORK = VAR / "delivery"  # LEADBACK_VAR_DIR: process logs, beat's schedule file
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/leadback_bench_delivery"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/7"
BUYER, SOURCE, FLOW = "bench-buyer", "bench-source", "bench-flow"
QUEUE = "celery"  # Celery's default queue: the engine's tasks are not routed
INSERT_BATCH = 500

# The acceptance point of the delivery engine.
TARGET_RATE = 300.0
TARGET_P95_MS = 1000.0


# Processes ------------------------------------------------------------------------


class Processes:
    """Child processes, each in its own process group, stopped in reverse order."""

    def __init__(self) -> None:
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, command: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with (WORK / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.running.append((name, process))
        return process

    def stop(self, process: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
        stop_process_group(process, timeout_s)
        self.running = [(n, p) for n, p in self.running if p is not process]

    def stop_all(self) -> None:
        for _, process in reversed(self.running):
            self.stop(process)

    def check(self) -> None:
        for name, process in self.running:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited; see {WORK / (name + '.log')}")


def wait_for_http(url: str, process: subprocess.Popen[bytes], name: str) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited; see {WORK / (name + '.log')}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer at {url}")


def celery_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "config", *args]


@dataclass(frozen=True)
class Layout:
    """Two worker processes, laid out one way."""

    name: str
    label: str
    commands: list[list[str]]  # one `celery worker` command line per process
    hostnames: list[str]


def layouts(names: list[str], threads: int) -> list[Layout]:
    tag = os.getpid()
    result = []
    for name in names:
        if name in ("", "none"):  # the in-process profile only
            continue
        if name == "prefork":
            # Celery's default pool: one worker, two child processes.
            hosts = [f"bench-prefork-{tag}@localhost"]
            args = [["--pool=prefork", "--concurrency=2"]]
            label = "one `--pool=prefork --concurrency=2` (2 child processes)"
        elif name == "solo":
            hosts = [f"bench-solo{i}-{tag}@localhost" for i in (1, 2)]
            args = [["--pool=solo"], ["--pool=solo"]]
            label = "two `--pool=solo` (2 processes, one task at a time each)"
        elif name == "threads":
            # The README's pool, two processes; 64 threads each (its line) could
            # open more connections than PostgreSQL's default 100.
            hosts = [f"bench-threads{i}-{tag}@localhost" for i in (1, 2)]
            args = [["--pool=threads", f"--concurrency={threads}"]] * 2
            label = (
                f"two `--pool=threads --concurrency={threads}` "
                f"(2 processes, {threads} threads each)"
            )
        else:
            raise SystemExit(f"unknown worker layout {name!r}")
        commands = [
            celery_command("worker", "--loglevel=WARNING", f"--hostname={host}", *a)
            for host, a in zip(hosts, args, strict=True)
        ]
        result.append(Layout(name, label, commands, hosts))
    return result


@contextlib.contextmanager
def workers(
    processes: Processes, layout: Layout, settings_module: str | None
) -> Iterator[list[int]]:
    """Start the layout's workers; yields their process-group ids."""
    from config.celery import app

    env = {"DJANGO_SETTINGS_MODULE": settings_module} if settings_module else None
    started = [
        processes.start(f"worker-{layout.name}-{i}", command, env)
        for i, command in enumerate(layout.commands, 1)
    ]
    try:
        deadline = time.monotonic() + 90
        waiting = set(layout.hostnames)
        while waiting:
            processes.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers {waiting} did not answer a ping")
            for reply in app.control.ping(destination=list(waiting), timeout=0.5):
                waiting -= set(reply)
        yield [p.pid for p in started]
    finally:
        for process in started:
            processes.stop(process)


def consumers(layout: Layout, *, on: bool) -> None:
    """Stop or resume taking messages from the queue, on every worker of the layout."""
    from config.celery import app

    control = app.control.add_consumer if on else app.control.cancel_consumer
    replies = control(QUEUE, destination=layout.hostnames, reply=True, timeout=5)
    if len(replies) != len(layout.hostnames):
        raise RuntimeError(f"only {replies} answered {control.__name__}")


# CPU accounting ---------------------------------------------------------------------


TICK = os.sysconf("SC_CLK_TCK")


def cpu_by_process() -> dict[int, tuple[str, int, float]]:
    """pid: (command name, process group, CPU seconds) for every process we can see."""
    seen = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # After the name: state ppid pgrp ... utime stime cutime cstime (12th to
        # 15th). Children's time counts once they are reaped: that is how the
        # short-lived PostgreSQL backends show up, in the postmaster's.
        seen[int(entry.name)] = (
            name,
            int(fields[2]),
            sum(int(value) for value in fields[11:15]) / TICK,
        )
    return seen


def machine_cpu() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy, and stolen by the hypervisor."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    user, nice, system, _, _, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq) / TICK, steal / TICK


class CpuMeter:
    """CPU seconds spent by groups of processes between start() and stop()."""

    def __init__(self, groups: dict[str, Callable[[int, str, int], bool]]) -> None:
        self.groups = groups
        self.before: dict[int, tuple[str, int, float]] = {}
        self.busy = 0.0
        self.steal = 0.0
        self.wall = 0.0
        self.top: list[str] = []

    def start(self) -> None:
        self.before = cpu_by_process()
        self.busy, self.steal = machine_cpu()
        self.wall = time.monotonic()

    def stop(self) -> dict[str, float]:
        after = cpu_by_process()
        busy, steal = machine_cpu()
        result = {"wall": time.monotonic() - self.wall}
        result["machine"] = busy - self.busy
        result["stolen"] = steal - self.steal
        for group in self.groups:
            result[group] = 0.0
        deltas = []
        for pid, (name, pgrp, seconds) in after.items():
            delta = seconds - self.before.get(pid, (name, pgrp, 0.0))[2]
            deltas.append((delta, pid, name))
            for group, matches in self.groups.items():
                if matches(pid, name, pgrp):
                    result[group] += delta
                    break
        result["everything else"] = result["machine"] - sum(
            result[group] for group in self.groups
        )
        self.top = [
            f"{name}[{pid}] {delta:.2f}s"
            for delta, pid, name in sorted(deltas, reverse=True)[:10]
        ]
        return result


# Setup and teardown -------------------------------------------------------------


def configure_environment(options: argparse.Namespace) -> None:
    """One environment for this process, the workers, beat and gunicorn."""
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": options.database_url,
            "CELERY_BROKER_URL": options.broker_url,
            "LEADBACK_VAR_DIR": str(WORK),
            "LEADBACK_OUTBOUND_ALLOWLIST": "127.0.0.1/32",
            "LEADBACK_SWEEP_INTERVAL_S": str(options.sweep_interval),
            "DEBUG": "false",
            # The settings refuse the embedded key outside DEBUG.
            "SECRET_KEY": secrets.token_urlsafe(50),
            # One key sends thousands of requests a second: the limit is still
            # counted on every request, as in production, but never reached.
            "LEADBACK_API_RATE_KEY": "100000000/min",
            "LEADBACK_HTTPS": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            # The engine logs three INFO lines per delivery; the intake bench runs
            # at WARNING too.
            "LOG_LEVEL": "WARNING",
        }
    )
    sys.path.insert(0, str(ROOT))


def recreate_database(database_url: str, *, drop_only: bool = False) -> None:
    import psycopg
    from psycopg import sql

    name = urlsplit(database_url).path.lstrip("/")
    if "bench" not in name:
        # Dropped and created again: refuse anything that may be a real database.
        raise SystemExit(f"refusing to drop {name!r}: its name must contain 'bench'")
    admin_url = urlsplit(database_url)._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            )
        )
        if not drop_only:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def flush_broker(broker_url: str) -> int:
    """FLUSHDB the broker's Redis database; returns how many keys it held."""
    import redis

    client = redis.Redis.from_url(broker_url)
    try:
        keys = int(client.dbsize())
        client.flushdb()
        return keys
    finally:
        client.close()


@dataclass(frozen=True)
class Seeded:
    buyer_id: int
    config_id: int
    api_key: str
    event_ids: list[str]


def seed(deliveries: int, receiver_url: str) -> Seeded:
    """Migrate; one buyer, source, flow, JSON config and `deliveries` deliveries."""
    import django

    django.setup()
    from django.core.management import call_command

    from feedback.models import ApiKey, DeliveryEvent, Lead
    from feedback.services import (
        api_key_create,
        buyer_get_or_create,
        flow_get_or_create,
        source_get_or_create,
    )
    from sources.models import FeedbackConfig, FieldMapping, Kind

    call_command("migrate", verbosity=0)
    buyer = buyer_get_or_create(slug=BUYER)
    source = source_get_or_create(slug=SOURCE)
    flow = flow_get_or_create(slug=FLOW)
    # Configs are made in the admin; the tests create them through the ORM too.
    config = FeedbackConfig.objects.create(
        source=source,
        kind=Kind.CONVERSION,
        method=FeedbackConfig.Method.JSON,
        url=receiver_url,
        timeout_s=10,
        outcome_search_term="^accepted$",
        outcome_search_path="status",
    )
    for position, (target, value) in enumerate(
        [
            ("event.id", "{{ event.id }}"),
            ("event.reference", "{{ event.reference }}"),
            ("lead.email", "{{ lead.email }}"),
            ("conversion.revenue", "{{ feedback.revenue }}"),
            ("conversion.at", "{{ feedback.timestamp }}"),
        ]
    ):
        FieldMapping.objects.create(
            config=config, position=position, target=target, value=value
        )
    delivered_at = datetime.now(UTC) - timedelta(days=1)
    leads = Lead.objects.bulk_create(
        Lead(
            public_id=f"bench-lead-{n}",
            source=source,
            flow=flow,
            data={"first_name": "Bench", "email": f"lead{n}@example.com"},
            email_normalized=f"lead{n}@example.com",
            received_at=delivered_at,
        )
        for n in range(deliveries)
    )
    events = DeliveryEvent.objects.bulk_create(
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
        for n, lead in enumerate(leads)
    )
    _, raw_key = api_key_create(scope=ApiKey.Scope.BUYER, name="bench", buyer=buyer)
    analyze()
    return Seeded(buyer.pk, config.pk, raw_key, [e.event_id for e in events])


def analyze() -> None:
    """Fresh planner statistics, as autovacuum would keep them (it may be off)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def feedback_body(event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "conversion",
        "revenue": "1250.00",
        "quality_score": 5,
        "note": "bench",
    }


class Events:
    """Hands out the seeded deliveries in turn (conversions may repeat)."""

    def __init__(self, event_ids: list[str]) -> None:
        self.event_ids = event_ids
        self.next = 0

    def take(self) -> str:
        event_id = self.event_ids[self.next % len(self.event_ids)]
        self.next += 1
        return event_id


def last_notification_pk() -> int:
    from feedback.forwarding.models import Notification

    return (
        Notification.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    )


def receive(seeded: Seeded, events: Events, count: int) -> tuple[int, int]:
    """Receive `count` feedback through the service, in batches; the intake's
    on-commit fast path queues their notifications. Returns the notifications'
    pk range (first, last)."""
    from feedback.intake.pipeline import feedback_receive_many
    from feedback.models import Buyer, Feedback

    buyer = Buyer.objects.get(pk=seeded.buyer_id)
    first = last_notification_pk() + 1
    for start in range(0, count, INSERT_BATCH):
        items = [
            feedback_body(events.take())
            for _ in range(min(INSERT_BATCH, count - start))
        ]
        results = feedback_receive_many(
            buyer=buyer, items=items, channel=Feedback.Channel.API
        )
        refused = [r for r in results if r.status != "accepted"]
        if refused:
            raise RuntimeError(f"the intake refused feedback: {refused[0].reason}")
    return first, last_notification_pk()


def wait_final(first: int, last: int, timeout_s: float) -> dict[str, int]:
    """Wait until notifications first..last are all final; their statuses."""
    from feedback.forwarding.models import Notification

    rows = Notification.objects.filter(pk__gte=first, pk__lte=last)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not rows.filter(status__in=Notification.OPEN_STATUSES).exists():
            break
        time.sleep(0.1)
    return dict(Counter(rows.values_list("status", flat=True)))


def pg_sessions() -> int:
    """Sessions ever opened to this database (statistics are flushed at least
    once a second, and when a backend exits)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        )
        return int(cursor.fetchone()[0])


def receiver_stats(receiver_url: str) -> dict[str, int]:
    return requests.get(receiver_url, timeout=5).json()


# Measures -----------------------------------------------------------------------------


@dataclass
class Sample:
    """One measure of one round."""

    phase: str  # "ceiling" or a layout name
    round: int
    count: int
    seconds: float
    ok: int
    statuses: dict[str, int] = field(default_factory=dict)
    received: int | None = None  # requests the receiver got
    duplicates: int | None = None  # of which repeated a webhook-id
    cpu: dict[str, float] = field(default_factory=dict)
    busiest: list[str] = field(default_factory=list)
    pg_sessions: int | None = None  # connections opened to the database

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def ceiling_client(
    url: str,
    body: bytes,
    headers: dict[str, str],
    count: int,
    tag: str,
    barrier: Any,
    results: Any,
) -> None:
    """One process of the ceiling: a plain requests loop, one connection."""
    session = requests.Session()
    session.post(url, data=body, headers=headers, timeout=10).content  # noqa: B018
    barrier.wait()
    started = time.time()
    ok = 0
    for number in range(count):
        headers["webhook-id"] = f"{tag}-{number}"
        response = session.post(url, data=body, headers=headers, timeout=10)
        ok += response.status_code == 200 and response.content.startswith(b'{"status')
    results.put((started, time.time(), ok))


def run_ceiling(
    url: str, body: bytes, headers: dict[str, str], count: int, processes: int
) -> tuple[float, int]:
    """The ceiling's (seconds, answered) for `count` requests over `processes`."""
    context = multiprocessing.get_context("spawn")  # nothing inherited from Django
    barrier = context.Barrier(processes)
    results = context.Queue()
    shares = [count // processes + (i < count % processes) for i in range(processes)]
    clients = [
        context.Process(
            target=ceiling_client,
            args=(
                url,
                body,
                dict(headers),
                n,
                f"ceiling-{i}-{time.time_ns()}",
                barrier,
                results,
            ),
        )
        for i, n in enumerate(shares)
    ]
    for client in clients:
        client.start()
    answers = [results.get(timeout=300) for _ in clients]
    for client in clients:
        client.join()
    seconds = max(a[1] for a in answers) - min(a[0] for a in answers)
    return seconds, sum(a[2] for a in answers)


def engine_request(seeded: Seeded) -> tuple[str, bytes, dict[str, str]]:
    """The request the engine sends for one feedback, for the ceiling to post."""
    from django.utils import timezone

    from feedback.models import Feedback
    from feedback.variables import feedback_variables
    from sources.models import FeedbackConfig
    from sources.services import feedback_config_build_request

    feedback = (
        Feedback.objects.select_related(
            "delivery", "lead", "buyer", "source", "flow", "outcome_code"
        )
        .order_by("pk")
        .first()
    )
    assert feedback is not None
    request = feedback_config_build_request(
        config=FeedbackConfig.objects.get(pk=seeded.config_id),
        variables=feedback_variables(feedback=feedback),
        message_id="msg_ceiling",
        now=timezone.now(),
    )
    return request.url, request.body, dict(request.headers)


def run_app_round(
    *,
    layout: Layout,
    seeded: Seeded,
    events: Events,
    count: int,
    receiver_url: str,
    meter: CpuMeter,
    round_number: int,
    timeout_s: float,
) -> Sample:
    """Queue `count` notifications with the consumers off, then time the workers."""
    from django.db.models import Max

    from feedback.forwarding.models import Notification

    consumers(layout, on=False)
    first, last = receive(seeded, events, count)
    queued = Notification.objects.filter(pk__gte=first, pk__lte=last).count()
    if queued != count:
        raise RuntimeError(f"{count} feedback made {queued} notifications")
    before = receiver_stats(receiver_url)
    time.sleep(1)  # let the intake's session statistics reach pg_stat_database
    sessions = pg_sessions()
    meter.start()
    started = datetime.now(UTC)
    consumers(layout, on=True)
    statuses = wait_final(first, last, timeout_s)
    cpu = meter.stop()
    after = receiver_stats(receiver_url)
    time.sleep(1)
    sessions = pg_sessions() - sessions
    rows = Notification.objects.filter(pk__gte=first, pk__lte=last)
    finished = rows.aggregate(last=Max("finished_at"))["last"] or datetime.now(UTC)
    succeeded = statuses.get(Notification.Status.SUCCEEDED, 0)
    received = after["requests"] - before["requests"]
    return Sample(
        phase=layout.name,
        round=round_number,
        count=count,
        seconds=(finished - started).total_seconds(),
        ok=succeeded,
        statuses=statuses,
        received=received,
        duplicates=received - (after["ids"] - before["ids"]),
        cpu=cpu,
        busiest=meter.top,
        pg_sessions=sessions,
    )


@dataclass
class Latency:
    layout: str
    rate: float
    seconds: float
    posted: int
    answered: int  # 201
    notifications: int
    attempted: int
    commit_ms: list[float]  # received_at -> first attempt
    response_ms: list[float]  # client saw the 201 -> first attempt
    http_ms: list[float]  # intake request latency, from when it was due

    def summary(self) -> dict[str, float | int | None]:
        def pct(values: list[float], p: float) -> float | None:
            return percentile(values, p) if values else None

        return {
            "layout": self.layout,
            "rate": self.rate,
            "posted": self.posted,
            "answered": self.answered,
            "notifications": self.notifications,
            "attempted": self.attempted,
            "p50_ms": pct(self.commit_ms, 50),
            "p95_ms": pct(self.commit_ms, 95),
            "p99_ms": pct(self.commit_ms, 99),
            "max_ms": max(self.commit_ms) if self.commit_ms else None,
            "from_response_p50_ms": pct(self.response_ms, 50),
            "from_response_p95_ms": pct(self.response_ms, 95),
            "http_p50_ms": pct(self.http_ms, 50),
            "http_p99_ms": pct(self.http_ms, 99),
        }


def run_latency(
    *,
    layout: Layout,
    port: int,
    seeded: Seeded,
    events: Events,
    rate: float,
    duration: float,
) -> Latency:
    """Post feedback to the intake at `rate` per second, open loop, for `duration`."""
    from feedback.forwarding.models import Notification, NotificationAttempt

    count = max(1, int(rate * duration))
    url = f"http://127.0.0.1:{port}/api/v1/feedback"
    headers = {"X-API-Key": seeded.api_key, "Content-Type": "application/json"}
    local = threading.local()
    first = last_notification_pk() + 1

    def post(due: float, event_id: str) -> tuple[float, int, float, str]:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        body = json.dumps(feedback_body(event_id))
        try:
            response = session.post(url, data=body, headers=headers, timeout=30)
        except requests.RequestException:
            return due, 0, time.time(), ""
        answered = time.time()
        feedback_id = ""
        if response.status_code == 201:
            feedback_id = response.json().get("feedback_id", "")
        return due, response.status_code, answered, feedback_id

    # Open loop: a request goes out when it is due whatever the earlier ones take.
    with ThreadPoolExecutor(max_workers=32) as pool:
        start = time.time() + 0.1
        futures = []
        for index in range(count):
            due = start + index / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(post, due, events.take()))
        answers = [f.result() for f in futures]
    seconds = time.time() - start
    answered_at = {fid: at for _, status, at, fid in answers if status == 201}
    last = last_notification_pk()
    wait_final(first, last, timeout_s=60)
    attempts = NotificationAttempt.objects.filter(
        notification_id__gte=first, notification_id__lte=last, number=1
    ).values_list(
        "started_at",
        "notification__feedback__received_at",
        "notification__feedback__public_id",
    )
    commit_ms, response_ms = [], []
    for started, received_at, feedback_id in attempts:
        commit_ms.append((started - received_at).total_seconds() * 1000)
        at = answered_at.get(str(feedback_id))
        if at is not None:
            response_ms.append((started.timestamp() - at) * 1000)
    notifications = Notification.objects.filter(pk__gte=first, pk__lte=last).count()
    return Latency(
        layout=layout.name,
        rate=rate,
        seconds=seconds,
        posted=count,
        answered=len(answered_at),
        notifications=notifications,
        attempted=len(commit_ms),
        commit_ms=commit_ms,
        response_ms=response_ms,
        http_ms=[(at - due) * 1000 for due, status, at, _ in answers if status],
    )


# Profile ------------------------------------------------------------------------------

STAGES = [
    # (label, file suffix, function): cumulative time inside notification_deliver
    ("variables", "feedback/variables.py", "feedback_variables"),
    ("build the request", "sources/services.py", "feedback_config_build_request"),
    ("send and read the answer", "sources/services.py", "feedback_config_send"),
    ("record the attempts", "feedback/forwarding/engine.py", "_record"),
]
LAYERS = [
    ("PostgreSQL driver (psycopg, waits on the server)", ("psycopg",)),
    ("Django ORM", ("/django/db/",)),
    (
        "HTTP client (requests, urllib3, http.client, socket)",
        (
            "/requests/",
            "/urllib3/",
            "http/client.py",
            "socket",
            "ssl",
        ),
    ),
    ("Leadback code", ("/feedback/", "/sources/")),
]


def layer(filename: str, function: str) -> str:
    where = f"{filename} {function}"
    for label, needles in LAYERS:
        if any(needle in where for needle in needles):
            if label == "Leadback code" and "/.venv/" in filename:
                continue
            return label
    return "other (Django, stdlib, json, templating, logging, ...)"


def statement(sql: str) -> str:
    """`SELECT feedback_notification +8 joins`: the verb, first table and joins."""
    table = re.search(r'\b(?:FROM|INTO|UPDATE)\s+"(\w+)"', sql)
    label = f"{sql.split(None, 1)[0]} {table.group(1) if table else '?'}"
    joins = sql.count(" JOIN ")
    if joins:
        label += f" +{joins} joins"
    if "FOR UPDATE" in sql:
        label += " FOR UPDATE"
    return label


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def profile_deliver(
    seeded: Seeded, events: Events, count: int, receiver_url: str
) -> dict[str, Any]:
    """Deliver `count` notifications in this process as a worker does, in messages
    of LEADBACK_DELIVERY_BATCH rows: once timed (SQL statements, this process's
    and its PostgreSQL backend's CPU), once under cProfile. Beside it, the same
    number of the engine's own request posted by a plain `requests.Session` loop
    in this process: the ceiling's CPU per request, measured the same way."""
    from django.conf import settings
    from django.db import connection

    from feedback.forwarding.engine import (
        notifications_claim_due,
        notifications_deliver,
    )
    from feedback.forwarding.models import Notification

    size = max(1, settings.LEADBACK_DELIVERY_BATCH)

    def claims(n: int) -> list[list[Any]]:
        first, last = receive(seeded, events, n)
        # Nothing consumes the queue now: take the rows back from the messages.
        rows = Notification.objects.filter(pk__gte=first, pk__lte=last)
        rows.update(lease_token=None, lease_expires_at=None)
        taken = notifications_claim_due(ids=range(first, last + 1), limit=n)
        return [taken[i : i + size] for i in range(0, len(taken), size)]

    def deliver(messages: list[list[Any]]) -> int:
        delivered = 0
        for message in messages:
            rows = notifications_deliver(claims=message)
            delivered += sum(
                row.status == Notification.Status.SUCCEEDED for row in rows
            )
        return delivered

    deliver(claims(2 * size))  # warm the connection, the session and imports

    url, body, headers = engine_request(seeded)
    session = requests.Session()
    session.post(url, data=body, headers=headers, timeout=10).content  # noqa: B018
    started, cpu = time.perf_counter(), time.process_time()
    for number in range(count):
        headers["webhook-id"] = f"profile-ceiling-{number}"
        response = session.post(url, data=body, headers=headers, timeout=10)
        assert response.status_code == 200
    ceiling_ms = (time.perf_counter() - started) * 1000 / count
    ceiling_cpu_ms = (time.process_time() - cpu) * 1000 / count
    session.close()

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = int(cursor.fetchone()[0])
    executed: list[tuple[float, str]] = []

    def record(execute: Any, sql: str, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, *args)
        finally:
            executed.append((time.perf_counter() - started, sql))

    batch = claims(count)
    before = receiver_stats(receiver_url)["requests"]
    started = time.perf_counter()
    cpu, backend_cpu = time.process_time(), process_cpu(backend)
    with connection.execute_wrapper(record):
        succeeded = deliver(batch)
    plain_ms = (time.perf_counter() - started) * 1000 / count
    cpu_ms = (time.process_time() - cpu) * 1000 / count
    backend_ms = (process_cpu(backend) - backend_cpu) * 1000 / count
    received = receiver_stats(receiver_url)["requests"] - before
    if succeeded != count or received != count:
        raise RuntimeError(
            f"profile: {succeeded} of {count} succeeded, the receiver saw {received}"
        )
    by_statement: dict[str, list[float]] = {}
    for seconds, sql in executed:
        by_statement.setdefault(statement(sql), []).append(seconds * 1000)

    batch = claims(count)
    profiler = cProfile.Profile()
    profiler.enable()
    deliver(batch)
    profiler.disable()
    raw = pstats.Stats(profiler).stats  # type: ignore[attr-defined]

    def cumulative(suffix: str, name: str) -> float:
        return sum(
            row[3]
            for (filename, _, function), row in raw.items()
            if filename.endswith(suffix) and function == name
        )

    total = cumulative("feedback/forwarding/engine.py", "notifications_deliver")
    stages = {label: cumulative(suffix, name) for label, suffix, name in STAGES}
    stages = {"lease and load the rows": total - sum(stages.values()), **stages}
    layers: Counter[str] = Counter()
    for (filename, _, function), row in raw.items():
        layers[layer(filename, function)] += row[2]
    layer_total = sum(layers.values())
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
    (VAR / "profile-delivery.txt").write_text(text.getvalue())
    return {
        "count": count,
        "message_rows": size,
        "ms_per_delivery": round(plain_ms, 3),
        "cpu_ms": round(cpu_ms, 3),
        "backend_cpu_ms": round(backend_ms, 3),
        "ceiling_ms": round(ceiling_ms, 3),
        "ceiling_cpu_ms": round(ceiling_cpu_ms, 3),
        "sql_statements": round(len(executed) / count, 2),
        "sql_ms": round(sum(s for s, _ in executed) * 1000 / count, 3),
        "statements": {
            label: {"per_delivery": len(times) / count, "median_ms": median(times)}
            for label, times in by_statement.items()
        },
        "profiled_ms": round(total * 1000 / count, 3),
        "stages": {k: round(v / total, 3) for k, v in stages.items()} if total else {},
        "layers": {k: round(v / layer_total, 3) for k, v in layers.most_common()},
    }


# Reporting -------------------------------------------------------------------------


def machine(broker_url: str) -> dict[str, str]:
    import celery
    import django
    import gunicorn
    import redis
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
        cursor.execute("SHOW autovacuum")
        autovacuum = cursor.fetchone()[0]
    client = redis.Redis.from_url(broker_url)
    try:
        redis_version = client.info("server")["redis_version"]
    finally:
        client.close()
    return {
        "cpus": f"{os.cpu_count()} (nproc {len(os.sched_getaffinity(0))})",
        "cpu": model.group(1).strip() if model else platform.processor(),
        "memory": f"{int(memory.group(1)) / 1024 / 1024:.1f} GiB" if memory else "?",
        "kernel": platform.release(),
        "postgresql": f"{pg_version} (synchronous_commit={synchronous_commit}, "
        f"autovacuum={autovacuum})",
        "redis": f"{redis_version} (broker database {urlsplit(broker_url).path[1:]})",
        "python": platform.python_version(),
        "django / celery / gunicorn / requests": (
            f"{django.get_version()} / {celery.__version__} / "
            f"{gunicorn.__version__} / {requests.__version__}"
        ),
        "code": revision(),
        "load before the rounds": load_average(),
    }


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def render(
    *,
    samples: list[Sample],
    latencies: list[Latency],
    chosen: list[Layout],
    info: dict[str, str],
    profile: dict[str, Any] | None,
    options: argparse.Namespace,
    command: str,
    started: datetime,
) -> str:
    workers_note = (
        f" The workers ran with `DJANGO_SETTINGS_MODULE={options.worker_settings}`."
        if options.worker_settings
        else ""
    )
    out = [
        f"Run of {started:%Y-%m-%d %H:%M} UTC: `{command}`",
        "",
        "| machine and software | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in info.items()),
        "",
        "Worker layouts, each two worker processes, beside one `celery beat` "
        f"(`LEADBACK_SWEEP_INTERVAL_S={options.sweep_interval:g}`), Redis as the "
        "broker and the app's own settings (`CELERY_TASK_ACKS_LATE`, prefetch "
        f"multiplier 1, `LOG_LEVEL=WARNING`).{workers_note}",
        "",
        *(f"- **{layout.name}**: {layout.label}" for layout in chosen),
        "",
        *render_throughput(samples, chosen, options),
        *render_cpu(samples, chosen),
        *render_latency(latencies, options),
        *render_targets(samples, latencies, chosen),
        *(render_profile(profile) if profile else []),
    ]
    return "\n".join(out) + "\n"


def rates_of(samples: list[Sample], phase: str) -> list[float]:
    return [s.rate for s in samples if s.phase == phase]


def render_throughput(
    samples: list[Sample], chosen: list[Layout], options: argparse.Namespace
) -> list[str]:
    rounds = sorted({s.round for s in samples})
    by = {(s.phase, s.round): s for s in samples}

    def row(label: str, phase: str) -> str:
        cells = [f"{by[(phase, r)].rate:,.0f}" for r in rounds if (phase, r) in by]
        value = median(rates_of(samples, phase))
        return f"| {label} | " + " | ".join(cells) + f" | {value:,.0f} |"

    out = [
        f"#### Throughput: {options.notifications:,} notifications per round",
        "",
        "| measure | " + " | ".join(f"round {r}" for r in rounds) + " | median |",
        "|---|" + "---:|" * (len(rounds) + 1),
    ]
    for layout in chosen:
        ceiling = f"ceiling-{layout.name}"
        ratios = [
            by[(layout.name, r)].rate / by[(ceiling, r)].rate
            for r in rounds
            if (layout.name, r) in by and (ceiling, r) in by and by[(ceiling, r)].rate
        ]
        out += [
            row(
                f"ceiling before each {layout.name} round: plain `requests.Session` "
                f"loop, {options.ceiling_processes} processes (req/s)",
                ceiling,
            ),
            row(f"**{layout.name}: deliveries/s**", layout.name),
            f"| {layout.name} ÷ ceiling | "
            + " | ".join(f"{r:.0%}" for r in ratios)
            + f" | {median(ratios):.0%} |",
        ]
    out.append("")
    problems = [s for s in samples if s.ok != s.count or (s.duplicates or 0) > 0]
    out += [
        f"- {s.phase}, round {s.round}: {s.ok:,} of {s.count:,} succeeded "
        f"({s.statuses or 'answers'}); the receiver got {s.received} requests, "
        f"{s.duplicates} of them a repeated webhook-id"
        for s in problems
    ] or [
        "Every notification succeeded, every ceiling request was answered, and the "
        "receiver saw each webhook-id exactly once."
    ]
    return [*out, ""]


def render_cpu(samples: list[Sample], chosen: list[Layout]) -> list[str]:
    with_cpu = [s for s in samples if s.cpu]
    if not with_cpu:
        return []
    groups = [k for k in with_cpu[0].cpu if k not in ("wall", "machine", "stolen")]
    cpus = len(os.sched_getaffinity(0))
    out = [
        "CPU while the workers delivered (median over the rounds): CPU time per "
        f"delivery, and in brackets the share of the machine's {cpus} CPUs. "
        "*postgres* counts every PostgreSQL process, other databases' included, "
        "and backends that exited during the round; *everything else* is the rest "
        "of the machine's busy time (other tenants, the kernel).",
        "",
        "| layout | new PostgreSQL sessions per delivery | machine busy | "
        + " | ".join(groups)
        + " | stolen by the hypervisor |",
        "|---|---:|---:|" + "---:|" * (len(groups) + 1),
    ]
    for layout in chosen:
        mine = [s for s in with_cpu if s.phase == layout.name]
        if not mine:
            continue

        def cell(key: str, mine: list[Sample] = mine) -> str:
            per = median([s.cpu[key] * 1000 / max(s.ok, 1) for s in mine])
            share = median([s.cpu[key] / (s.cpu["wall"] * cpus) for s in mine])
            return f"{per:.1f} ms ({share:.0%})"

        sessions = median([(s.pg_sessions or 0) / max(s.ok, 1) for s in mine])
        out.append(
            f"| {layout.name} | {sessions:.2f} | {cell('machine')} | "
            + " | ".join(cell(g) for g in groups)
            + f" | {cell('stolen')} |"
        )
    return [*out, ""]


def render_latency(latencies: list[Latency], options: argparse.Namespace) -> list[str]:
    out = [
        f"#### Latency: intake commit to first attempt at {options.rate:g} feedback/s",
        "",
        "`POST /api/v1/feedback` on gunicorn (`config.wsgi`, 2 sync workers), one "
        f"feedback per request, open loop for {options.duration:g} s. Per "
        "notification, from its feedback's `received_at` (stamped before the "
        "intake's transaction commits, so this overstates a little) to its first "
        "attempt's `started_at`; the last column starts the clock when the client "
        "had the 201 instead.",
        "",
        "| layout | posted / 201 | attempted | p50 | p95 | p99 | max | "
        "intake request p50 / p99 | from the 201: p50 / p95 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lat in latencies:
        s = lat.summary()
        out.append(
            f"| {lat.layout} | {lat.posted} / {lat.answered} | "
            f"{lat.attempted} of {lat.notifications} | {ms(s['p50_ms'])} ms | "
            f"{ms(s['p95_ms'])} ms | {ms(s['p99_ms'])} ms | {ms(s['max_ms'])} ms | "
            f"{ms(s['http_p50_ms'])} / {ms(s['http_p99_ms'])} ms | "
            f"{ms(s['from_response_p50_ms'])} / {ms(s['from_response_p95_ms'])} ms |"
        )
    return [*out, ""]


def render_targets(
    samples: list[Sample], latencies: list[Latency], chosen: list[Layout]
) -> list[str]:
    out = ["#### Targets", "", "| target | layout | median | result |"]
    out.append("|---|---|---:|---|")
    for layout in chosen:
        rate = median(rates_of(samples, layout.name))
        out.append(
            f"| ≥ {TARGET_RATE:.0f} deliveries/s with 2 worker processes | "
            f"{layout.name} | {rate:,.0f} /s | {verdict(rate >= TARGET_RATE)} |"
        )
    for lat in latencies:
        p95 = lat.summary()["p95_ms"]
        complete = lat.attempted == lat.notifications == lat.posted
        ok = p95 is not None and p95 <= TARGET_P95_MS and complete
        out.append(
            f"| commit-to-first-attempt p95 ≤ {TARGET_P95_MS / 1000:.0f} s at "
            f"{lat.rate:g} feedback/s | {lat.layout} | {ms(p95)} ms | {verdict(ok)} |"
        )
    return [*out, ""]


def render_profile(profile: dict[str, Any]) -> list[str]:
    engine_cpu = profile["cpu_ms"] + profile["backend_cpu_ms"]
    out = [
        f"#### One delivery, in-process ({profile['count']} notifications in "
        f"messages of {profile['message_rows']} rows as a worker takes them, "
        "no Celery)",
        "",
        f"{profile['ms_per_delivery']:.2f} ms per delivery (≈ "
        f"{1000 / profile['ms_per_delivery']:,.0f}/s for one process), of which "
        f"{profile['cpu_ms']:.2f} ms of this process's CPU and "
        f"{profile['backend_cpu_ms']:.2f} ms of its PostgreSQL backend's CPU; "
        f"the plain loop's request took {profile['ceiling_ms']:.2f} ms and "
        f"{profile['ceiling_cpu_ms']:.2f} ms of CPU in the same process "
        f"(engine CPU ÷ loop CPU: "
        f"{engine_cpu / profile['ceiling_cpu_ms']:.2f}). "
        f"{profile['sql_statements']:g} statements per delivery (BEGIN/COMMIT not "
        f"counted) taking {profile['sql_ms']:.2f} ms:",
        "",
        "| statement | per delivery | median ms |",
        "|---|---:|---:|",
        *(
            f"| `{label}` | {row['per_delivery']:g} | {row['median_ms']:.2f} |"
            for label, row in profile["statements"].items()
        ),
        "",
        f"Under cProfile ({profile['profiled_ms']:.1f} ms per delivery), by stage: "
        + ", ".join(f"{k} {v:.0%}" for k, v in profile["stages"].items())
        + "; by layer (own time): "
        + ", ".join(f"{k} {v:.0%}" for k, v in profile["layers"].items() if v >= 0.02)
        + ". Full profile: `var/bench/profile-delivery.txt`.",
        "",
    ]
    return out


# Main ------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--notifications", type=int, default=800, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--layouts",
        default="prefork,threads",
        help="worker layouts, comma-separated: prefork, threads, solo",
    )
    parser.add_argument("--threads", type=int, default=8, help="per thread-pool worker")
    parser.add_argument("--ceiling-processes", type=int, default=2)
    parser.add_argument("--rate", type=float, default=20.0, help="feedback/s (latency)")
    parser.add_argument("--duration", type=float, default=20.0, help="latency seconds")
    parser.add_argument("--sweep-interval", type=float, default=1.0)
    parser.add_argument("--profile", type=int, default=200, help="0 skips the profile")
    parser.add_argument("--round-timeout", type=float, default=120.0)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL)
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument(
        "--worker-settings",
        help="DJANGO_SETTINGS_MODULE for the workers only, to try a settings change "
        "(on PYTHONPATH); the report names it",
    )
    return parser.parse_args()


@dataclass
class Results:
    samples: list[Sample] = field(default_factory=list)
    latencies: list[Latency] = field(default_factory=list)
    profile: dict[str, Any] | None = None


def start_services(processes: Processes, receiver_port: int, intake_port: int) -> None:
    """The receiver, the intake (gunicorn, 2 workers) and beat."""
    receiver = processes.start(
        "receiver",
        [sys.executable, "bench/delivery_receiver.py", f"--port={receiver_port}"],
    )
    wait_for_http(f"http://127.0.0.1:{receiver_port}/stats", receiver, "receiver")
    gunicorn = processes.start(
        "gunicorn",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            f"--bind=127.0.0.1:{intake_port}",
            "--workers=2",
            "--log-level=warning",
        ],
    )
    wait_for_http(
        f"http://127.0.0.1:{intake_port}/api/v1/feedback", gunicorn, "gunicorn"
    )
    schedule = WORK / "beat-schedule"
    for stale in WORK.glob("beat-schedule*"):  # a shelve: .dat, .dir, .bak
        stale.unlink()
    processes.start(
        "beat", celery_command("beat", "--loglevel=WARNING", f"--schedule={schedule}")
    )


def cpu_meter(worker_groups: list[int], receiver_group: int) -> CpuMeter:
    me = os.getpid()
    return CpuMeter(
        {
            "workers": lambda pid, name, group: group in worker_groups,
            "postgres": lambda pid, name, group: name.startswith("postgres"),
            "redis": lambda pid, name, group: name.startswith("redis"),
            "receiver": lambda pid, name, group: group == receiver_group,
            "bench": lambda pid, name, group: pid == me,
        }
    )


def measure_layout(
    *,
    layout: Layout,
    options: argparse.Namespace,
    processes: Processes,
    seeded: Seeded,
    events: Events,
    receiver_port: int,
    intake_port: int,
    results: Results,
) -> None:
    stats_url = f"http://127.0.0.1:{receiver_port}/stats"
    receiver_group = next(p.pid for n, p in processes.running if n == "receiver")
    print(f"{layout.name}: starting workers …", flush=True)
    with workers(processes, layout, options.worker_settings) as groups:
        meter = cpu_meter(groups, receiver_group)
        # Warm up: imports, first connections, the guarded session.
        first, last = receive(seeded, events, 100)
        wait_final(first, last, timeout_s=60)
        analyze()
        request = engine_request(seeded)
        for number in range(1, options.rounds + 1):
            processes.check()
            seconds, ok = run_ceiling(
                *request, options.notifications, options.ceiling_processes
            )
            ceiling = Sample(
                f"ceiling-{layout.name}", number, options.notifications, seconds, ok
            )
            results.samples.append(ceiling)
            print(f"  round {number} ceiling {ceiling.rate:8,.0f} req/s", flush=True)
            sample = run_app_round(
                layout=layout,
                seeded=seeded,
                events=events,
                count=options.notifications,
                receiver_url=stats_url,
                meter=meter,
                round_number=number,
                timeout_s=options.round_timeout,
            )
            results.samples.append(sample)
            print(
                f"  round {number} {layout.name} {sample.rate:8,.0f} deliveries/s  "
                f"{sample.statuses}, {sample.duplicates} repeated, "
                f"{sample.pg_sessions} new PostgreSQL sessions",
                flush=True,
            )
        print(f"  latency at {options.rate:g} feedback/s …", flush=True)
        latency = run_latency(
            layout=layout,
            port=intake_port,
            seeded=seeded,
            events=events,
            rate=options.rate,
            duration=options.duration,
        )
        results.latencies.append(latency)
        summary = latency.summary()
        print(
            f"  p50 {ms(summary['p50_ms'])} ms, p95 {ms(summary['p95_ms'])} ms, "
            f"p99 {ms(summary['p99_ms'])} ms ({latency.attempted} of "
            f"{latency.notifications} attempted)",
            flush=True,
        )


def main() -> None:
    options = parse_args()
    started = datetime.now(UTC)
    command = ".venv/bin/python " + shlex.join(["bench/delivery.py", *sys.argv[1:]])
    configure_environment(options)
    chosen = layouts([n.strip() for n in options.layouts.split(",")], options.threads)
    # A plain kill runs the cleanup below too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    processes = Processes()
    results = Results()
    print("fresh database and broker …", flush=True)
    recreate_database(options.database_url)
    flush_broker(options.broker_url)
    try:
        receiver_port, intake_port = free_port(), free_port()
        seeded = seed(options.notifications, f"http://127.0.0.1:{receiver_port}/hook")
        events = Events(seeded.event_ids)
        info = machine(options.broker_url)
        from django.db import connection

        connection.close()
        start_services(processes, receiver_port, intake_port)
        for layout in chosen:
            measure_layout(
                layout=layout,
                options=options,
                processes=processes,
                seeded=seeded,
                events=events,
                receiver_port=receiver_port,
                intake_port=intake_port,
                results=results,
            )
        processes.stop_all()
        flush_broker(options.broker_url)
        if options.profile:
            print("profiling in-process …", flush=True)
            # The rounds stopped every process: the receiver comes back alone.
            receiver = processes.start(
                "receiver-profile",
                [
                    sys.executable,
                    "bench/delivery_receiver.py",
                    f"--port={receiver_port}",
                ],
            )
            receiver_url = f"http://127.0.0.1:{receiver_port}/stats"
            wait_for_http(receiver_url, receiver, "receiver-profile")
            results.profile = profile_deliver(
                seeded, events, options.profile, receiver_url
            )
    finally:
        processes.stop_all()
        from django.db import connections

        connections.close_all()
        if not options.keep_db:
            recreate_database(options.database_url, drop_only=True)
        flush_broker(options.broker_url)
    block = render(
        samples=results.samples,
        latencies=results.latencies,
        chosen=chosen,
        info=info,
        profile=results.profile,
        options=options,
        command=command,
        started=started,
    )
    (VAR / "delivery-latest.md").write_text(block)
    (VAR / "delivery.json").write_text(
        json.dumps(
            {
                "command": command,
                "started": started.isoformat(),
                "machine": info,
                "options": vars(options),
                "samples": [asdict(s) | {"rate": s.rate} for s in results.samples],
                "latency": [lat.summary() for lat in results.latencies],
                "profile": results.profile,
            },
            indent=2,
            default=str,
        )
    )
    print()
    print(block)
    print(f"finished in {(datetime.now(UTC) - started).total_seconds():.0f} s")


if __name__ == "__main__":
    main()
