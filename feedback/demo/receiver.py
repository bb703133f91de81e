"""The built-in demo receiver: a pretend lead source for `make demo` to forward to.

The demo's feedback configs (feedback/demo/data.py) point here, so a running demo shows
real deliveries, with their attempts, in the admin. Three endpoints under
`/demo/receiver/` answer the way real sources do:

- `json/` takes a JSON object with an `event_id` and answers
  `{"status": "accepted", "id": ...}`. Like a real source it is not always happy:
  about 5% of events (chosen by a hash of the event id, so always the same ones)
  are refused with `{"status": "rejected", "message": "Duplicate lead"}`, and about
  3% of notifications get a 503 on their first try and are accepted when retried.
- `xml/` takes an XML document whose root has an `event_id` child and answers
  `<response><status>ok</status><id>...</id></response>`.
- `soap/` is a SOAP 1.1 document/literal service with one operation,
  `RecordConversion(EventId, Amount, Reason) -> Status, Message, ConfirmationId`;
  its hand-written WSDL is at `soap/?wsdl`, with the service address taken from
  the request's host. Bad input gets a Client fault.

It is routed only when LEADBACK_DEMO_RECEIVER is on (config/urls.py), and every
view answers 404 when it is off, whatever the URLconf. Bodies are capped and
parsed safely (safexml); nothing is stored, and nothing from a body but the event
id is logged. SOAP is parsed here by hand rather than with a SOAP library: spyne is
a development dependency only, and one fixed operation needs no more.
"""

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import wraps
from xml.sax.saxutils import quoteattr

from django.conf import settings
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    JsonResponse,
)
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from lxml import etree

from sources.outbound.safexml import UnsafeXmlError, parse_xml

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
REJECT_PERCENT = 5
UNAVAILABLE_PERCENT = 3
REJECT_MESSAGE = "Duplicate lead"
# Notifications already answered 503 once (by webhook-id): their retry succeeds.
# Kept in memory, bounded: the demo serves from one process.
MAX_REMEMBERED = 10_000

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_12_ENV = "http://www.w3.org/2003/05/soap-envelope"
NAMESPACE = "urn:leadback:demo-receiver"
SOAP_OPERATION = "RecordConversion"
SOAP_ACTION = f"{NAMESPACE}/{SOAP_OPERATION}"

View = Callable[[HttpRequest], HttpResponse]


class Verdict(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    UNAVAILABLE = "unavailable"


def json_verdict(event_id: str) -> Verdict:
    """What the JSON endpoint does with an event: the same answer every time."""
    bucket = int(hashlib.sha256(event_id.encode()).hexdigest()[:8], 16) % 100
    if bucket < REJECT_PERCENT:
        return Verdict.REJECT
    if bucket < REJECT_PERCENT + UNAVAILABLE_PERCENT:
        return Verdict.UNAVAILABLE
    return Verdict.ACCEPT


class _Remembered:
    """A bounded, thread-safe set (runserver answers from several threads)."""

    def __init__(self, limit: int) -> None:
        self._items: OrderedDict[str, None] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def add(self, key: str) -> bool:
        """Remember `key`; False when it was already remembered."""
        with self._lock:
            if key in self._items:
                return False
            self._items[key] = None
            while len(self._items) > self._limit:
                self._items.popitem(last=False)
            return True


_answered_unavailable = _Remembered(MAX_REMEMBERED)


def _confirmation_id(prefix: str, request: HttpRequest, event_id: str) -> str:
    # Stable for one notification (its webhook-id), so a retry gets the same id.
    key = request.headers.get("webhook-id") or event_id
    return f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:12].upper()}"


class _TooLarge(Exception):
    pass


