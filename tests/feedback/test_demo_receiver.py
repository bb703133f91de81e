"""The built-in demo receiver (`make demo`'s pretend source): what it answers, and
the demo's configs delivering to it through the real engine, zeep included."""

import itertools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from lxml import etree

from feedback.demo.data import DEMO_CONFIGS, PRINTED_BUYER, ConfigSpec
from feedback.demo.receiver import (
    NAMESPACE,
    REJECT_MESSAGE,
    SOAP_ENV,
    Verdict,
    json_verdict,
)
from feedback.forwarding import tasks
from feedback.forwarding.engine import notifications_deliver_due
from feedback.forwarding.models import Notification
from feedback.models import DeliveryEvent, Feedback
from sources.models import FeedbackConfig, FieldMapping, Kind, Source
from sources.outbound.responses import parse_soap_envelope
from sources.outbound.soap import clear_wsdl_cache
from sources.outbound.types import Outcome
from sources.services import feedback_config_build_request, feedback_config_send
from tests.factories import DeliveryEventFactory

ROOT = Path(__file__).resolve().parents[2]
RECEIVER_URLS = "tests.feedback.demo_receiver_urls"
JSON_URL = "/demo/receiver/json/"
XML_URL = "/demo/receiver/xml/"
SOAP_URL = "/demo/receiver/soap/"
WSDL_NS = {
    "wsdl": "http://schemas.xmlsoap.org/wsdl/",
    "soap": "http://schemas.xmlsoap.org/wsdl/soap/",
}


@pytest.fixture
def receiver(settings: Any) -> Iterator[Any]:
    settings.ROOT_URLCONF = RECEIVER_URLS
    settings.LEADBACK_DEMO_RECEIVER = True
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    clear_wsdl_cache()
    yield settings
    clear_wsdl_cache()


@pytest.fixture
def live_base(live_server: Any, receiver: Any) -> str:
    # The SSRF guard is allow-listed for 127.0.0.1 only, as in the demo.
    return str(live_server.url).replace("localhost", "127.0.0.1")


def event_with(verdict: Verdict) -> str:
    return next(
        event_id
        for number in itertools.count()
        if json_verdict(event_id := f"{number:024x}") == verdict
    )


def post_json(client: Client, data: object, **headers: str) -> Any:
    return client.post(
        JSON_URL,
        data=json.dumps(data),
        content_type="application/json",
        headers=headers,
    )


def soap_envelope(call: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}" xmlns:d="{NAMESPACE}">'
        f"<soap:Body>{call}</soap:Body></soap:Envelope>"
    ).encode()


def post_soap(client: Client, body: bytes) -> Any:
    return client.post(SOAP_URL, data=body, content_type="text/xml; charset=utf-8")


# Switched off ---------------------------------------------------------------------


def test_not_routed_by_default(client: Client) -> None:
    assert (
        client.post(JSON_URL, data="{}", content_type="text/plain").status_code == 404
    )
    assert client.get(f"{SOAP_URL}?wsdl").status_code == 404


def test_every_view_answers_404_when_switched_off(client: Client, receiver: Any):
    receiver.LEADBACK_DEMO_RECEIVER = False

    assert post_json(client, {"event_id": "E-1"}).status_code == 404
    assert (
        client.post(XML_URL, data=b"<a/>", content_type="text/xml").status_code == 404
    )
    assert client.get(f"{SOAP_URL}?wsdl").status_code == 404


def test_routed_when_switched_on_at_start_up(tmp_path: Path) -> None:
    code = (
        "from django.urls import reverse; "
        "print(reverse('demo-receiver:json'), reverse('demo-receiver:xml'), "
        "reverse('demo-receiver:soap'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env |= {"LEADBACK_DEMO_RECEIVER": "true", "LEADBACK_VAR_DIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1].split() == [JSON_URL, XML_URL, SOAP_URL]


# JSON -----------------------------------------------------------------------------


def test_json_accepts_an_event_with_a_stable_id(client: Client, receiver: Any):
    event_id = event_with(Verdict.ACCEPT)

    first = post_json(client, {"event_id": event_id}, **{"webhook-id": "msg_1"})
    again = post_json(client, {"event_id": event_id}, **{"webhook-id": "msg_1"})

    assert first.status_code == 200
    assert first.json()["status"] == "accepted"
    assert first.json()["id"].startswith("J-")
    assert again.json() == first.json()


def test_json_refuses_some_events_every_time(client: Client, receiver: Any):
    event_id = event_with(Verdict.REJECT)

    for _ in range(2):
        response = post_json(client, {"event_id": event_id, "lead": {"id": "L-1"}})
        assert response.status_code == 200
        assert response.json() == {"status": "rejected", "message": REJECT_MESSAGE}


