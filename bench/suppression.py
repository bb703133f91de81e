"""Suppression check benchmark: 1 M entries, against a ceiling in the same run.

    .venv/bin/python bench/suppression.py [--entries N] [--duration 10] [--rounds 3]

Creates a fresh PostgreSQL database, migrates it, creates a suppression list and an
integration key, and loads the entries with COPY: half emails, half phones, as
digests of person<n>@example.com and of the ten-digit phone 2000000000 + n. Then
ANALYZE, and gunicorn serves the app beside a bare Django view that parses the same
body, hashes the email and phone and runs the one SELECT by hand (the ceiling,
bench/views.py `suppression_ceiling`).

In rounds, the maximum rates (closed loop, Python asyncio client) of the ceiling
(POST /bench/suppression-ceiling) and of the check through the whole API stack
(POST /api/v1/suppression/check with the integration key: authentication, rate
limit, validation, the selector, serialisation) are measured in short interleaved
slices, so the noise of a shared machine hits both alike. Every request asks for a
random person: about half are on the list. Medians are compared with the target
(the check at least 40 % of the ceiling's rate); the statements of one check,
captured in-process, and PostgreSQL's plan for the lookup (EXPLAIN ANALYZE) are
printed, and --update-docs writes it all into docs/performance.md. gunicorn is
stopped and the database dropped at the end.
"""

import argparse
import asyncio
import hashlib
import io
import json
import os
import random
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import intake
from common import free_port, median, replace_marked, revision, verdict

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/leadback_bench_suppression"
TARGET_RATIO = 0.40
LIST_SLUG = "bench-returns"
CHECK_PATH = "/api/v1/suppression/check"
CEILING_PATH = "/bench/suppression-ceiling"
PHONE_BASE = 2_000_000_000


def email_of(n: int) -> str:
    return f"person{n}@example.com"


def phone_of(n: int) -> str:
    return str(PHONE_BASE + n)


def seed(entries: int) -> str:
    """Migrate, create the list and load `entries` entries; an integration key."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from feedback.bulk import rows_copy
    from feedback.suppression.models import SuppressionEntry
    from feedback.suppression.services import suppression_list_save

    call_command("migrate", verbosity=0)
    listed = suppression_list_save(
        slug=LIST_SLUG, name="Returned leads", ttl_days=365, add_kinds=["return"]
    )
    now = datetime.now(UTC)
    people = entries // 2
    chunk = 50_000

    def rows(first: int, last: int) -> list[list[object]]:
        made = []
        for n in range(first, last):
            for field, value in (("email", email_of(n)), ("phone", phone_of(n))):
                raw = value.encode()
                added = now - timedelta(minutes=n % 100_000)
                made.append(
                    [
                        listed.pk,
                        field,
                        hashlib.sha256(raw).hexdigest(),
                        hashlib.md5(raw, usedforsecurity=False).hexdigest(),
                        SuppressionEntry.Origin.FEEDBACK,
                        added,
                        added + timedelta(days=365),
                    ]
                )
        return made

    for first in range(0, people, chunk):
        rows_copy(
            SuppressionEntry, rows(first, min(people, first + chunk)), with_pk=False
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE feedback_suppressionentry")
        cursor.execute("SELECT count(*) FROM feedback_suppressionentry")
        loaded = cursor.fetchone()[0]
    print(f"  {loaded:,} entries loaded", flush=True)
    out = io.StringIO()
    call_command(
        "create_api_key", integration="bench", stdout=out, stderr=io.StringIO()
    )
    return out.getvalue().strip().split()[-1]


def body_for(n: int) -> bytes:
    return json.dumps({"email": email_of(n), "phone": phone_of(n)}).encode()


def builder(path: str, port: int, key: str | None, people: int) -> Callable[[], bytes]:
    chooser = random.Random(7)  # picking people, not secrets

    def build() -> bytes:
        # Half the people asked for are on the list, half are not.
        n = chooser.randrange(2 * people)
        return intake.raw_post(port, path, body_for(n), key)

    return build


def statements_of_one_check(key: str, people: int) -> tuple[list[str], str]:
    """The statements one check runs (the Django test client, in this process),
    and EXPLAIN ANALYZE of the one that reads the entries."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_X_API_KEY=key, HTTP_HOST="127.0.0.1")
    # Warm: the key's lookup, the lists read once per process.
    client.post(CHECK_PATH, body_for(1), content_type="application/json")
    with CaptureQueriesContext(connection) as queries:
        answer = client.post(
            CHECK_PATH, body_for(people // 3), content_type="application/json"
        )
    if answer.status_code != 200 or not answer.json()["suppressed"]:
        raise SystemExit(f"the check answered {answer.status_code}: {answer.content!r}")
    statements = [q["sql"] for q in queries.captured_queries]
    lookup = [s for s in statements if "feedback_suppressionentry" in s]
    if len(lookup) != 1:
        raise SystemExit(f"expected one lookup of the entries, got {statements}")
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + lookup[0])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    return statements, plan


