"""CSV feedback import benchmark on PostgreSQL, beside a plain COPY of the same rows.

    .venv/bin/python -m bench.csv_import [--rows 100000] [--rounds 3] [--update-docs]

Creates a fresh PostgreSQL database (its name must contain "bench"; default
leadback_imports_bench), migrates it and seeds one buyer with `--rows` deliveries
from one source whose conversions are forwarded in real time (one JSON config, so
every accepted conversion also writes a notification, as in production; imports
leave sending to the periodic sweep). --no-config measures without it. It then
writes a CSV of `--rows` rows, one per delivery: mostly conversions with revenue,
quality score, occurred_at and notes, returns with a reason, some rows naming the
delivery by reference, and a few that are refused (unknown event id, negative
revenue).

Each round, on the code paths the product runs:

1. upload: `feedback_import_create` (read, decode, check the header, count rows,
   store the file) in its transaction, which queues the import on commit;
2. process: a real Celery worker (`--workers` prefork processes, 2 by default,
   with `LEADBACK_IMPORT_WORKERS` set alike) takes the message; the process that
   claims the import asks the others to help, and they parse, validate, resolve
   the deliveries and write feedback, notifications and per-row results chunk by
   chunk, side by side. The round ends when the import row says done (polled
   every 20 ms). `--workers 0` instead calls `feedback_import_process` in this
   process, one chunk after another, with no worker;
3. COPY: `COPY ... FROM STDIN (FORMAT csv, HEADER)` of the same file into a table
   with the file's columns, the floor any import sits above.

Between rounds the feedback, notification and import tables are truncated so
every round starts alike. Medians over the rounds are printed as markdown, kept in
var/bench/csv_import.json, and with --update-docs written between the results
markers of docs/performance-csv-import.md (earlier runs there are kept). The
database is dropped at the end.
"""

import argparse
import csv
import io
import json
import os
import platform
import random
import re
import secrets
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    load_average,
    median,
    replace_marked,
    revision,
    stop_process_group,
    verdict,
)

VAR = ROOT / "var" / "bench"
DOCS = ROOT / "docs" / "performance-csv-import.md"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/leadback_imports_bench"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/14"
BUYER, SOURCE, FLOW = "bench-buyer", "bench-source", "bench-flow"
TARGET_ROWS_PER_S = 10_000.0
COPY_TABLE = "bench_csv_copy"
COPY_TABLE_SQL = f"""
CREATE TABLE IF NOT EXISTS {COPY_TABLE} (
    event_id varchar(24),
    reference varchar(200),
    type varchar(20),
    reason varchar(255),
    revenue numeric(12, 2),
    quality_score smallint,
    occurred_at timestamptz,
    notes text
)
"""
HEADER = [
    "event_id",
    "reference",
    "type",
    "reason",
    "revenue",
    "quality_score",
    "occurred_at",
    "notes",
]


@dataclass
class Round:
    round: int
    upload_s: float
    process_s: float
    copy_s: float
    rows: int
    succeeded: int
    refused: int
    feedback_rows: int
    notifications: int

    @property
    def total_s(self) -> float:
        return self.upload_s + self.process_s


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL)
    parser.add_argument("--chunk-rows", type=int, default=None)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="Celery worker processes sharing each import (0: in-process, no worker)",
    )
    parser.add_argument(
        "--no-config",
        action="store_true",
        help="No forwarding config: feedback rows without notifications.",
    )
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument("--seed", type=int, default=20261125)
    return parser.parse_args()


def configure_environment(options: argparse.Namespace) -> None:
    VAR.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": options.database_url,
            "CELERY_BROKER_URL": options.broker_url,
            "LEADBACK_VAR_DIR": str(VAR / "csv-import-var"),
            "DEBUG": "false",
            # The settings refuse the embedded key outside DEBUG.
            "SECRET_KEY": secrets.token_urlsafe(50),
            "LOG_LEVEL": "WARNING",
            "LEADBACK_IMPORT_WORKERS": str(max(1, options.workers)),
        }
    )
    if options.chunk_rows:
        os.environ["LEADBACK_IMPORT_CHUNK_ROWS"] = str(options.chunk_rows)


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


