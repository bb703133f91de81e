"""The publisher: commits' claims gathered in a window and queued together,
off the request, without losing any."""

import threading
import time

import pytest

from feedback.forwarding import publisher as publisher_module
from feedback.forwarding.publisher import Publisher, publish


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.threads: list[str] = []
        self.sent = threading.Event()
        self.fail = fail

    def __call__(self, claims):
        self.threads.append(threading.current_thread().name)
        self.calls.append(list(claims))
        self.sent.set()
        if self.fail:
            raise RuntimeError("broker down")


@pytest.mark.django_db(transaction=True)
def test_claims_put_within_the_window_are_sent_together_from_one_thread():
    send = Recorder()
    publisher = Publisher(send)
    publisher.put([1, 2], window_s=0.2)
    publisher.put([3], window_s=0.2)
    assert send.sent.wait(5)
    time.sleep(0.05)
    assert send.calls == [[1, 2, 3]]
    assert send.threads == ["leadback-publisher"]


@pytest.mark.django_db(transaction=True)
def test_later_claims_go_in_a_later_send():
    send = Recorder()
    publisher = Publisher(send)
    publisher.put([1], window_s=0.01)
    assert send.sent.wait(5)
    send.sent.clear()
    publisher.put([2], window_s=0.01)
    assert send.sent.wait(5)
    assert send.calls == [[1], [2]]


def test_flush_sends_what_waits_and_a_failed_send_does_not_raise():
    send = Recorder(fail=True)
    publisher = Publisher(send)
    with publisher._lock:  # as if the thread had not woken yet
        publisher._waiting.extend([7, 8])
    assert publisher.flush() == 2
    assert send.calls == [[7, 8]]
    assert publisher.flush() == 0


def test_no_window_sends_in_the_callers_thread(settings):
    settings.LEADBACK_PUBLISH_WINDOW_MS = 0
    send = Recorder()
    publish([4, 5], send)
    assert send.calls == [[4, 5]]
    assert send.threads == [threading.current_thread().name]


@pytest.mark.django_db(transaction=True)
def test_with_a_window_publish_returns_before_sending(settings, monkeypatch):
    settings.LEADBACK_PUBLISH_WINDOW_MS = 100
    monkeypatch.setattr(publisher_module, "_publisher", None)
    send = Recorder()
    publish([6], send)
    assert send.calls == []
    assert send.sent.wait(5)
    assert send.calls == [[6]]
    assert send.threads == ["leadback-publisher"]
    monkeypatch.setattr(publisher_module, "_publisher", None)
