"""SOAP through zeep against a real spyne service: what spyne decoded is the proof.

spyne only generates SOAP 1.1 WSDLs; the SOAP 1.2 tests use the handwritten WSDL
SoapServer serves at both_wsdl_url (a 1.1 and a 1.2 port for the same service).
"""

import base64
import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from lxml import etree
from standardwebhooks import Webhook

from sources.outbound import soap
from sources.outbound.guard import guarded_session
from sources.outbound.sending import send
from sources.outbound.signing import generate_secret
from sources.outbound.soap import (
    SoapFault,
    SoapResponseError,
    WsdlError,
    clear_wsdl_cache,
    parse_soap_response,
    soap_client,
)
from sources.transports.building import Auth, BuildError, RequestSpec, build_request
from tests.sources.servers import (
    RecordingServer,
    Reply,
    SoapCall,
    SoapServer,
)

NOW = datetime(2026, 3, 1, 12, 30, 45, tzinfo=UTC)
MESSAGE_ID = "ntf_01JNQ8ZJ3K"
WSSE = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
)
WSU = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
)
SOAP_12_ENV = "http://www.w3.org/2003/05/soap-envelope"
RETURN_FIELDS = [
    ("EventId", "E-1"),
    ("Reason", "Wrong <number> & Zoë"),
    ("Amount", "12.50"),
]


@pytest.fixture(autouse=True)
def allow_loopback(settings: Any) -> Iterator[None]:
    settings.LEADBACK_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    clear_wsdl_cache()
    yield
    clear_wsdl_cache()


@pytest.fixture
def server() -> Iterator[SoapServer]:
    with SoapServer() as server:
        yield server


def client_for(url: str) -> Any:
    return soap_client(url, session=guarded_session(), timeout=5)


def build(spec: RequestSpec, fields: list[tuple[str, str]], now: datetime = NOW) -> Any:
    return build_request(
        spec, fields, message_id=MESSAGE_ID, now=now, soap_client=client_for(spec.url)
    )


def spec_for(url: str, operation: str = "RecordReturn", **kwargs: Any) -> RequestSpec:
    return RequestSpec("soap", url, soap_operation=operation, **kwargs)


def test_soap11_call_is_decoded_by_spyne(server: SoapServer) -> None:
    request = build(spec_for(server.wsdl_url), RETURN_FIELDS)

    assert request.method == "POST"
    assert request.url == f"{server.base_url}/soap11"
    assert request.headers == {
        "SOAPAction": '"RecordReturn"',
        "Content-Type": "text/xml; charset=utf-8",
        "webhook-id": MESSAGE_ID,
    }
    assert request.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')

    response = send(request, timeout_s=5)

    assert response.status == 200
    assert server.calls == [
        SoapCall(
            "RecordReturn",
            {
                "EventId": "E-1",
                "Reason": "Wrong <number> & Zoë",
                "Amount": Decimal("12.50"),
            },
        )
    ]
    assert server.posts()[0].header("Soapaction") == '"RecordReturn"'
    assert parse_soap_response(
        client_for(server.wsdl_url), "RecordReturn", response.body
    ) == {
        "Status": "ok",
        "Message": "return E-1 recorded",
    }


def test_dotted_paths_fill_complex_arguments(server: SoapServer) -> None:
    request = build(
        spec_for(server.wsdl_url, "RecordConversion"),
        [
            ("EventId", "E-2"),
            ("Contact.Email", "ann@example.com"),
            ("Contact.Phones.string.1", "5125550101"),
            ("Contact.Phones.string.0", "5125550100"),
            ("Amount", "99.95"),
        ],
    )

    response = send(request, timeout_s=5)

    assert response.status == 200
    assert server.calls == [
        SoapCall(
            "RecordConversion",
            {
                "EventId": "E-2",
                "Contact": {
                    "Email": "ann@example.com",
                    "Phones": ["5125550100", "5125550101"],
                },
                "Amount": Decimal("99.95"),
            },
        )
    ]


