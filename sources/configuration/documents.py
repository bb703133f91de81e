"""Sources and their feedback configs as configuration documents, and back.

Export writes every key with its value or default; import reads a validated
document into the same shape (`*_from_input`), so comparing the two tells what
would change, and `source_save` writes the difference.
"""

from collections.abc import Iterable
from datetime import time as dt_time
from typing import Any

from django.db.models import Prefetch, QuerySet

from sources.configuration.base import (
    KINDS,
    WEEKDAYS,
    Document,
    JsonPath,
    sorted_json,
)
from sources.models import FeedbackConfig, FieldMapping, Source
from sources.transports.batch import DEFAULT_PORTS

# Every secret of a source, as a path where "*" stands for each item of a list.
SOURCE_SECRET_PATHS: tuple[tuple[str, ...], ...] = (
    ("sources", "*", "feedback", "*", "auth", "password"),
    ("sources", "*", "feedback", "*", "auth", "token"),
    ("sources", "*", "feedback", "*", "auth", "value"),
    ("sources", "*", "feedback", "*", "signing", "secret"),
    ("sources", "*", "feedback", "*", "batch", "transport", "password"),
    ("sources", "*", "feedback", "*", "batch", "transport", "private_key"),
    ("sources", "*", "feedback", "*", "batch", "transport", "secret_access_key"),
)


def source_document(source: Source) -> Document:
    return {
        "slug": source.slug,
        "name": source.name,
        "accepts": {
            kind: {
                "enabled": source.accepts(kind),
                "allowed_reasons": source.allowed_reasons(kind),
            }
            for kind in KINDS
        },
        "feedback": in_kind_order(
            feedback_config_document(config) for config in source.feedback_configs.all()
        ),
    }


def in_kind_order(configs: Iterable[Document]) -> list[Document]:
    """Configs grouped by kind in KINDS order; within a kind, as they were."""
    return sorted(configs, key=lambda config: KINDS.index(config["kind"]))


def json_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def feedback_config_document(config: FeedbackConfig) -> Document:
    """One stored config in the shape of DESIGN §9, every key present (the
    optional correction requests when set)."""
    document = _with_forward_on(_config_document(config), config.forward_on)
    return _with_corrections(
        document, {name: getattr(config, name) for name in CORRECTION_KEYS}
    )


# The requests that tell a source of a retraction, an amendment or an erasure.
CORRECTION_KEYS = ("on_retract", "on_amend", "on_erase")


def _with_corrections(document: Document, given: Document) -> Document:
    """A config's retraction, amendment and erasure requests, after its
    mappings, when it has them (DESIGN §12)."""
    for name in CORRECTION_KEYS:
        if given.get(name):
            document[name] = sorted_json(given[name])
    return document


def _with_forward_on(document: Document, forward_on: str) -> Document:
    """A return config says when it forwards (DESIGN §10), after `enabled`."""
    if document["kind"] != "return":
        return document
    keys = list(document)
    at = keys.index("enabled") + 1
    return {
        **{k: document[k] for k in keys[:at]},
        "forward_on": forward_on,
        **{k: document[k] for k in keys[at:]},
    }


def _config_document(config: FeedbackConfig) -> Document:
    if config.method == FeedbackConfig.Method.BATCH:
        return batch_config_document(config)
    document: Document = {
        "kind": config.kind,
        "enabled": config.enabled,
        "method": config.method,
        "url": config.url,
    }
    if config.method not in (FeedbackConfig.Method.QUERY, FeedbackConfig.Method.SOAP):
        document["http_method"] = config.http_method
    document |= {
        "sync": config.sync,
        "timeout_s": json_number(config.timeout_s),
        "headers": dict(sorted((config.headers or {}).items())),
        "auth": auth_document(config),
        "signing": {"enabled": config.signing_enabled}
        | ({"secret": config.signing_secret} if config.signing_secret else {}),
        "criteria": sorted_json(config.criteria),
        "mappings": [
            {"target": mapping.target, "value": mapping.value}
            for mapping in config.mappings.all()
        ],
        "response": {
            "outcome_search_term": config.outcome_search_term,
            "outcome_search_path": config.outcome_search_path,
            "outcome_on_match": config.outcome_on_match,
            "reason_path": config.reason_path,
            "default_reason": config.default_reason,
            "reference_path": config.reference_path,
        },
    }
    if config.method == FeedbackConfig.Method.SOAP:
        document["soap"] = {
            "operation": config.soap_operation,
            "version": config.soap_version,
        }
    return document


