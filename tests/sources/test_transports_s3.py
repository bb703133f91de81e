"""The S3 batch transport: its checks, key names, error classes, and real uploads
to a local S3 server (moto)."""

import itertools

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from sources.models import FeedbackConfig
from sources.services import batch_config_problems
from sources.transports import BatchFile, TransportError
from sources.transports.s3 import S3Transport, s3_error, s3_key
from tests.sources.file_servers import S3Server

_buckets = itertools.count()


def s3_config(**fields) -> FeedbackConfig:
    values = {
        "kind": "return",
        "method": FeedbackConfig.Method.BATCH,
        "batch_timezone": "UTC",
        "batch_transport": FeedbackConfig.Transport.S3,
        "batch_s3_bucket": "source-returns",
        "batch_directory": "incoming/",
        "batch_username": S3Server.ACCESS_KEY_ID,
        "batch_password": S3Server.SECRET_ACCESS_KEY,
        "batch_file_name": "returns.csv",
    } | fields
    return FeedbackConfig(**values)


def client_error(status: int, code: str, message: str = "") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "PutObject",
    )


# Checks -------------------------------------------------------------------------


def test_a_complete_s3_config_has_no_problems() -> None:
    config = s3_config(batch_s3_endpoint_url="https://minio.source.example:9000")
    assert batch_config_problems(config) == []


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"batch_s3_bucket": ""}, ("batch_s3_bucket", "Enter the bucket's name.")),
        (
            {"batch_s3_bucket": "Source_Returns"},
            (
                "batch_s3_bucket",
                "A bucket name is 3 to 63 lowercase letters, digits, dots and hyphens.",
            ),
        ),
        (
            {"batch_s3_endpoint_url": "ftp://minio.example"},
            (
                "batch_s3_endpoint_url",
                "Use an http:// or https:// URL, e.g. "
                "https://minio.source.example:9000.",
            ),
        ),
        (
            {"batch_password": ""},
            (
                "batch_password",
                "S3 needs an access key id (username) and a secret access key "
                "(password).",
            ),
        ),
        (
            {"batch_username": ""},
            (
                "batch_password",
                "S3 needs an access key id (username) and a secret access key "
                "(password).",
            ),
        ),
    ],
)
def test_s3_config_problems(fields, problem) -> None:
    assert batch_config_problems(s3_config(**fields)) == [problem]


@pytest.mark.parametrize(
    ("prefix", "key"),
    [
        ("", "returns.csv"),
        ("incoming", "incoming/returns.csv"),
        ("incoming/", "incoming/returns.csv"),
        ("/a/b/", "a/b/returns.csv"),
        ("  ", "returns.csv"),
    ],
)
def test_key_names(prefix, key) -> None:
    assert s3_key(prefix, "returns.csv") == key


def test_describe_names_the_place_and_no_secret() -> None:
    transport = S3Transport(
        s3_config(batch_s3_endpoint_url="http://127.0.0.1:9000"), timeout_s=5
    )
    assert (
        transport.describe() == "s3://source-returns/incoming at http://127.0.0.1:9000"
    )
    assert S3Server.SECRET_ACCESS_KEY not in transport.describe()


# Error classes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (403, "AccessDenied"),
        (403, "InvalidAccessKeyId"),
        (403, "SignatureDoesNotMatch"),
        (404, "NoSuchBucket"),
        (400, "InvalidBucketName"),
    ],
)
def test_refusals_that_hold_on_every_try_are_permanent(status, code) -> None:
    error = s3_error(client_error(status, code, "No."), "s3://b/")
    assert error.permanent
    assert error.message == f"s3://b/ answered {code}: No."


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (500, "InternalError"),
        (503, "SlowDown"),
        (503, "ServiceUnavailable"),
        (400, "RequestTimeout"),
        (429, "TooManyRequests"),
        (502, ""),
    ],
)
def test_server_trouble_is_transient(status, code) -> None:
    assert not s3_error(client_error(status, code), "s3://b/").permanent


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="http://s3.example"),
        ConnectTimeoutError(endpoint_url="http://s3.example"),
        ReadTimeoutError(endpoint_url="http://s3.example"),
    ],
)
def test_network_trouble_is_transient(exc) -> None:
    assert not s3_error(exc, "s3://b/").permanent


# A real S3 server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        yield server


@pytest.fixture
def bucket(s3) -> str:
    name = f"returns-{next(_buckets)}"
    s3.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def allow_local(settings):
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]


def transport_for(s3, bucket, **fields) -> S3Transport:
    config = s3_config(
        batch_s3_bucket=bucket, batch_s3_endpoint_url=s3.endpoint_url, **fields
    )
    return S3Transport(config, timeout_s=5)


FILE = BatchFile("returns-20261124.csv", b"event_id,reason\r\nabc,Wrong number\r\n")


@pytest.mark.usefixtures("allow_local")
def test_the_file_lands_under_the_prefix(s3, bucket) -> None:
    result = transport_for(s3, bucket).put(FILE)

    assert result.startswith("Uploaded returns-20261124.csv (")
    assert s3.keys(bucket) == ["incoming/returns-20261124.csv"]
    assert s3.read(bucket, "incoming/returns-20261124.csv") == FILE.content


@pytest.mark.usefixtures("allow_local")
def test_a_second_try_of_a_delivered_file_sends_nothing(s3, bucket) -> None:
    transport = transport_for(s3, bucket)
    transport.put(FILE)

    assert transport.put(FILE).startswith("returns-20261124.csv was already complete")
    assert s3.keys(bucket) == ["incoming/returns-20261124.csv"]


@pytest.mark.usefixtures("allow_local")
def test_a_different_file_under_the_name_is_left_alone(s3, bucket) -> None:
    s3.client().put_object(
        Bucket=bucket, Key="incoming/returns-20261124.csv", Body=b"theirs"
    )

    with pytest.raises(TransportError, match="A different file") as caught:
        transport_for(s3, bucket).put(FILE)

    assert caught.value.permanent
    assert s3.read(bucket, "incoming/returns-20261124.csv") == b"theirs"


@pytest.mark.usefixtures("allow_local")
def test_an_object_without_our_checksum_is_compared_by_content(s3, bucket) -> None:
    s3.client().put_object(
        Bucket=bucket, Key="incoming/returns-20261124.csv", Body=FILE.content
    )

    result = transport_for(s3, bucket).put(FILE)

    assert result.startswith("returns-20261124.csv was already complete")


@pytest.mark.usefixtures("allow_local")
def test_a_missing_bucket_is_permanent(s3) -> None:
    with pytest.raises(TransportError, match="NoSuchBucket") as caught:
        transport_for(s3, "no-such-bucket").put(FILE)

    assert caught.value.permanent


@pytest.mark.usefixtures("allow_local")
def test_a_lost_lease_puts_nothing(s3, bucket) -> None:
    with pytest.raises(TransportError, match="Another worker took this run over"):
        transport_for(s3, bucket).put(FILE, still_mine=lambda: False)

    assert s3.keys(bucket) == []


def test_the_ssrf_guard_refuses_a_loopback_endpoint(s3, bucket, settings) -> None:
    settings.LEADBACK_OUTBOUND_ALLOWLIST = []

    with pytest.raises(TransportError, match="Refused by the SSRF guard") as caught:
        transport_for(s3, bucket).put(FILE)

    # As for FTP, SFTP and email: a refused address is retried on the schedule,
    # so fixing the allowlist needs no resend.
    assert not caught.value.permanent
    assert s3.keys(bucket) == []
