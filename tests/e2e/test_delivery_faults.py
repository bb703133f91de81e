"""Fault tests of the delivery engine (DESIGN §5.4): PostgreSQL, Redis, real Celery
worker and beat processes, and a local receiver that logs every webhook-id.

The worker and beat run on the test database and on a Redis database of their own
(REDIS_DB, flushed before and after), with a one-second sweep and a compressed retry
schedule. The worker runs with WORKER_POOL_OPTIONS, the command line production
should use. The fault schedule is random; LEADBACK_FAULTS_SEED=<seed> (printed with
the results) replays one.
"""

import json
import os
import random
import socket
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from django.db import connections

from feedback.forwarding import publish
from feedback.forwarding.models import Notification
from feedback.forwarding.tasks import deliver_notifications_task
from feedback.intake.parse import ReceiveStatus
from feedback.intake.pipeline import feedback_receive_many
from feedback.models import DeliveryEvent, Feedback, Lead
from sources.models import FeedbackConfig, FieldMapping, Source
from tests.e2e.processes import (
    WORKER_POOL_OPTIONS,
    CeleryProcess,
    CeleryWorker,
    redis_url_with_db,
    session_database_url,
    this_process_publishes_to,
)
from tests.factories import (
    BuyerFactory,
    DeliveryEventFactory,
    FlowFactory,
    LeadFactory,
    SourceFactory,
)
from tests.sources.servers import Recorded, RecordingServer, Reply

pytestmark = pytest.mark.service

Status = Notification.Status

# LEADBACK_FAULTS_REDIS_DB lets runs that share one Redis keep out of each
# other's way: the tests flush their database.
REDIS_DB = int(os.environ.get("LEADBACK_FAULTS_REDIS_DB", "5"))
# Production's queue lease. A queued message owns its row this long; the sweeper
# queues the row again after that. It has to outlast the broker's backlog: were
# reading the queue to take longer than the lease, every message would be stale by
# the time it is read (its row claimed again since) and nothing would be sent, so a
# short lease on a slow machine stalls this test.
QUEUE_LEASE_S = 60
SWEEP_INTERVAL_S = 1
RETRY_SCHEDULE_S = "0,1,1,2,2,3,3,5,5,5"


# Fixtures -------------------------------------------------------------------------


@dataclass
class Broker:
    url: str
    client: "redis.Redis[bytes]"

    def flush(self) -> int:
        """FLUSHDB; returns how many messages were waiting in the task queue."""
        waiting = int(self.client.llen("celery"))
        self.client.flushdb()
        return waiting


@pytest.fixture
def broker(transactional_db) -> Iterator[Broker]:
    base = os.environ.get("CELERY_BROKER_URL", "")
    if not base.startswith(("redis://", "rediss://")):
        pytest.skip("the fault tests flush Redis: CELERY_BROKER_URL must be redis://")
    url = redis_url_with_db(base, REDIS_DB)
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        with this_process_publishes_to(url):
            yield Broker(url, client)
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def engine_env(broker, settings, tmp_path) -> dict[str, str]:
    # The intake's on-commit fast path claims rows in this process.
    settings.LEADBACK_QUEUE_LEASE_S = QUEUE_LEASE_S
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    return {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "CELERY_BROKER_URL": broker.url,
        "LEADBACK_VAR_DIR": str(var_dir),
        "LEADBACK_QUEUE_LEASE_S": str(QUEUE_LEASE_S),
        "LEADBACK_SWEEP_INTERVAL_S": str(SWEEP_INTERVAL_S),
        "LEADBACK_RETRY_SCHEDULE_S": RETRY_SCHEDULE_S,
        "LEADBACK_OUTBOUND_ALLOWLIST": "127.0.0.1/32",
    }


@pytest.fixture
def worker(engine_env) -> Iterator[CeleryWorker]:
    worker = CeleryWorker(
        ["worker", "--loglevel=WARNING", *WORKER_POOL_OPTIONS], env=engine_env
    )
    try:
        worker.start()
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def beat(engine_env, tmp_path) -> Iterator[CeleryProcess]:
    beat = CeleryProcess(
        "beat",
        ["beat", "--loglevel=WARNING", f"--schedule={tmp_path / 'beat-schedule'}"],
        env=engine_env,
    )
    try:
        beat.start()
        yield beat
    finally:
        beat.stop()