def flush_broker(broker_url: str) -> None:
    import redis

    client = redis.Redis.from_url(broker_url)
    try:
        client.flushdb()
    finally:
        client.close()


def seed(rows: int, *, with_config: bool) -> list[tuple[str, str]]:
    """Migrate; one buyer, source, flow and `rows` deliveries. Returns their
    (event id, reference) pairs."""
    import django

    django.setup()
    from django.core.management import call_command

    from feedback.models import DeliveryEvent, Lead
    from feedback.services import (
        buyer_get_or_create,
        flow_get_or_create,
        source_get_or_create,
    )
    from sources.models import FeedbackConfig, FieldMapping, Kind

    call_command("migrate", verbosity=0)
    buyer = buyer_get_or_create(slug=BUYER)
    source = source_get_or_create(slug=SOURCE)
    source.return_reasons = ["Wrong number", "Disconnected", "Duplicate"]
    source.save()
    flow = flow_get_or_create(slug=FLOW)
    if with_config:
        config = FeedbackConfig.objects.create(
            source=source,
            kind=Kind.CONVERSION,
            method=FeedbackConfig.Method.JSON,
            url="https://receiver.invalid/feedback",
        )
        for position, (target, value) in enumerate(
            [
                ("event.id", "{{ event.id }}"),
                ("conversion.revenue", "{{ feedback.revenue }}"),
            ]
        ):
            FieldMapping.objects.create(
                config=config, position=position, target=target, value=value
            )
    delivered_at = datetime.now(UTC) - timedelta(days=5)
    leads = Lead.objects.bulk_create(
        (
            Lead(
                public_id=f"bench-lead-{n}",
                source=source,
                flow=flow,
                data={"first_name": "Bench", "email": f"lead{n}@example.com"},
                email_normalized=f"lead{n}@example.com",
                received_at=delivered_at,
            )
            for n in range(rows)
        ),
        batch_size=5000,
    )
    events = DeliveryEvent.objects.bulk_create(
        (
            DeliveryEvent(
                event_id=f"{n:024x}",
                lead=lead,
                buyer=buyer,
                source=source,
                flow=flow,
                reference=f"CRM-{n}",
                price=Decimal("45.00"),
                delivered_at=delivered_at,
            )
            for n, lead in enumerate(leads)
        ),
        batch_size=5000,
    )
    analyze()
    return [(e.event_id, e.reference) for e in events]


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def build_file(deliveries: list[tuple[str, str]], seed_value: int) -> bytes:
    """One row per delivery: 70% conversions, 20% returns, 5% by reference,
    5% refused."""
    rng = random.Random(seed_value)
    occurred = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    reasons = ["Wrong number", "disconnected", "Duplicate"]
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\r\n")
    writer.writerow(HEADER)
    for event_id, reference in deliveries:
        draw = rng.random()
        if draw < 0.70:
            row = [event_id, "", "conversion", "", f"{rng.randint(50, 5000)}.00"]
            row += [str(rng.randint(1, 5)), occurred, "Closed after two calls"]
        elif draw < 0.90:
            row = [event_id, "", "return", rng.choice(reasons), "", "", occurred, ""]
        elif draw < 0.95:
            row = ["", reference, "conversion", "", "120.50", "4", "", ""]
        elif draw < 0.975:
            row = [f"{rng.getrandbits(95) | 1 << 94:024x}", "", "return", "", "", ""]
            row += ["", ""]
        else:
            row = [event_id, "", "conversion", "", "-5", "", "", "bad revenue"]
        writer.writerow(row)
    return stream.getvalue().encode()


def reset_tables() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE feedback_notification, feedback_notificationattempt, "
            "feedback_feedback, feedback_feedbackimportchunk, "
            f"feedback_feedbackimport, {COPY_TABLE}"
        )
        cursor.execute("VACUUM ANALYZE")


