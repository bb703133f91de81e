# ruff: noqa: S608 - the SQL below is built from constants and column names only.
"""Reports benchmark: each report beside the equivalent raw SQL, on a year of data.

    .venv/bin/python bench/reports.py [--feedback 1000000] [--rounds 5]

Seeds PostgreSQL with a year of activity in SQL (generate_series): 1,000,000
feedback rows over 1,000,000 deliveries of 500,000 leads, 20 sources, 10 flows,
30 buyers, 40 source configs, and for one accepted conversion or return in five a
notification with its attempts. Then, for the last 30 days and for the whole
year, times each report's `generate()` (the ORM queries, labels and the Python
that shapes rows: everything a page does but render HTML) and, interleaved in the
same rounds, the hand-written SQL that computes the same figures with GROUP BY
(bench/reports.py, RAW_SQL). Medians are compared with the targets (within 2x
the raw SQL, and under 500 ms for the year), printed as markdown and kept in
var/bench/reports.json.

The database is dropped and created again unless --reuse-database is given, in
which case the seeded tables of the given database are emptied first (TRUNCATE).
Its name must contain "bench" or "reports" either way.
"""

import argparse
import json
import os
import platform
import re
import secrets
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

try:
    from common import load_average, median, revision, verdict
except ImportError:  # run as `python -m bench.reports`
    from bench.common import load_average, median, revision, verdict

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/leadback_bench_reports"
TARGET_RATIO = 2.0
TARGET_YEAR_MS = 500.0
# With rollups, at ten million feedback rows (the scaling target).
TARGET_ROLLUP_YEAR_MS = 100.0
# The year the data covers; the 30-day range is its last 30 days.
YEAR_START = date(2025, 1, 1)
YEAR_END = date(2025, 12, 31)
REASONS = [
    "Wrong number",
    "Duplicate",
    "Not interested",
    "Bad email",
    "Out of area",
    "",
    "Sold",
    "Call back",
]


# Setup -------------------------------------------------------------------------------


def configure_environment(database_url: str) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": database_url,
            "LEADBACK_VAR_DIR": str(VAR / "reports"),
            "DEBUG": "false",
            # The settings refuse the embedded key outside DEBUG.
            "SECRET_KEY": secrets.token_urlsafe(50),
            "LOG_LEVEL": "WARNING",
        }
    )
    (VAR / "reports").mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))


def check_name(database_url: str) -> str:
    name = urlsplit(database_url).path.lstrip("/")
    if "bench" not in name and "reports" not in name:
        raise SystemExit(
            f"refusing to empty {name!r}: its name must contain 'bench' or 'reports'"
        )
    return name


def recreate_database(database_url: str) -> None:
    import psycopg
    from psycopg import sql

    name = check_name(database_url)
    admin_url = urlsplit(database_url)._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            )
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


SEEDED_TABLES = (
    "feedback_notificationattempt",
    "feedback_notification",
    "feedback_feedback",
    "feedback_deliveryevent",
    "feedback_lead",
)


