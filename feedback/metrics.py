"""What the processes count for Prometheus (prometheus-client): feedback
received, forwarding attempts and their latency. Counted where it happens;
`/metrics` (config/health.py) adds what is read from the database at scrape
time. Under gunicorn or Celery's prefork pool, set PROMETHEUS_MULTIPROC_DIR so
every process's counts add up (docs/scaling.md)."""

from prometheus_client import Counter, Histogram

FEEDBACK_RECEIVED = Counter(
    "leadback_feedback_received",
    "Feedback received, by channel and how it ended (accepted, refused, "
    "forbidden, already_returned, not_found, invalid).",
    ["channel", "outcome"],
)

NOTIFICATIONS_FINISHED = Counter(
    "leadback_notifications_finished",
    "Notifications that reached a final state through an attempt (succeeded, "
    "failed, dead), and attempts that will be retried (retrying).",
    ["state"],
)

ATTEMPT_SECONDS = Histogram(
    "leadback_forwarding_attempt_seconds",
    "How long one attempt to send a notification took, by its outcome.",
    ["outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
)

FORWARDING_LATENCY_SECONDS = Histogram(
    "leadback_forwarding_latency_seconds",
    "From a notification's creation (with its feedback, or at its batch's "
    "turn) to the attempt that delivered it.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600),
)


def feedback_counted(channel: str, outcomes: list[str]) -> None:
    for outcome in outcomes:
        FEEDBACK_RECEIVED.labels(channel=channel, outcome=outcome).inc()
