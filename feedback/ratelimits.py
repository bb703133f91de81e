"""Request counting for rate limits: fixed windows in Django's cache.

One counter per client and window (`600/min`: the minute since the epoch), so a hit
is one increment: one round trip to Redis, none with the local-memory cache. A
window's count starts again at its end, which is what `RateLimit-Reset` says.

Every API call counts, so counting is kept lean (docs/performance.md): the cache is
looked up once per thread, not through Django's per-call handler, and the keys,
built here from a scope, an id or an address and a number, skip Django's check
for keys memcached could not take (a warning only; Leadback caches in Redis or in
memory), which cost more than the increment itself.
"""

import logging
import math
import pickle
import threading
import time
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest

logger = logging.getLogger(__name__)

_local = threading.local()


def _cache() -> BaseCache:
    """caches["default"], kept per thread as Django keeps it."""
    try:
        cache: BaseCache = _local.cache
    except AttributeError:
        cache = _local.cache = caches["default"]
    return cache


@receiver(setting_changed)
def _forget_cache(*, setting: str, **kwargs: Any) -> None:
    global _local
    if setting == "CACHES":
        _local = threading.local()


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
    cache = _cache()
    full_key = cache.make_key(key)
    if isinstance(cache, RedisCache):
        # Django's incr() asks EXISTS first and add() is a third trip: INCR creates
        # the key, EXPIRE bounds it, and one pipeline sends both.
        client = cache._cache.get_client(full_key, write=True)
        pipeline = client.pipeline(transaction=False)
        pipeline.incr(full_key)
        pipeline.expire(full_key, timeout)
        count, _ = pipeline.execute()
        return int(count)
    if isinstance(cache, LocMemCache):
        return _increment_in_memory(cache, full_key, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:  # the window's first request
        if cache.add(key, 1, timeout):
            return 1
        return cache.incr(key)


def _increment_in_memory(cache: LocMemCache, full_key: str, *, timeout: int) -> int:
    # LocMemCache's incr() and, for a window's first request, add(), in one step
    # under its lock and stored as they store values, so get() and clear() see
    # the same count.
    store: Any = cache
    with store._lock:
        if store._has_expired(full_key):
            store._set(full_key, pickle.dumps(1, store.pickle_protocol), timeout)
            return 1
        # Our own count, pickled by this process: nothing untrusted is unpickled.
        count = int(pickle.loads(store._cache[full_key])) + 1  # noqa: S301
        store._cache[full_key] = pickle.dumps(count, store.pickle_protocol)
        store._cache.move_to_end(full_key, last=False)
    return count


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