def seed(feedback_rows: int) -> dict[str, int]:
    """Migrate, then fill a year of data in SQL. Returns the row counts."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from feedback.models import OutcomeCode
    from feedback.services import (
        buyer_get_or_create,
        flow_get_or_create,
        source_get_or_create,
    )
    from sources.models import FeedbackConfig, Kind

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(SEEDED_TABLES)} RESTART IDENTITY CASCADE")
    FeedbackConfig.objects.all().delete()
    sources = [source_get_or_create(slug=f"source-{n:02d}").pk for n in range(20)]
    flows = [flow_get_or_create(slug=f"flow-{n:02d}").pk for n in range(10)]
    buyers = [buyer_get_or_create(slug=f"buyer-{n:02d}").pk for n in range(30)]
    for source_id in sources:
        for kind in (Kind.CONVERSION, Kind.RETURN):
            FeedbackConfig.objects.create(
                source_id=source_id, kind=kind, url="https://example.com/hook"
            )
    codes = dict(OutcomeCode.objects.values_list("code", "pk"))
    deliveries = feedback_rows
    leads = deliveries // 2
    # Nine in ten feedback rows go to distinct deliveries (a bijection: 7919 is
    # prime to the count), the rest to a second permutation; only the first may be
    # an accepted return, which keeps one accepted return per delivery.
    first_pass = feedback_rows * 9 // 10
    params: dict[str, Any] = {
        "sources": sources,
        "flows": flows,
        "buyers": buyers,
        "leads": leads,
        "deliveries": deliveries,
        "feedback": feedback_rows,
        "first_pass": first_pass,
        "start": datetime.combine(YEAR_START, datetime.min.time(), tzinfo=UTC),
        "reasons": REASONS,
        "return_codes": [codes["bad_info"], codes["duplicate"], codes["returned"]],
        "status_codes": [
            codes["contacted"],
            codes["no_contact"],
            codes["not_interested"],
        ],
        "converted": codes["converted"],
    }
    statements = [
        "SELECT setseed(0.42)",
        """
        INSERT INTO feedback_lead (public_id, source_id, flow_id, data,
            email_normalized, phone_normalized, received_at, created_at)
        SELECT 'bench-' || g,
            (%(sources)s::bigint[])[1 + g %% cardinality(%(sources)s::bigint[])],
            (%(flows)s::bigint[])[1 + g %% cardinality(%(flows)s::bigint[])],
            '{}'::jsonb, '', '', %(start)s, now()
        FROM generate_series(1, %(leads)s) g
        """,
        """
        INSERT INTO feedback_deliveryevent (event_id, lead_id, buyer_id, source_id,
            flow_id, step, reference, price, delivered_at, payload_hash, created_at)
        SELECT lpad(to_hex(d), 24, '0'), l.id,
            (%(buyers)s::bigint[])[1 + (d * 31) %% cardinality(%(buyers)s::bigint[])],
            l.source_id, l.flow_id, 'Deliver', '', 5 + d %% 40,
            t.at, '', t.at
        FROM generate_series(1, %(deliveries)s) d
        -- Referring to d keeps the subquery per row: uncorrelated, it could be
        -- evaluated once and give every delivery the same random time.
        CROSS JOIN LATERAL (
            SELECT %(start)s + random() * interval '365 days' + d * interval '0' AS at
        ) t
        JOIN feedback_lead l ON l.id = 1 + (d - 1) %% %(leads)s
        """,
        """
        INSERT INTO feedback_feedback (public_id, delivery_id, lead_id, buyer_id,
            source_id, flow_id, kind, outcome_code_id, reason, revenue, quality_score,
            occurred_at, received_at, custom, note, channel, outcome, outcome_reason,
            review_state)
        SELECT gen_random_uuid(), d.id, d.lead_id, d.buyer_id, d.source_id,
            d.flow_id, s.kind,
            CASE s.kind
                WHEN 'conversion' THEN %(converted)s
                WHEN 'return' THEN (%(return_codes)s::bigint[])[1 + s.i %% 3]
                ELSE (%(status_codes)s::bigint[])[1 + s.i %% 3] END,
            (%(reasons)s::text[])[1 + floor(s.r3 * 8)::int],
            CASE WHEN s.kind = 'conversion' THEN round((50 + s.r4 * 200)::numeric, 2)
                END,
            CASE WHEN s.r4 < 0.6 THEN 1 + s.i %% 5 END,
            d.delivered_at + s.r5 * s.r5 * s.r5 * interval '60 days',
            d.delivered_at + s.r5 * s.r5 * s.r5 * interval '60 days',
            '{}'::jsonb, '', 'api',
            CASE WHEN s.r2 < 0.85 AND (s.kind <> 'return' OR s.i <= %(first_pass)s)
                THEN 'success' ELSE 'failure' END,
            '',
            -- An accepted return without review starts approved, as the intake has it.
            CASE WHEN s.kind = 'return' AND s.r2 < 0.85 AND s.i <= %(first_pass)s
                THEN 'approved' ELSE '' END
        FROM (
            SELECT i,
                CASE WHEN i <= %(first_pass)s
                    THEN 1 + ((i - 1)::bigint * 7919) %% %(deliveries)s
                    ELSE 1 + ((i - %(first_pass)s)::bigint * 104729) %% %(deliveries)s
                    END AS delivery_id,
                CASE WHEN r1 < 0.35 THEN 'conversion'
                    WHEN r1 < 0.65 THEN 'return' ELSE 'status' END AS kind,
                r2, r3, r4, r5
            FROM (
                SELECT i, random() r1, random() r2, random() r3, random() r4,
                    random() r5
                FROM generate_series(1, %(feedback)s) i
            ) raw
        ) s
        JOIN feedback_deliveryevent d ON d.id = s.delivery_id
        """,
        """
        INSERT INTO feedback_notification (public_id, feedback_id, config_id,
            source_id, kind, lead_delivered_at, status, reason, reference,
            attempt_count, schedule_tries, created_at, updated_at)
        SELECT 'msg_' || lpad(to_hex(f.id), 24, '0'), f.id, c.id, f.source_id,
            f.kind, d.delivered_at, s.status, '', '',
            CASE s.status WHEN 'pending' THEN 0 WHEN 'dead' THEN 3
                WHEN 'succeeded' THEN 1 + (f.id %% 10 = 0)::int ELSE 1 END,
            0, f.received_at, f.received_at
        FROM feedback_feedback f
        JOIN feedback_deliveryevent d ON d.id = f.delivery_id
        JOIN sources_feedbackconfig c ON c.source_id = f.source_id AND c.kind = f.kind
        CROSS JOIN LATERAL (
            SELECT CASE WHEN f.id %% 100 < 85 THEN 'succeeded'
                WHEN f.id %% 100 < 90 THEN 'failed'
                WHEN f.id %% 100 < 93 THEN 'dead'
                WHEN f.id %% 100 < 97 THEN 'retrying' ELSE 'pending' END AS status
        ) s
        WHERE f.outcome = 'success' AND f.id %% 5 = 0
        """,
        """
        INSERT INTO feedback_notificationattempt (notification_id, number, started_at,
            duration_ms, request_method, request_url, request_headers, request_body,
            response_status, response_headers, response_body, outcome, reason,
            error_class)
        SELECT n.id, a.number, n.created_at + (a.number - 1) * interval '5 minutes',
            50 + floor(random() * random() * 2000)::int, 'POST',
            'https://example.com/hook', '{}'::jsonb, '', last.code, '{}'::jsonb, '',
            last.outcome, '', ''
        FROM feedback_notification n
        CROSS JOIN LATERAL generate_series(1, n.attempt_count) AS a(number)
        CROSS JOIN LATERAL (
            SELECT CASE WHEN a.number < n.attempt_count THEN 503
                WHEN n.status = 'succeeded' THEN 200
                WHEN n.status = 'failed' THEN 400
                WHEN n.status = 'dead' THEN 500 ELSE 502 END AS code,
            CASE WHEN a.number < n.attempt_count THEN 'error'
                WHEN n.status = 'succeeded' THEN 'success'
                WHEN n.status = 'failed' THEN 'failure' ELSE 'error' END AS outcome
        ) last
        """,
        # What autovacuum would have done by the time such a year is reported on:
        # the visibility map lets the open-rows index answer from the index alone.
        "VACUUM (ANALYZE)",
    ]
    with connection.cursor() as cursor:
        for statement in statements:
            started = time.monotonic()
            cursor.execute(statement, params)
            label = " ".join(statement.split())[:60]
            print(f"  {time.monotonic() - started:6.1f} s  {label}", flush=True)
    counts = {}
    with connection.cursor() as cursor:
        for table in SEEDED_TABLES:
            cursor.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cursor.fetchone()[0]
    return counts


# The raw SQL each report is measured against ----------------------------------------
#
# Hand-written, computing the same figures the report shows, on the delivery date
# basis with no dimension filter (the pages' default). %(since)s / %(until)s bound
# the range; %(contact)s / %(no_contact)s are the outcome code ids.

FEEDBACK_MEASURES = """
    COUNT(*),
    COUNT(*) FILTER (WHERE f.outcome = 'success'),
    COUNT(*) FILTER (WHERE f.outcome = 'failure'),
    COUNT(*) FILTER (WHERE f.outcome = 'success' AND f.kind = 'conversion'),
    COUNT(*) FILTER (WHERE f.outcome = 'success' AND f.kind = 'return'),
    COUNT(*) FILTER (WHERE f.outcome = 'success' AND f.kind = 'status'),
    SUM(f.revenue) FILTER (WHERE f.outcome = 'success'),
    SUM(f.quality_score) FILTER (WHERE f.outcome = 'success'),
    COUNT(f.quality_score) FILTER (WHERE f.outcome = 'success'),
    COUNT(*) FILTER (WHERE f.outcome = 'success'
        AND f.outcome_code_id = ANY(%(contact)s)),
    COUNT(*) FILTER (WHERE f.outcome = 'success'
        AND f.outcome_code_id = ANY(%(no_contact)s))
