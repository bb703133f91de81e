"""Batch configs in configuration as code (DESIGN §9): import, export, secrets."""

import copy

import asyncssh
import pytest

from feedback.configuration import (
    REDACTED,
    ConfigurationError,
    config_export,
    config_import,
)
from sources.models import FeedbackConfig

pytestmark = pytest.mark.django_db

HOST_KEY = (
    asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
)
PRIVATE_KEY = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
MAPPINGS = [{"target": "event_id", "value": "{{ event.id }}"}]


def document(*configs: dict) -> dict:
    return {
        "sources": [
            {
                "slug": "bluesky-leads",
                "name": "Bluesky Leads",
                "feedback": [
                    {"kind": "return", "method": "batch", "mappings": MAPPINGS} | c
                    for c in configs
                ],
            }
        ]
    }


SFTP = {
    "batch": {
        "schedule": {"every": "week", "day": "friday", "at": "23:30"},
        "transport": {
            "type": "sftp",
            "host": "sftp.bluesky.example",
            "username": "leadback",
            "private_key": PRIVATE_KEY,
            "host_key": HOST_KEY,
        },
        "file_name": "returns-{{ period.end|date('%Y-%m-%d') }}.csv",
    }
}
FTPS = {
    "kind": "conversion",
    "criteria": {"rules": [{"lhv": "feedback.revenue", "op": "is not blank"}]},
    "batch": {
        "schedule": {"every": "hour", "timezone": "Europe/Paris"},
        "transport": {
            "type": "ftps",
            "host": "ftp.bluesky.example",
            "port": 2121,
            "password": "ftp-pw",
            "directory": "/in",
        },
        "file_name": "conv-{{ run.id }}.csv",
        "header": False,
        "send_empty": True,
    },
}
EMAIL = {
    "enabled": False,
    "batch": {
        "schedule": {"every": "day"},
        "transport": {"type": "email", "to": ["returns@bluesky.example"]},
        "file_name": "returns.csv",
    },
}


def exported_feedback(include_secrets: bool = True) -> list[dict]:
    return config_export(include_secrets=include_secrets)["sources"][0]["feedback"]


def test_batch_configs_import_with_defaults_and_export_the_same(db):
    config_import(document=document(SFTP, FTPS, EMAIL), dry_run=False)

    sftp, ftps, email = (
        FeedbackConfig.objects.get(batch_transport=t) for t in ("sftp", "ftps", "email")
    )
    assert (sftp.batch_every, sftp.batch_day, str(sftp.batch_at)) == (
        "week",
        4,
        "23:30:00",
    )
    assert (sftp.batch_timezone, sftp.batch_port) == ("UTC", 22)
    assert sftp.batch_private_key == PRIVATE_KEY
    assert (ftps.batch_every, ftps.batch_at, ftps.batch_timezone) == (
        "hour",
        None,
        "Europe/Paris",
    )
    assert (ftps.batch_header, ftps.batch_send_empty) == (False, True)
    assert ftps.criteria == FTPS["criteria"]
    assert (email.enabled, email.batch_email_to) == (False, ["returns@bluesky.example"])
    assert email.url == ""

    exported = exported_feedback()
    assert exported[0]["batch"] == {
        "schedule": {
            "every": "week",
            "at": "23:30",
            "day": "friday",
            "timezone": "UTC",
        },
        "transport": {
            "type": "sftp",
            "host": "sftp.bluesky.example",
            "port": 22,
            "username": "leadback",
            "private_key": PRIVATE_KEY,
            "host_key": HOST_KEY,
            "directory": "",
        },
        "file_name": "returns-{{ period.end|date('%Y-%m-%d') }}.csv",
        "header": True,
        "send_empty": False,
    }
    assert set(exported[0]) == {
        "kind",
        "enabled",
        "forward_on",  # a return config's
        "method",
        "batch",
        "criteria",
        "mappings",
    }
    assert exported[2]["batch"]["transport"] == {
        "type": "ftps",
        "host": "ftp.bluesky.example",
        "port": 2121,
        "username": "",
        "password": "ftp-pw",
        "certificate": "",
        "directory": "/in",
    }
    assert exported[1]["batch"]["transport"] == {
        "type": "email",
        "to": ["returns@bluesky.example"],
        "subject": "",
    }
    report = config_import(
        document={"sources": config_export(include_secrets=False)["sources"]},
        dry_run=False,
    )
    assert [str(c) for c in report.changes] == ["source bluesky-leads: unchanged"]


def test_redacted_batch_secrets_keep_the_stored_ones(db):
    config_import(document=document(SFTP, FTPS), dry_run=False)
    exported = config_export()
    feedback = exported["sources"][0]["feedback"]
    assert feedback[0]["batch"]["transport"]["private_key"] == REDACTED
    assert feedback[1]["batch"]["transport"]["password"] == REDACTED
    feedback[1]["batch"]["transport"]["directory"] = "/in2"

    report = config_import(document=exported, dry_run=False)

    assert [str(c) for c in report.changes] == [
        "source bluesky-leads: updated (feedback)"
    ]
    ftps = FeedbackConfig.objects.get(batch_transport="ftps")
    assert (ftps.batch_directory, ftps.batch_password) == ("/in2", "ftp-pw")
    assert FeedbackConfig.objects.get(batch_transport="sftp").batch_private_key == (
        PRIVATE_KEY
    )


