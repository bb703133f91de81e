"""Checks on a source's part of a configuration document that its schema cannot
express, each reported at its JSON path."""

import re
import ssl
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from sources import templating
from sources.configuration.base import (
    KINDS,
    METHODS,
    REDACTED,
    JsonPath,
    Problem,
    dict_items,
    json_path,
    rule_set_problems,
)
from sources.models import FeedbackConfig
from sources.outbound.payloads import BuildError
from sources.outbound.responses import ResponseSpec, validate_response_spec
from sources.outbound.signing import SigningSecretError
from sources.outbound.signing import secret_key as signing_secret_key
from sources.transports.batch import SAMPLE_FILE_VARIABLES
from sources.transports.building import validate_headers
from sources.transports.s3 import S3Transport
from sources.transports.sftp import host_key_parse, private_key_parse


def source_problems(source: dict[str, Any], path: JsonPath) -> list[Problem]:
    problems: list[Problem] = []
    accepts = source.get("accepts")
    if isinstance(accepts, dict):
        for kind in KINDS:
            entry = accepts.get(kind)
            if isinstance(entry, dict):
                problems += reason_problems(
                    entry.get("allowed_reasons"),
                    (*path, "accepts", kind, "allowed_reasons"),
                )
    for index, config in dict_items(source.get("feedback")):
        problems += feedback_config_problems(config, (*path, "feedback", index))
    return problems


def reason_problems(reasons: object, path: JsonPath) -> list[Problem]:
    # Mirrors sources.models.validate_reason_list: intake matches reasons
    # case-insensitively, so two spellings of one reason would be ambiguous.
    if not isinstance(reasons, list):
        return []
    problems: list[Problem] = []
    first_seen: dict[str, int] = {}
    for index, reason in enumerate(reasons):
        if not isinstance(reason, str) or not reason:
            continue
        folded = reason.strip().casefold()
        if not folded:
            problems.append(Problem((*path, index), "must not be blank"))
        elif folded in first_seen:
            earlier = json_path((*path, first_seen[folded]))
            problems.append(
                Problem(
                    (*path, index),
                    f"{reason!r} is listed twice, ignoring case (first at {earlier})",
                )
            )
        else:
            first_seen[folded] = index
    return problems


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def feedback_config_problems(config: dict[str, Any], path: JsonPath) -> list[Problem]:
    """Checks on one feedback config that its schema cannot express."""
    problems: list[Problem] = []
    method = config.get("method")

    def refuse(key: str | JsonPath, message: str) -> None:
        keys = (key,) if isinstance(key, str) else key
        problems.append(Problem((*path, *keys), message))

    for block in ("soap", "batch"):
        if method == block and block not in config:
            refuse(block, f"is required with method {block!r}")
        elif method in METHODS and method != block and block in config:
            refuse(block, f"is only used with method {block!r}")
    if method == "batch":
        for key in (
            "url",
            "http_method",
            "sync",
            "timeout_s",
            "headers",
            "auth",
            "signing",
        ):
            if key in config:
                refuse(key, "is not used with method 'batch'")
        if "response" in config:
            refuse("response", "is not used with method 'batch'")
    elif method in METHODS:
        url = config.get("url")
        if "url" not in config:
            refuse("url", f"is required with method {method!r}")
        elif isinstance(url, str) and url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                refuse("url", "must be an http:// or https:// URL with a host")
        if method in ("query", "soap") and "http_method" in config:
            refuse("http_method", f"is not used with method {method!r}")

    auth = config.get("auth")
    if isinstance(auth, dict) and auth.get("type") == "wsse" and method != "soap":
        refuse(("auth", "type"), "'wsse' is only used with method 'soap'")
    signing = config.get("signing")
    if isinstance(signing, dict) and signing.get("enabled") and "secret" not in signing:
        refuse(("signing", "secret"), "is required when signing is enabled")

    headers = config.get("headers")
    for name, value in headers.items() if isinstance(headers, dict) else []:
        if not _HEADER_NAME.fullmatch(name):
            refuse(("headers", name), "is not a valid header name")
        elif isinstance(value, str) and ("\r" in value or "\n" in value):
            refuse(("headers", name), "must not contain line breaks")

    response = config.get("response")
    term = response.get("outcome_search_term") if isinstance(response, dict) else None
    if isinstance(term, str) and term:
        pattern = term[1:-1] if len(term) > 1 and term[0] == term[-1] == "/" else term
        try:
            re.compile(pattern)
        except re.error as exc:
            refuse(
                ("response", "outcome_search_term"),
                f"is not a valid regular expression: {exc}",
            )

    problems += rule_set_problems(config.get("criteria"), (*path, "criteria"))
    for index, mapping in dict_items(config.get("mappings")):
        value = mapping.get("value")
        problem = templating.validate(value) if isinstance(value, str) else None
        if problem:
            refuse(
                ("mappings", index, "value"), f"is not a working template: {problem}"
            )
    if isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values()):
        try:
            validate_headers(headers)
        except BuildError as exc:
            refuse("headers", str(exc))
    if isinstance(signing, dict) and isinstance(signing.get("secret"), str):
        secret = signing["secret"]
        if secret != REDACTED:
            try:
                signing_secret_key(secret)
            except SigningSecretError as exc:
                refuse(("signing", "secret"), str(exc))
    if isinstance(response, dict) and all(
        isinstance(v, str) for v in response.values()
    ):
        spec = ResponseSpec(
            **{k: v for k, v in response.items() if k != "outcome_on_match"}
        )
        for message in validate_response_spec(spec):
            name = message.split(" ", 1)[0]
            key = name if name in response else "outcome_search_term"
            refuse(("response", key), message.removeprefix(f"{name} "))
    batch = config.get("batch")
    if isinstance(batch, dict):
        problems += batch_problems(batch, (*path, "batch"))
    return problems


