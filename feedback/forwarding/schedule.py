"""The retry schedule shared by notifications and batch runs (DESIGN §5.4):
how long to wait after an error, and what a source's Retry-After asks for."""

import email.utils
import random
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings

from sources.outbound.types import OutboundResponse

# Where a row's lease has run out it is fair game again.
MAX_RETRY_AFTER_S = 24 * 3600


def retry_delay(
    attempt_count: int,
    *,
    retry_after_s: float | None = None,
    rng: Callable[[], float] = random.random,
) -> timedelta | None:
    """How long to wait after the `attempt_count`-th try ended in error, or None
    when the schedule is spent (the notification is dead). ±20% jitter spreads
    retries of a source that was down for everyone; a longer Retry-After wins."""
    schedule = settings.LEADBACK_RETRY_SCHEDULE_S
    if attempt_count >= len(schedule):
        return None
    base = float(schedule[attempt_count])
    jitter = settings.LEADBACK_RETRY_JITTER
    seconds = base * (1 + jitter * (2 * rng() - 1))
    if retry_after_s is not None:
        seconds = max(seconds, min(retry_after_s, MAX_RETRY_AFTER_S))
    return timedelta(seconds=seconds)


def retry_after_seconds(response: OutboundResponse, *, now: datetime) -> float | None:
    """The response's Retry-After (delta-seconds or an HTTP date), if any."""
    value = next(
        (v for k, v in response.headers.items() if k.lower() == "retry-after"), ""
    ).strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())
