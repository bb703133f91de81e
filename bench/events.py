"""Recording deliveries (`POST /api/v1/events`) against a ceiling in the same run.

    .venv/bin/python bench/events.py                # about 2 minutes
    .venv/bin/python bench/events.py --update-docs  # and record it in the docs

The busiest call a seller makes: one per lead delivered. On PostgreSQL, behind
gunicorn (4 sync workers, the README's production line), each round measures in
turn, for `--duration` seconds each: the ceiling (`POST /bench/ceiling`, one JSON
body parsed and one row inserted, as for bench/intake.py), single events (one new
event per request, a new lead each), and `items` batches of 1,000 new events.
Every client is the same Python asyncio loop (a connection per request), so the
ceiling and the app pay the same client cost. Targets: single events at least 40 %
of the ceiling's rate, batches at least 5,000 events/s.
"""

import argparse
import asyncio
import itertools
import json
import os
import re
import secrets
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, load_average, median, revision
from bench.intake import (
    DEFAULT_DATABASE_URL,
    configure_environment,
    gunicorn,
    http,
    raw_post,
    recreate_database,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
START = "<!-- bench/events.py results: start -->"
END = "<!-- bench/events.py results: end -->"
TARGET_RATIO = 0.40
TARGET_ITEMS_PER_S = 5000.0
BATCH = 1000

_ids = itertools.count(1)


def event(index: int) -> dict[str, Any]:
    return {
        "event_id": f"{index:024x}",
        "delivered_at": "2026-11-20T10:30:00Z",
        "price": "45.00",
        "buyer": "acme-insurance",
        "source": "bluesky-leads",
        "flow": "auto-insurance",
        "step": "Deliver to Acme",
        "reference": f"CRM-{index}",
        "lead": {
            "id": f"lead-{index}",
            "first_name": "Mel",
            "last_name": "Gibson",
            "email": f"mel{index}@example.com",
            "phone_1": "5127891111",
            "state": "TX",
        },
    }


def setup(database_url: str) -> str:
    """Migrate a fresh database; returns an integration key."""
    recreate_database(database_url)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from bench.models import CEILING_TABLE_SQL
    from feedback.models import ApiKey
    from feedback.services import api_key_create

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(CEILING_TABLE_SQL)
    _, key = api_key_create(scope=ApiKey.Scope.INTEGRATION, name="bench")
    connection.close()
    return key


async def closed_loop(
    port: int, key: str, mode: str, duration: float, concurrency: int
) -> tuple[float, Counter[str], int]:
    """Requests back to back on `concurrency` connections: (seconds, statuses,
    events recorded)."""
    loop = asyncio.get_running_loop()
    statuses: Counter[str] = Counter()
    recorded = 0
    started = loop.time()
    deadline = started + duration
    finished = started

    async def worker() -> None:
        nonlocal recorded, finished
        while loop.time() < deadline:
            if mode == "items":
                first = next(_ids)
                for _ in range(BATCH - 1):
                    next(_ids)
                body = {"items": [event(i) for i in range(first, first + BATCH)]}
                raw = raw_post(port, "/api/v1/events", json.dumps(body).encode(), key)
            elif mode == "ceiling":
                body = event(next(_ids))
                raw = raw_post(port, "/bench/ceiling", json.dumps(body).encode(), None)
            else:
                body = event(next(_ids))
                raw = raw_post(port, "/api/v1/events", json.dumps(body).encode(), key)
            status, data = await http(port, raw)
            statuses[str(status)] += 1
            if mode == "items":
                found = re.search(rb'\{"recorded":\s*(\d+)', data[:4096])
                if status == 200 and found:
                    recorded += int(found.group(1))
            elif status == 201:
                recorded += 1
            finished = loop.time()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return finished - started, statuses, recorded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()

    configure_environment(args.database_url)
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(40))
    key = setup(args.database_url)
    port = free_port()
    load_before = load_average()
    rows: dict[str, list[float]] = {"ceiling": [], "single": [], "items": []}
    errors: Counter[str] = Counter()
    with gunicorn(port, workers=args.workers, worker_class="sync", threads=1) as (
        command,
        _,
    ):
        for round_number in range(1, args.rounds + 1):
            for mode, name, concurrency in (
                ("ceiling", "ceiling", args.concurrency),
                ("single", "single", args.concurrency),
                ("items", "items", args.batch_concurrency),
            ):
                seconds, statuses, recorded = asyncio.run(
                    closed_loop(port, key, mode, args.duration, concurrency)
                )
                rate = recorded / seconds if seconds else 0.0
                rows[name].append(rate)
                expected = "200" if mode == "items" else "201"
                errors.update({s: n for s, n in statuses.items() if s != expected})
                print(
                    f"  round {round_number} {name:8} {rate:10,.0f}/s {dict(statuses)}"
                )
                time.sleep(1)
    ratios = [s / c for s, c in zip(rows["single"], rows["ceiling"], strict=True)]
    report = render(args, command, rows, ratios, errors, load_before)
    print(report)
    if args.update_docs:
        text = DOCS.read_text()
        before, rest = text.split(START, 1)
        _, after = rest.split(END, 1)
        DOCS.write_text(f"{before}{START}\n{report}\n{END}{after}")
        print(f"wrote {DOCS}")
    recreate_database(args.database_url, drop_only=True)


def render(
    args: argparse.Namespace,
    command: list[str],
    rows: dict[str, list[float]],
    ratios: list[float],
    errors: Counter[str],
    load_before: str,
) -> str:
    def cells(values: list[float], fmt: str) -> str:
        return " | ".join(fmt.format(v) for v in [*values, median(values)])

    n = "{:,.0f}"
    header = " | ".join(f"round {i}" for i in range(1, args.rounds + 1))
    ratio = median(ratios)
    items = median(rows["items"])
    return "\n".join(
        [
            f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
            f"`.venv/bin/python bench/events.py`, code {revision()}, load before "
            f"{load_before}.",
            "",
            f"Server: `{' '.join(command[2:])}`. Clients: Python asyncio, a "
            f"connection per request, {args.concurrency} concurrent for the ceiling "
            f"and single events, {args.batch_concurrency} concurrent batches of "
            f"{BATCH}; {args.duration:g} s per measure.",
            "",
            f"| measure | {header} | median |",
            "|---|" + "---:|" * (args.rounds + 1),
            f"| ceiling: POST /bench/ceiling (req/s) | {cells(rows['ceiling'], n)} |",
            f"| single events: POST /api/v1/events (events/s) | "
            f"{cells(rows['single'], n)} |",
            f"| single ÷ ceiling | {cells(ratios, '{:.0%}')} |",
            f"| `items` batches of {BATCH}: events/s | {cells(rows['items'], n)} |",
            "",
            f"Unexpected answers: {dict(errors) or 'none'}.",
            "",
            "| target | median | result |",
            "|---|---:|---|",
            f"| single events ≥ {TARGET_RATIO:.0%} of the ceiling | {ratio:.0%} | "
            f"{'pass' if ratio >= TARGET_RATIO else 'FAIL'} |",
            f"| `items` batches ≥ {TARGET_ITEMS_PER_S:,.0f} events/s | "
            f"{items:,.0f} /s | {'pass' if items >= TARGET_ITEMS_PER_S else 'FAIL'} |",
        ]
    )


if __name__ == "__main__":
    main()