def batch_config_document(config: FeedbackConfig) -> Document:
    schedule: Document = {"every": config.batch_every}
    if config.batch_every != FeedbackConfig.BatchEvery.HOUR:
        schedule["at"] = (config.batch_at or dt_time(0)).strftime("%H:%M")
    if config.batch_every == FeedbackConfig.BatchEvery.WEEK:
        schedule["day"] = WEEKDAYS[config.batch_day or 0]
    schedule["timezone"] = config.batch_timezone
    transport_type = config.batch_transport
    transport: Document = {"type": transport_type}
    if transport_type == FeedbackConfig.Transport.EMAIL:
        transport |= {
            "to": list(config.batch_email_to or []),
            "subject": config.batch_email_subject,
        }
    elif transport_type == FeedbackConfig.Transport.S3:
        transport |= {
            "bucket": config.batch_s3_bucket,
            "prefix": config.batch_directory,
            "region": config.batch_s3_region,
            "endpoint_url": config.batch_s3_endpoint_url,
            "access_key_id": config.batch_username,
        }
        if config.batch_password:
            transport["secret_access_key"] = config.batch_password
    elif transport_type:
        transport |= {
            "host": config.batch_host,
            "port": config.batch_port or DEFAULT_PORTS[transport_type],
            "username": config.batch_username,
        }
        if config.batch_password:
            transport["password"] = config.batch_password
        if transport_type == FeedbackConfig.Transport.SFTP:
            if config.batch_private_key:
                transport["private_key"] = config.batch_private_key
            transport["host_key"] = config.batch_host_key
        if transport_type == FeedbackConfig.Transport.FTPS:
            transport["certificate"] = config.batch_tls_certificate
        transport["directory"] = config.batch_directory
    return {
        "kind": config.kind,
        "enabled": config.enabled,
        "method": config.method,
        "batch": {
            "schedule": schedule,
            "transport": transport,
            "file_name": config.batch_file_name,
            "header": config.batch_header,
            "send_empty": config.batch_send_empty,
        },
        "criteria": sorted_json(config.criteria),
        "mappings": [
            {"target": mapping.target, "value": mapping.value}
            for mapping in config.mappings.all()
        ],
    }


def auth_document(config: FeedbackConfig) -> Document:
    auth_type = config.auth_type
    secret = config.auth_secret
    if auth_type == FeedbackConfig.AuthType.BASIC:
        return {"type": auth_type, "username": config.auth_username, "password": secret}
    if auth_type == FeedbackConfig.AuthType.BEARER:
        return {"type": auth_type, "token": secret}
    if auth_type == FeedbackConfig.AuthType.HEADER:
        return {"type": auth_type, "name": config.auth_header_name, "value": secret}
    if auth_type == FeedbackConfig.AuthType.WSSE:
        return {
            "type": auth_type,
            "username": config.auth_username,
            "password": secret,
            "password_type": "digest" if config.wsse_password_digest else "text",
        }
    return {"type": "none"}


def source_from_input(item: Document) -> Document:
    accepts = item.get("accepts") or {}
    return {
        "slug": item["slug"],
        "name": item["name"],
        "accepts": {
            kind: {
                "enabled": accepts.get(kind, {}).get("enabled", True),
                "allowed_reasons": list(
                    accepts.get(kind, {}).get("allowed_reasons", [])
                ),
            }
            for kind in KINDS
        },
        "feedback": in_kind_order(
            feedback_config_from_input(c) for c in item.get("feedback", [])
        ),
    }


def feedback_config_from_input(item: Document) -> Document:
    """A config from the file with defaults filled in, shaped as export writes it."""
    forward_on = item.get("forward_on", FeedbackConfig.ForwardOn.ACCEPTED)
    return _with_corrections(
        _with_forward_on(_config_from_input(item), forward_on), item
    )


