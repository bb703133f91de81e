"""Health and metrics for whoever runs Leadback (DESIGN §8, docs/scaling.md).

- `/healthz`: the process answers (for a liveness probe); touches nothing.
- `/readyz`: the database answers, the broker accepts a connection and every
  migration is applied (for a readiness probe or a load balancer); 503 with
  the failing check otherwise.
- `/metrics`: Prometheus's text format: what the processes counted
  (feedback/metrics.py, summed across processes with PROMETHEUS_MULTIPROC_DIR)
  and what is read from the database when scraped (open notifications, due
  ones, imports in flight, the broker's queues). Only for the addresses in
  LEADBACK_METRICS_ALLOW_FROM, or with LEADBACK_METRICS_TOKEN as a bearer token.
"""

import hmac
import ipaddress
import os
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from config.celery import app
from feedback.forwarding.models import Notification
from feedback.imports.models import FeedbackImport
from feedback.ratelimits import client_address

BROKER_TIMEOUT_S = 2.0


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


_migrations_applied = False


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_migrations() -> None:
    global _migrations_applied
    if _migrations_applied:
        return
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in pending[:5])
        raise RuntimeError(f"{len(pending)} migrations not applied ({names})")
    _migrations_applied = True


def _check_broker() -> None:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_S)


CHECKS = {
    "database": _check_database,
    "migrations": _check_migrations,
    "broker": _check_broker,
}


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    results: dict[str, dict[str, Any]] = {}
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            check()
        except Exception as exc:
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        else:
            results[name] = {"ok": True}
        results[name]["ms"] = round((time.monotonic() - started) * 1000, 1)
    ready = all(result["ok"] for result in results.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": results},
        status=200 if ready else 503,
    )


def metrics_allowed(request: HttpRequest) -> bool:
    token = settings.LEADBACK_METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header.removeprefix("Bearer ").strip(), token)
    try:
        address = ipaddress.ip_address(client_address(request))
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(network, strict=False)
        for network in settings.LEADBACK_METRICS_ALLOW_FROM
    )


class DatabaseCollector(Collector):
    """Gauges read when scraped: a few indexed counts."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        Status = Notification.Status
        open_states = (Status.PENDING, Status.SENDING, Status.RETRYING, Status.BATCHED)
        counts = dict.fromkeys(open_states, 0)
        for status, count in (
            Notification.objects.filter(status__in=open_states)
            .values_list("status")
            .annotate(n=Count("pk"))
            .order_by()
        ):
            counts[status] = count
        notifications = GaugeMetricFamily(
            "leadback_notifications",
            "Notifications not final yet, by state.",
            labels=["state"],
        )
        for status, count in counts.items():
            notifications.add_metric([status], count)
        yield notifications
        due = Notification.objects.filter(
            status__in=(Status.PENDING, Status.RETRYING),
            next_attempt_at__lte=timezone.now(),
        ).count()
        yield GaugeMetricFamily(
            "leadback_queue_depth",
            "Notifications due now that no worker has taken yet.",
            value=due,
        )
        yield GaugeMetricFamily(
            "leadback_imports_in_flight",
            "CSV imports queued or being processed.",
            value=FeedbackImport.objects.filter(
                status__in=FeedbackImport.OPEN_STATUSES
            ).count(),
        )
        broker = GaugeMetricFamily(
            "leadback_broker_queue_messages",
            "Messages waiting in the broker's queues (absent when the broker "
            "cannot say).",
            labels=["queue"],
        )
        for queue, count in _broker_queue_lengths().items():
            broker.add_metric([queue], count)
        yield broker


def _broker_queue_lengths() -> dict[str, int]:
    queues = {app.conf.task_default_queue or "celery", settings.LEADBACK_IMPORT_QUEUE}
    lengths: dict[str, int] = {}
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_S)
            channel = conn.default_channel
            for queue in sorted(queues):
                declared = channel.queue_declare(queue=queue, passive=True)
                lengths[queue] = int(declared.message_count)
    except Exception:
        return {}
    return lengths


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        return JsonResponse(
            {
                "detail": "Metrics are only served to the addresses in "
                "LEADBACK_METRICS_ALLOW_FROM or with LEADBACK_METRICS_TOKEN."
            },
            status=403,
        )
    scraped = CollectorRegistry()
    scraped.register(DatabaseCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    body = generate_latest(counted) + generate_latest(scraped)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
