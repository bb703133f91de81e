"""One set of config rules, two callers: the admin's checks on a config and
config_validate on the same config written as a document give the same message,
the latter at the JSON path of the key that holds the field."""

import asyncssh
import pytest

from feedback.configuration import Problem, config_validate
from sources.admin import FieldMappingForm
from sources.models import FeedbackConfig
from sources.services import feedback_config_problems

HOST_KEY = (
    asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
)


def batch_model(**fields) -> FeedbackConfig:
    return FeedbackConfig(
        kind="return", method="batch", batch_file_name="returns.csv", **fields
    )


def batch_entry(transport: dict, *, schedule: dict | None = None) -> dict:
    return {
        "kind": "return",
        "method": "batch",
        "batch": {
            "schedule": schedule or {"every": "day"},
            "transport": transport,
            "file_name": "returns.csv",
        },
    }


SFTP_FIELDS = {
    "batch_transport": "sftp",
    "batch_host": "sftp.bluesky.example",
    "batch_username": "leadback",
    "batch_password": "sftp-pw",
    "batch_host_key": HOST_KEY,
}
SFTP = {
    "type": "sftp",
    "host": "sftp.bluesky.example",
    "username": "leadback",
    "password": "sftp-pw",
    "host_key": HOST_KEY,
}
S3_FIELDS = {
    "batch_transport": "s3",
    "batch_s3_bucket": "bluesky-returns",
    "batch_username": "AKIABLUESKY",
    "batch_password": "s3-secret",
}
S3 = {
    "type": "s3",
    "bucket": "bluesky-returns",
    "access_key_id": "AKIABLUESKY",
    "secret_access_key": "s3-secret",
}
BAD_RANGE = {
    "op": "and",
    "rules": [{"lhv": "lead.age", "op": "is between", "rhv": "x"}],
}

# (the config as the admin saves it, the same config in a file, the field the
# admin blames, where the file holds that field)
CASES = {
    "bad URL scheme": (
        FeedbackConfig(kind="return", method="json", url="ftp://bluesky.example/in"),
        {"kind": "return", "method": "json", "url": "ftp://bluesky.example/in"},
        "url",
        ("url",),
    ),
    "WS-Security without SOAP": (
        FeedbackConfig(
            kind="return",
            method="json",
            url="https://bluesky.example/in",
            auth_type="wsse",
            auth_username="partner",
            auth_secret="pw",
        ),
        {
            "kind": "return",
            "method": "json",
            "url": "https://bluesky.example/in",
            "auth": {"type": "wsse", "username": "partner", "password": "pw"},
        },
        "auth_type",
        ("auth", "type"),
    ),
    "signing secret that is not whsec_": (
        FeedbackConfig(
            kind="return",
            method="json",
            url="https://bluesky.example/in",
            signing_enabled=True,
            signing_secret="not-a-whsec-secret",
        ),
        {
            "kind": "return",
            "method": "json",
            "url": "https://bluesky.example/in",
            "signing": {"enabled": True, "secret": "not-a-whsec-secret"},
        },
        "signing_secret",
        ("signing", "secret"),
    ),
    "SFTP host key that cannot be read": (
        batch_model(**SFTP_FIELDS | {"batch_host_key": "ssh-ed25519 AAAA..."}),
        batch_entry(SFTP | {"host_key": "ssh-ed25519 AAAA..."}),
        "batch_host_key",
        ("batch", "transport", "host_key"),
    ),
    "SFTP without a password or private key": (
        batch_model(**SFTP_FIELDS | {"batch_password": ""}),
        batch_entry({k: v for k, v in SFTP.items() if k != "password"}),
        "batch_password",
        ("batch", "transport", "password"),
    ),
    "FTP host with a directory": (
        batch_model(batch_transport="ftp", batch_host="ftp.example/incoming"),
        batch_entry({"type": "ftp", "host": "ftp.example/incoming"}),
        "batch_host",
        ("batch", "transport", "host"),
    ),
    "email to something that is no address": (
        batch_model(batch_transport="email", batch_email_to=["ops@"]),
        batch_entry({"type": "email", "to": ["ops@"]}),
        "batch_email_to",
        ("batch", "transport", "to"),
    ),
    "S3 bucket name S3 refuses": (
        batch_model(**S3_FIELDS | {"batch_s3_bucket": "Bluesky_Returns"}),
        batch_entry(S3 | {"bucket": "Bluesky_Returns"}),
        "batch_s3_bucket",
        ("batch", "transport", "bucket"),
    ),
    "URL on a private address": (
        FeedbackConfig(kind="return", method="json", url="http://10.1.2.3/in"),
        {"kind": "return", "method": "json", "url": "http://10.1.2.3/in"},
        "url",
        ("url",),
    ),
    "SOAP WSDL on a site-local IPv6 address": (
        FeedbackConfig(
            kind="return",
            method="soap",
            url="http://[fec0::1]/service?wsdl",
            soap_operation="Return",
        ),
        {
            "kind": "return",
            "method": "soap",
            "url": "http://[fec0::1]/service?wsdl",
            "soap": {"operation": "Return"},
        },
        "url",
        ("url",),
    ),
    "SFTP host at the metadata address": (
        batch_model(**SFTP_FIELDS | {"batch_host": "169.254.169.254"}),
        batch_entry(SFTP | {"host": "169.254.169.254"}),
        "batch_host",
        ("batch", "transport", "host"),
    ),
    "S3 endpoint on loopback": (
        batch_model(**S3_FIELDS | {"batch_s3_endpoint_url": "http://localhost:9000"}),
        batch_entry(S3 | {"endpoint_url": "http://localhost:9000"}),
        "batch_s3_endpoint_url",
        ("batch", "transport", "endpoint_url"),
    ),
    "S3 secret access key": (
        batch_model(**S3_FIELDS | {"batch_password": ""}),
        batch_entry(S3 | {"secret_access_key": ""}),
        None,  # the schema answers first: see below
        ("batch", "transport", "secret_access_key"),
    ),
    "weekly file without a day": (
        batch_model(**SFTP_FIELDS, batch_every="week"),
        batch_entry(SFTP, schedule={"every": "week"}),
        "batch_day",
        ("batch", "schedule", "day"),
    ),
    "unknown time zone": (
        batch_model(**SFTP_FIELDS, batch_timezone="Mars/Olympus"),
        batch_entry(SFTP, schedule={"every": "day", "timezone": "Mars/Olympus"}),
        "batch_timezone",
        ("batch", "schedule", "timezone"),
    ),
}