def test_json_is_unavailable_once_for_some_notifications(client: Client, receiver: Any):
    event_id = event_with(Verdict.UNAVAILABLE)
    headers = {"webhook-id": f"msg_{uuid.uuid4().hex}"}

    first = post_json(client, {"event_id": event_id}, **headers)
    retry = post_json(client, {"event_id": event_id}, **headers)

    assert first.status_code == 503
    assert first["Retry-After"] == "5"
    assert retry.status_code == 200
    assert retry.json()["status"] == "accepted"


def test_json_verdicts_are_a_small_deterministic_share() -> None:
    verdicts = [json_verdict(f"{n:024x}") for n in range(5000)]

    assert 0.04 <= verdicts.count(Verdict.REJECT) / 5000 <= 0.06
    assert 0.02 <= verdicts.count(Verdict.UNAVAILABLE) / 5000 <= 0.04
    assert verdicts == [json_verdict(f"{n:024x}") for n in range(5000)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"event_id=E-1", "Body is not JSON"),
        (b'["E-1"]', "event_id is required"),
        (b'{"event_id": ""}', "event_id is required"),
        (b'{"event_id": 12}', "event_id is required"),
    ],
)
def test_json_refuses_bad_input(client: Client, receiver: Any, body, message):
    response = client.post(JSON_URL, data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"status": "rejected", "message": message}


def test_json_is_post_only_csrf_exempt_and_capped(receiver: Any) -> None:
    client = Client(enforce_csrf_checks=True)

    assert client.get(JSON_URL).status_code == 405
    assert post_json(client, {"event_id": "E-1"}).status_code in (200, 503)
    large = post_json(client, {"event_id": "E-1", "note": "x" * 70_000})
    assert large.status_code == 413


# XML ------------------------------------------------------------------------------


def test_xml_answers_ok_with_an_id(client: Client, receiver: Any) -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<feedback><event_id>E-1</event_id>'
        b'<lead id="demo-000001"/><reason>Bad phone</reason></feedback>'
    )

    response = client.post(XML_URL, data=body, content_type="application/xml")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/xml; charset=utf-8"
    root = etree.fromstring(response.content)
    assert root.tag == "response"
    assert root.findtext("status") == "ok"
    assert root.findtext("id").startswith("X-")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not xml", "Body is not well-formed XML"),
        (
            b'<!DOCTYPE f [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b"<feedback><event_id>&e;</event_id></feedback>",
            "Body is not well-formed XML",
        ),
        (b"<feedback><reason>Bad phone</reason></feedback>", "event_id is required"),
    ],
)
def test_xml_refuses_bad_input(client: Client, receiver: Any, body, message):
    response = client.post(XML_URL, data=body, content_type="application/xml")

    assert response.status_code == 400
    root = etree.fromstring(response.content)
    assert (root.findtext("status"), root.findtext("message")) == ("rejected", message)


def test_xml_is_post_only(client: Client, receiver: Any) -> None:
    assert client.get(XML_URL).status_code == 405


# SOAP -----------------------------------------------------------------------------


