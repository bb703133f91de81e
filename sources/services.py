"""What a feedback config sends and how its answer is read.

Everything here works from a config and a variables dict (DESIGN §5.2): the
sources app never sees feedback rows. Building is pure; `feedback_config_send`
is the one function here that talks to the network, and it must never be called
inside a database transaction.
"""

import copy
import io
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError
from django.utils import timezone

from sources import rules, templating
from sources.csvcells import write_csv
from sources.models import FeedbackConfig, FieldMapping, Kind
from sources.outbound import signing, soap
from sources.outbound.payloads import BuildError
from sources.outbound.responses import ResponseSpec, interpret, validate_response_spec
from sources.outbound.sending import send
from sources.outbound.types import (
    Auth,
    Interpretation,
    OutboundRequest,
    OutboundResponse,
    Outcome,
    RequestSpec,
)
from sources.transports import destination_problems
from sources.transports.batch import SAMPLE_FILE_VARIABLES
from sources.transports.building import build_request, validate_headers
from sources.transports.registry import METHODS, TRANSPORTS
from sources.variables import sample_correction_variables

logger = logging.getLogger(__name__)

REDACTED = "<redacted>"
# Configured headers whose names say they carry a credential are redacted too.
SECRET_HEADER = re.compile(r"token|key|secret|auth|pass|session|cookie", re.IGNORECASE)


class RequestError(ValueError):
    """A config cannot make its request (a template, the WSDL, a target clash)."""


@dataclass(frozen=True)
class TestSend:
    """One test send from the admin: what went out and how the answer was read."""

    request: OutboundRequest
    response: OutboundResponse
    interpretation: Interpretation


def feedback_config_request_spec(config: FeedbackConfig) -> RequestSpec:
    secret = config.auth_secret
    auth = Auth(
        type=config.auth_type,
        username=config.auth_username,
        password=secret if config.auth_type in ("basic", "wsse") else "",
        token=secret if config.auth_type == "bearer" else "",
        name=config.auth_header_name,
        value=secret if config.auth_type == "header" else "",
        password_digest=config.wsse_password_digest,
    )
    # Query configs always GET and SOAP always POSTs, whatever the stored field.
    transport = METHODS.get(config.method)
    http_method = (transport and transport.http_method) or config.http_method
    return RequestSpec(
        method=config.method,
        url=config.url,
        http_method=http_method,
        headers={str(k): str(v) for k, v in (config.headers or {}).items()},
        auth=auth,
        signing_secret=config.signing_secret if config.signing_enabled else "",
        soap_operation=config.soap_operation,
        soap_version=config.soap_version,
        timeout_s=config.timeout_s,
    )


def feedback_config_response_spec(config: FeedbackConfig) -> ResponseSpec:
    return ResponseSpec(
        outcome_search_term=config.outcome_search_term,
        outcome_search_path=config.outcome_search_path,
        outcome_on_match=Outcome(config.outcome_on_match),
        reason_path=config.reason_path,
        default_reason=config.default_reason,
        reference_path=config.reference_path,
    )


def feedback_config_criteria_check(
    *, config: FeedbackConfig, variables: Mapping[str, Any]
) -> str | None:
    """None when the feedback passes the config's criteria, else the reason."""
    return rules.evaluate(config.criteria, variables)


# Mappings change only through the config's admin form or a config import, and
# both save the config, which moves its updated_at: keyed on that, a worker reads
# a config's mappings once instead of once per delivery.
_MAPPINGS_CACHE: dict[tuple[int, datetime], tuple[FieldMapping, ...]] = {}
_MAPPINGS_CACHE_SIZE = 256


def feedback_config_mappings(*, config: FeedbackConfig) -> tuple[FieldMapping, ...]:
    """The config's mappings in order, cached per process until it is saved."""
    key = (config.pk, config.updated_at)
    cached = _MAPPINGS_CACHE.get(key)
    if cached is None:
        cached = tuple(config.mappings.all())
        if len(_MAPPINGS_CACHE) >= _MAPPINGS_CACHE_SIZE:
            _MAPPINGS_CACHE.clear()
        _MAPPINGS_CACHE[key] = cached
    return cached


