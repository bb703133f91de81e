"""Monitors benchmark: one evaluation of 500 monitors over a million feedback rows.

    .venv/bin/python bench/monitors.py [--feedback 1000000] [--monitors 500]

Seeds PostgreSQL as bench/reports.py does (a year of activity in SQL: 1,000,000
feedback rows over 1,000,000 deliveries, 20 sources, 10 flows, 30 buyers, and
notifications with their attempts), builds the report rollups once, then
creates the monitors: every metric, scoped to a source, a buyer, a flow,
nothing, or (one in twenty) a source and a buyer together, over 7, 14 or 30
days. It times `monitors_evaluate` as beat runs it (the reads, the decisions and
the alerts written with their action rows; the rollups are kept by their own
beat, whose refresh is timed apart) for the last day of the seeded year, in
several rounds, and compares the median with the target
(at most 5 s). Prints markdown and keeps var/bench/monitors.json.

The database is dropped and created again unless --reuse-database is given;
--skip-seed measures what a previous run left. Its name must contain "bench".
"""

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_average, median, verdict
from reports import (
    SEEDED_TABLES,
    YEAR_END,
    check_name,
    configure_environment,
    machine,
    recreate_database,
    seed,
)

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/leadback_bench_monitors"
TARGET_S = 5.0
WINDOWS = (7, 14, 30)
# A threshold per metric that some scopes cross and others do not.
THRESHOLDS = {
    "return_rate": ("above", 0.26),
    "conversion_rate": ("below", 0.27),
    "average_quality": ("below", 3.0),
    "feedback_coverage": ("below", 0.5),
    "forwarding_failure_rate": ("above", 0.1),
    "dead_notifications": ("above", 40),
}


def create_monitors(count: int) -> dict[str, int]:
    """`count` monitors spread over metrics, scopes and windows; returns how many
    of each scope shape."""
    from feedback.models import Buyer, Flow
    from monitoring.models import Alert, Monitor
    from sources.models import Source

    Alert.objects.all().delete()
    Monitor.objects.all().delete()
    sources = list(Source.objects.order_by("pk"))
    buyers = list(Buyer.objects.order_by("pk"))
    flows = list(Flow.objects.order_by("pk"))
    metrics = list(THRESHOLDS)
    shapes: dict[str, int] = {}
    rows = []
    for n in range(count):
        metric = metrics[n % len(metrics)]
        op, threshold = THRESHOLDS[metric]
        scope: dict[str, object] = {}
        if n % 20 == 19:
            shape = "source+buyer"
            scope = {"source": sources[n % len(sources)], "buyer": buyers[n % 30]}
        else:
            shape = ("source", "buyer", "flow", "none")[(n // len(metrics)) % 4]
            if shape == "source":
                scope = {"source": sources[n % len(sources)]}
            elif shape == "buyer":
                scope = {"buyer": buyers[n % len(buyers)]}
            elif shape == "flow":
                scope = {"flow": flows[n % len(flows)]}
        shapes[shape] = shapes.get(shape, 0) + 1
        rows.append(
            Monitor(
                slug=f"bench-{n:04d}",
                name=f"Bench {n}",
                metric=metric,
                window_days=WINDOWS[n % len(WINDOWS)],
                op=op,
                threshold=threshold,
                min_sample=50,
                confidence=0.95,
                actions=[{"type": "email", "to": ["ops@seller.example"]}],
                **scope,
            )
        )
    Monitor.objects.bulk_create(rows)
    return shapes


def reset_states() -> None:
    """Every monitor back to ok, so each round decides (and writes) the same."""
    from monitoring.models import Alert, Monitor

    Alert.objects.all().delete()
    Monitor.objects.update(state=Monitor.State.OK)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--feedback", type=int, default=1_000_000)
    parser.add_argument("--monitors", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reuse-database", action="store_true")
    parser.add_argument("--skip-seed", action="store_true")
    return parser.parse_args()


def main() -> None:
    options = parse_args()
    command = ".venv/bin/python bench/monitors.py " + shlex.join(sys.argv[1:])
    check_name(options.database_url)
    configure_environment(options.database_url)
    if not options.reuse_database:
        recreate_database(options.database_url)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    if options.skip_seed:
        counts = {}
        with connection.cursor() as cursor:
            for table in SEEDED_TABLES:
                cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608
                counts[table] = cursor.fetchone()[0]
    else:
        print("Seeding…", flush=True)
        counts = seed(options.feedback)
    from monitoring.services import monitors_evaluate
    from reporting.rollups import rollups_refresh

    started = time.monotonic()
    rollups_refresh(full=not options.skip_seed)
    print(f"Rollups built in {time.monotonic() - started:.1f} s", flush=True)
    shapes = create_monitors(options.monitors)
    info = machine()
    info["load before the rounds"] = load_average()
    timings, fired, refreshes = [], [], []
    for _ in range(options.rounds):
        reset_states()
        started = time.monotonic()
        result = monitors_evaluate(last=YEAR_END, refresh=False)
        timings.append(time.monotonic() - started)
        fired.append(result.fired)
        # Not part of the evaluation: the rollups' own beat, measured apart.
        started = time.monotonic()
        rollups_refresh()
        refreshes.append(time.monotonic() - started)
    took = median(timings)
    lines = [
        "### Results",
        "",
        f"Command: `{command}`",
        "",
        *(f"- {key}: {value}" for key, value in info.items()),
        "- rows: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()),
        f"- monitors: {options.monitors} ("
        + ", ".join(f"{shape} {n}" for shape, n in shapes.items())
        + f"), windows {', '.join(map(str, WINDOWS))} days ending {YEAR_END}",
        f"- fired per evaluation: {fired[0]} (each alert written with its action row)",
        "",
        "| evaluation | median (s) | min (s) | max (s) | at most 5 s |",
        "|---|---:|---:|---:|---|",
        f"| {options.monitors} monitors, {options.rounds} rounds | {took:.2f} | "
        f"{min(timings):.2f} | {max(timings):.2f} | {verdict(took <= TARGET_S)} |",
        "",
        "The report rollups' incremental refresh with nothing new, which beat runs "
        "on its own every LEADBACK_ROLLUP_INTERVAL_S (not part of the evaluation): "
        f"median {median(refreshes):.2f} s.",
    ]
    report = "\n".join(lines) + "\n"
    print()
    print(report)
    VAR.mkdir(parents=True, exist_ok=True)
    (VAR / "monitors.json").write_text(
        json.dumps(
            {
                "machine": info,
                "counts": counts,
                "shapes": shapes,
                "seconds": timings,
                "rollup_refresh_seconds": refreshes,
            },
            indent=2,
        )
    )
    (VAR / "monitors-latest.md").write_text(report)


if __name__ == "__main__":
    main()
