"""Beat's digest task runs in a real worker on the real broker and database,
and emails through a real SMTP server, once per period."""

import datetime
import time

import pytest

from reporting.models import Digest, DigestSend
from reporting.tasks import send_digests_task
from tests.factories import SourceFactory
from tests.sources.file_servers import SmtpServer

pytestmark = [pytest.mark.service, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def smtp_for_the_worker(monkeypatch):
    """An SMTP server the worker process (started after this) sends to."""
    with SmtpServer() as server:
        monkeypatch.setenv(
            "EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend"
        )
        monkeypatch.setenv("EMAIL_HOST", "127.0.0.1")
        monkeypatch.setenv("EMAIL_PORT", str(server.port))
        monkeypatch.setenv("LEADBACK_OUTBOUND_ALLOWLIST", "127.0.0.1/32")
        yield server


def test_the_worker_sends_a_due_digest_once(smtp_for_the_worker, celery_worker_process):
    digest = Digest.objects.create(
        slug="daily",
        source=SourceFactory(name="Bluesky Leads"),
        every=Digest.Every.DAY,
        at=datetime.time(0, 0),
        timezone="UTC",
        recipients=["ops@bluesky.example"],
    )
    # Made two days ago: today's 00:00 UTC send is due.
    Digest.objects.filter(pk=digest.pk).update(
        created_at=digest.created_at - datetime.timedelta(days=2)
    )

    send_digests_task.delay()
    send_digests_task.delay()  # a second beat while the first may still run
    deadline = time.monotonic() + 60
    while not DigestSend.objects.filter(status=DigestSend.Status.SENT).exists():
        assert time.monotonic() < deadline, "the worker did not send the digest"
        time.sleep(0.2)
    time.sleep(2)  # room for a wrong second send to arrive

    [send] = DigestSend.objects.all()
    assert send.period_start == send.period_end  # one day: the day before
    assert send.tries == 1
    [(recipients, message)] = smtp_for_the_worker.messages
    assert recipients == ["ops@bluesky.example"]
    assert message["Subject"].startswith("Bluesky Leads: feedback digest for")