def test_soap12_uses_the_wsdls_soap12_port(server: SoapServer) -> None:
    request = build(spec_for(server.both_wsdl_url, soap_version="1.2"), RETURN_FIELDS)

    assert request.url == f"{server.base_url}/soap12"
    assert request.headers == {
        "Content-Type": 'application/soap+xml; charset=utf-8; action="RecordReturn"',
        "webhook-id": MESSAGE_ID,
    }
    assert etree.QName(etree.fromstring(request.body)).namespace == SOAP_12_ENV

    response = send(request, timeout_s=5)

    assert response.status == 200
    received = server.posts()[0]
    assert received.path == "/soap12"
    assert received.header("Soapaction") is None
    assert server.calls == [
        SoapCall(
            "RecordReturn",
            {
                "EventId": "E-1",
                "Reason": "Wrong <number> & Zoë",
                "Amount": Decimal("12.50"),
            },
        )
    ]
    client = client_for(server.both_wsdl_url)
    assert parse_soap_response(client, "RecordReturn", response.body) == {
        "Status": "ok",
        "Message": "return E-1 recorded",
    }


def test_soap11_from_a_wsdl_with_both_versions(server: SoapServer) -> None:
    request = build(spec_for(server.both_wsdl_url, soap_version="1.1"), RETURN_FIELDS)

    send(request, timeout_s=5)

    assert request.url == f"{server.base_url}/soap11"
    assert server.posts()[0].path == "/soap11"
    assert len(server.calls) == 1


def test_a_version_the_wsdl_lacks_is_refused(server: SoapServer) -> None:
    with pytest.raises(BuildError, match=r"The WSDL has no SOAP 1\.2 port"):
        build(spec_for(server.wsdl_url, soap_version="1.2"), RETURN_FIELDS)


def wsse_token(body: bytes) -> etree._Element:
    token = etree.fromstring(body).find(f".//{{{WSSE}}}UsernameToken")
    assert token is not None
    return token


def test_wsse_password_text_reaches_the_service(server: SoapServer) -> None:
    auth = Auth(type="wsse", username="partner", password="s3cret")
    request = build(spec_for(server.wsdl_url, auth=auth), RETURN_FIELDS)

    response = send(request, timeout_s=5)

    assert response.status == 200
    token = wsse_token(server.posts()[0].body)
    assert token.findtext(f"{{{WSSE}}}Username") == "partner"
    password = token.find(f"{{{WSSE}}}Password")
    assert password is not None
    assert password.text == "s3cret"
    assert password.get("Type", "").endswith("#PasswordText")
    assert len(server.calls) == 1


def test_wsse_password_digest_is_correct(server: SoapServer) -> None:
    auth = Auth(
        type="wsse", username="partner", password="s3cret", password_digest=True
    )
    request = build(spec_for(server.wsdl_url, auth=auth), RETURN_FIELDS)

    send(request, timeout_s=5)

    token = wsse_token(server.posts()[0].body)
    password = token.find(f"{{{WSSE}}}Password")
    assert password is not None
    assert password.get("Type", "").endswith("#PasswordDigest")
    nonce = base64.b64decode(token.findtext(f"{{{WSSE}}}Nonce") or "")
    created = token.findtext(f"{{{WSU}}}Created") or ""
    assert created == "2026-03-01T12:30:45+00:00"
    expected = hashlib.sha1(nonce + created.encode() + b"s3cret").digest()  # noqa: S324
    assert password.text == base64.b64encode(expected).decode()
    assert "s3cret" not in server.posts()[0].body.decode()


def test_http_auth_and_signature_apply_to_soap_too(server: SoapServer) -> None:
    secret = generate_secret()
    spec = spec_for(
        server.wsdl_url,
        auth=Auth(type="bearer", token="tok_1"),
        signing_secret=secret,
    )
    request = build(spec, RETURN_FIELDS, now=datetime.now(UTC))

    send(request, timeout_s=5)

    received = server.posts()[0]
    assert received.header("Authorization") == "Bearer tok_1"
    Webhook(secret).verify(received.body, received.header_dict, json_parse=False)
    assert len(server.calls) == 1


