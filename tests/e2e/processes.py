"""Real Celery worker and beat processes, and the plumbing fault tests need around them.

Each process runs `python -m celery -A config ...` from the project directory in its
own process group, so `kill()` can SIGKILL it with every child at once (a prefork
pool's children included): nothing gets to shut down, ack or clean up, which is
what a crashed host or an OOM kill looks like.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from django.db import connection

from config.celery import app

PROJECT_DIR = Path(__file__).resolve().parents[2]

# The pool the fault tests prove: delivery is network-bound, so a thread per
# in-flight request. A source that accepts connections and never answers holds a
# thread for its whole timeout; with a handful of prefork children it would hold
# all of them and every other source would wait behind it.
WORKER_POOL_OPTIONS = ("--pool=threads", "--concurrency=64")


def session_database_url() -> str:
    """A DATABASE_URL for the database this test session runs on (test_<name>)."""
    settings_dict = connection.settings_dict
    user = quote(settings_dict["USER"] or "", safe="")
    password = quote(settings_dict["PASSWORD"] or "", safe="")
    credentials = f"{user}:{password}@" if password else f"{user}@" if user else ""
    return (
        f"postgres://{credentials}{settings_dict['HOST'] or '127.0.0.1'}:"
        f"{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"
    )


def redis_url_with_db(url: str, db: int) -> str:
    """`url` pointing at Redis database number `db` instead of its own."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


@contextmanager
def this_process_publishes_to(broker_url: str) -> Iterator[None]:
    """Point this process's Celery app (the intake's on-commit fast path and
    control commands) at `broker_url` for a while.

    The app reads its broker from settings once; its connection and producer pools
    are dropped so the next publish connects to the new URL, as after a fork.
    """
    keys = ("broker_url", "broker_read_url", "broker_write_url")
    previous = {key: app.conf[key] for key in keys}
    app.conf.update(dict.fromkeys(keys, broker_url))
    app._after_fork()
    try:
        yield
    finally:
        app.conf.update(previous)
        app._after_fork()


class CeleryProcess:
    """One `celery -A config <args>` process that can be killed and started again."""

    def __init__(self, name: str, args: list[str], *, env: Mapping[str, str]):
        self.name = name
        self.args = args
        self.env = dict(env)
        self.log_path = Path(self.env["LEADBACK_VAR_DIR"]) / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.restarts = 0  # by `supervised`, after the process exited by itself

    def start(self, *extra_args: str) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    *self.args,
                    *extra_args,
                ],
                cwd=PROJECT_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL the process group: no warm shutdown, no acks, no cleanup."""
        self.kills += 1
        self._signal_group(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL whatever of the group is still there."""
        if self.process is None:
            return
        self._signal_group(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout_s)
        self._signal_group(signal.SIGKILL)
        self.process.wait()

    def _signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        # The leader's pid is the group id (start_new_session); its children may
        # outlive it, so signal the group even when the leader is gone.
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    @contextmanager
    def supervised(self, *, poll_s: float = 0.5) -> Iterator[None]:
        """Start it again whenever it exits on its own, as systemd's
        Restart=always (or any process supervisor) does in production."""
        done = threading.Event()

        def watch() -> None:
            while not done.wait(poll_s):
                if self.process is not None and self.process.poll() is not None:
                    self.restarts += 1
                    self.start()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join(5)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


class CeleryWorker(CeleryProcess):
    """A worker; each start gets its own node name so it can be pinged."""

    def __init__(
        self, args: list[str], *, env: Mapping[str, str], name: str = "worker"
    ):
        super().__init__(name, args, env=env)
        self.hostname = ""

    def start(self, *extra_args: str) -> None:
        self.hostname = f"{self.name}-{os.getpid()}-{self.starts + 1}@localhost"
        super().start(f"--hostname={self.hostname}", *extra_args)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait until this start of the worker answers a ping on the broker."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.log_tail()}")
            if app.control.ping(destination=[self.hostname], timeout=0.5):
                return
        raise RuntimeError(
            f"worker did not answer in {timeout_s} s:\n{self.log_tail()}"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