def test_the_wsdl_addresses_the_host_it_was_asked_from(client: Client, receiver):
    response = client.get(f"{SOAP_URL}?wsdl", headers={"host": "127.0.0.1:8000"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/xml; charset=utf-8"
    wsdl = etree.fromstring(response.content)
    location = wsdl.find(".//wsdl:service/wsdl:port/soap:address", WSDL_NS)
    assert location.get("location") == "http://127.0.0.1:8000/demo/receiver/soap/"
    binding = wsdl.find(".//soap:binding", WSDL_NS)
    assert binding.get("style") == "document"
    operations = wsdl.findall(".//wsdl:portType/wsdl:operation", WSDL_NS)
    assert [op.get("name") for op in operations] == ["RecordConversion"]


def test_soap_is_post_only_besides_the_wsdl(client: Client, receiver: Any) -> None:
    assert client.get(SOAP_URL).status_code == 405
    assert client.put(SOAP_URL, data=b"").status_code == 405


def test_soap_answers_a_response_envelope(client: Client, receiver: Any) -> None:
    call = (
        "<d:RecordConversion><d:EventId>E-1</d:EventId><d:Amount>1250.00</d:Amount>"
        "<d:Reason/></d:RecordConversion>"
    )

    response = post_soap(client, soap_envelope(call))

    assert response.status_code == 200
    result = parse_soap_envelope(response.content)
    assert result is not None
    assert not result.is_fault
    assert result.values is not None
    assert result.values["RecordConversionResponse.Status"] == "Accepted"
    assert result.values["RecordConversionResponse.Message"] == (
        "Conversion recorded (1250.00)"
    )
    assert result.values["RecordConversionResponse.ConfirmationId"].startswith("S-")


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            soap_envelope(
                "<d:RecordReturn><d:EventId>E-1</d:EventId></d:RecordReturn>"
            ),
            "soap:Client",
            "Unknown operation 'RecordReturn'.",
        ),
        (
            soap_envelope("<d:RecordConversion><d:EventId/></d:RecordConversion>"),
            "soap:Client.MissingEventId",
            "EventId is required.",
        ),
        (
            soap_envelope(
                "<d:RecordConversion><d:EventId>E-1</d:EventId>"
                "<d:Amount>-5</d:Amount></d:RecordConversion>"
            ),
            "soap:Client.InvalidAmount",
            "Amount must be a number, not negative.",
        ),
        (b"<not-soap/>", "soap:Client", "The request is not a SOAP 1.1 envelope."),
        (b"{}", "soap:Client", "The request is not well-formed XML."),
    ],
)
def test_soap_faults_blame_the_client_for_bad_input(
    client: Client, receiver: Any, body: bytes, code: str, message: str
) -> None:
    response = post_soap(client, body)

    assert response.status_code == 500
    result = parse_soap_envelope(response.content)
    assert result is not None
    assert (result.fault_code, result.fault_message) == (code, message)
    assert result.is_client_fault


def test_soap_12_gets_a_version_mismatch(client: Client, receiver: Any) -> None:
    body = (
        b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/>'
        b"</e:Envelope>"
    )

    result = parse_soap_envelope(post_soap(client, body).content)

    assert result is not None
    assert result.fault_code == "soap:VersionMismatch"
    assert not result.is_client_fault


def _spec(source: str, kind: Kind) -> ConfigSpec:
    return next(s for s in DEMO_CONFIGS if (s.source, s.kind) == (source, kind))


def _unsaved_config(spec: ConfigSpec, base: str) -> FeedbackConfig:
    return FeedbackConfig(
        source=Source(slug=spec.source, name=spec.source),
        kind=spec.kind,
        method=spec.method,
        url=f"{base}/demo/receiver/{spec.endpoint}",
        soap_operation=spec.soap_operation,
        outcome_search_term=spec.outcome_search_term,
        outcome_search_path=spec.outcome_search_path,
        reason_path=spec.reason_path,
        reference_path=spec.reference_path,
    )


@pytest.mark.parametrize(
    ("event_id", "revenue", "outcome", "reason"),
    [
        ("E-1", "1250.00", Outcome.SUCCESS, "Conversion recorded (1250.00)"),
        ("E-2", "", Outcome.SUCCESS, "Conversion recorded"),
        ("", "1250.00", Outcome.FAILURE, "EventId is required."),
    ],
)
def test_soap_through_zeep_and_the_config_send_path(
    live_base: str, event_id: str, revenue: str, outcome: Outcome, reason: str
) -> None:
    spec = _spec("bluesky-leads", Kind.CONVERSION)
    config = _unsaved_config(spec, live_base)
    mappings = [
        FieldMapping(config=config, position=n, target=target, value=value)
        for n, (target, value) in enumerate(spec.mappings)
    ]
    variables = {"event": {"id": event_id}, "feedback": {"revenue": revenue}}

    request = feedback_config_build_request(
        config=config, variables=variables, message_id="msg_soap", mappings=mappings
    )
    response, interpretation = feedback_config_send(config=config, request=request)

    assert request.url == f"{live_base}{SOAP_URL}"
    assert request.headers["SOAPAction"] == f'"{NAMESPACE}/RecordConversion"'
    assert f"<ns0:Amount>{revenue}</ns0:Amount>".encode() in request.body
    assert response.status == (200 if outcome == Outcome.SUCCESS else 500)
    assert (interpretation.outcome, interpretation.reason) == (outcome, reason)
    if outcome == Outcome.SUCCESS:
        assert interpretation.reference.startswith("S-")


# The demo, end to end -------------------------------------------------------------


