"""build_request(): the exact bytes each method puts on the wire, and what it refuses.

Signatures are checked with the `standardwebhooks` package, not with our own code.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from sources.outbound.payloads import nest_fields
from sources.outbound.signing import generate_secret, sign
from sources.outbound.types import OutboundRequest
from sources.transports.building import (
    Auth,
    BuildError,
    RequestSpec,
    build_request,
    validate_headers,
)

NOW = datetime(2026, 3, 1, 12, 30, 45, tzinfo=UTC)
MESSAGE_ID = "ntf_01JNQ8ZJ3K"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DECL = b'<?xml version="1.0" encoding="UTF-8"?>\n'
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
XML = "application/xml; charset=utf-8"
URL = "https://src.example/feedback"


def signature(body: bytes) -> str:
    return Webhook(SECRET).sign(MESSAGE_ID, NOW, body.decode())


@dataclass
class Case:
    id: str
    spec: RequestSpec
    fields: list[tuple[str, str]]
    url: str
    body: bytes = b""
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)


def headers(content_type: str | None = None, **extra: str) -> dict[str, str]:
    result = {"Content-Type": content_type} if content_type else {}
    result.update({name.replace("_", "-"): value for name, value in extra.items()})
    result["webhook-id"] = MESSAGE_ID
    return result


CASES = [
    # -- query ---------------------------------------------------------------
    Case(
        "query",
        RequestSpec("query", URL),
        [("event_id", "E-1"), ("reason", "Wrong number")],
        url=URL + "?event_id=E-1&reason=Wrong+number",
        method="GET",
        headers=headers(),
    ),
    Case(
        "query-keeps-existing-params",
        RequestSpec("query", URL + "?key=abc&v=2#top"),
        [("event_id", "E-1")],
        url=URL + "?key=abc&v=2&event_id=E-1#top",
        method="GET",
        headers=headers(),
    ),
    Case(
        "query-dotted-name-stays-flat",
        RequestSpec("query", URL),
        [("lead.email", "ann@example.com")],
        url=URL + "?lead.email=ann%40example.com",
        method="GET",
        headers=headers(),
    ),
    Case(
        "query-numeric-segments-repeat-the-key",
        RequestSpec("query", URL),
        [("tags.0", "hot"), ("tags.1", "tx"), ("lead.0.id", "L1")],
        url=URL + "?tags=hot&tags=tx&lead.id=L1",
        method="GET",
        headers=headers(),
    ),
    Case(
        "query-unicode-and-escaping",
        RequestSpec("query", URL),
        [("reason", "José & Co / 100%"), ("a=b", "x&y")],
        url=URL + "?reason=Jos%C3%A9+%26+Co+%2F+100%25&a%3Db=x%26y",
        method="GET",
        headers=headers(),
    ),
    Case(
        "query-no-fields",
        RequestSpec("query", URL + "?key=abc"),
        [],
        url=URL + "?key=abc",
        method="GET",
        headers=headers(),
    ),
    # -- form ----------------------------------------------------------------
    Case(
        "form",
        RequestSpec("form", URL),
        [("event_id", "E-1"), ("reason", "Wrong number"), ("note", "")],
        url=URL,
        body=b"event_id=E-1&reason=Wrong+number&note=",
        headers=headers(FORM),
    ),
    Case(
        "form-put-and-repeated-keys",
        RequestSpec("form", URL, http_method="put"),
        [("tags.0", "a b"), ("tags.1", "ü"), ("tag", "x"), ("tag", "y")],
        url=URL,
        method="PUT",
        body=b"tags=a+b&tags=%C3%BC&tag=x&tag=y",
        headers=headers(FORM),
    ),
    # -- json ----------------------------------------------------------------
    Case(
        "json-flat",
        RequestSpec("json", URL),
        [("event_id", "E-1"), ("revenue", "12.50")],
        url=URL,
        body=b'{"event_id":"E-1","revenue":"12.50"}',
        headers=headers(JSON),
    ),
    Case(
        "json-nested",
        RequestSpec("json", URL),
        [
            ("lead.contact.email", "ann@example.com"),
            ("lead.id", "L1"),
            ("lead.contact.phone", "+15125550100"),
            ("reason", "Wrong number"),
        ],
        url=URL,
        body=(
            b'{"lead":{"contact":{"email":"ann@example.com","phone":"+15125550100"},'
            b'"id":"L1"},"reason":"Wrong number"}'
        ),
        headers=headers(JSON),
    ),
    Case(
        "json-arrays-of-objects",
        RequestSpec("json", URL),
        [("items.0.id", "A"), ("items.1.id", "B"), ("items.0.qty", "2")],
        url=URL,
        body=b'{"items":[{"id":"A","qty":"2"},{"id":"B"}]}',
        headers=headers(JSON),
    ),
    Case(
        "json-array-ordered-by-index-gaps-closed",
        RequestSpec("json", URL),
        [("tags.5", "last"), ("tags.01", "first"), ("tags.3", "middle")],
        url=URL,
        body=b'{"tags":["first","middle","last"]}',
        headers=headers(JSON),
    ),
    Case(
        "json-unicode-and-escaping",
        RequestSpec("json", URL),
        [("note", 'Zoë "q" </script>\n\t\u2028')],
        url=URL,
        body=b'{"note":"Zo\xc3\xab \\"q\\" </script>\\n\\t\xe2\x80\xa8"}',
        headers=headers(JSON),
    ),
    Case(
        "json-put-no-fields",
        RequestSpec("json", URL, http_method="PATCH"),
        [],
        url=URL,
        method="PATCH",
        body=b"{}",
        headers=headers(JSON),
    ),
    # -- xml -----------------------------------------------------------------
    Case(
        "xml-default-root",
        RequestSpec("xml", URL),
        [("event_id", "E-1"), ("reason", "Wrong number")],
        url=URL,
        body=DECL
        + b"<feedback><event_id>E-1</event_id><reason>Wrong number</reason></feedback>",
        headers=headers(XML),
    ),
    Case(
        "xml-nested-with-attributes",
        RequestSpec("xml", URL),
        [
            ("lead@id", "L1"),
            ("lead.fname", "Ann"),
            ("lead.phone", "5125550100"),
            ("lead.phone@type", "mobile"),
            ("@version", "2"),
        ],
        url=URL,
        body=DECL + b'<feedback version="2"><lead id="L1"><fname>Ann</fname>'
        b'<phone type="mobile">5125550100</phone></lead></feedback>',
        headers=headers(XML),
    ),
    Case(
        "xml-numeric-segments-repeat-elements",
        RequestSpec("xml", URL),
        [
            ("lead.phone.1", "222"),
            ("lead.phone.0", "111"),
            ("lead.phone.0@type", "home"),
            ("items.0.id", "A"),
            ("items.1.id", "B"),
        ],
        url=URL,
        body=DECL + b'<feedback><lead><phone type="home">111</phone><phone>222</phone>'
        b"</lead><items><id>A</id></items><items><id>B</id></items></feedback>",
        headers=headers(XML),
    ),
    Case(
        "xml-escaping-and-unicode",
        RequestSpec("xml", URL, xml_root="feedback"),
        [("note", '<b>Tom & "Zoë"</b> it\'s'), ("note@q", '"<&>"')],
        url=URL,
        body=DECL + b'<feedback><note q="&quot;&lt;&amp;&gt;&quot;">&lt;b&gt;Tom &amp; '
        b'"Zo\xc3\xab"&lt;/b&gt; it\'s</note></feedback>',
        headers=headers(XML),
    ),
    Case(
        "xml-one-first-segment-is-the-root-as-in-leadconduit",
        RequestSpec("xml", URL),
        [("lead.fname", "Ann"), ("lead.lname", "Lee")],
        url=URL,
        body=DECL + b"<lead><fname>Ann</fname><lname>Lee</lname></lead>",
        headers=headers(XML),
    ),
    Case(
        "xml-empty-root-first-segment-is-root",
        RequestSpec("xml", URL, xml_root=""),
        [("lead@id", "L1"), ("lead.status", "returned"), ("lead.note", "")],
        url=URL,
        body=DECL + b'<lead id="L1"><status>returned</status><note></note></lead>',
        headers=headers(XML),
    ),
    Case(
        "xml-a-repeated-first-element-goes-inside-feedback",
        RequestSpec("xml", URL),
        [("lead.0.id", "1"), ("lead.1.id", "2")],
        url=URL,
        body=DECL + b"<feedback><lead><id>1</id></lead><lead><id>2</id></lead>"
        b"</feedback>",
        headers=headers(XML),
    ),
    Case(
        "xml-a-bare-attribute-goes-on-feedback",
        RequestSpec("xml", URL),
        [("@version", "2"), ("lead.id", "1")],
        url=URL,
        body=DECL + b'<feedback version="2"><lead><id>1</id></lead></feedback>',
        headers=headers(XML),
    ),
    Case(
        "xml-several-first-segments-go-inside-feedback",
        RequestSpec("xml", URL),
        [("lead.id", "1"), ("event.id", "2")],
        url=URL,
        body=DECL + b"<feedback><lead><id>1</id></lead><event><id>2</id></event>"
        b"</feedback>",
        headers=headers(XML),
    ),
    Case(
        "xml-an-explicit-root-wraps-one-first-segment",
        RequestSpec("xml", URL, xml_root="return"),
        [("lead.fname", "Ann")],
        url=URL,
        body=DECL + b"<return><lead><fname>Ann</fname></lead></return>",
        headers=headers(XML),
    ),
    Case(
        "xml-no-fields",
        RequestSpec("xml", URL),
        [],
        url=URL,
        body=DECL + b"<feedback/>",
        headers=headers(XML),
    ),
    Case(
        "xml-custom-root-no-fields",
        RequestSpec("xml", URL, xml_root="return"),
        [],
        url=URL,
        body=DECL + b"<return/>",
        headers=headers(XML),
    ),
    # -- auth and headers ----------------------------------------------------
    Case(
        "basic-auth",
        RequestSpec(
            "json", URL, auth=Auth(type="basic", username="partner", password="s3cret")
        ),
        [("a", "1")],
        url=URL,
        body=b'{"a":"1"}',
        headers=headers(JSON, Authorization="Basic cGFydG5lcjpzM2NyZXQ="),
    ),
    Case(
        "basic-auth-unicode-credentials",
        RequestSpec(
            "form", URL, auth=Auth(type="basic", username="zoë", password="pä")
        ),
        [("a", "1")],
        url=URL,
        body=b"a=1",
        headers=headers(FORM, Authorization="Basic em/Dqzpww6Q="),
    ),
    Case(
        "bearer-auth",
        RequestSpec("query", URL, auth=Auth(type="bearer", token="tok_123")),
        [("a", "1")],
        url=URL + "?a=1",
        method="GET",
        headers=headers(Authorization="Bearer tok_123"),
    ),
    Case(
        "api-key-header-auth",
        RequestSpec(
            "json", URL, auth=Auth(type="header", name="X-Api-Key", value="k-42")
        ),
        [("a", "1")],
        url=URL,
        body=b'{"a":"1"}',
        headers=headers(JSON, X_Api_Key="k-42"),
    ),
    Case(
        "configured-headers-and-content-type-override",
        RequestSpec(
            "json",
            URL,
            headers={
                "X-Partner": " leadback ",
                "content-type": "application/vnd.x+json",
            },
        ),
        [("a", "1")],
        url=URL,
        body=b'{"a":"1"}',
        headers={
            "content-type": "application/vnd.x+json",
            "X-Partner": "leadback",
            "webhook-id": MESSAGE_ID,
        },
    ),
    Case(
        "signed-json",
        RequestSpec("json", URL, signing_secret=SECRET),
        [("event_id", "E-1")],
        url=URL,
        body=b'{"event_id":"E-1"}',
        headers=headers(
            JSON,
            webhook_timestamp=str(int(NOW.timestamp())),
            webhook_signature=signature(b'{"event_id":"E-1"}'),
        ),
    ),
    Case(
        "signed-query-signs-the-empty-body",
        RequestSpec("query", URL, signing_secret=SECRET),
        [("event_id", "E-1")],
        url=URL + "?event_id=E-1",
        method="GET",
        headers=headers(
            webhook_timestamp=str(int(NOW.timestamp())),
            webhook_signature=signature(b""),
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_build_request(case: Case) -> None:
    request = build_request(case.spec, case.fields, message_id=MESSAGE_ID, now=NOW)

    assert request == OutboundRequest(
        method=case.method, url=case.url, headers=case.headers, body=case.body
    )


@dataclass
class Refusal:
    id: str
    spec: RequestSpec
    fields: list[tuple[str, str]]
    message: str


REFUSALS = [
    Refusal(
        "json-value-then-object",
        RequestSpec("json", URL),
        [("a", "x"), ("a.b", "y")],
        "Targets 'a' and 'a.b' conflict",
    ),
    Refusal(
        "json-object-then-value",
        RequestSpec("json", URL),
        [("lead.email", "x"), ("lead", "y")],
        "Targets 'lead.email' and 'lead' conflict",
    ),
    Refusal(
        "json-array-and-object",
        RequestSpec("json", URL),
        [("items.0", "x"), ("items.name", "y")],
        "Targets 'items.0' and 'items.name' conflict",
    ),
    Refusal(
        "json-same-target-twice",
        RequestSpec("json", URL),
        [("a.b", "x"), ("a.b", "y")],
        "Target 'a.b' is mapped twice",
    ),
    Refusal(
        "json-empty-segment",
        RequestSpec("json", URL),
        [("lead..email", "x")],
        "Target 'lead..email' has an empty path segment",
    ),
    Refusal(
        "empty-target",
        RequestSpec("form", URL),
        [("  ", "x")],
        "A mapping has no target",
    ),
    Refusal(
        "xml-invalid-element-name",
        RequestSpec("xml", URL),
        [("lead.first name", "Ann")],
        "Target 'lead.first name': Invalid tag name",
    ),
    Refusal(
        "xml-attribute-twice",
        RequestSpec("xml", URL),
        [("lead@id", "1"), ("lead@id", "2")],
        "Target 'lead@id' is mapped twice",
    ),
    Refusal(
        "xml-control-character",
        RequestSpec("xml", URL),
        [("note", "bell\x07")],
        "Target 'note': All strings must be XML compatible",
    ),
    Refusal(
        "header-injection-crlf",
        RequestSpec("json", URL, headers={"X-Partner": "a\r\nSet-Cookie: admin=1"}),
        [],
        "Header X-Partner: line breaks",
    ),
    Refusal(
        "header-injection-via-auth-value",
        RequestSpec("json", URL, auth=Auth(type="bearer", token="t\nX-Evil: 1")),
        [],
        "Header Authorization: line breaks",
    ),
    Refusal(
        "header-name-invalid",
        RequestSpec("json", URL, headers={"X Partner": "a"}),
        [],
        "'X Partner' is not a valid header name",
    ),
    Refusal(
        "header-host-reserved",
        RequestSpec("json", URL, headers={"Host": "internal.example"}),
        [],
        "Header Host is set by Leadback",
    ),
    Refusal(
        "header-content-length-reserved",
        RequestSpec("json", URL, headers={"content-length": "0"}),
        [],
        "Header content-length is set by Leadback",
    ),
    Refusal(
        "header-webhook-id-reserved",
        RequestSpec("json", URL, headers={"Webhook-Id": "forged"}),
        [],
        "Header Webhook-Id is set by Leadback",
    ),
    Refusal(
        "auth-header-and-configured-header",
        RequestSpec(
            "json",
            URL,
            headers={"authorization": "Basic x"},
            auth=Auth(type="bearer", token="t"),
        ),
        [],
        "Header Authorization is set both by the headers and the auth",
    ),
    Refusal(
        "header-value-not-latin-1",
        RequestSpec("json", URL, headers={"X-Name": "Zoë ✓"}),
        [],
        "only Latin-1 characters",
    ),
    Refusal(
        "wsse-outside-soap",
        RequestSpec("json", URL, auth=Auth(type="wsse", username="u")),
        [],
        "WS-Security authentication needs the SOAP method",
    ),
    Refusal(
        "not-http-url",
        RequestSpec("json", "file:///etc/passwd"),
        [],
        "is not an http or https URL",
    ),
    Refusal(
        "unsupported-http-method",
        RequestSpec("json", URL, http_method="DELETE"),
        [],
        "HTTP method 'DELETE' is not supported",
    ),
    Refusal(
        "unknown-method",
        RequestSpec("csv", URL),
        [],
        "Unknown method 'csv'",
    ),
    Refusal(
        "bad-signing-secret",
        RequestSpec("json", URL, signing_secret="not-a-secret"),
        [],
        "A signing secret starts with whsec_",
    ),
    Refusal(
        "soap-without-wsdl",
        RequestSpec("soap", URL, soap_operation="RecordReturn"),
        [],
        "needs its WSDL loaded",
    ),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[case.id for case in REFUSALS])
def test_build_request_refuses(case: Refusal) -> None:
    with pytest.raises(BuildError) as excinfo:
        build_request(case.spec, case.fields, message_id=MESSAGE_ID, now=NOW)

    assert case.message in str(excinfo.value)


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_request(
            RequestSpec("json", URL),
            [],
            message_id=MESSAGE_ID,
            now=NOW.replace(tzinfo=None),
        )


def test_nest_fields_gives_the_soap_argument_structure() -> None:
    assert nest_fields(
        [("EventId", "E-1"), ("Contact.Phones.0", "1"), ("Contact.Email", "a@b")]
    ) == {"EventId": "E-1", "Contact": {"Phones": ["1"], "Email": "a@b"}}


def test_validate_headers_for_the_admin() -> None:
    validate_headers({"X-Partner": "leadback"})
    with pytest.raises(BuildError, match="line breaks"):
        validate_headers({"X-Partner": "a\nb"})


# -- Signatures, checked by the standardwebhooks package --------------------------


@pytest.mark.parametrize("method", ["json", "form", "xml", "query"])
def test_signature_verifies_with_standardwebhooks(method: str) -> None:
    secret = generate_secret()
    now = datetime.now(UTC)  # the package refuses timestamps 5 minutes off
    request = build_request(
        RequestSpec(method, URL, signing_secret=secret),
        [("event_id", "E-1"), ("reason", "Zoë's <number> & co")],
        message_id=MESSAGE_ID,
        now=now,
    )

    # Raises WebhookVerificationError unless the signature matches.
    Webhook(secret).verify(request.body, request.headers, json_parse=False)
    assert request.headers["webhook-id"] == MESSAGE_ID
    assert request.headers["webhook-timestamp"] == str(int(now.timestamp()))


def test_tampered_body_fails_standardwebhooks_verification() -> None:
    secret = generate_secret()
    request = build_request(
        RequestSpec("json", URL, signing_secret=secret),
        [("revenue", "10")],
        message_id=MESSAGE_ID,
        now=datetime.now(UTC),
    )

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"revenue":"1000"}', request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(request.body, request.headers)
    assert Webhook(secret).verify(request.body, request.headers) == {"revenue": "10"}


def test_sign_matches_standardwebhooks_for_an_unpadded_secret() -> None:
    unpadded = "whsec_" + "c2VjcmV0LWtleS0xMjM0NQ"  # "secret-key-12345", no padding
    headers = sign(unpadded, "msg_1", 1_700_000_000, "Zoë".encode())

    expected = Webhook(unpadded).sign(
        "msg_1", datetime.fromtimestamp(1_700_000_000, tz=UTC), "Zoë"
    )
    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": expected,
    }


def test_generated_secrets_are_distinct_32_byte_keys() -> None:
    first, second = generate_secret(), generate_secret()

    assert first != second
    assert first.startswith("whsec_")
    assert len(first) == len("whsec_") + 44  # base64 of 32 bytes