def _config_from_input(item: Document) -> Document:
    method = item["method"]
    if method == "batch":
        return batch_config_from_input(item)
    document: Document = {
        "kind": item["kind"],
        "enabled": item.get("enabled", True),
        "method": method,
        "url": item["url"],
    }
    if method not in ("query", "soap"):
        document["http_method"] = item.get("http_method", "POST")
    signing = item.get("signing") or {}
    auth = dict(item.get("auth") or {"type": "none"})
    if auth["type"] == "wsse":
        auth.setdefault("password_type", "text")
    response = item.get("response") or {}
    document |= {
        "sync": item.get("sync", False),
        "timeout_s": item.get("timeout_s", 10),
        "headers": dict(sorted((item.get("headers") or {}).items())),
        "auth": auth,
        "signing": {"enabled": signing.get("enabled", False)}
        | ({"secret": signing["secret"]} if signing.get("secret") else {}),
        "criteria": sorted_json(item.get("criteria")),
        "mappings": [
            {"target": m["target"], "value": m["value"]}
            for m in item.get("mappings", [])
        ],
        "response": {
            "outcome_search_term": response.get("outcome_search_term", ""),
            "outcome_search_path": response.get("outcome_search_path", ""),
            "outcome_on_match": response.get("outcome_on_match", "success"),
            "reason_path": response.get("reason_path", ""),
            "default_reason": response.get("default_reason", ""),
            "reference_path": response.get("reference_path", ""),
        },
    }
    if method == "soap":
        document["soap"] = {
            "operation": item["soap"]["operation"],
            "version": item["soap"].get("version", "1.1"),
        }
    return document


def batch_config_from_input(item: Document) -> Document:
    batch = item["batch"]
    given = batch["schedule"]
    schedule: Document = {"every": given["every"]}
    if given["every"] != "hour":
        schedule["at"] = given.get("at", "00:00")
    if given["every"] == "week" and "day" in given:
        # Without one the model's check asks for the day (a weekly file needs it).
        schedule["day"] = given["day"]
    schedule["timezone"] = given.get("timezone", "UTC")
    given = batch["transport"]
    transport: Document = {"type": given["type"]}
    if given["type"] == "email":
        transport |= {"to": list(given["to"]), "subject": given.get("subject", "")}
    elif given["type"] == "s3":
        transport |= {
            "bucket": given["bucket"],
            "prefix": given.get("prefix", ""),
            "region": given.get("region", ""),
            "endpoint_url": given.get("endpoint_url", ""),
            "access_key_id": given["access_key_id"],
        }
        if given.get("secret_access_key"):
            transport["secret_access_key"] = given["secret_access_key"]
    else:
        transport |= {
            "host": given["host"],
            "port": given.get("port", DEFAULT_PORTS[given["type"]]),
            "username": given.get("username", ""),
        }
        if given.get("password"):
            transport["password"] = given["password"]
        if given["type"] == "sftp":
            if given.get("private_key"):
                transport["private_key"] = given["private_key"]
            transport["host_key"] = given["host_key"]
        if given["type"] == "ftps":
            transport["certificate"] = given.get("certificate", "")
        transport["directory"] = given.get("directory", "")
    return {
        "kind": item["kind"],
        "enabled": item.get("enabled", True),
        "method": "batch",
        "batch": {
            "schedule": schedule,
            "transport": transport,
            "file_name": batch["file_name"],
            "header": batch.get("header", True),
            "send_empty": batch.get("send_empty", False),
        },
        "criteria": sorted_json(item.get("criteria")),
        "mappings": [
            {"target": m["target"], "value": m["value"]}
            for m in item.get("mappings", [])
        ],
    }


def source_save(desired: Document, source: Source | None) -> None:
    values: dict[str, Any] = {"name": desired["name"]}
    for kind, entry in desired["accepts"].items():
        values[f"accepts_{kind}"] = entry["enabled"]
        values[f"{kind}_reasons"] = entry["allowed_reasons"]
    if source is None:
        source = Source.objects.create(slug=desired["slug"], **values)
    else:
        for name, value in values.items():
            setattr(source, name, value)
        source.save(update_fields=[*values, "updated_at"])
    feedback_configs_save(source, desired["feedback"])


def feedback_configs_save(source: Source, desired: list[Document]) -> None:
    """Make the source's configs those of the document.

    The n-th config of a kind updates the n-th stored one of that kind, so a
    config keeps its id (and, later, its notifications) across imports; extra
    stored configs of a kind are removed.
    """
    stored: dict[str, list[FeedbackConfig]] = {}
    for config in source.feedback_configs.all():
        stored.setdefault(config.kind, []).append(config)
    for entry in desired:
        same_kind = stored.get(entry["kind"], [])
        config = same_kind.pop(0) if same_kind else FeedbackConfig(source=source)
        feedback_config_apply(config, entry)
        config.save()
        config.mappings.all().delete()
        FieldMapping.objects.bulk_create(field_mappings(config, entry))
    leftovers = [config.pk for configs in stored.values() for config in configs]
    if leftovers:
        FeedbackConfig.objects.filter(pk__in=leftovers).delete()