def start_worker(workers: int) -> subprocess.Popen[bytes]:
    """A Celery worker with `workers` prefork processes, ready for messages."""
    from config.celery import app

    log = (VAR / "csv-import-worker.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=prefork",
            f"--concurrency={workers}",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the Celery worker did not start: see var/bench")
    return process


def wait_until_finished(import_id: int, timeout_s: float = 900.0) -> None:
    from feedback.imports.models import FeedbackImport

    finished = (FeedbackImport.Status.DONE, FeedbackImport.Status.FAILED)
    deadline = time.monotonic() + timeout_s
    while FeedbackImport.objects.filter(pk=import_id, status__in=finished).count() == 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"import {import_id} not finished after {timeout_s} s")
        time.sleep(0.02)


def run_round(number: int, content: bytes, *, in_process: bool) -> Round:
    from django.db import connection

    from feedback.forwarding.models import Notification
    from feedback.imports.models import FeedbackImport
    from feedback.imports.services import (
        feedback_import_create,
        feedback_import_process,
    )
    from feedback.models import Buyer, Feedback

    reset_tables()
    buyer = Buyer.objects.get(slug=BUYER)

    started = time.perf_counter()
    feedback_import = feedback_import_create(
        buyer=buyer, user=None, file=content, filename="bench.csv"
    )
    uploaded = time.perf_counter()
    if in_process:
        feedback_import_process(import_id=feedback_import.pk)
    else:
        wait_until_finished(feedback_import.pk)
    processed = time.perf_counter()

    with connection.cursor() as cursor:
        copy_started = time.perf_counter()
        with cursor.connection.cursor().copy(
            f"COPY {COPY_TABLE} FROM STDIN (FORMAT csv, HEADER true)"
        ) as copy:
            copy.write(content)
        copy_s = time.perf_counter() - copy_started
        cursor.execute(f"SELECT count(*) FROM {COPY_TABLE}")  # noqa: S608
        copied = cursor.fetchone()[0]

    done = FeedbackImport.objects.defer("content").get(pk=feedback_import.pk)
    assert done.status == FeedbackImport.Status.DONE, done.error
    assert done.processed_rows == done.total_rows == copied
    return Round(
        round=number,
        upload_s=uploaded - started,
        process_s=processed - uploaded,
        copy_s=copy_s,
        rows=done.total_rows,
        succeeded=done.succeeded_rows,
        refused=done.refused_rows,
        feedback_rows=Feedback.objects.count(),
        notifications=Notification.objects.count(),
    )


def machine() -> dict[str, str]:
    import django
    from django.db import connection

    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
        cursor.execute("SHOW synchronous_commit")
        synchronous_commit = cursor.fetchone()[0]
    return {
        "cpus": f"{os.cpu_count()} (nproc {len(os.sched_getaffinity(0))})",
        "cpu": model.group(1).strip() if model else platform.processor(),
        "postgresql": f"{pg_version} (synchronous_commit={synchronous_commit})",
        "python / django": f"{platform.python_version()} / {django.get_version()}",
        "code": revision(),
        "load before the rounds": load_average(),
    }