def feedback_config_render(
    *,
    config: FeedbackConfig,
    variables: Mapping[str, Any],
    mappings: Sequence[FieldMapping] | None = None,
) -> list[tuple[str, str]]:
    """The (target, value) pairs of the config's mappings for these variables."""
    rows = list(config.mappings.all()) if mappings is None else list(mappings)
    fields = []
    for mapping in rows:
        try:
            fields.append((mapping.target, templating.render(mapping.value, variables)))
        except templating.TemplateError as exc:
            raise RequestError(f"Mapping {mapping.target!r}: {exc}") from None
    return fields


def feedback_config_build_request(
    *,
    config: FeedbackConfig,
    variables: Mapping[str, Any],
    message_id: str,
    mappings: Sequence[FieldMapping] | None = None,
    now: datetime | None = None,
) -> OutboundRequest:
    """The exact request the config makes for these variables, or RequestError.

    SOAP configs load their WSDL (through the guarded session), so this may do
    network I/O for them: never call it inside a transaction.
    """
    spec = feedback_config_request_spec(config)
    fields = feedback_config_render(
        config=config, variables=variables, mappings=mappings
    )
    client = None
    if spec.method == FeedbackConfig.Method.SOAP:
        try:
            client = soap.soap_client(spec.url, timeout=spec.timeout_s)
        except soap.WsdlError as exc:
            raise RequestError(str(exc)) from None
    try:
        return build_request(
            spec,
            fields,
            message_id=message_id,
            now=now or timezone.now(),
            soap_client=client,
        )
    except BuildError as exc:
        raise RequestError(str(exc)) from None


def feedback_config_send(
    *, config: FeedbackConfig, request: OutboundRequest, timeout_s: float | None = None
) -> tuple[OutboundResponse, Interpretation]:
    """Send one request and read the answer with the config's response settings.
    `timeout_s` shortens the config's own timeout (a sync deadline)."""
    response = send(request, timeout_s=timeout_s or config.timeout_s)
    interpretation = interpret(feedback_config_response_spec(config), response)
    logger.info(
        "sent %s config=%s status=%s outcome=%s in %d ms",
        config.method,
        config.pk,
        response.status,
        interpretation.outcome,
        response.elapsed_ms,
    )
    return response, interpretation


def feedback_config_send_test(
    *,
    config: FeedbackConfig,
    variables: Mapping[str, Any],
    mappings: Sequence[FieldMapping] | None = None,
) -> TestSend:
    """Build and send the config's request once, from the admin's "send test"."""
    request = feedback_config_build_request(
        config=config,
        variables=variables,
        mappings=mappings,
        message_id=f"test_{timezone.now():%Y%m%d%H%M%S%f}",
    )
    response, interpretation = feedback_config_send(config=config, request=request)
    return TestSend(request, response, interpretation)


def request_redact(request: OutboundRequest, config: FeedbackConfig) -> OutboundRequest:
    """The request with the config's secrets blanked, for showing and storing."""
    secrets = [s for s in (config.auth_secret,) if s]
    headers = {}
    for name, value in request.headers.items():
        if (
            name.lower() in ("authorization", "proxy-authorization")
            or (
                config.auth_type == "header"
                and name.lower() == config.auth_header_name.lower()
            )
            or SECRET_HEADER.search(name)
        ):
            value = REDACTED
        headers[name] = _without(value, secrets)
    body = request.body
    for secret in secrets:
        body = body.replace(secret.encode(), REDACTED.encode())
    return OutboundRequest(
        method=request.method,
        url=_without(request.url, secrets),
        headers=headers,
        body=body,
    )