def field_mappings(config: FeedbackConfig, entry: Document) -> list[FieldMapping]:
    """The entry's mappings as rows of `config`, unsaved, in the file's order."""
    return [
        FieldMapping(config=config, position=position, **mapping)
        for position, mapping in enumerate(entry["mappings"])
    ]


def feedback_config_build(item: Document) -> tuple[FeedbackConfig, list[FieldMapping]]:
    """The unsaved config and mappings an entry of the file would store.

    The same path import writes through, so checking what this returns checks
    what would be saved.
    """
    entry = feedback_config_from_input(item)
    config = FeedbackConfig()
    feedback_config_apply(config, entry)
    return config, field_mappings(config, entry)


def feedback_config_apply(config: FeedbackConfig, entry: Document) -> None:
    batch_settings_apply(config, entry.get("batch"))
    for name in CORRECTION_KEYS:
        setattr(config, name, entry.get(name) or None)
    config.forward_on = entry.get("forward_on", FeedbackConfig.ForwardOn.ACCEPTED)
    if entry["method"] == FeedbackConfig.Method.BATCH:
        # The HTTP settings go back to their defaults: the document has none.
        for model_field in FeedbackConfig._meta.concrete_fields:
            if model_field.name in HTTP_SETTINGS:
                setattr(config, model_field.attname, model_field.get_default())
        config.kind = entry["kind"]
        config.enabled = entry["enabled"]
        config.method = entry["method"]
        config.url = ""
        config.criteria = entry["criteria"]
        return
    auth = entry["auth"]
    response = entry["response"]
    soap = entry.get("soap") or {}
    config.kind = entry["kind"]
    config.enabled = entry["enabled"]
    config.method = entry["method"]
    config.url = entry["url"]
    config.http_method = entry.get(
        "http_method", "GET" if entry["method"] == "query" else "POST"
    )
    config.sync = entry["sync"]
    config.timeout_s = float(entry["timeout_s"])
    config.headers = entry["headers"]
    config.auth_type = auth["type"]
    config.auth_username = auth.get("username", "")
    config.auth_header_name = auth.get("name", "")
    config.auth_secret = (
        auth.get("password") or auth.get("token") or auth.get("value", "")
    )
    config.wsse_password_digest = auth.get("password_type") == "digest"
    config.signing_enabled = entry["signing"]["enabled"]
    config.signing_secret = entry["signing"].get("secret", "")
    config.criteria = entry["criteria"]
    config.soap_operation = soap.get("operation", "")
    config.soap_version = soap.get("version", FeedbackConfig.SoapVersion.SOAP_11)
    for name, value in response.items():
        setattr(config, name, value)


HTTP_SETTINGS = frozenset(FeedbackConfig.HTTP_FIELDS)


def batch_settings_apply(config: FeedbackConfig, batch: Document | None) -> None:
    """Store a batch block; without one, the batch settings go back to defaults."""
    for model_field in FeedbackConfig._meta.concrete_fields:
        if model_field.name.startswith("batch_"):
            setattr(config, model_field.attname, model_field.get_default())
    if batch is None:
        return
    schedule, transport = batch["schedule"], batch["transport"]
    config.batch_every = schedule["every"]
    config.batch_at = (
        dt_time.fromisoformat(schedule["at"]) if "at" in schedule else None
    )
    config.batch_day = WEEKDAYS.index(schedule["day"]) if "day" in schedule else None
    config.batch_timezone = schedule["timezone"]
    config.batch_transport = transport["type"]
    config.batch_host = transport.get("host", "")
    config.batch_port = transport.get("port")
    # S3's keys share the username and password fields (see FeedbackConfig).
    config.batch_username = transport.get(
        "username", transport.get("access_key_id", "")
    )
    config.batch_password = transport.get(
        "password", transport.get("secret_access_key", "")
    )
    config.batch_private_key = transport.get("private_key", "")
    config.batch_host_key = transport.get("host_key", "")
    config.batch_tls_certificate = transport.get("certificate", "")
    config.batch_directory = transport.get("directory", transport.get("prefix", ""))
    config.batch_s3_bucket = transport.get("bucket", "")
    config.batch_s3_region = transport.get("region", "")
    config.batch_s3_endpoint_url = transport.get("endpoint_url", "")
    config.batch_email_to = list(transport.get("to", []))
    config.batch_email_subject = transport.get("subject", "")
    config.batch_file_name = batch["file_name"]
    config.batch_header = batch["header"]
    config.batch_send_empty = batch["send_empty"]