@pytest.fixture
def fast_password_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def broker_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """No broker in these tests: intake's fast path fails to queue and releases its
    claim, and the test delivers in-process, as `deliver_notifications --once`."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise ConnectionError("no broker in this test")

    monkeypatch.setattr(tasks.deliver_notifications_task, "delay", refuse)


@pytest.fixture
def demo(
    live_base: str, fast_password_hasher: None, broker_down: None
) -> dict[str, str]:
    out = StringIO()
    call_command("seed_demo", "--leads", "400", "--base-url", live_base, stdout=out)
    output = out.getvalue()
    key = next(
        line.split()[2] for line in output.splitlines() if line.startswith("API key")
    )
    return {"key": key, "output": output, "base": live_base}


def post_feedback(client: Client, key: str, event_id: str, data: dict[str, str]):
    return client.post(
        f"/feedback?event_id={event_id}",
        data=urlencode(data),
        content_type="application/x-www-form-urlencoded",
        headers={"x-api-key": key},
    )


def feedback_data(source: Source, kind: Kind) -> dict[str, str]:
    if kind == Kind.RETURN:
        return {"type": "return", "reason": source.return_reasons[0]}
    return {"type": "conversion", "revenue": "1250.00"}


def fresh_demo_delivery(source_slug: str) -> DeliveryEvent:
    """A recent demo delivery of the printed buyer with no feedback, whose event
    the JSON receiver accepts."""
    candidates = DeliveryEvent.objects.filter(
        buyer__slug=PRINTED_BUYER,
        source__slug=source_slug,
        delivered_at__gte=timezone.now() - timedelta(days=60),
        feedback__isnull=True,
    ).order_by("-delivered_at")
    return next(d for d in candidates if json_verdict(d.event_id) == Verdict.ACCEPT)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "spec", DEMO_CONFIGS, ids=lambda s: f"{s.source}-{s.kind}-{s.method}"
)
def test_new_feedback_for_a_demo_source_reaches_the_receiver(
    client: Client, demo: dict[str, str], spec: ConfigSpec
) -> None:
    delivery = fresh_demo_delivery(spec.source)

    response = post_feedback(
        client,
        demo["key"],
        delivery.event_id,
        feedback_data(delivery.source, spec.kind),
    )

    assert response.status_code == 201, response.content
    assert response.json()["outcome"] == "success"
    assert notifications_deliver_due() == 1
    # Northwind's conversions also go into its daily file (a batch config).
    notification = (
        Notification.objects.select_related("config")
        .exclude(config__method="batch")
        .get(feedback__delivery=delivery)
    )
    assert notification.status == Notification.Status.SUCCEEDED, notification.reason
    assert notification.config.method == spec.method
    assert notification.reference
    attempt = notification.attempts.get()
    assert (attempt.number, attempt.outcome, attempt.response_status) == (
        1,
        "success",
        200,
    )
    assert attempt.request_url.startswith(f"{demo['base']}/demo/receiver/")
    assert delivery.event_id in attempt.request_body


@pytest.mark.django_db(transaction=True)
def test_the_demo_receiver_also_refuses_and_asks_for_retries(
    client: Client, demo: dict[str, str], receiver: Any
) -> None:
    source = Source.objects.get(slug="bluesky-leads")
    acme = DeliveryEvent.objects.filter(buyer__slug=PRINTED_BUYER).first()
    assert acme is not None
    refused, unavailable = (
        DeliveryEventFactory(
            buyer=acme.buyer,
            lead__source=source,
            lead__flow=acme.flow,
            event_id=event_with(verdict),
        )
        for verdict in (Verdict.REJECT, Verdict.UNAVAILABLE)
    )
    for delivery in (refused, unavailable):
        response = post_feedback(
            client, demo["key"], delivery.event_id, feedback_data(source, Kind.RETURN)
        )
        assert response.status_code == 201, response.content

    assert notifications_deliver_due() == 2

    failed = Notification.objects.get(feedback__delivery=refused)
    assert (failed.status, failed.reason) == (
        Notification.Status.FAILED,
        REJECT_MESSAGE,
    )
    retrying = Notification.objects.get(feedback__delivery=unavailable)
    assert retrying.status == Notification.Status.RETRYING
    assert retrying.attempts.get().response_status == 503
    # The retry comes due (Retry-After: 5) and goes through.
    Notification.objects.filter(pk=retrying.pk).update(next_attempt_at=timezone.now())
    assert notifications_deliver_due() == 1
    retrying.refresh_from_db()
    assert retrying.status == Notification.Status.SUCCEEDED
    assert [a.response_status for a in retrying.attempts.order_by("number")] == [
        503,
        200,
    ]
    assert Feedback.objects.filter(delivery__in=[refused, unavailable]).count() == 2


def test_the_demo_configs_cover_json_xml_and_soap() -> None:
    assert {spec.method for spec in DEMO_CONFIGS} == {"json", "xml", "soap"}