def _body(request: HttpRequest) -> bytes:
    """The request body, refused (before reading it all) beyond MAX_BODY_BYTES."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        raise _TooLarge
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise _TooLarge
    return body


def _enabled(view: View) -> View:
    @wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        if not settings.LEADBACK_DEMO_RECEIVER:
            raise Http404
        return view(request)

    return wrapper


# JSON -----------------------------------------------------------------------------


@csrf_exempt
@_enabled
@require_POST
def json_receiver(request: HttpRequest) -> HttpResponse:
    try:
        data = json.loads(_body(request))
    except _TooLarge:
        return _json_refusal("Body too large", status=413)
    except ValueError:
        return _json_refusal("Body is not JSON", status=400)
    event_id = data.get("event_id") if isinstance(data, dict) else None
    if not isinstance(event_id, str) or not event_id.strip():
        return _json_refusal("event_id is required", status=400)
    verdict = json_verdict(event_id)
    key = request.headers.get("webhook-id") or event_id
    if verdict == Verdict.UNAVAILABLE and _answered_unavailable.add(key):
        logger.info("demo receiver json: 503 for event %s", event_id)
        response = JsonResponse(
            {"status": "error", "message": "Temporarily unavailable"}, status=503
        )
        response["Retry-After"] = "5"
        return response
    if verdict == Verdict.REJECT:
        logger.info("demo receiver json: rejected event %s", event_id)
        return JsonResponse({"status": "rejected", "message": REJECT_MESSAGE})
    logger.info("demo receiver json: accepted event %s", event_id)
    return JsonResponse(
        {"status": "accepted", "id": _confirmation_id("J", request, event_id)}
    )


def _json_refusal(message: str, *, status: int) -> JsonResponse:
    return JsonResponse({"status": "rejected", "message": message}, status=status)


# XML ------------------------------------------------------------------------------


@csrf_exempt
@_enabled
@require_POST
def xml_receiver(request: HttpRequest) -> HttpResponse:
    try:
        root = parse_xml(_body(request), max_bytes=MAX_BODY_BYTES)
    except _TooLarge:
        return _xml_answer({"status": "rejected", "message": "Body too large"}, 413)
    except UnsafeXmlError:
        message = "Body is not well-formed XML"
        return _xml_answer({"status": "rejected", "message": message}, 400)
    event_id = next(
        (
            (child.text or "").strip()
            for child in root
            if isinstance(child.tag, str) and etree.QName(child).localname == "event_id"
        ),
        "",
    )
    if not event_id:
        message = "event_id is required"
        return _xml_answer({"status": "rejected", "message": message}, 400)
    logger.info("demo receiver xml: accepted event %s", event_id)
    return _xml_answer(
        {"status": "ok", "id": _confirmation_id("X", request, event_id)}, 200
    )


def _xml_answer(fields: dict[str, str], status: int) -> HttpResponse:
    root = etree.Element("response")
    for name, value in fields.items():
        etree.SubElement(root, name).text = value
    return HttpResponse(
        etree.tostring(root, xml_declaration=True, encoding="UTF-8"),
        status=status,
        content_type="application/xml; charset=utf-8",
    )


# SOAP -----------------------------------------------------------------------------


WSDL = """<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions name="DemoReceiver"
    xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:tns="{namespace}"
    targetNamespace="{namespace}">
  <wsdl:documentation>Leadback demo receiver: records conversions</wsdl:documentation>
  <wsdl:types>
    <xs:schema targetNamespace="{namespace}" elementFormDefault="qualified">
      <xs:element name="{operation}">
        <xs:complexType>
          <xs:sequence>
            <xs:element name="EventId" type="xs:string"/>
            <xs:element name="Amount" type="xs:decimal" minOccurs="0"/>
            <xs:element name="Reason" type="xs:string" minOccurs="0"/>
          </xs:sequence>
        </xs:complexType>
      </xs:element>
      <xs:element name="{operation}Response">
        <xs:complexType>
          <xs:sequence>
            <xs:element name="Status" type="xs:string"/>
            <xs:element name="Message" type="xs:string"/>
            <xs:element name="ConfirmationId" type="xs:string" minOccurs="0"/>
          </xs:sequence>
        </xs:complexType>
      </xs:element>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="{operation}Request">
    <wsdl:part name="parameters" element="tns:{operation}"/>
  </wsdl:message>
  <wsdl:message name="{operation}Response">
    <wsdl:part name="parameters" element="tns:{operation}Response"/>
  </wsdl:message>
  <wsdl:portType name="ConversionPortType">
    <wsdl:operation name="{operation}">
      <wsdl:input message="tns:{operation}Request"/>
      <wsdl:output message="tns:{operation}Response"/>
    </wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="ConversionBinding" type="tns:ConversionPortType">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="{operation}">
      <soap:operation soapAction="{action}" style="document"/>
      <wsdl:input><soap:body use="literal"/></wsdl:input>
      <wsdl:output><soap:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="DemoReceiver">
    <wsdl:port name="ConversionPort" binding="tns:ConversionBinding">
      <soap:address location={address}/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"""


class _Fault(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@csrf_exempt
@_enabled
def soap_receiver(request: HttpRequest) -> HttpResponse:
    if request.method in ("GET", "HEAD") and "wsdl" in request.GET:
        # The address follows the host the WSDL was asked from (127.0.0.1:8000 in
        # the demo, the live server's port in tests); ALLOWED_HOSTS vets it.
        address = request.build_absolute_uri(request.path)
        document = WSDL.format(
            namespace=NAMESPACE,
            operation=SOAP_OPERATION,
            action=SOAP_ACTION,
            address=quoteattr(address),
        )
        return HttpResponse(document, content_type="text/xml; charset=utf-8")
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    envelope, body = _soap_envelope()
    try:
        event_id, amount = _soap_call(request)
    except _Fault as fault:
        logger.info("demo receiver soap: %s fault", fault.code)
        element = etree.SubElement(body, f"{{{SOAP_ENV}}}Fault")
        etree.SubElement(element, "faultcode").text = f"soap:{fault.code}"
        etree.SubElement(element, "faultstring").text = fault.message
        return _soap_answer(envelope, status=500)
    logger.info("demo receiver soap: accepted event %s", event_id)
    answer = etree.SubElement(
        body, f"{{{NAMESPACE}}}{SOAP_OPERATION}Response", nsmap={None: NAMESPACE}
    )
    message = "Conversion recorded" + (f" ({amount})" if amount is not None else "")
    for name, value in (
        ("Status", "Accepted"),
        ("Message", message),
        ("ConfirmationId", _confirmation_id("S", request, event_id)),
    ):
        etree.SubElement(answer, f"{{{NAMESPACE}}}{name}").text = value
    return _soap_answer(envelope, status=200)


def _soap_call(request: HttpRequest) -> tuple[str, Decimal | None]:
    """The event id and amount of a RecordConversion call, or a _Fault."""
    try:
        root = parse_xml(_body(request), max_bytes=MAX_BODY_BYTES)
    except _TooLarge:
        raise _Fault("Client", "The request is too large.") from None
    except UnsafeXmlError:
        raise _Fault("Client", "The request is not well-formed XML.") from None
    envelope = etree.QName(root)
    if envelope.localname != "Envelope" or envelope.namespace != SOAP_ENV:
        if envelope.namespace == SOAP_12_ENV:
            raise _Fault("VersionMismatch", "Only SOAP 1.1 is spoken here.")
        raise _Fault("Client", "The request is not a SOAP 1.1 envelope.")
    body = root.find(f"{{{SOAP_ENV}}}Body")
    children = [] if body is None else list(body)
    call = next((child for child in children if isinstance(child.tag, str)), None)
    if call is None:
        raise _Fault("Client", "The SOAP Body is empty.")
    if etree.QName(call).text != f"{{{NAMESPACE}}}{SOAP_OPERATION}":
        raise _Fault("Client", f"Unknown operation {etree.QName(call).localname!r}.")
    arguments = {
        etree.QName(child).localname: (child.text or "").strip()
        for child in call
        if isinstance(child.tag, str)
    }
    event_id = arguments.get("EventId", "")
    if not event_id:
        raise _Fault("Client.MissingEventId", "EventId is required.")
    amount = None
    if arguments.get("Amount"):
        try:
            amount = Decimal(arguments["Amount"])
        except InvalidOperation:
            amount = None
        if amount is None or not amount.is_finite() or amount < 0:
            raise _Fault(
                "Client.InvalidAmount", "Amount must be a number, not negative."
            )
    return event_id, amount


def _soap_envelope() -> tuple[etree._Element, etree._Element]:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
    return envelope, etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")


def _soap_answer(envelope: etree._Element, *, status: int) -> HttpResponse:
    return HttpResponse(
        etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"),
        status=status,
        content_type="text/xml; charset=utf-8",
    )


app_name = "demo-receiver"
urlpatterns = [
    path("json/", json_receiver, name="json"),
    path("xml/", xml_receiver, name="xml"),
    path("soap/", soap_receiver, name="soap"),
]
