"""A Celery task class whose plain `delay(*args)` costs little more than the
broker's own command: the intake queues a message per forwarded feedback, in
the request.

`Task.apply_async` acquires a producer from Celery's pool, merges and checks
the task's options and routes the message on every call, and kombu's Redis
channel builds a new Redis client for every message it puts: together about
0.5 ms of CPU per message, a tenth of an intake request. `KeptProducerTask`
works the route and options out once, keeps a producer per process and thread
and, on Redis, a channel that keeps its client. The message is still built and
sent by Celery (`create_task_message`, `send_task_message`: the same protocol,
signals and publish retry policy), so workers read it like any other and a
broker that is down raises as it did. Calls with options of their own, and
eager mode, take `Task.apply_async` unchanged.
"""

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cached_property
from typing import Any

from celery import Task
from celery.result import AsyncResult
from celery.utils import uuid
from kombu import Connection, Producer
from kombu.transport import redis as kombu_redis


class _KeptClientChannel(kombu_redis.Channel):  # type: ignore[misc]
    """kombu's Redis channel with one client for the commands sent without one
    (publishing among them) instead of a new client each time. The client
    takes its connections from the channel's pool, which redis-py makes safe
    to share between threads, and reconnects as a new client would."""

    @cached_property
    def _kept_client(self) -> Any:
        return self._create_client()

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        yield client or self._kept_client


class KeptClientTransport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = _KeptClientChannel


# One producer per app, process and thread: kombu connections are not shared
# between threads (delivery workers run a thread pool), and a forked child must
# not write to its parent's sockets.
_local = threading.local()

# Counts the resets of an app's connections (`app._after_fork()`, which Celery
# runs in a forked child and which also points a running app at another
# broker). A producer kept from before a reset would go on sending to the
# broker it first connected to, where nobody may read: every thread's producers
# are replaced on their next send, as Celery's own producer pool is.
_resets = 0


def _forget_kept_producers(**kwargs: Any) -> None:
    global _resets
    _resets += 1


def kept_producer(app: Any) -> Producer:
    """This thread's producer for `app`, connected on first use."""
    if getattr(_local, "pid", None) != os.getpid():
        # A forked child drops its parent's producers without closing them.
        _local.producers = {}
        _local.declared = set()
        _local.pid = os.getpid()
        _local.resets = _resets
    elif _local.resets != _resets:
        for stale in _local.producers.values():
            # The broker it was connected to may be gone.
            with suppress(Exception):
                stale.connection.release()
        _local.producers = {}
        _local.declared = set()
        _local.resets = _resets
    producers: dict[int, Producer] = _local.producers
    producer = producers.get(id(app))
    if producer is None:
        app.on_after_fork.connect(
            _forget_kept_producers, weak=False, dispatch_uid=__name__
        )
        producer = producers[id(app)] = Producer(_connection(app), auto_declare=False)
    return producer


def _short_repr(value: Any, limit: int) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _connection(app: Any) -> Connection:
    connection = app.connection_for_write()
    if connection.transport_cls != "redis":
        return connection
    connection.release()  # never connected: only its URL was read
    return app.connection_for_write(transport=KeptClientTransport)


class KeptProducerTask(Task):  # type: ignore[misc]
    """A task that sends its plain calls through this thread's kept producer."""

    def apply_async(
        self,
        args: Any = None,
        kwargs: Any = None,
        task_id: str | None = None,
        producer: Producer | None = None,
        link: Any = None,
        link_error: Any = None,
        shadow: str | None = None,
        **options: Any,
    ) -> AsyncResult:
        app = self._get_app()
        if (
            task_id or producer or link or link_error or shadow or options
        ) or not self._plain:
            return super().apply_async(
                args, kwargs, task_id, producer, link, link_error, shadow, **options
            )
        task_id = uuid()
        root_id = parent_id = None
        parent = app.current_worker_task
        if parent:  # queued by a task: the trail Celery records
            root_id = parent.request.root_id or parent.request.id
            parent_id = parent.request.id
        amqp = app.amqp
        message = amqp.create_task_message(
            task_id,
            self.name,
            args,
            kwargs,
            # What Celery's saferepr would give for plain arguments, at a
            # fraction of its cost (it walks them item by item).
            argsrepr=_short_repr(tuple(args or ()), amqp.argsrepr_maxsize),
            kwargsrepr=_short_repr(kwargs or {}, amqp.kwargsrepr_maxsize),
            reply_to=app.thread_oid,
            create_sent_event=self._sent_event,
            root_id=root_id,
            parent_id=parent_id,
            **self._message_options,
        )
        sender = kept_producer(app)
        # Celery declares the queue before every message; once per producer
        # is enough (None: Celery's own declaration, under its retry policy).
        declared = id(sender) in _local.declared
        with sender.connection._reraise_as_library_errors():
            amqp.send_task_message(
                sender,
                self.name,
                message,
                declare=[] if declared else None,
                **self._route,
            )
        _local.declared.add(id(sender))
        result: AsyncResult = self.AsyncResult(task_id)
        return result

    # Celery's settings, read once: each read goes through Django's settings
    # and costs as much as a tenth of the whole send.
    @cached_property
    def _plain(self) -> bool:
        """Whether plain calls can be sent as they are (not run eagerly, no
        expiry to work out per message)."""
        conf = self._get_app().conf
        return not conf.task_always_eager and not self._options.get("expires")

    @cached_property
    def _sent_event(self) -> bool:
        return bool(self._get_app().conf.task_send_sent_event)

    @cached_property
    def _options(self) -> dict[str, Any]:
        """What `apply_async` and `send_task` make of the task's own options."""
        options = {k: v for k, v in self._get_exec_options().items() if v is not None}
        options.setdefault("ignore_result", self.ignore_result)
        return options

    @cached_property
    def _message_options(self) -> dict[str, Any]:
        options = self._options
        return {
            "time_limit": options.get("time_limit"),
            "soft_time_limit": options.get("soft_time_limit"),
            "ignore_result": options["ignore_result"],
            **self._route,
        }

    @cached_property
    def _route(self) -> dict[str, Any]:
        """The router's answer for this task (routes go by name here)."""
        skip = ("time_limit", "soft_time_limit", "expires", "ignore_result")
        options = {k: v for k, v in self._options.items() if k not in skip}
        route: dict[str, Any] = self._get_app().amqp.router.route(
            options, self.name, (), {}, self
        )
        return route