@pytest.mark.parametrize(
    ("version", "code"),
    [("1.1", "Client.UnknownEvent"), ("1.2", "Sender.UnknownEvent")],
)
def test_faults_are_read(server: SoapServer, version: str, code: str) -> None:
    spec = spec_for(server.both_wsdl_url, soap_version=version)
    request = build(spec, [("EventId", "unknown")])

    response = send(request, timeout_s=5)

    assert response.status == 500
    result = parse_soap_response(client_for(spec.url), "RecordReturn", response.body)
    assert result == SoapFault(code=code, message="No such event")


def test_unknown_operation_names_the_known_ones(server: SoapServer) -> None:
    with pytest.raises(BuildError) as excinfo:
        build(spec_for(server.wsdl_url, "RecordStatus"), RETURN_FIELDS)

    assert str(excinfo.value) == (
        "The WSDL has no operation 'RecordStatus' "
        "(it has: RecordConversion, RecordReturn)."
    )


def test_unknown_argument_is_refused(server: SoapServer) -> None:
    with pytest.raises(BuildError, match="SOAP arguments for RecordReturn"):
        build(spec_for(server.wsdl_url), [("EventId", "E-1"), ("Colour", "red")])


def test_numbered_top_level_arguments_are_refused(server: SoapServer) -> None:
    with pytest.raises(BuildError, match="named, not numbered"):
        build(spec_for(server.wsdl_url), [("0", "E-1")])


def test_the_wsdl_is_loaded_once(server: SoapServer) -> None:
    client_for(server.wsdl_url)
    client_for(server.wsdl_url)
    wsdl_gets = [r for r in server.requests if r.method == "GET"]
    assert len(wsdl_gets) == 1

    clear_wsdl_cache()
    client_for(server.wsdl_url)

    assert len([r for r in server.requests if r.method == "GET"]) == 2


def test_wsdl_on_an_internal_address_is_refused(
    server: SoapServer, settings: Any
) -> None:
    settings.LEADBACK_OUTBOUND_ALLOWLIST = []

    with pytest.raises(
        WsdlError, match=re.escape("Refused by the SSRF guard: 127.0.0.1")
    ):
        client_for(server.wsdl_url)
    assert server.requests == []


def test_local_files_are_never_loaded() -> None:
    with pytest.raises(WsdlError, match="Only http and https documents load"):
        client_for("file:///etc/hostname")
    with pytest.raises(WsdlError, match="Only http and https documents load"):
        client_for("/etc/hostname")


def test_a_wsdl_cannot_import_local_files() -> None:
    wsdl = b"""<?xml version="1.0"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:x">
  <wsdl:types>
    <xs:schema targetNamespace="urn:x">
      <xs:import namespace="urn:y" schemaLocation="file:///etc/hostname"/>
    </xs:schema>
  </wsdl:types>
</wsdl:definitions>"""
    with (
        RecordingServer(Reply(body=wsdl)) as server,
        pytest.raises(WsdlError) as excinfo,
    ):
        client_for(server.url("/evil.wsdl"))

    assert str(excinfo.value) == (
        "Could not load the WSDL: Refused by the SSRF guard: Only http and https "
        "documents load: 'file:///etc/hostname'."
    )


@pytest.mark.parametrize("status", [302, 404])
def test_a_wsdl_answering_other_than_200_is_an_error(status: int) -> None:
    reply = Reply(status=status, headers={"Location": "http://169.254.169.254/"})
    with RecordingServer(reply) as server:
        with pytest.raises(WsdlError, match=f"answered HTTP {status}"):
            client_for(server.url("/service.wsdl"))
        assert len(server.requests) == 1


def test_a_body_that_is_not_soap_is_an_error(server: SoapServer) -> None:
    client = client_for(server.wsdl_url)

    with pytest.raises(SoapResponseError, match="not a SOAP envelope"):
        parse_soap_response(client, "RecordReturn", b"<html><body>Oops</body></html>")
    with pytest.raises(SoapResponseError, match="DOCTYPE"):
        parse_soap_response(
            client,
            "RecordReturn",
            b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
        )


def test_an_oversized_wsdl_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(soap, "WSDL_MAX_BYTES", 1000)

    with (
        RecordingServer(Reply(body=b"<x>" + b" " * 2000 + b"</x>")) as server,
        pytest.raises(WsdlError, match="is larger than 1000 bytes"),
    ):
        client_for(server.url("/huge.wsdl"))