def batch_problems(batch: dict[str, Any], path: JsonPath) -> list[Problem]:
    problems: list[Problem] = []
    schedule = batch.get("schedule")
    if isinstance(schedule, dict):
        every = schedule.get("every")
        if every == "week" and "day" not in schedule:
            problems.append(
                Problem((*path, "schedule", "day"), "is required when every is 'week'")
            )
        if every in ("hour", "day") and "day" in schedule:
            problems.append(
                Problem((*path, "schedule", "day"), "is only used when every is 'week'")
            )
        if every == "hour" and "at" in schedule:
            problems.append(
                Problem((*path, "schedule", "at"), "is not used when every is 'hour'")
            )
        zone = schedule.get("timezone")
        if isinstance(zone, str) and zone:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                problems.append(
                    Problem(
                        (*path, "schedule", "timezone"),
                        f"{zone!r} is not a known time zone, e.g. 'America/Chicago'",
                    )
                )
    transport = batch.get("transport")
    if isinstance(transport, dict):
        problems += transport_problems(transport, (*path, "transport"))
    file_name = batch.get("file_name")
    if isinstance(file_name, str) and file_name:
        problem = templating.validate(file_name, variables=SAMPLE_FILE_VARIABLES)
        if problem:
            problems.append(
                Problem((*path, "file_name"), f"is not a working template: {problem}")
            )
    recipients = transport.get("to") if isinstance(transport, dict) else None
    for index, address in enumerate(recipients if isinstance(recipients, list) else []):
        if not isinstance(address, str):
            continue
        try:
            validate_email(address)
        except ValidationError:
            problems.append(
                Problem(
                    (*path, "transport", "to", index), "is not a valid email address"
                )
            )
    return problems


def transport_problems(transport: dict[str, Any], path: JsonPath) -> list[Problem]:
    problems: list[Problem] = []
    host = transport.get("host")
    if isinstance(host, str) and ("/" in host or ":" in host.strip("[]")):
        problems.append(
            Problem(
                (*path, "host"),
                "must be a host name only (port and directory have their own keys)",
            )
        )
    host_key = transport.get("host_key")
    if isinstance(host_key, str) and host_key:
        try:
            host_key_parse(host_key)
        except ValueError as exc:
            problems.append(Problem((*path, "host_key"), str(exc)))
    private_key = transport.get("private_key")
    if isinstance(private_key, str) and private_key and private_key != REDACTED:
        try:
            private_key_parse(private_key)
        except ValueError as exc:
            problems.append(Problem((*path, "private_key"), str(exc)))
    certificate = transport.get("certificate")
    if isinstance(certificate, str) and certificate.strip():
        try:
            ssl.create_default_context(cadata=certificate)
        except (ssl.SSLError, ValueError):
            problems.append(Problem((*path, "certificate"), "is not a PEM certificate"))
    if transport.get("type") == "s3":
        problems += s3_problems(transport, path)
    if (
        transport.get("type") == "sftp"
        and "password" not in transport
        and "private_key" not in transport
    ):
        problems.append(
            Problem((*path, "password"), "SFTP needs a password or a private_key")
        )
    return problems


# The S3 keys of a transport block, by the FeedbackConfig field each is stored in.
S3_FIELDS = {
    "batch_s3_bucket": "bucket",
    "batch_directory": "prefix",
    "batch_s3_region": "region",
    "batch_s3_endpoint_url": "endpoint_url",
    "batch_username": "access_key_id",
    "batch_password": "secret_access_key",
}


def s3_problems(transport: dict[str, Any], path: JsonPath) -> list[Problem]:
    """The S3 transport's own checks, run on the config the block would store."""
    config = FeedbackConfig(
        **{
            name: value
            for name, key in S3_FIELDS.items()
            if isinstance(value := transport.get(key, ""), str)
        }
    )
    return [
        Problem((*path, S3_FIELDS.get(name, "type")), message)
        for name, message in S3Transport.config_problems(config)
        if S3_FIELDS.get(name) in transport  # a missing key: the schema says so
    ]