def render(
    rounds: list[Round], info: dict[str, str], options: argparse.Namespace
) -> str:
    from django.conf import settings

    rows = rounds[0].rows
    total = median([r.total_s for r in rounds])
    upload = median([r.upload_s for r in rounds])
    process = median([r.process_s for r in rounds])
    copy = median([r.copy_s for r in rounds])
    rate = rows / total
    command = ".venv/bin/python -m bench.csv_import " + shlex.join(
        a for a in sys.argv[1:] if a != "--update-docs"
    )
    process_by = (
        f"processed by a Celery worker of {options.workers} processes sharing "
        "the import's chunks (upload in this process, which queues the import; the "
        "round ends when the import row says done)"
        if options.workers
        else "processed in this process by `feedback_import_process` (what the "
        "Celery task runs), one chunk after another"
    )
    forwarding = (
        "no forwarding config (feedback rows only)"
        if options.no_config
        else "one real-time JSON config for conversions (each accepted conversion "
        "also writes a pending notification, which the periodic sweep sends)"
    )
    lines = [
        "# CSV feedback import: performance",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command.strip()}`",
        "(`bench/csv_import.py`). A file of "
        f"{rows:,} rows ({len(options.content) / 1e6:.1f} MB), one per delivery of one "
        f"buyer, is imported end to end on PostgreSQL, {forwarding}, in chunks of "
        f"{settings.LEADBACK_IMPORT_CHUNK_ROWS:,} rows, {process_by}; a plain "
        "`COPY ... FROM STDIN` of the same file into a table of the file's columns "
        "runs in the same round. "
        f"Medians of {len(rounds)} rounds; the tables are truncated between rounds.",
        "",
        "| | median | rows/s |",
        "|---|---:|---:|",
        f"| upload (read, check header, count, store the file) | {upload:.2f} s | "
        f"{rows / upload:,.0f} |",
        f"| process (parse, validate, resolve, write; all chunks) | {process:.2f} s | "
        f"{rows / process:,.0f} |",
        f"| **import end to end** (upload + process) | **{total:.2f} s** | "
        f"**{rate:,.0f}** |",
        f"| plain COPY of the same rows | {copy:.2f} s | {rows / copy:,.0f} |",
        "",
        f"The import takes {total / copy:.1f} times as long as the bare COPY. Target "
        f"≥ {TARGET_ROWS_PER_S:,.0f} rows/s end to end: {verdict(rate >= 10_000)}.",
        "",
        "Per round:",
        "",
        "| round | upload s | process s | total s | rows/s | COPY s | accepted | "
        "refused | feedback rows | notifications |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rounds:
        lines.append(
            f"| {r.round} | {r.upload_s:.2f} | {r.process_s:.2f} | {r.total_s:.2f} | "
            f"{r.rows / r.total_s:,.0f} | {r.copy_s:.2f} | {r.succeeded:,} | "
            f"{r.refused:,} | {r.feedback_rows:,} | {r.notifications:,} |"
        )
    lines += [
        "",
        "Refused rows are the file's deliberate bad rows (unknown event ids are not "
        "stored; a negative revenue is stored as refused feedback, as the API does).",
        "",
        "Machine:",
        "",
        *(f"- {key}: {value}" for key, value in info.items()),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    options = parse_args()
    configure_environment(options)
    recreate_database(options.database_url)
    worker = None
    try:
        print(f"seeding {options.rows:,} deliveries...", flush=True)
        deliveries = seed(options.rows, with_config=not options.no_config)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(COPY_TABLE_SQL)
        options.content = build_file(deliveries, options.seed)
        info = machine()
        info["import processes"] = (
            f"{options.workers} (a Celery prefork worker, "
            f"LEADBACK_IMPORT_WORKERS={options.workers})"
            if options.workers
            else "this one (in-process, no worker)"
        )
        flush_broker(options.broker_url)
        if options.workers:
            worker = start_worker(options.workers)
        rounds = []
        for number in range(1, options.rounds + 1):
            result = run_round(number, options.content, in_process=not options.workers)
            rounds.append(result)
            print(
                f"round {number}: upload {result.upload_s:.2f} s, process "
                f"{result.process_s:.2f} s, {result.rows / result.total_s:,.0f} rows/s;"
                f" COPY {result.copy_s:.2f} s",
                flush=True,
            )
        report = render(rounds, info, options)
        print(report)
        (VAR / "csv_import.json").write_text(
            json.dumps(
                {"rounds": [asdict(r) for r in rounds], "machine": info}, indent=2
            )
        )
        if options.update_docs:
            replace_marked(DOCS, "bench/csv_import.py", report.split("\n", 2)[2])
            print(f"wrote {DOCS.relative_to(ROOT)}")
    finally:
        from django.db import connections

        if worker is not None:
            stop_process_group(worker, 30)
        connections.close_all()
        recreate_database(options.database_url, drop_only=True)
        flush_broker(options.broker_url)


if __name__ == "__main__":
    main()
