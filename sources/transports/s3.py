"""S3 and S3-compatible object storage (MinIO, Ceph, R2...) for batch files.

No temporary key: an S3 PUT is atomic, so the object appears whole or not at
all and a reader never sees half a file; a temporary key renamed by copy would
send the file twice and leave a stray object when a try dies in between. The
lease is checked just before the PUT, the last moment to stand back. A key
that is already there with the same content (its SHA-256 is stored as object
metadata) counts as delivered; one with other content is left alone.

botocore connects through the SSRF guard like every other transport: its
connections open their sockets with `guarded_new_conn`, which checks the
addresses the endpoint's name resolves to.
"""

import hashlib
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
from botocore.awsrequest import (
    AWSHTTPConnection,
    AWSHTTPConnectionPool,
    AWSHTTPSConnection,
    AWSHTTPSConnectionPool,
)
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from sources.outbound.guard import DestinationRefused, guarded_new_conn
from sources.transports import (
    BatchFile,
    BatchTransport,
    ConfigProblems,
    StillMine,
    TransportError,
    destination_problems,
    lease_check,
)

if TYPE_CHECKING:
    from sources.models import FeedbackConfig

DEFAULT_REGION = "us-east-1"
SHA256_METADATA = "sha256"
# AWS's rules for new buckets; S3-compatible stores accept at least these.
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Refusals that say the same thing on every try: wrong keys, no permission, no
# such bucket. Other 4xx are permanent too, except these, which pass.
TRANSIENT_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalError",
        "ServiceUnavailable",
    }
)


class GuardedAWSHTTPConnection(AWSHTTPConnection):
    def _new_conn(self) -> Any:
        return guarded_new_conn(self)


class GuardedAWSHTTPSConnection(AWSHTTPSConnection):
    def _new_conn(self) -> Any:
        return guarded_new_conn(self)


class GuardedAWSHTTPConnectionPool(AWSHTTPConnectionPool):
    ConnectionCls = GuardedAWSHTTPConnection


class GuardedAWSHTTPSConnectionPool(AWSHTTPSConnectionPool):
    ConnectionCls = GuardedAWSHTTPSConnection


GUARDED_POOLS = {
    "http": GuardedAWSHTTPConnectionPool,
    "https": GuardedAWSHTTPSConnectionPool,
}


def s3_key(prefix: str, name: str) -> str:
    """The object key of file `name` under `prefix` (a directory-like prefix)."""
    prefix = prefix.strip().strip("/")
    return f"{prefix}/{name}" if prefix else name