class Receiver(RecordingServer):
    """Answers 200 (after `delay_s`) and notes when each request arrived (epoch
    seconds)."""

    def __init__(self) -> None:
        super().__init__(self._arrived)
        self.arrivals: list[tuple[float, Recorded]] = []
        self.delay_s = 0.0

    def _arrived(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.arrivals.append((time.time(), recorded))
        return Reply(200, b'{"ok": true}', delay_s=self.delay_s)

    def deliveries(self) -> list[tuple[float, str, str, str]]:
        """(arrived, webhook-id, feedback id, path) of every complete request."""
        with self._lock:
            arrivals = list(self.arrivals)
        rows = []
        for arrived, recorded in arrivals:
            try:
                body = json.loads(recorded.body)
            except ValueError:
                continue  # cut off by a killed worker: never a delivery
            rows.append(
                (
                    arrived,
                    recorded.header("webhook-id"),
                    body["feedback"],
                    recorded.path,
                )
            )
        return rows


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


class SilentServer:
    """Accepts TCP connections and never reads or writes: a hung source."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        self._listener.settimeout(0.05)
        self.connections: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/feedback"

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections.append(conn)

    def __enter__(self) -> "SilentServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        for conn in [*self.connections, self._listener]:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    with SilentServer() as server:
        yield server


# Helpers --------------------------------------------------------------------------


def make_config(source: Source, url: str, *, timeout_s: float) -> FeedbackConfig:
    config = FeedbackConfig.objects.create(
        source=source, kind="return", method="json", url=url, timeout_s=timeout_s
    )
    FieldMapping.objects.create(
        config=config, position=0, target="feedback", value="{{ feedback.id }}"
    )
    FieldMapping.objects.create(
        config=config, position=1, target="event", value="{{ event.id }}"
    )
    return config


def make_deliveries(buyer, source: Source, count: int) -> list[DeliveryEvent]:
    flow = FlowFactory()
    leads = Lead.objects.bulk_create(
        [LeadFactory.build(source=source, flow=flow) for _ in range(count)]
    )
    return DeliveryEvent.objects.bulk_create(
        [DeliveryEventFactory.build(lead=lead, buyer=buyer) for lead in leads]
    )


def return_items(deliveries: list[DeliveryEvent]) -> list[dict[str, Any]]:
    return [
        {"event_id": d.event_id, "type": "return", "reason": "Wrong number"}
        for d in deliveries
    ]


def receive(buyer, items: list[dict[str, Any]]) -> list[Feedback]:
    results = feedback_receive_many(
        buyer=buyer, items=items, channel=Feedback.Channel.API
    )
    assert [r.status for r in results] == [ReceiveStatus.ACCEPTED] * len(items)
    return [r.feedback for r in results if r.feedback is not None]


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    processes: tuple[CeleryProcess, ...] = (),
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            statuses = Counter(Notification.objects.values_list("status", flat=True))
            logs = "".join(f"\n--- {p.name}:\n{p.log_tail()}" for p in processes)
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {what}; "
                f"notifications: {dict(statuses)}{logs}"
            )
        time.sleep(0.25)


def sending_ids() -> set[int]:
    return set(
        Notification.objects.filter(status=Status.SENDING).values_list("pk", flat=True)
    )


@dataclass
class Faults:
    """The faults one run injected, for the assertions and the printout."""

    abandoned: set[int] = field(default_factory=set)  # left SENDING by a kill
    per_kill: list[int] = field(default_factory=list)
    waits: list[tuple[float, int]] = field(default_factory=list)  # before each kill
    flushed_messages: int | None = None

    def kill_while_sending(self, worker: CeleryWorker, wait_s: float = 3.0) -> None:
        """SIGKILL the worker at the next moment it is sending (or after wait_s)."""
        started = time.monotonic()
        seen: set[int] = set()
        while not (seen := sending_ids() - self.abandoned):
            if time.monotonic() > started + wait_s:
                break
            time.sleep(0.005)
        worker.kill()
        self.waits.append((round(time.monotonic() - started, 2), len(seen)))
        # With the worker gone, whatever is SENDING now and was not before is ours.
        killed = sending_ids() - self.abandoned
        self.abandoned |= killed
        self.per_kill.append(len(killed))


# Tests ----------------------------------------------------------------------------

FEEDBACKS = 1000
BATCH = 50
KILLS = 3


def test_every_notification_arrives_despite_killed_workers_and_a_flushed_broker(
    broker, worker, beat, receiver
):
    seed = int(os.environ.get("LEADBACK_FAULTS_SEED") or time.time_ns() % 10**6)
    rng = random.Random(seed)
    # A source that takes a moment to answer, as real ones do: the worker sends
    # a message's rows in well under a millisecond each to a local receiver that
    # answers at once, too fast for a kill to find one in flight.
    receiver.delay_s = 0.02
    buyer = BuyerFactory(slug="faults-buyer")
    config_paths: dict[int, str] = {}
    deliveries: list[DeliveryEvent] = []
    # Two sources with two configs each: 1,000 feedbacks make 2,000 notifications.
    for name in ("alpha", "bravo"):
        source = SourceFactory(slug=f"faults-{name}")
        for number in (1, 2):
            path = f"/{name}/{number}"
            # A short timeout keeps the send lease (3 x timeout + margin) short.
            config = make_config(source, receiver.url(path), timeout_s=1)
            config_paths[config.pk] = path
        deliveries += make_deliveries(buyer, source, FEEDBACKS // 2)
    rng.shuffle(deliveries)
    batches = [
        return_items(deliveries[i : i + BATCH]) for i in range(0, FEEDBACKS, BATCH)
    ]
    # Kills at random points of the intake, then the flush, with no worker restart
    # after it to re-declare anything the flush wiped.
    kill_after = set(rng.sample(range(1, len(batches) - 4), KILLS))
    flush_after = rng.randrange(max(kill_after) + 1, len(batches) - 1)
    faults = Faults()

    started = time.monotonic()
    for index, items in enumerate(batches):
        receive(buyer, items)
        if index in kill_after:
            worker.wait_ready()  # kill a worker that is working, not one starting
            time.sleep(rng.uniform(0, 0.3))
            faults.kill_while_sending(worker)
            worker.start()
        if index == flush_after:
            faults.flushed_messages = broker.flush()
        time.sleep(rng.uniform(0.05, 0.3))
    intake_s = time.monotonic() - started

    expected = {
        public_id: (str(feedback_id), config_paths[config_id])
        for public_id, feedback_id, config_id in Notification.objects.values_list(
            "public_id", "feedback__public_id", "config_id"
        )
    }
    assert len(expected) == FEEDBACKS * 2
    wait_until(
        lambda: not Notification.objects.exclude(status=Status.SUCCEEDED).exists(),
        timeout_s=180,
        what=f"every notification to succeed (seed {seed})",
        processes=(worker, beat),
    )
    total_s = time.monotonic() - started

    received = receiver.deliveries()
    ids_by_pair: dict[tuple[str, str], set[str]] = defaultdict(set)
    for _, webhook_id, feedback_id, path in received:
        ids_by_pair[feedback_id, path].add(webhook_id)
        assert expected.get(webhook_id) == (feedback_id, path), webhook_id
    copies = Counter(webhook_id for _, webhook_id, _, _ in received)
    duplicated = {webhook_id: n for webhook_id, n in copies.items() if n > 1}
    print(
        f"\nseed {seed}: {len(expected)} notifications, {len(received)} requests "
        f"received ({len(receiver.arrivals) - len(received)} cut off), "
        f"{len(duplicated)} webhook-ids received more than once "
        f"({sum(duplicated.values()) - len(duplicated)} extra copies); "
        f"kills left {faults.per_kill} rows mid-send (waited s, rows seen sending: "
        f"{faults.waits}), the flush dropped "
        f"{faults.flushed_messages} queued messages; intake {intake_s:.1f} s, "
        f"all delivered after {total_s:.1f} s"
    )

    assert set(copies) == set(expected), "the receiver's webhook-ids differ from the DB"
    assert set(ids_by_pair) == set(expected.values()), "a pair never arrived"
    assert all(len(ids) == 1 for ids in ids_by_pair.values()), (
        "a duplicate carried another webhook-id"
    )
    # The faults were real: kills cut off sends in flight (each kill waits for one,
    # but those can finish in the instant before the signal lands).
    assert worker.kills == KILLS
    assert sum(faults.per_kill) > 0
    assert faults.flushed_messages is not None


HUNG_TIMEOUT_S = 10
PER_SOURCE = 50


def test_a_source_that_never_answers_does_not_hold_up_the_others(
    broker, worker, beat, receiver, silent
):
    buyer = BuyerFactory(slug="faults-buyer")
    hung = SourceFactory(slug="faults-hung")
    make_config(hung, silent.url, timeout_s=HUNG_TIMEOUT_S)
    healthy = SourceFactory(slug="faults-healthy")
    make_config(healthy, receiver.url("/healthy"), timeout_s=HUNG_TIMEOUT_S)
    hung_items = return_items(make_deliveries(buyer, hung, PER_SOURCE))
    healthy_items = return_items(make_deliveries(buyer, healthy, PER_SOURCE))

    started = time.monotonic()
    received_at: dict[str, float] = {}  # healthy feedback id -> its commit time
    for hung_item, healthy_item in zip(hung_items, healthy_items, strict=True):
        receive(buyer, [hung_item])
        [feedback] = receive(buyer, [healthy_item])
        received_at[str(feedback.public_id)] = feedback.received_at.timestamp()
        time.sleep(0.05)
    healthy_rows = Notification.objects.filter(source=healthy)
    wait_until(
        lambda: healthy_rows.filter(status=Status.SUCCEEDED).count() == PER_SOURCE,
        timeout_s=60,
        what="the healthy source's notifications",
        processes=(worker, beat),
    )
    elapsed_s = time.monotonic() - started

    first_arrival: dict[str, float] = {}
    for arrived, _, feedback_id, _ in receiver.deliveries():
        first_arrival[feedback_id] = min(
            arrived, first_arrival.get(feedback_id, arrived)
        )
    latencies = sorted(first_arrival[f] - received_at[f] for f in received_at)
    p95 = statistics.quantiles(latencies, n=20, method="inclusive")[-1]
    hung_open = Notification.objects.filter(source=hung).exclude(
        status=Status.SUCCEEDED
    )
    print(
        f"\nhealthy source: p50 {statistics.median(latencies):.3f} s, "
        f"p95 {p95:.3f} s, max {latencies[-1]:.3f} s; the hung source held "
        f"{len(silent.connections)} connections; all done in {elapsed_s:.1f} s"
    )

    assert p95 <= 2.0
    # The hung source really was hanging on every one of its notifications.
    wait_until(
        lambda: len(silent.connections) >= PER_SOURCE,
        timeout_s=HUNG_TIMEOUT_S,
        what="the hung source to be tried for every notification",
    )
    assert hung_open.count() == PER_SOURCE


# The intake's own messages, with no beat: a row whose message is lost would wait
# for a sweep that never comes, so each must arrive through the intake's message.

FORWARDED = 5


@pytest.fixture
def request_thread() -> Iterator[ThreadPoolExecutor]:
    """A thread that has queued a message before the test points this process at
    its broker, as a web server's thread that served requests before would
    (the intake keeps a producer per thread)."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(publish.kept_producer, deliver_notifications_task.app).result()
        try:
            yield thread
        finally:
            thread.submit(connections.close_all).result()


def forward(buyer, source: Source, count: int) -> None:
    receive(buyer, return_items(make_deliveries(buyer, source, count)))


def wait_until_delivered(count: int, worker: CeleryWorker) -> None:
    wait_until(
        lambda: Notification.objects.filter(status=Status.SUCCEEDED).count() == count,
        timeout_s=30,
        what=f"{count} notifications to succeed with no sweep",
        processes=(worker,),
    )


def test_messages_queued_after_a_flush_reach_the_worker(broker, worker, receiver):
    buyer = BuyerFactory(slug="faults-buyer")
    source = SourceFactory(slug="faults-alpha")
    make_config(source, receiver.url("/alpha"), timeout_s=1)
    forward(buyer, source, FORWARDED)
    wait_until_delivered(FORWARDED, worker)

    broker.flush()  # the queue's binding goes with everything else
    forward(buyer, source, FORWARDED)

    wait_until_delivered(2 * FORWARDED, worker)


def test_the_intake_queues_to_the_broker_it_was_last_pointed_at(
    request_thread, broker, worker, receiver
):
    buyer = BuyerFactory(slug="faults-buyer")
    source = SourceFactory(slug="faults-alpha")
    make_config(source, receiver.url("/alpha"), timeout_s=1)

    request_thread.submit(forward, buyer, source, FORWARDED).result()

    wait_until_delivered(FORWARDED, worker)