# Where each FeedbackConfig field is written in an entry of the file: the
# inverse of feedback_config_apply and batch_settings_apply.
FIELD_KEYS: dict[str, JsonPath] = {
    "kind": ("kind",),
    "enabled": ("enabled",),
    "method": ("method",),
    "url": ("url",),
    "http_method": ("http_method",),
    "sync": ("sync",),
    "forward_on": ("forward_on",),
    "timeout_s": ("timeout_s",),
    "headers": ("headers",),
    "auth_type": ("auth", "type"),
    "auth_username": ("auth", "username"),
    "auth_header_name": ("auth", "name"),
    "wsse_password_digest": ("auth", "password_type"),
    "signing_enabled": ("signing", "enabled"),
    "signing_secret": ("signing", "secret"),
    "criteria": ("criteria",),
    "on_retract": ("on_retract",),
    "on_amend": ("on_amend",),
    "on_erase": ("on_erase",),
    "soap_operation": ("soap", "operation"),
    "soap_version": ("soap", "version"),
    **{
        name: ("response", name)
        for name in (
            "outcome_search_term",
            "outcome_search_path",
            "outcome_on_match",
            "reason_path",
            "default_reason",
            "reference_path",
        )
    },
    "batch_every": ("batch", "schedule", "every"),
    "batch_at": ("batch", "schedule", "at"),
    "batch_day": ("batch", "schedule", "day"),
    "batch_timezone": ("batch", "schedule", "timezone"),
    "batch_transport": ("batch", "transport", "type"),
    "batch_host": ("batch", "transport", "host"),
    "batch_port": ("batch", "transport", "port"),
    "batch_username": ("batch", "transport", "username"),
    "batch_password": ("batch", "transport", "password"),
    "batch_private_key": ("batch", "transport", "private_key"),
    "batch_host_key": ("batch", "transport", "host_key"),
    "batch_tls_certificate": ("batch", "transport", "certificate"),
    "batch_directory": ("batch", "transport", "directory"),
    "batch_s3_bucket": ("batch", "transport", "bucket"),
    "batch_s3_region": ("batch", "transport", "region"),
    "batch_s3_endpoint_url": ("batch", "transport", "endpoint_url"),
    "batch_email_to": ("batch", "transport", "to"),
    "batch_email_subject": ("batch", "transport", "subject"),
    "batch_file_name": ("batch", "file_name"),
    "batch_header": ("batch", "header"),
    "batch_send_empty": ("batch", "send_empty"),
}

# S3 keeps its keys in the fields other transports use for a login and a directory.
S3_FIELD_KEYS: dict[str, JsonPath] = {
    "batch_username": ("batch", "transport", "access_key_id"),
    "batch_password": ("batch", "transport", "secret_access_key"),
    "batch_directory": ("batch", "transport", "prefix"),
}

# auth_secret holds whichever secret the authentication type has.
AUTH_SECRET_KEYS = {"basic": "password", "wsse": "password", "bearer": "token"}


def feedback_config_field_path(config: FeedbackConfig, field: str) -> JsonPath:
    """Where the entry a config was built from holds `field`, relative to the
    entry; () for a field the file has no key of its own for."""
    if config.batch_transport == FeedbackConfig.Transport.S3 and field in S3_FIELD_KEYS:
        return S3_FIELD_KEYS[field]
    if field == "auth_secret":
        return ("auth", AUTH_SECRET_KEYS.get(config.auth_type, "value"))
    return FIELD_KEYS.get(field, ())


def sources_with_configs() -> QuerySet[Source]:
    return Source.objects.prefetch_related(
        Prefetch(
            "feedback_configs",
            queryset=FeedbackConfig.objects.prefetch_related("mappings").order_by(
                "kind", "pk"
            ),
        )
    )
