"""Returns with review and a cap against plain returns, in the same run.

    .venv/bin/python bench/intake.py --returns [--duration 10] [--rounds 3]

Seeds two buyers with deliveries of their own in a fresh PostgreSQL database:
one on the default return policy (review "auto", no cap: LeadConduit's
behaviour) and one on review "rules" (auto-approve when the reason is one of
two) with a monthly cap (100 % of the month's deliveries: checked on every
return, never reached), then counts the months as the services would. gunicorn
serves the app; in each round both buyers return leads one per request at the
maximum rate, in short interleaved slices so the machine's noise hits both
alike. Every request returns a delivery not returned before, so every answer
should be 201. The target (issue "Returns resolution"): the capped and
reviewed buyer's rate at least 80 % of the plain buyer's. Medians are printed
as markdown and, with --update-docs, written into docs/performance.md.
"""

import argparse
import asyncio
import io
import json
import os
import shlex
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import intake
from common import load_average, median, replace_marked, revision

PLAIN, CAPPED = "bench-returns-plain", "bench-returns-capped"
# Event ids of each buyer's deliveries: the hex of BASE + 0..n-1.
BASES = {PLAIN: 0x1000000, CAPPED: 0x2000000}
TARGET_RATIO = 0.80
REASONS = "Wrong number,Disconnected phone"


def seed(per_buyer: int) -> dict[str, str]:
    """Migrate, seed both buyers' deliveries and policies; their API keys."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from bench.models import CEILING_TABLE_SQL
    from feedback.models import BuyerPolicy, DeliveryEvent, Lead
    from feedback.months import months_recount
    from feedback.services import (
        buyer_get_or_create,
        flow_get_or_create,
        source_get_or_create,
    )

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(CEILING_TABLE_SQL)
    source = source_get_or_create(slug=intake.SOURCE)
    flow = flow_get_or_create(slug=intake.FLOW)
    delivered_at = datetime.now(UTC) - timedelta(minutes=5)
    keys = {}
    for slug, base in BASES.items():
        buyer = buyer_get_or_create(slug=slug)
        chunk = 10_000
        for first in range(0, per_buyer, chunk):
            numbers = range(base + first, base + min(per_buyer, first + chunk))
            leads = Lead.objects.bulk_create(
                Lead(
                    public_id=f"bench-return-lead-{n}",
                    source=source,
                    flow=flow,
                    data={"first_name": "Bench", "phone_1": "5127891111"},
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
        if slug == CAPPED:
            BuyerPolicy.objects.create(
                buyer=buyer,
                kind="return",
                review=BuyerPolicy.Review.RULES,
                auto_approve={
                    "op": "and",
                    "rules": [
                        {
                            "lhv": "feedback.reason",
                            "op": "is included in",
                            "rhv": REASONS,
                        }
                    ],
                },
                cap_percent=Decimal(100),
                cap_min=0,
            )
        out = io.StringIO()
        call_command(
            "create_api_key", buyer=slug, name="bench", stdout=out, stderr=io.StringIO()
        )
        keys[slug] = out.getvalue().strip().splitlines()[-1]
    # The deliveries were bulk-inserted: count their months as recording would.
    months_recount()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return keys


class Deliveries:
    """Hands out one buyer's seeded deliveries in order, never twice."""

    def __init__(self, base: int, total: int) -> None:
        self.base, self.total, self.next = base, total, 0

    def take(self) -> str:
        if self.next >= self.total:
            raise RuntimeError("ran out of seeded deliveries: raise --per-buyer")
        self.next += 1
        return f"{self.base + self.next - 1:024x}"


