"""Request counting for rate limits: fixed windows in Django's cache.

One counter per client and window (`600/min`: the minute since the epoch), so a hit
is one increment: one round trip to Redis, none with the local-memory cache. A
window's count starts again at its end, which is what `RateLimit-Reset` says.
"""

import logging
import math
import time
from dataclasses import dataclass
from hashlib import sha256

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Usage:
    """Where a client stands in its current window after one more request."""

    limit: int
    count: int
    # Seconds until the window ends and the count starts again.
    reset_s: int

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    def headers(self) -> dict[str, str]:
        """draft-ietf-httpapi-ratelimit-headers, in the widely deployed form."""
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }


def rate_hit(
    scope: str, ident: str, rate: tuple[int, int], *, now: float | None = None
) -> Usage:
    """Count one request of `ident` against `rate` (requests, seconds) in `scope`."""
    limit, period_s = rate
    now = time.time() if now is None else now
    window = int(now // period_s)
    key = f"ratelimit:{scope}:{ident}:{window}"
    reset_s = max(1, math.ceil((window + 1) * period_s - now))
    try:
        count = _increment(key, timeout=period_s + 1)
    except Exception:  # the cache is a guard, not a dependency: serve unlimited
        logger.warning("rate limit not counted: cache unavailable", exc_info=True)
        count = 0
    return Usage(limit=limit, count=count, reset_s=reset_s)


def _increment(key: str, *, timeout: int) -> int:
    cache = caches["default"]
    if isinstance(cache, RedisCache):
        # Django's incr() asks EXISTS first and add() is a third trip: INCR creates
        # the key, EXPIRE bounds it, and one pipeline sends both.
        full_key = cache.make_and_validate_key(key)
        client = cache._cache.get_client(full_key, write=True)
        pipeline = client.pipeline(transaction=False)
        pipeline.incr(full_key)
        pipeline.expire(full_key, timeout)
        count, _ = pipeline.execute()
        return int(count)
    try:
        return cache.incr(key)
    except ValueError:  # the window's first request
        if cache.add(key, 1, timeout):
            return 1
        return cache.incr(key)


def client_address(request: HttpRequest) -> str:
    """The client's IP address, behind LEADBACK_TRUSTED_PROXIES proxies.

    Each trusted proxy appends the address it received from to X-Forwarded-For, so
    the client's is the n-th from the right; anything left of it was sent by the
    client and may be made up.
    """
    proxies = settings.LEADBACK_TRUSTED_PROXIES
    if proxies:
        forwarded = [
            address.strip()
            for address in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if address.strip()
        ]
        if forwarded:
            return forwarded[-min(proxies, len(forwarded))]
    return str(request.META.get("REMOTE_ADDR", ""))


def hashed(value: str) -> str:
    """A cache-key-safe stand-in for a value that should not sit in the cache as
    is (an email address)."""
    return sha256(value.encode()).hexdigest()[:32]