"""
FEEDBACK_BY_DELIVERY_DATE = """
    FROM feedback_feedback f JOIN feedback_deliveryevent d ON d.id = f.delivery_id
    WHERE d.delivered_at >= %(since)s AND d.delivered_at < %(until)s
"""


def breakdown_sql(column: str) -> list[str]:
    return [
        f"SELECT f.{column}, {FEEDBACK_MEASURES} {FEEDBACK_BY_DELIVERY_DATE} "
        f"GROUP BY f.{column}",
        f"""SELECT d.{column}, COUNT(*), SUM(d.price), COUNT(*) FILTER (WHERE EXISTS
            (SELECT 1 FROM feedback_feedback f WHERE f.delivery_id = d.id))
        FROM feedback_deliveryevent d
        WHERE d.delivered_at >= %(since)s AND d.delivered_at < %(until)s
        GROUP BY d.{column}""",
    ]


def feedback_side_sql(column: str) -> list[str]:
    return [
        f"SELECT f.{column}, {FEEDBACK_MEASURES} {FEEDBACK_BY_DELIVERY_DATE} "
        f"GROUP BY f.{column}",
        f"""SELECT p.{column}, COUNT(*), SUM(dd.price) FROM (
            SELECT DISTINCT f.{column}, f.delivery_id {FEEDBACK_BY_DELIVERY_DATE}
        ) p JOIN feedback_deliveryevent dd ON dd.id = p.delivery_id
        GROUP BY p.{column}""",
    ]


def ttf_sql(column: str) -> list[str]:
    return [
        f"""SELECT f.{column}, COUNT(*),
            COUNT(*) FILTER (WHERE f.received_at < d.delivered_at + interval '1 hour'),
            COUNT(*) FILTER (WHERE f.received_at >= d.delivered_at + interval '1 hour'
                AND f.received_at < d.delivered_at + interval '1 day'),
            COUNT(*) FILTER (WHERE f.received_at >= d.delivered_at + interval '1 day'
                AND f.received_at < d.delivered_at + interval '7 days'),
            COUNT(*) FILTER (WHERE f.received_at >= d.delivered_at + interval '7 days'
                AND f.received_at < d.delivered_at + interval '30 days'),
            COUNT(*) FILTER (
                WHERE f.received_at >= d.delivered_at + interval '30 days'),
            percentile_cont(0.5) WITHIN GROUP
                (ORDER BY EXTRACT(EPOCH FROM f.received_at - d.delivered_at)),
            percentile_cont(0.9) WITHIN GROUP
                (ORDER BY EXTRACT(EPOCH FROM f.received_at - d.delivered_at))
        {FEEDBACK_BY_DELIVERY_DATE} GROUP BY f.{column}"""
    ]


# Notifications carry their delivery's delivered_at (lead_delivered_at).
NOTIFICATIONS_BY_DELIVERY_DATE = """
    FROM feedback_notification n
    WHERE n.lead_delivered_at >= %(since)s AND n.lead_delivered_at < %(until)s
