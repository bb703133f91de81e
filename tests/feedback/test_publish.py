"""The kept producer (feedback/forwarding/publish.py): the same Celery message
as `apply_async` sends, on the same queue, and a broker that is down still
fails the send, so the rows are left to the sweep."""

import threading
import uuid

import pytest
from celery import Celery, Task
from kombu.exceptions import OperationalError

from feedback.forwarding import publish
from feedback.forwarding.tasks import deliver_notifications_task
from tests.e2e.processes import this_process_publishes_to

# What differs from one message to the next.
IDS = {"id", "root_id", "correlation_id", "delivery_tag"}


def _take_all(app: Celery) -> list:
    queue = app.conf.task_default_queue
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        taken = []
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            taken.append(message)
        return taken


def _comparable(message) -> dict:
    headers = {k: v for k, v in message.headers.items() if k not in IDS}
    properties = {
        k: v
        for k, v in message.properties.items()
        if k not in IDS and k != "delivery_info"
    }
    return {
        "headers": headers,
        "properties": properties,
        "body": message.decode(),
        "content_type": message.content_type,
    }


@pytest.fixture
def empty_queue():
    app = deliver_notifications_task.app
    _take_all(app)
    yield app
    _take_all(app)


def test_a_plain_call_sends_what_apply_async_sends(empty_queue):
    claims = [[12, str(uuid.uuid4())], [13, str(uuid.uuid4())]]

    Task.apply_async(deliver_notifications_task, (claims,))
    result = deliver_notifications_task.delay(claims)

    # The filesystem broker of the embedded defaults does not keep the order
    # of two messages written in the same instant: tell them apart by id.
    taken = {message.headers["id"]: message for message in _take_all(empty_queue)}
    assert len(taken) == 2
    by_kept = taken.pop(result.id)
    (by_celery,) = taken.values()
    assert _comparable(by_kept) == _comparable(by_celery)
    assert by_kept.headers["task"] == "feedback.tasks.deliver_notifications_task"
    assert by_kept.decode()[0] == [claims]


def test_each_thread_keeps_its_own_producer(empty_queue):
    deliver_notifications_task.delay([[1, str(uuid.uuid4())]])
    mine = publish.kept_producer(empty_queue)
    theirs = []
    thread = threading.Thread(
        target=lambda: theirs.append(publish.kept_producer(empty_queue))
    )
    thread.start()
    thread.join()

    assert publish.kept_producer(empty_queue) is mine
    assert theirs[0] is not mine
    assert len(_take_all(empty_queue)) == 1


def test_a_kept_producer_follows_the_app_to_another_broker(empty_queue):
    first = deliver_notifications_task.delay([[1, str(uuid.uuid4())]])

    # What the e2e tests do to point this process at their broker, and Celery
    # does in a forked child: the app's connections are reset.
    with (
        this_process_publishes_to("redis://127.0.0.1:1/0"),
        pytest.raises(OperationalError),
    ):
        deliver_notifications_task.delay([[2, str(uuid.uuid4())]])
    last = deliver_notifications_task.delay([[3, str(uuid.uuid4())]])

    taken = {message.headers["id"] for message in _take_all(empty_queue)}
    assert taken == {first.id, last.id}


def test_calls_with_options_of_their_own_go_through_apply_async(monkeypatch):
    sent = []
    monkeypatch.setattr(
        Task, "apply_async", lambda self, *args, **kwargs: sent.append(kwargs)
    )

    deliver_notifications_task.apply_async(([[1, "t"]],), countdown=5)

    assert sent == [{"countdown": 5}]


def test_a_broker_that_is_down_fails_the_send(monkeypatch):
    # The environment's broker would win over the app's own.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    app = Celery("down", broker="redis://127.0.0.1:1/0", set_as_current=False)

    @app.task(base=publish.KeptProducerTask, name="down.task", shared=False)
    def task(value: int) -> None:  # pragma: no cover - never runs
        pass

    with pytest.raises(OperationalError):
        Task.apply_async(task, (1,))  # as Celery itself fails
    with pytest.raises(OperationalError):
        task.delay(1)
    # The kept producer tries again on the next call.
    with pytest.raises(OperationalError):
        task.delay(2)
