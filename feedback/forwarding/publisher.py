"""Queueing the intake's new notifications off the request.

Publishing a Celery message costs the request about half a millisecond of CPU
and a round trip to the broker, once per feedback. Instead, the claims a commit
hands over wait in this process for up to LEADBACK_PUBLISH_WINDOW_MS, and one
thread sends them together: a message per config for every request in the
window, each row still under the lease it was born with. A process that dies
before the thread sends leaves its rows to the sweep once their lease runs
out, exactly as a lost message would; a clean exit sends what is waiting.

With the window at 0 (or Celery running tasks eagerly, as some tests do) the
claims are queued at once, in the caller's thread.
"""

import atexit
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

# The claims are the engine's; this module only carries them.
Send = Callable[[Sequence[Any]], object]


class Publisher:
    """One per process: claims in, batched sends out from a daemon thread."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._waiting: list[Any] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def put(self, claims: Sequence[Any], *, window_s: float) -> None:
        if not claims:
            return
        with self._lock:
            self._waiting.extend(claims)
            self._ensure_thread(window_s)
        self._wake.set()

    def flush(self) -> int:
        """Send what is waiting now, in this thread; returns how many claims."""
        with self._lock:
            claims, self._waiting = self._waiting, []
        if claims:
            try:
                self._send(claims)
            except Exception:  # the sweep queues them once their lease runs out
                logger.exception("could not queue %d notifications", len(claims))
        return len(claims)

    def _ensure_thread(self, window_s: float) -> None:
        # A forked child (a gunicorn worker after a preloaded master) inherits
        # the claims list but not the thread: it starts its own.
        if self._thread is not None and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(
            target=self._run, args=(window_s,), name="leadback-publisher", daemon=True
        )
        self._thread.start()

    def _run(self, window_s: float) -> None:
        while True:
            self._wake.wait()
            # Let the window fill: every commit in it shares the messages.
            threading.Event().wait(window_s)
            self._wake.clear()
            try:
                self.flush()
            finally:
                # The send may release leases (broker down): this thread's own
                # connection must not outlive its use.
                connection.close()


_publisher: Publisher | None = None


def publish(claims: Sequence[Any], send: Send) -> None:
    """Queue `claims` with `send` (always the same function: the engine's
    `notifications_enqueue`), through this process's publisher when a window
    is set."""
    window_ms = float(getattr(settings, "LEADBACK_PUBLISH_WINDOW_MS", 0))
    if window_ms <= 0 or _eager():
        send(claims)
        return
    global _publisher
    if _publisher is None:
        _publisher = Publisher(send)
        atexit.register(_publisher.flush)
    _publisher.put(claims, window_s=window_ms / 1000)


def _eager() -> bool:
    return bool(current_app.conf.task_always_eager)