class S3Transport(BatchTransport):
    """A bucket (and key prefix) on AWS S3 or an S3-compatible endpoint.

    The access key id and secret access key are the config's batch username and
    password, so they are write-only and redacted like every other password.
    """

    name = "s3"

    def __init__(self, config: "FeedbackConfig", *, timeout_s: float) -> None:
        super().__init__(config, timeout_s=timeout_s)
        self.bucket = config.batch_s3_bucket
        self.prefix = config.batch_directory
        self.region = config.batch_s3_region or DEFAULT_REGION
        self.endpoint_url = config.batch_s3_endpoint_url
        self.access_key_id = config.batch_username
        self.secret_access_key = config.batch_password

    @classmethod
    def config_problems(cls, config: "FeedbackConfig") -> ConfigProblems:
        problems: ConfigProblems = []
        if not config.batch_s3_bucket:
            problems.append(("batch_s3_bucket", "Enter the bucket's name."))
        elif not BUCKET_NAME.match(config.batch_s3_bucket):
            problems.append(
                (
                    "batch_s3_bucket",
                    "A bucket name is 3 to 63 lowercase letters, digits, dots "
                    "and hyphens.",
                )
            )
        endpoint = config.batch_s3_endpoint_url
        if endpoint:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems.append(
                    (
                        "batch_s3_endpoint_url",
                        "Use an http:// or https:// URL, e.g. "
                        "https://minio.source.example:9000.",
                    )
                )
            else:
                problems += destination_problems(
                    "batch_s3_endpoint_url", parts.hostname
                )
        # No falling back on the worker's own AWS credentials (environment,
        # instance role): a config may only write where its own keys may.
        if not (config.batch_username and config.batch_password):
            problems.append(
                (
                    "batch_password",
                    "S3 needs an access key id (username) and a secret access "
                    "key (password).",
                )
            )
        return problems

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix.strip().strip('/')}"
        return f"{where} at {self.endpoint_url}" if self.endpoint_url else where

    def put(self, file: BatchFile, *, still_mine: StillMine | None = None) -> str:
        key = s3_key(self.prefix, file.name)
        where = self.describe()
        try:
            client = self._client()
            existing = self._existing_sha256(client, key)
            if existing is not None:
                if existing == file.sha256:
                    return f"{file.name} was already complete at {where}."
                raise TransportError(
                    f"A different file named {file.name!r} is already at {where}; "
                    "it was left alone.",
                    permanent=True,
                )
            lease_check(still_mine)
            client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=file.content,
                ContentType="text/csv",
                Metadata={SHA256_METADATA: file.sha256},
            )
        except TransportError:
            raise
        except (ClientError, BotoCoreError) as exc:
            raise s3_error(exc, where) from None
        return f"Uploaded {file.name} ({len(file.content)} bytes) to {where}."

    def _client(self) -> Any:
        config = Config(
            region_name=self.region,
            connect_timeout=self.timeout_s,
            read_timeout=self.timeout_s,
            # Retries follow the batch schedule (DESIGN §5.4), not botocore's.
            retries={"total_max_attempts": 1, "mode": "standard"},
            # Not None: botocore would read proxies from the environment, and
            # through a proxy the guard would check the proxy, not the endpoint.
            proxies={},
            # Custom endpoints rarely have a DNS name per bucket.
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
        )
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url or None,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=config,
        )
        # botocore has no public hook for its connection classes; its HTTP
        # session has kept them in these two attributes since 1.11 (2018), and
        # tests/sources/test_transports_s3.py fails if it ever stops.
        http_session = client._endpoint.http_session
        http_session._pool_classes_by_scheme = GUARDED_POOLS
        http_session._manager.pool_classes_by_scheme = GUARDED_POOLS
        return client

    def _existing_sha256(self, client: Any, key: str) -> str | None:
        """The SHA-256 of the object at `key`, None when there is none."""
        try:
            head = client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            # HEAD has no body, so a missing bucket is a bare 404 too; the PUT
            # that follows says which it was.
            if _status(exc) == 404:
                return None
            raise
        stored = head.get("Metadata", {}).get(SHA256_METADATA)
        if stored:
            return str(stored)
        body = client.get_object(Bucket=self.bucket, Key=key)["Body"]
        return hashlib.sha256(body.read()).hexdigest()


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def s3_error(exc: Exception, where: str) -> TransportError:
    """The TransportError for what botocore raised: permanent when the store
    refused for a reason that holds on every try."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code") or "")
        message = str(exc.response.get("Error", {}).get("Message") or "")
        status = _status(exc)
        permanent = (
            400 <= status < 500
            and status not in (408, 429)
            and code not in TRANSIENT_CODES
        )
        detail = f"{code}: {message}" if message else code or f"HTTP {status}"
        return TransportError(f"{where} answered {detail}", permanent=permanent)
    if isinstance(exc, HTTPClientError) and isinstance(
        exc.kwargs.get("error"), DestinationRefused
    ):
        return TransportError(f"Refused by the SSRF guard: {exc.kwargs['error']}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return TransportError(f"{where}: {exc}", permanent=True)
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        return TransportError(f"{where} did not answer in time.")
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError):
        return TransportError(f"{where}: could not connect: {exc}")
    return TransportError(f"{where}: {type(exc).__name__}: {exc}")
