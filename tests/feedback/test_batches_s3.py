"""A batch config with the S3 transport, run in-process against a local S3 (moto)."""

import itertools

import pytest
import time_machine

from feedback.forwarding.batches import batch_runs_run_due
from feedback.forwarding.models import BatchRun
from sources.models import FeedbackConfig
from tests.factories import SourceFactory
from tests.feedback.test_batches import (
    AFTER_SIX,
    DAY_ONE,
    make_batch_config,
    read_rows,
    returned,
)
from tests.sources.file_servers import S3Server

pytestmark = pytest.mark.django_db

_buckets = itertools.count()


@pytest.fixture(autouse=True)
def _engine(settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    settings.LEADBACK_RETRY_SCHEDULE_S = [0, 5, 300]
    settings.LEADBACK_RETRY_JITTER = 0
    settings.LEADBACK_BATCH_TIMEOUT_S = 5


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        yield server


def s3_batch_config(source, s3, bucket) -> FeedbackConfig:
    return make_batch_config(
        source,
        None,
        batch_transport=FeedbackConfig.Transport.S3,
        batch_host="",
        batch_s3_bucket=bucket,
        batch_s3_endpoint_url=s3.endpoint_url,
        batch_directory="incoming/returns",
        batch_username=S3Server.ACCESS_KEY_ID,
        batch_password=S3Server.SECRET_ACCESS_KEY,
    )


def test_an_s3_batch_config_puts_its_file_under_the_prefix(buyer, s3, tmp_path):
    bucket = f"batches-{next(_buckets)}"
    s3.client().create_bucket(Bucket=bucket)
    source = SourceFactory()
    config = s3_batch_config(source, s3, bucket)
    with time_machine.travel(DAY_ONE):
        feedback = returned(buyer, source)
    with time_machine.travel(AFTER_SIX):
        batch_runs_run_due()

    run = BatchRun.objects.get(config=config, row_count=1)
    assert run.status == BatchRun.Status.SENT, run.reason
    attempt = run.attempts.get()
    assert attempt.destination == (
        f"s3://{bucket}/incoming/returns at {s3.endpoint_url}"
    )
    assert s3.keys(bucket) == ["incoming/returns/returns-20261124.csv"]
    saved = tmp_path / "returns.csv"
    saved.write_bytes(s3.read(bucket, "incoming/returns/returns-20261124.csv"))
    assert read_rows(saved) == [
        ["event_id", "reason"],
        [feedback.delivery.event_id, "Wrong number"],
    ]


def test_a_missing_bucket_fails_the_run_without_retrying(buyer, s3):
    source = SourceFactory()
    config = s3_batch_config(source, s3, "no-such-bucket")
    with time_machine.travel(DAY_ONE):
        returned(buyer, source)
    with time_machine.travel(AFTER_SIX):
        batch_runs_run_due()

    run = BatchRun.objects.get(config=config, row_count=1)
    assert run.status == BatchRun.Status.FAILED
    assert run.next_attempt_at is None
    assert "NoSuchBucket" in run.reason
    assert S3Server.SECRET_ACCESS_KEY not in run.reason