"""

RAW_SQL: dict[str, list[str]] = {
    "trends": [
        f"""SELECT (d.delivered_at AT TIME ZONE 'UTC')::date,
            COUNT(*) FILTER (WHERE f.outcome = 'success' AND f.kind = 'conversion'),
            COUNT(*) FILTER (WHERE f.outcome = 'success' AND f.kind = 'return')
        {FEEDBACK_BY_DELIVERY_DATE} GROUP BY 1"""
    ],
    "by-reason": feedback_side_sql("reason"),
    "by-source": breakdown_sql("source_id"),
    "by-flow": breakdown_sql("flow_id"),
    "by-buyer": breakdown_sql("buyer_id"),
    "by-kind": feedback_side_sql("kind"),
    "time-to-feedback-by-source": ttf_sql("source_id"),
    "time-to-feedback-by-buyer": ttf_sql("buyer_id"),
    "scorecard": breakdown_sql("source_id"),
    "returns-by-source-and-reason": [
        "SELECT f.source_id, f.reason, COUNT(*) FILTER (WHERE f.outcome = 'success' "
        f"AND f.kind = 'return') {FEEDBACK_BY_DELIVERY_DATE} "
        "GROUP BY f.source_id, f.reason"
    ],
    "returns-resolution": [
        """SELECT f.source_id, f.review_state, COUNT(*) FROM feedback_feedback f
        WHERE f.kind = 'return' AND f.outcome = 'success'
            AND f.received_at >= %(since)s AND f.received_at < %(until)s
        GROUP BY f.source_id, f.review_state"""
    ],
    "delivery-health": [
        f"""SELECT n.config_id, COUNT(*),
            COUNT(*) FILTER (WHERE n.status = 'succeeded'),
            COUNT(*) FILTER (WHERE n.status = 'failed'),
            COUNT(*) FILTER (WHERE n.status = 'dead'),
            COUNT(*) FILTER (WHERE n.status = 'succeeded' AND n.attempt_count > 1)
        {NOTIFICATIONS_BY_DELIVERY_DATE} GROUP BY n.config_id""",
        """SELECT n.config_id, COUNT(*), COUNT(*) FILTER (WHERE a.outcome = 'error'),
            percentile_cont(0.5) WITHIN GROUP (ORDER BY a.duration_ms),
            percentile_cont(0.95) WITHIN GROUP (ORDER BY a.duration_ms)
        FROM feedback_notificationattempt a
        JOIN feedback_notification n ON n.id = a.notification_id
        WHERE n.lead_delivered_at >= %(since)s AND n.lead_delivered_at < %(until)s
        GROUP BY n.config_id""",
        """SELECT config_id, COUNT(*), MIN(created_at) FROM feedback_notification
        WHERE status IN ('pending', 'sending', 'retrying') GROUP BY config_id""",
    ],
    "billing": [
        """SELECT date_trunc('month', received_at AT TIME ZONE 'UTC'), COUNT(*),
            COUNT(*) FILTER (WHERE outcome = 'success'),
            COUNT(*) FILTER (WHERE outcome = 'failure')
        FROM feedback_feedback
        WHERE received_at >= %(since)s AND received_at < %(until)s GROUP BY 1""",
        """SELECT date_trunc('month', n.created_at AT TIME ZONE 'UTC'), COUNT(*),
            COUNT(*) FILTER (WHERE EXISTS (SELECT 1 FROM feedback_notificationattempt a
                WHERE a.notification_id = n.id AND a.response_status >= 500))
        FROM feedback_notification n
        WHERE n.attempt_count > 0
            AND n.created_at >= %(since)s AND n.created_at < %(until)s
        GROUP BY 1""",
    ],
}


# Measuring ---------------------------------------------------------------------------


@dataclass
class Measure:
    report: str
    period: str
    app_ms: list[float]
    raw_ms: list[float]
    rows: int

    @property
    def app(self) -> float:
        return median(self.app_ms)

    @property
    def raw(self) -> float:
        return median(self.raw_ms) if self.raw_ms else float("nan")

    @property
    def ratio(self) -> float:
        return self.app / self.raw if self.raw else float("nan")


def run_raw(statements: list[str], params: dict[str, Any]) -> int:
    from django.db import connection

    rows = 0
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement, params)
            rows += len(cursor.fetchall())
    return rows


def build_rollups(
    new_feedback: int, *, full: bool = True, new_notifications: int | None = None
) -> dict[str, float]:
    """Time the first full build (unless `full` is False: the rollups a
    previous run built are brought up to date, untimed), then an incremental
    refresh after
    `new_feedback` new feedback rows about deliveries of the last 90 days and a
    day's notifications created and changed (what beat does every five
    minutes), then one with nothing new."""
    from django.db import connection

    from reporting.models import DailyRollup, RollupState, SentRollup
    from reporting.rollups import rollups_refresh

    started = time.perf_counter()
    if full:
        RollupState.objects.all().delete()
        DailyRollup.objects.all().delete()
        rollups_refresh(full=True)
    else:
        rollups_refresh()
    full_s = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO feedback_feedback (public_id, delivery_id, lead_id, buyer_id,
                source_id, flow_id, kind, reason, occurred_at, received_at, custom,
                note, channel, outcome, outcome_reason, review_state)
            SELECT gen_random_uuid(), d.id, d.lead_id, d.buyer_id, d.source_id,
                d.flow_id, (ARRAY['status', 'conversion'])[1 + (random() < 0.4)::int],
                'Call back', now(), now(), '{}'::jsonb, '', 'api', 'success', '', ''
            FROM feedback_deliveryevent d
            WHERE d.delivered_at >= %(since)s
            ORDER BY random() LIMIT %(count)s
            """,
            {
                "since": datetime.combine(
                    YEAR_END - timedelta(days=89), datetime.min.time(), tzinfo=UTC
                ),
                "count": new_feedback,
            },
        )
        # A day's notifications: new ones for some of that feedback, and as
        # many open ones tried again and succeeding (the sent rollups recount
        # their days).
        cursor.execute("SELECT COUNT(*) FROM feedback_notification")
        (notifications,) = cursor.fetchone()
        changing = (
            max(notifications // 365, 1)
            if new_notifications is None
            else new_notifications
        )
        if changing:
            cursor.execute(
                """
                INSERT INTO feedback_notification (public_id, feedback_id, config_id,
                    source_id, kind, lead_delivered_at, status, reason, reference,
                    attempt_count, schedule_tries, created_at, updated_at)
                SELECT 'msg_' || lpad(to_hex(f.id), 24, '0'), f.id, c.id, f.source_id,
                    f.kind, d.delivered_at, 'pending', '', '', 0, 0, now(), now()
                FROM feedback_feedback f
                JOIN feedback_deliveryevent d ON d.id = f.delivery_id
                JOIN sources_feedbackconfig c
                    ON c.source_id = f.source_id AND c.kind = f.kind
                WHERE f.received_at >= now() - interval '1 minute'
                    AND NOT EXISTS (SELECT 1 FROM feedback_notification o
                        WHERE o.feedback_id = f.id)
                LIMIT %(count)s
                """,
                {"count": changing},
            )
            cursor.execute(
                """
                WITH picked AS (
                    SELECT id FROM feedback_notification
                    WHERE status IN ('pending', 'retrying')
                        AND created_at < now() - interval '1 minute'
                    ORDER BY random() LIMIT %(count)s
                ), moved AS (
                    UPDATE feedback_notification n SET status = 'succeeded',
                        attempt_count = n.attempt_count + 1, finished_at = now(),
                        updated_at = now()
                    FROM picked WHERE n.id = picked.id
                    RETURNING n.id, n.attempt_count
                )
                INSERT INTO feedback_notificationattempt (notification_id, number,
                    started_at, duration_ms, request_method, request_url,
                    request_headers, request_body, response_status, response_headers,
                    response_body, outcome, reason, error_class)
                SELECT id, attempt_count, now(), 120, 'POST', 'https://example.com/hook',
                    '{}'::jsonb, '', 200, '{}'::jsonb, '', 'success', '', ''
                FROM moved
                """,
                {"count": changing},
            )
    started = time.perf_counter()
    rollups_refresh()
    incremental_s = time.perf_counter() - started
    started = time.perf_counter()
    rollups_refresh()
    idle_s = time.perf_counter() - started
    return {
        (
            "full build (s)" if full else "bringing the kept rollups up to date (s)"
        ): round(full_s, 1),
        f"refresh after {new_feedback:,} new feedback on the last 90 days and "
        f"{changing:,} new and {changing:,} changed notifications (s)": round(
            incremental_s, 2
        ),
        "refresh with nothing new (s)": round(idle_s, 2),
        "rollup rows": DailyRollup.objects.count(),
        "sent rollup rows": SentRollup.objects.count(),
    }


def run_report(report_class: Any, filters: Any) -> list[Any]:
    """The tables a report's page builds: its one table, or its sections'."""
    report = report_class(filters)
    if report_class.sections:
        return list(report.generate_sections(report_class.sections))
    return [report.generate()]


def measure(rounds: int, only: list[str] | None, raw: bool = True) -> list[Measure]:
    from django.db import connection

    from feedback.models import OutcomeCode
    from reporting.filters import ReportFilters
    from reporting.measures import CONTACT_CODES, NO_CONTACT_CODES
    from reporting.reports import REPORTS

    codes = dict(OutcomeCode.objects.values_list("code", "pk"))
    periods = {
        "30 days": ReportFilters(start=YEAR_END - timedelta(days=29), end=YEAR_END),
        "year": ReportFilters(start=YEAR_START, end=YEAR_END),
    }
    results = []
    for code, report_class in REPORTS.items():
        if only and code not in only:
            continue
        for period, filters in periods.items():
            params = {
                "since": filters.since,
                "until": filters.until,
                "contact": [codes[c] for c in CONTACT_CODES if c in codes],
                "no_contact": [codes[c] for c in NO_CONTACT_CODES if c in codes],
            }
            # One untimed run of each warms the caches the same way for both.
            run_report(report_class, filters)
            if raw:
                run_raw(RAW_SQL[code], params)
            app_ms, raw_ms = [], []
            rows = 0
            for _ in range(rounds):
                started = time.perf_counter()
                tables = run_report(report_class, filters)
                app_ms.append((time.perf_counter() - started) * 1000)
                rows = sum(len(table.rows) for table in tables)
                if raw:
                    started = time.perf_counter()
                    run_raw(RAW_SQL[code], params)
                    raw_ms.append((time.perf_counter() - started) * 1000)
            connection.close()  # no state carried from one report to the next
            result = Measure(code, period, app_ms, raw_ms, rows)
            print(
                f"  {code:28} {period:8} app {result.app:8.1f} ms  "
                f"raw {result.raw:8.1f} ms  x{result.ratio:.2f}",
                flush=True,
            )
            results.append(result)
    return results


# Reporting ---------------------------------------------------------------------------


def machine() -> dict[str, str]:
    import django
    from django.db import connection

    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
        cursor.execute("SHOW max_parallel_workers_per_gather")
        parallel = cursor.fetchone()[0]
        cursor.execute("SHOW work_mem")
        work_mem = cursor.fetchone()[0]
    return {
        "cpus": f"{os.cpu_count()} (nproc {len(os.sched_getaffinity(0))})",
        "cpu": model.group(1).strip() if model else platform.processor(),
        "postgresql": f"{pg_version} (max_parallel_workers_per_gather={parallel}, "
        f"work_mem={work_mem})",
        "python / django": f"{platform.python_version()} / {django.get_version()}",
        "code": revision(),
        "load before the rounds": load_average(),
    }


def render(
    results: list[Measure],
    counts: dict[str, int],
    info: dict[str, str],
    command: str,
    rounds: int,
) -> str:
    lines = [
        "### Results",
        "",
        f"Command: `{command}`",
        "",
        *(f"- {key}: {value}" for key, value in info.items()),
        "- rows: " + ", ".join(f"{table} {n:,}" for table, n in counts.items()),
        f"- medians of {rounds} interleaved rounds; basis: delivery date, no filter",
        "",
        "| report | period | groups | report (ms) | raw SQL (ms) | ratio | "
        "at most 2x raw | year under 500 ms | year at most 100 ms |",
        "|---|---|---:|---:|---:|---:|---|---|---|",
    ]
    for r in results:
        within = verdict(r.ratio <= TARGET_RATIO) if r.raw_ms else "not run"
        year = r.period == "year"
        fast = verdict(r.app < TARGET_YEAR_MS) if year else ""
        faster = verdict(r.app <= TARGET_ROLLUP_YEAR_MS) if year else ""
        raw = f"{r.raw:.1f}" if r.raw_ms else "not run"
        ratio = f"{r.ratio:.2f}" if r.raw_ms else ""
        lines.append(
            f"| {r.report} | {r.period} | {r.rows} | {r.app:.1f} | {raw} | "
            f"{ratio} | {within} | {fast} | {faster} |"
        )
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--feedback", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--reuse-database",
        action="store_true",
        help="empty the seeded tables of the given database instead of recreating it",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="count everything live (LEADBACK_REPORT_ROLLUPS=false): no rollups",
    )
    parser.add_argument("--reports", help="comma-separated report codes (all)")
    parser.add_argument(
        "--day-feedback",
        type=int,
        help="new feedback the refresh is timed after (a day: --feedback / 365)",
    )
    parser.add_argument(
        "--day-notifications",
        type=int,
        help="notifications created and as many changed before the timed refresh "
        "(a day: the notifications / 365; 0 times the feedback side alone)",
    )
    parser.add_argument(
        "--no-raw",
        action="store_true",
        help="time the report pages only, not the raw SQL beside them (at ten "
        "million rows each raw query scans the year for seconds)",
    )
    parser.add_argument(
        "--keep-rollups",
        action="store_true",
        help="keep the rollups a previous run built (with --skip-seed): no full "
        "build, the refresh after a day still timed",
    )
    parser.add_argument(
        "--skip-seed",
        action="store_true",
        help="measure the data a previous run left (with --reuse-database)",
    )
    return parser.parse_args()