def builder(port: int, key: str, deliveries: Deliveries) -> Callable[[], bytes]:
    def build() -> bytes:
        body = {
            "event_id": deliveries.take(),
            "type": "return",
            "reason": "Wrong number",
        }
        return intake.raw_post(port, "/api/v1/feedback", json.dumps(body).encode(), key)

    return build


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--returns", action="store_true", help="(selects this run)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measure")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slice", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--per-buyer", type=int, default=40_000, help="deliveries")
    parser.add_argument("--database-url", default=intake.DEFAULT_DATABASE_URL)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--update-docs", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    options = parse_args(argv)
    started = datetime.now(UTC)
    command = ".venv/bin/python " + shlex.join(["bench/intake.py", *argv])
    intake.VAR.mkdir(parents=True, exist_ok=True)
    intake.configure_environment(options.database_url)
    print(f"seeding 2 x {options.per_buyer:,} deliveries …", flush=True)
    intake.recreate_database(options.database_url)
    rates: dict[str, list[float]] = {PLAIN: [], CAPPED: []}
    unexpected: dict[str, dict[str, int]] = {PLAIN: {}, CAPPED: {}}
    try:
        keys = seed(options.per_buyer)
        info = intake.machine()
        load_before = os.getloadavg()[0]
        from django.db import connection

        connection.close()
        deliveries = {
            slug: Deliveries(base, options.per_buyer) for slug, base in BASES.items()
        }
        port = options.port or intake.free_port()
        with intake.gunicorn(
            port, workers=options.workers, worker_class="sync", threads=1
        ) as (server_command, _group):
            builds = {
                slug: builder(port, keys[slug], deliveries[slug]) for slug in BASES
            }

            def run(slug: str, seconds: float) -> tuple[float, dict[str, int]]:
                elapsed, statuses, errors = asyncio.run(
                    intake.closed_loop(builds[slug], port, seconds, options.concurrency)
                )
                if errors:
                    statuses = {**statuses, "error": errors}
                return elapsed, statuses

            print("warming up …", flush=True)
            for slug in BASES:
                run(slug, 2)
            slices = max(1, options.duration // options.slice)
            for number in range(1, options.rounds + 1):
                totals = {slug: [0.0, 0] for slug in BASES}
                for _ in range(slices):
                    for slug in BASES:
                        elapsed, statuses = run(slug, options.duration / slices)
                        totals[slug][0] += elapsed
                        totals[slug][1] += statuses.get("201", 0)
                        for status, count in statuses.items():
                            if status != "201":
                                seen = unexpected[slug]
                                seen[status] = seen.get(status, 0) + count
                for slug, (seconds, accepted) in totals.items():
                    rates[slug].append(accepted / seconds if seconds else 0.0)
                ratio = rates[CAPPED][-1] / rates[PLAIN][-1] if rates[PLAIN][-1] else 0
                print(
                    f"  round {number}: plain {rates[PLAIN][-1]:,.0f}/s, capped and "
                    f"reviewed {rates[CAPPED][-1]:,.0f}/s ({ratio:.0%})",
                    flush=True,
                )
        states = review_states()
    finally:
        from django.db import connections

        connections.close_all()
        intake.recreate_database(options.database_url, drop_only=True)

    ratios = [
        c / p if p else 0.0 for p, c in zip(rates[PLAIN], rates[CAPPED], strict=True)
    ]
    verdict = "pass" if median(ratios) >= TARGET_RATIO else "FAIL"
    server = shlex.join(["gunicorn", *server_command[3:]])
    lines = [
        f"Run of {started:%Y-%m-%d %H:%M} UTC: `{command}` (revision {revision()})",
        "",
        "Machine: "
        + "; ".join(f"{name}: {value}" for name, value in info.items())
        + f"; load before {load_before:.1f}, after {load_average()}.",
        f"Server: `{server}`. Client: Python asyncio, {options.concurrency} "
        f"connections, {options.rounds} rounds of {options.duration} s per buyer in "
        f"{options.slice} s interleaved slices.",
        "",
        "| measure | "
        + " | ".join(f"round {n}" for n in range(1, options.rounds + 1))
        + " | median |",
        "|---|" + "---|" * (options.rounds + 1),
        "| plain returns (review auto, no cap), returns/s | "
        + " | ".join(f"{r:,.0f}" for r in rates[PLAIN])
        + f" | {median(rates[PLAIN]):,.0f} |",
        "| returns with review rules and a cap, returns/s | "
        + " | ".join(f"{r:,.0f}" for r in rates[CAPPED])
        + f" | {median(rates[CAPPED]):,.0f} |",
        "| capped and reviewed / plain | "
        + " | ".join(f"{r:.0%}" for r in ratios)
        + f" | {median(ratios):.0%} |",
        "",
        f"Target: capped and reviewed at least {TARGET_RATIO:.0%} of plain: "
        f"**{verdict}** (median {median(ratios):.0%}).",
        f"Answers other than 201: plain {unexpected[PLAIN] or 'none'}, capped "
        f"{unexpected[CAPPED] or 'none'}. Review states written: {states}.",
    ]
    block = "\n".join(lines)
    print()
    print(block)
    print(f"finished in {(datetime.now(UTC) - started).total_seconds():.0f} s")
    if options.update_docs:
        replace_marked(intake.DOCS, "bench/intake.py --returns", block)
        print(f"results written to {intake.DOCS.relative_to(intake.ROOT)}")


def review_states() -> dict[str, dict[str, int]]:
    from django.db.models import Count

    from feedback.models import Feedback

    found: dict[str, dict[str, int]] = {}
    for row in (
        Feedback.objects.filter(kind="return")
        .values("buyer__slug", "review_state", "outcome")
        .annotate(n=Count("pk"))
    ):
        state = row["review_state"] or row["outcome"]
        found.setdefault(row["buyer__slug"], {})[state] = row["n"]
    return found


if __name__ == "__main__":
    main(sys.argv[1:])