def test_a_json_config_turned_batch_keeps_no_http_settings(db):
    json_config = {
        "method": "json",
        "url": "https://bluesky.example/returns",
        "auth": {"type": "bearer", "token": "tok-1"},
        "headers": {"X-A": "1"},
    }
    config_import(document=document(json_config), dry_run=False)
    config_id = FeedbackConfig.objects.get().pk

    config_import(document=document(EMAIL), dry_run=False)

    config = FeedbackConfig.objects.get()
    assert config.pk == config_id
    assert (config.method, config.url, config.auth_type, config.auth_secret) == (
        "batch",
        "",
        "none",
        "",
    )
    assert config.headers == {}
    assert config.batch_transport == "email"


def broken(path: tuple, value: object) -> dict:
    config = copy.deepcopy(SFTP)
    target = config["batch"]
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return config


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (
            broken(("transport", "host_key"), "ssh-ed25519 AAAA..."),
            "$.sources[0].feedback[0].batch.transport.host_key: The host key is not a",
        ),
        (
            broken(("transport", "private_key"), "-----BEGIN nonsense"),
            "$.sources[0].feedback[0].batch.transport.private_key: The private key",
        ),
        (
            broken(("transport", "private_key"), None),
            "$.sources[0].feedback[0].batch.transport.password: SFTP needs a password",
        ),
        (
            broken(("transport", "host"), "sftp.example/incoming"),
            "$.sources[0].feedback[0].batch.transport.host: Enter a host name only",
        ),
        (
            broken(("file_name",), "{{ period.start|frobnicate }}"),
            "$.sources[0].feedback[0].batch.file_name: This template does not work",
        ),
        (
            broken(("transport", "type"), "gopher"),
            "$.sources[0].feedback[0].batch.transport.type: must be one of",
        ),
        (
            {
                "batch": FTPS["batch"]
                | {
                    "transport": FTPS["batch"]["transport"]
                    | {"certificate": "not a certificate"}
                }
            },
            "$.sources[0].feedback[0].batch.transport.certificate: This is not a PEM",
        ),
        (
            SFTP | {"url": "https://x.example"},
            "$.sources[0].feedback[0].url: is not used with method 'batch'",
        ),
    ],
)
def test_bad_batch_configs_are_refused_with_the_path(db, config, problem):
    with pytest.raises(ConfigurationError) as caught:
        config_import(document=document(config), dry_run=False)

    assert problem in str(caught.value)
    assert not FeedbackConfig.objects.exists()


S3 = {
    "batch": {
        "schedule": {"every": "day", "at": "05:00"},
        "transport": {
            "type": "s3",
            "bucket": "bluesky-returns",
            "prefix": "incoming/",
            "endpoint_url": "https://minio.bluesky.example:9000",
            "access_key_id": "AKIABLUESKY",
            "secret_access_key": "s3-secret",
        },
        "file_name": "returns.csv",
    }
}


def test_an_s3_config_imports_exports_and_keeps_its_secret(db):
    config_import(document=document(S3), dry_run=False)

    s3 = FeedbackConfig.objects.get(batch_transport="s3")
    assert (s3.batch_s3_bucket, s3.batch_directory, s3.batch_s3_region) == (
        "bluesky-returns",
        "incoming/",
        "",
    )
    assert s3.batch_s3_endpoint_url == "https://minio.bluesky.example:9000"
    assert (s3.batch_username, s3.batch_password) == ("AKIABLUESKY", "s3-secret")
    exported = config_export()
    assert exported["sources"][0]["feedback"][0]["batch"]["transport"] == {
        "type": "s3",
        "bucket": "bluesky-returns",
        "prefix": "incoming/",
        "region": "",
        "endpoint_url": "https://minio.bluesky.example:9000",
        "access_key_id": "AKIABLUESKY",
        "secret_access_key": REDACTED,
    }

    report = config_import(document=exported, dry_run=False)

    assert [str(c) for c in report.changes] == ["source bluesky-leads: unchanged"]
    assert FeedbackConfig.objects.get(batch_transport="s3").batch_password == (
        "s3-secret"
    )


@pytest.mark.parametrize(
    ("transport", "problem"),
    [
        (
            {"bucket": "Bluesky_Returns"},
            "$.sources[0].feedback[0].batch.transport.bucket: A bucket name is 3 to 63",
        ),
        (
            {"endpoint_url": "minio.bluesky.example"},
            "$.sources[0].feedback[0].batch.transport.endpoint_url: Use an http://",
        ),
        (
            {"host": "s3.example"},
            "$.sources[0].feedback[0].batch.transport.host: unknown key",
        ),
    ],
)
def test_bad_s3_configs_are_refused_with_the_path(db, transport, problem):
    config = copy.deepcopy(S3)
    config["batch"]["transport"] |= transport

    with pytest.raises(ConfigurationError) as caught:
        config_import(document=document(config), dry_run=False)

    assert problem in str(caught.value)
    assert not FeedbackConfig.objects.exists()