def document(entry: dict) -> dict:
    return {"sources": [{"slug": "bluesky", "name": "Bluesky", "feedback": [entry]}]}


@pytest.mark.parametrize(
    ("model", "entry", "field", "keys"),
    [case for case in CASES.values() if case[2] is not None],
    ids=[name for name, case in CASES.items() if case[2] is not None],
)
def test_the_admin_and_config_validate_report_the_same_problem(
    model, entry, field, keys
):
    admin = feedback_config_problems(model)

    assert list(admin) == [field]
    assert config_validate(document=document(entry)) == [
        Problem(("sources", 0, "feedback", 0, *keys), message)
        for message in admin[field]
    ]


def test_an_empty_value_the_schema_refuses_is_reported_once_where_the_admin_puts_it():
    model, entry, _field, keys = CASES["S3 secret access key"]

    assert feedback_config_problems(model)  # the admin refuses it too
    assert config_validate(document=document(entry)) == [
        Problem(("sources", 0, "feedback", 0, *keys), "must not be empty")
    ]


def test_a_bad_criteria_rule_is_the_rules_engines_message_at_its_place():
    model = FeedbackConfig(
        kind="return",
        method="json",
        url="https://bluesky.example/in",
        criteria=BAD_RANGE,
    )
    entry = {
        "kind": "return",
        "method": "json",
        "url": "https://bluesky.example/in",
        "criteria": BAD_RANGE,
    }

    (message,) = feedback_config_problems(model)["criteria"]
    (problem,) = config_validate(document=document(entry))

    where, _, text = message.partition(": ")
    assert where == "rules[0].rhv"
    assert problem == Problem(
        ("sources", 0, "feedback", 0, "criteria", "rules", 0, "rhv"), text
    )


def test_a_bad_template_in_a_mapping_is_the_admin_forms_message():
    form = FieldMappingForm(data={"position": 0, "target": "id", "value": "{{ lead."})
    entry = {
        "kind": "return",
        "method": "json",
        "url": "https://bluesky.example/in",
        "mappings": [
            {"target": "email", "value": "{{ lead.email }}"},
            {"target": "id", "value": "{{ lead."},
        ],
    }

    assert not form.is_valid()
    assert config_validate(document=document(entry)) == [
        Problem(("sources", 0, "feedback", 0, "mappings", 1, "value"), message)
        for message in form.errors["value"]
    ]