def _without(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def feedback_config_destination(config: FeedbackConfig) -> str:
    """Where a config sends, as a person would name it: the URL, or the batch
    transport's host and directory, bucket and prefix, or recipients."""
    if config.method != FeedbackConfig.Method.BATCH:
        return config.url.strip()
    transport = config.batch_transport
    if transport == FeedbackConfig.Transport.EMAIL:
        recipients = sorted(str(r).strip().lower() for r in config.batch_email_to or [])
        return "email to " + ", ".join(recipients)
    if transport == FeedbackConfig.Transport.S3:
        return f"s3://{config.batch_s3_bucket}/{config.batch_directory}".rstrip("/")
    host = config.batch_host.strip().lower()
    directory = config.batch_directory.strip().rstrip("/")
    return f"{transport}://{host}/{directory.lstrip('/')}".rstrip("/")


def feedback_config_same_destination(
    config: FeedbackConfig, *, exclude_pk: int | None = None
) -> FeedbackConfig | None:
    """Another enabled config of the same source and kind that sends to the same
    place as `config`: both would forward every feedback."""
    others = FeedbackConfig.objects.filter(
        source_id=config.source_id, kind=config.kind, enabled=True
    ).select_related("source")
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    where = feedback_config_destination(config)
    for other in others:
        if (
            other.method == config.method
            and feedback_config_destination(other) == where
        ):
            return other
    return None


def on_erase_problem(value: object) -> str | None:
    """Why a config's `on_erase` mapping (DESIGN §12: where an erased lead's
    source is told) cannot be used, or None."""
    if value in (None, {}):
        return None
    if not isinstance(value, dict):
        return "on_erase must be an object."
    url = value.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return "on_erase.url must be an http or https URL."
    method = value.get("method", "json")
    if method not in {"json", "form", "query", "xml"}:
        return "on_erase.method must be json, form, query or xml."
    mappings = value.get("mappings")
    if not isinstance(mappings, dict) or not mappings:
        return "on_erase.mappings must be an object of field: template."
    if not all(isinstance(v, str) for v in mappings.values()):
        return "on_erase.mappings values must be templates (strings)."
    return None


def feedback_config_problems(config: FeedbackConfig) -> dict[str, list[str]]:
    """What is wrong with a config, by field name, beyond each field's own checks."""
    problems: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        problems.setdefault(field, []).append(message)

    erase_problem = on_erase_problem(config.on_erase)
    if erase_problem:
        add("on_erase", erase_problem)

    if config.forward_on == FeedbackConfig.ForwardOn.APPROVED:
        # Only returns are reviewed, and a sync send answers the buyer's own
        # request: neither fits a config that waits for an approval.
        if config.kind != Kind.RETURN:
            add(
                "forward_on",
                "Only returns wait for a review: a conversion or status config "
                "forwards each feedback when it is accepted.",
            )
        elif config.sync:
            add(
                "sync",
                "A config that waits for approval cannot send synchronously: the "
                "buyer's request is answered long before a return is approved.",
            )
    method = config.method
    if method == FeedbackConfig.Method.BATCH:
        for field, message in batch_config_problems(config):
            add(field, message)
        return problems
    url = urlsplit(config.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        add("url", "Use an http:// or https:// URL.")
    else:
        for field, message in destination_problems("url", url.hostname):
            add(field, message)
    transport = METHODS.get(method)
    for field, message in transport.config_problems(config) if transport else []:
        add(field, message)
    if config.auth_type == FeedbackConfig.AuthType.WSSE and not (
        transport and transport.wsse
    ):
        add("auth_type", "WS-Security is only for SOAP configs.")
    if config.auth_type in ("basic", "wsse") and not config.auth_username:
        add("auth_username", "This authentication needs a username.")
    if config.auth_type == FeedbackConfig.AuthType.HEADER and not (
        config.auth_header_name
    ):
        add("auth_header_name", "Name the header that carries the key.")
    if config.auth_type != FeedbackConfig.AuthType.NONE and not config.auth_secret:
        add("auth_secret", "This authentication needs a password, token or key.")
    if config.signing_secret:
        # The admin generates a good one when signing is switched on; a typed or
        # imported one must be a whsec_ secret or every signed send would fail.
        try:
            signing.secret_key(config.signing_secret)
        except signing.SigningSecretError as exc:
            add("signing_secret", str(exc))
    if not isinstance(config.headers, dict) or not all(
        isinstance(value, str) for value in config.headers.values()
    ):
        add(
            "headers",
            'Enter an object of header names and text values, e.g. {"X-A": "1"}.',
        )
    else:
        spec = feedback_config_request_spec(config)
        try:
            validate_headers(spec.headers)
        except BuildError as exc:
            add("headers", str(exc))
    for message in rules.validate_rule_set(config.criteria) if config.criteria else []:
        add("criteria", message)
    for field in CORRECTION_FIELDS:
        for message in correction_problems(config, field):
            add(field, message)
    for message in validate_response_spec(feedback_config_response_spec(config)):
        field = next(
            (
                name
                for name in FeedbackConfig.RESPONSE_FIELDS
                if message.startswith(name)
            ),
            "outcome_search_term",
        )
        add(field, message)
    return problems


def batch_config_problems(config: FeedbackConfig) -> list[tuple[str, str]]:
    """(field, message) for what is wrong with a batch config's settings; the
    transport's own checks come from its class."""
    problems: list[tuple[str, str]] = []
    if config.sync:
        problems.append(
            (
                "sync",
                "Batch files are sent on their schedule, not while "
                "the buyer waits: turn sync off.",
            )
        )
    if config.signing_enabled or config.auth_type != FeedbackConfig.AuthType.NONE:
        problems.append(
            (
                "auth_type",
                "Authentication and signing are HTTP settings; "
                "a batch config's credentials go with its transport.",
            )
        )
    try:
        ZoneInfo(config.batch_timezone or "")
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(
            (
                "batch_timezone",
                f"{config.batch_timezone!r} is not a "
                "known time zone, e.g. America/Chicago.",
            )
        )
    if (
        config.batch_every == FeedbackConfig.BatchEvery.WEEK
        and config.batch_day is None
    ):
        problems.append(("batch_day", "A weekly file needs the day to send it."))
    transport = TRANSPORTS.get(config.batch_transport)
    if transport is None:
        problems.append(("batch_transport", "Choose how the file is sent."))
    else:
        problems += transport.config_problems(config)
    if not config.batch_file_name.strip():
        problems.append(("batch_file_name", "Enter the file name (a template)."))
    else:
        problem = templating.validate(
            config.batch_file_name, variables=SAMPLE_FILE_VARIABLES
        )
        if problem:
            problems.append(
                ("batch_file_name", f"This template does not work: {problem}")
            )
    for message in rules.validate_rule_set(config.criteria) if config.criteria else []:
        problems.append(("criteria", message))
    return problems


def feedback_config_batch_preview(
    *,
    config: FeedbackConfig,
    variables: Mapping[str, Any],
    mappings: Sequence[FieldMapping] | None = None,
) -> tuple[str, str]:
    """The file name (for a sample period) and the CSV a batch config would write
    for one feedback with these variables; RequestError if a template fails."""
    rows = list(config.mappings.all()) if mappings is None else list(mappings)
    fields = feedback_config_render(config=config, variables=variables, mappings=rows)
    stream = io.StringIO(newline="")
    header = [mapping.target for mapping in rows] if config.batch_header else None
    write_csv(stream, [[value for _target, value in fields]], header=header)
    try:
        name = templating.render(config.batch_file_name, SAMPLE_FILE_VARIABLES)
    except templating.TemplateError as exc:
        raise RequestError(f"File name template: {exc}") from None
    return name.strip(), stream.getvalue()


# Corrections (DESIGN §12) ------------------------------------------------------

# The config fields holding a correction request, by the correction they tell.
CORRECTION_FIELDS = {"on_retract": "retract", "on_amend": "amend"}
CORRECTION_KEYS = frozenset(
    {"method", "url", "http_method", "soap_operation", "mappings"}
)
CORRECTION_METHODS = tuple(
    m for m in FeedbackConfig.Method.values if m != FeedbackConfig.Method.BATCH
)


def feedback_config_correction(
    *, config: FeedbackConfig, action: str
) -> tuple[FeedbackConfig, tuple[FieldMapping, ...]] | None:
    """The config as its retraction or amendment request (`action` "retract" or
    "amend"): its own method, URL and mappings, the config's authentication,
    headers, signing, timeout and response reading. An unsaved copy, never
    stored; None when the config has no such request."""
    spec = config.on_retract if action == "retract" else config.on_amend
    if not spec:
        return None
    derived = copy.copy(config)
    derived.method = spec.get("method") or FeedbackConfig.Method.JSON
    derived.url = spec.get("url") or ""
    derived.http_method = spec.get("http_method") or FeedbackConfig.HttpMethod.POST
    derived.soap_operation = spec.get("soap_operation") or ""
    mappings = tuple(
        FieldMapping(position=position, target=m["target"], value=m["value"])
        for position, m in enumerate(spec.get("mappings") or [])
    )
    return derived, mappings


def correction_problems(config: FeedbackConfig, field: str) -> list[str]:
    """What is wrong with a config's `on_retract` or `on_amend`, as sentences."""
    spec = getattr(config, field)
    if spec in (None, {}):
        return []
    example = '{"method": "json", "url": "https://…", "mappings": [...]}'
    if not isinstance(spec, dict):
        return [f"Enter an object such as {example}, or leave it empty."]
    unknown = sorted(set(spec) - CORRECTION_KEYS)
    if unknown:
        known = ", ".join(sorted(CORRECTION_KEYS))
        return [f"Unknown key {unknown[0]!r}; the keys are {known}."]
    problems: list[str] = []
    method = spec.get("method")
    if method not in CORRECTION_METHODS:
        problems.append(f"method must be one of {', '.join(CORRECTION_METHODS)}.")
    url = spec.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append("url must be an http:// or https:// URL.")
    elif len(url or "") > 2000:
        problems.append("url may be at most 2000 characters.")
    else:
        problems += [m for _, m in destination_problems("url", parts.hostname)]
    if spec.get("http_method", "POST") not in FeedbackConfig.HttpMethod.values:
        problems.append(
            f"http_method must be one of {', '.join(FeedbackConfig.HttpMethod.values)}."
        )
    if method == FeedbackConfig.Method.SOAP and not spec.get("soap_operation"):
        problems.append("A SOAP request needs soap_operation, the operation to call.")
    mappings = spec.get("mappings")
    if not isinstance(mappings, list) or not mappings:
        problems.append(
            'mappings must list at least one {"target": …, "value": …} row.'
        )
        return problems
    for number, mapping in enumerate(mappings, start=1):
        if (
            not isinstance(mapping, dict)
            or set(mapping) != {"target", "value"}
            or not isinstance(mapping["target"], str)
            or not mapping["target"].strip()
            or len(mapping["target"]) > 500
            or not isinstance(mapping["value"], str)
            or len(mapping["value"]) > 5000
        ):
            problems.append(
                f'Mapping {number} must be {{"target": …, "value": …}} with a '
                "target of 1 to 500 characters and a value of at most 5000."
            )
            continue
        problem = templating.validate(
            mapping["value"],
            variables=sample_correction_variables(action=CORRECTION_FIELDS[field]),
        )
        if problem:
            problems.append(f"Mapping {mapping['target']!r}: {problem}")
    return problems


def feedback_config_validate(config: FeedbackConfig) -> None:
    """ValidationError naming each field that is wrong, for forms and imports."""
    problems = feedback_config_problems(config)
    if problems:
        raise ValidationError(problems)


def field_mapping_problem(mapping: FieldMapping) -> str | None:
    """Why a mapping's value template cannot render, as a sentence, or None."""
    problem = templating.validate(mapping.value)
    return f"This template does not work: {problem}" if problem else None


def feedback_config_enable(*, config: FeedbackConfig) -> FeedbackConfig:
    """Switch a config on again and forget why Leadback switched it off.

    One UPDATE, so it needs no transaction of its own; it joins the caller's.
    """
    config.enabled = True
    config.disabled_reason = ""
    config.save(update_fields=["enabled", "disabled_reason", "updated_at"])
    return config