def measure(
    port: int, key: str, people: int, options: argparse.Namespace
) -> list[dict[str, float]]:
    rounds = []
    builds = {
        "ceiling": builder(CEILING_PATH, port, None, people),
        "check": builder(CHECK_PATH, port, key, people),
    }
    for number in range(1, options.rounds + 1):
        seconds: Counter[str] = Counter()
        answered: Counter[str] = Counter()
        unexpected: Counter[str] = Counter()
        slices = max(1, options.duration // options.slice)
        for _ in range(slices):
            for name, build in builds.items():
                took, statuses, errors = asyncio.run(
                    intake.closed_loop(build, port, options.slice, options.concurrency)
                )
                seconds[name] += took
                answered[name] += statuses.get("200", 0)
                unexpected[name] += errors + sum(
                    count for status, count in statuses.items() if status != "200"
                )
        result = {
            name: answered[name] / seconds[name] if seconds[name] else 0.0
            for name in builds
        }
        result["ratio"] = (
            result["check"] / result["ceiling"] if result["ceiling"] else 0
        )
        result["unexpected"] = sum(unexpected.values())
        print(
            f"  round {number}: ceiling {result['ceiling']:.0f}/s, "
            f"check {result['check']:.0f}/s ({result['ratio']:.0%}); "
            f"unexpected answers {result['unexpected']}",
            flush=True,
        )
        rounds.append(result)
    return rounds


def render(
    rounds: list[dict[str, float]],
    statements: list[str],
    plan: str,
    info: dict[str, str],
    server: list[str],
    options: argparse.Namespace,
    loaded: int,
) -> str:
    ratio = median([r["ratio"] for r in rounds])
    header = " | ".join(f"round {i}" for i in range(1, len(rounds) + 1))
    line = "|---" * (len(rounds) + 2) + "|"

    def row(label: str, values: list[str], middle: str) -> str:
        return f"| {label} | {' | '.join(values)} | {middle} |"

    command = ".venv/bin/python bench/suppression.py" + (
        " --update-docs" if options.update_docs else ""
    )
    unexpected = int(sum(r["unexpected"] for r in rounds))
    machine = "; ".join(f"{k}: {v}" for k, v in info.items())
    return "\n".join(
        [
            f"Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: `{command}` "
            f"(revision {revision()})",
            "",
            f"Machine: {machine}.",
            f"Server: `{shlex.join(server[2:])}` (the same process serves the app "
            f"and the ceiling). Client: Python asyncio, {options.concurrency} "
            f"connections, {options.rounds} rounds of {options.duration} s each in "
            f"{options.slice} s interleaved slices. {loaded:,} entries on one list; "
            "half the people asked for are on it.",
            "",
            f"| measure | {header} | median |",
            line,
            row(
                f"ceiling: POST {CEILING_PATH}, checks/s",
                [f"{r['ceiling']:.0f}" for r in rounds],
                f"{median([r['ceiling'] for r in rounds]):.0f}",
            ),
            row(
                f"check: POST {CHECK_PATH}, checks/s",
                [f"{r['check']:.0f}" for r in rounds],
                f"{median([r['check'] for r in rounds]):.0f}",
            ),
            row(
                "check / ceiling",
                [f"{r['ratio']:.0%}" for r in rounds],
                f"{ratio:.0%}",
            ),
            "",
            f"Target: the check at least {TARGET_RATIO:.0%} of the ceiling's rate: "
            f"{verdict(ratio >= TARGET_RATIO)} (median {ratio:.0%}). "
            f"Answers other than 200: {unexpected or 'none'}.",
            "",
            f"Statements of one check (after the first, which reads the key's and "
            f"the lists' rows once per process): {len(statements)}, the lookup being:",
            "",
            "```sql",
            *[s for s in statements if "feedback_suppressionentry" in s],
            "```",
            "",
            "Its plan on the loaded table "
            "(`EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)`):",
            "",
            "```",
            plan,
            "```",
        ]
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measure")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slice", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument("--keep-db", action="store_true")
    return parser.parse_args()


def main() -> None:
    options = parse_args()
    intake.configure_environment(options.database_url)
    print(f"loading {options.entries:,} entries into a fresh database …", flush=True)
    intake.recreate_database(options.database_url)
    try:
        started = time.monotonic()
        key = seed(options.entries)
        print(f"  seeded in {time.monotonic() - started:.1f} s", flush=True)
        people = options.entries // 2
        statements, plan = statements_of_one_check(key, people)
        print(plan, flush=True)
        info = intake.machine()
        intake.VAR.mkdir(parents=True, exist_ok=True)
        port = free_port()
        with intake.gunicorn(
            port, workers=options.workers, worker_class="sync", threads=1
        ) as (server, _):
            rounds = measure(port, key, people, options)
        from feedback.suppression.models import SuppressionEntry

        loaded = SuppressionEntry.objects.count()
        report = render(rounds, statements, plan, info, server, options, loaded)
        print(report)
        if options.update_docs:
            replace_marked(intake.DOCS, "bench/suppression.py", report)
            print(f"written into {intake.DOCS}")
    finally:
        from django.db import connections

        connections.close_all()
        if not options.keep_db:
            intake.recreate_database(options.database_url, drop_only=True)


if __name__ == "__main__":
    os.chdir(intake.ROOT)
    sys.exit(main())