def main() -> None:
    options = parse_args()
    command = "bench/reports.py " + shlex.join(sys.argv[1:])
    check_name(options.database_url)
    configure_environment(options.database_url)
    os.environ["LEADBACK_REPORT_ROLLUPS"] = "false" if options.live else "true"
    if not options.reuse_database:
        recreate_database(options.database_url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print("Seeding…", flush=True)
    started = time.monotonic()
    if options.skip_seed:
        from django.db import connection

        counts = {}
        with connection.cursor() as cursor:
            for table in SEEDED_TABLES:
                cursor.execute(f"SELECT count(*) FROM {table}")
                counts[table] = cursor.fetchone()[0]
    else:
        counts = seed(options.feedback)
    print(f"Seeded in {time.monotonic() - started:.0f} s: {counts}", flush=True)
    rollups: dict[str, float] = {}
    if not options.live:
        print("Building rollups…", flush=True)
        # A day of feedback: the year's rows over 365 days (those seeded, or
        # found with --skip-seed).
        seeded = counts.get("feedback_feedback", options.feedback)
        day = options.day_feedback or max(1000, seeded // 365)
        rollups = build_rollups(
            day,
            full=not options.keep_rollups,
            new_notifications=options.day_notifications,
        )
        print(f"  {rollups}", flush=True)
    info = machine()
    info["mode"] = (
        "live (LEADBACK_REPORT_ROLLUPS=false)"
        if options.live
        else "daily rollups on (the default): "
        + ", ".join(f"{k} {v}" for k, v in rollups.items())
    )
    print("Measuring…", flush=True)
    results = measure(
        options.rounds,
        options.reports.split(",") if options.reports else None,
        raw=not options.no_raw,
    )
    report = render(
        results, counts, info, ".venv/bin/python " + command, options.rounds
    )
    print()
    print(report)
    VAR.mkdir(parents=True, exist_ok=True)
    (VAR / ("reports-live.json" if options.live else "reports.json")).write_text(
        json.dumps(
            {
                "machine": info,
                "counts": counts,
                "rollups": rollups,
                "results": [
                    {
                        "report": r.report,
                        "period": r.period,
                        "groups": r.rows,
                        "app_ms": r.app_ms,
                        "raw_ms": r.raw_ms,
                    }
                    for r in results
                ],
            },
            indent=2,
        )
    )
    suffix = "-live" if options.live else ""
    (VAR / f"reports{suffix}-latest.md").write_text(report)


if __name__ == "__main__":
    main()
