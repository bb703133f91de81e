"""Reading sources' answers (DESIGN §5.5): paths per body type, outcomes per status,
SOAP faults, and bodies that try to hurt the parser."""

import json
import time

import pytest

from sources.outbound import responses
from sources.outbound.responses import (
    MAX_JSON_DEPTH,
    ResponseSpec,
    SoapResult,
    interpret,
    parse_soap_envelope,
    validate_response_spec,
)
from sources.outbound.types import (
    MAX_RESPONSE_BYTES,
    Interpretation,
    OutboundResponse,
    Outcome,
)

SUCCESS, FAILURE, ERROR = Outcome.SUCCESS, Outcome.FAILURE, Outcome.ERROR
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"


def answer(body: bytes | str, content_type: str = "", status: int = 200):
    headers = {"Content-Type": content_type} if content_type else {}
    data = body.encode() if isinstance(body, str) else body
    return OutboundResponse(status=status, headers=headers, body=data)


def as_json(value: object, status: int = 200):
    return answer(json.dumps(value), "application/json; charset=utf-8", status)


def as_xml(body: str, status: int = 200):
    return answer(body, "application/xml", status)


def as_html(body: str, status: int = 200):
    return answer(body, "text/html; charset=utf-8", status)


def soap11_fault(code: str, message: str) -> str:
    return (
        f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body><soap:Fault>'
        f"<faultcode>{code}</faultcode><faultstring>{message}</faultstring>"
        "</soap:Fault></soap:Body></soap:Envelope>"
    )


def soap12_fault(code: str, message: str) -> str:
    return (
        f'<env:Envelope xmlns:env="{SOAP12}"><env:Body><env:Fault>'
        f"<env:Code><env:Value>{code}</env:Value><env:Subcode><env:Value>"
        "app:Detail</env:Value></env:Subcode></env:Code>"
        f'<env:Reason><env:Text xml:lang="en">{message}</env:Text></env:Reason>'
        "</env:Fault></env:Body></env:Envelope>"
    )


SOAP_RESULT = (
    f'<s:Envelope xmlns:s="{SOAP11}"><s:Body>'
    '<SubmitLeadResponse xmlns="urn:leads"><Result code="A-17">'
    "<Status>Accepted</Status><Errors><Error>slow</Error><Error>late</Error>"
    "</Errors></Result></SubmitLeadResponse></s:Body></s:Envelope>"
)

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">\n'
        if i > 1
        else '<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n'
        for i in range(1, 10)
    )
    + "]>\n<lolz><status>&lol9;</status></lolz>"
)

EXTERNAL_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    "<r><status>&x;</status></r>"
)

ITEMS = {
    "results": [
        {"status": "accepted", "id": "L-1"},
        {"status": "duplicate", "id": "L-2", "message": " Seen before "},
    ]
}

# (spec, response, expected): each row is one way a source can answer.
CASES = [
    # --- JSON dot paths -------------------------------------------------------
    pytest.param(
        ResponseSpec("accepted", "status", reference_path="lead.id"),
        as_json({"status": "Accepted", "lead": {"id": 991}}),
        Interpretation(SUCCESS, "", "991"),
        id="json-dot-path-match-case-insensitive-numeric-reference",
    ),
    pytest.param(
        ResponseSpec("accepted", "status", reason_path="message"),
        as_json({"status": "rejected", "message": "  Duplicate lead "}),
        Interpretation(FAILURE, "Duplicate lead"),
        id="json-no-match-is-failure-with-trimmed-reason",
    ),
    pytest.param(
        ResponseSpec("^duplicate$", "results.*.status", FAILURE, "results.*.message"),
        as_json(ITEMS),
        Interpretation(FAILURE, "Seen before"),
        id="json-star-over-list-any-value-matches",
    ),
    pytest.param(
        ResponseSpec("^accepted$", "results.1.status", reference_path="results.-1.id"),
        as_json(ITEMS),
        Interpretation(FAILURE, "did not match /^accepted$/", "L-2"),
        id="json-numeric-index-and-negative-index",
    ),
    pytest.param(
        ResponseSpec("^E2$", "batches.*.*.code", FAILURE, "batches.*.*.text"),
        as_json(
            {
                "batches": [
                    [{"code": "E1", "text": "bad phone"}],
                    [{"code": "E2", "text": "bad email"}, {"code": "OK"}],
                ]
            }
        ),
        Interpretation(FAILURE, "bad email, bad phone"),
        id="json-nested-lists-two-wildcards",
    ),
    pytest.param(
        ResponseSpec("ok", "status", reason_path="errors.*"),
        as_json({"status": "no", "errors": {"phone": "invalid", "email": "missing"}}),
        Interpretation(FAILURE, "invalid, missing"),
        id="json-star-over-object-values-sorted",
    ),
    pytest.param(
        ResponseSpec("^ok$", "status", reason_path="errors"),
        as_json(
            {"status": "no", "errors": [" Wrong number ", "Dup", "", "Dup", "  ", None]}
        ),
        Interpretation(FAILURE, "Dup, Wrong number"),
        id="json-reason-list-trimmed-blanks-dropped-deduplicated",
    ),
    pytest.param(
        ResponseSpec("x", "status", reason_path="errors.message"),
        as_json(
            {"status": "no", "errors": [{"message": "b two"}, {"message": "a one"}]}
        ),
        Interpretation(FAILURE, "a one, b two"),
        id="json-key-on-list-applies-to-each-item",
    ),
    pytest.param(
        ResponseSpec("^true$", "$.ok"),
        as_json({"ok": True}),
        Interpretation(SUCCESS),
        id="json-boolean-leaf-renders-true",
    ),
    pytest.param(
        ResponseSpec("accepted", "result.status", default_reason="Refused by source"),
        as_json({"result": {"status": "refused"}}),
        Interpretation(FAILURE, "Refused by source"),
        id="json-default-reason-when-none-found",
    ),
    pytest.param(
        ResponseSpec("accepted", "missing.path"),
        as_json({"status": "accepted"}),
        Interpretation(FAILURE, "did not match /accepted/"),
        id="json-path-selects-nothing-no-match",
    ),
    pytest.param(
        ResponseSpec("accepted", "status", reason_path="message"),
        answer(
            '{"status": "accepted", "message": "queued"}', "application/problem+json"
        ),
        Interpretation(SUCCESS, "queued"),
        id="json-plus-json-content-type",
    ),
    # --- XML XPath ------------------------------------------------------------
    pytest.param(
        ResponseSpec("^accepted$", "status", reference_path="lead/id"),
        as_xml(
            "<response><status>Accepted</status><lead><id> X9 </id></lead></response>"
        ),
        Interpretation(SUCCESS, "", "X9"),
        id="xml-xpath-element-text",
    ),
    pytest.param(
        ResponseSpec("dup", "/result/@code", FAILURE, "//error/@message"),
        as_xml(
            '<result code="DUP"><error message="seen"/>'
            '<error message="again"/></result>'
        ),
        Interpretation(FAILURE, "again, seen"),
        id="xml-xpath-attributes",
    ),
    pytest.param(
        ResponseSpec(
            "^ok$",
            "//*[local-name()='status']",
            reference_path="//*[local-name()='ref']",
        ),
        as_xml(
            '<r:resp xmlns:r="urn:x"><r:status>OK</r:status><r:ref>7</r:ref></r:resp>'
        ),
        Interpretation(SUCCESS, "", "7"),
        id="xml-namespaces-via-local-name",
    ),
    pytest.param(
        ResponseSpec("^ok$", "x:status"),
        as_xml('<x:resp xmlns:x="urn:x"><x:status>ok</x:status></x:resp>'),
        Interpretation(SUCCESS),
        id="xml-root-prefixes-usable-in-xpath",
    ),
    pytest.param(
        ResponseSpec("^true$", "boolean(//error)", FAILURE, "//error"),
        as_xml(
            "<r><error>Phone <b>invalid</b></error><error>Phone invalid</error></r>"
        ),
        Interpretation(FAILURE, "Phone invalid"),
        id="xml-xpath-boolean-and-element-text-content-deduplicated",
    ),
    pytest.param(
        ResponseSpec("^0$", "count(//error)"),
        as_xml("<r><ok/></r>"),
        Interpretation(SUCCESS),
        id="xml-xpath-number-renders-as-integer",
    ),
    pytest.param(
        ResponseSpec("accepted", "//status", reason_path="//reason"),
        answer(
            "<r><status>accepted</status><reason>fine</reason></r>",
            "application/vnd.source+xml",
        ),
        Interpretation(SUCCESS, "fine"),
        id="xml-plus-xml-content-type",
    ),
    # --- HTML CSS selectors ---------------------------------------------------
    pytest.param(
        ResponseSpec("^ accepted $", "div.result", reason_path="ul.errors li"),
        as_html(
            "<html><body><div class='result'> Accepted </div>"
            "<div class='other'>rejected</div><ul class='errors'>"
            "<li>\n  Invalid\n  phone </li><li>Missing email</li></ul></body></html>"
        ),
        Interpretation(SUCCESS, "Invalid phone, Missing email"),
        id="html-css-selector-whitespace-collapsed",
    ),
    pytest.param(
        ResponseSpec(
            "^yes$",
            "#outcome",
            reference_path="input[name=lead_id]::attr(value)",
        ),
        as_html(
            "<html><body><span id='outcome'>no</span>"
            "<form><input name='lead_id' value='H-42'></form></body></html>"
        ),
        Interpretation(FAILURE, "did not match /^yes$/", "H-42"),
        id="html-css-attr-pseudo-element-reference",
    ),
    # --- plain text -----------------------------------------------------------
    pytest.param(
        ResponseSpec(
            "^ERROR",
            "ignored.for.text",
            FAILURE,
            reason_path=r"ERROR: (.+)",
            reference_path=r"lead=(\w+)",
        ),
        answer("ERROR: bad phone\nERROR: bad email\nERROR: bad phone\nlead=T7\n"),
        Interpretation(FAILURE, "bad email, bad phone", "T7"),
        id="text-regex-capture-all-matches-path-ignored",
    ),
    pytest.param(
        ResponseSpec("/^ok\\b/", reason_path=r"\d+ queued"),
        answer("OK 3 queued", "text/plain"),
        Interpretation(SUCCESS, "3 queued"),
        id="text-slash-term-and-regex-without-group",
    ),
    # --- outcome_on_match -----------------------------------------------------
    pytest.param(
        ResponseSpec("duplicate", outcome_on_match=FAILURE),
        answer("Duplicate lead"),
        Interpretation(FAILURE, "matched /duplicate/"),
        id="on-match-failure-matched",
    ),
    pytest.param(
        ResponseSpec("duplicate", outcome_on_match=FAILURE),
        answer("Thanks"),
        Interpretation(SUCCESS),
        id="on-match-failure-no-match-is-success",
    ),
    pytest.param(
        ResponseSpec("try again", outcome_on_match=ERROR),
        answer("Busy, try again later"),
        Interpretation(ERROR, "matched /try again/"),
        id="on-match-error-matched",
    ),
    pytest.param(
        ResponseSpec("try again", outcome_on_match=ERROR),
        answer("Stored"),
        Interpretation(SUCCESS),
        id="on-match-error-no-match-is-success",
    ),
    # --- statuses -------------------------------------------------------------
    pytest.param(
        ResponseSpec("accepted"),
        answer("accepted", status=503),
        Interpretation(ERROR, "HTTP 503 Service Unavailable"),
        id="5xx-is-error-even-when-term-matches",
    ),
    pytest.param(
        ResponseSpec(
            reason_path="error", reference_path="request_id", default_reason="d"
        ),
        as_json({"error": "database down", "request_id": "r-1"}, status=500),
        Interpretation(ERROR, "HTTP 500 Internal Server Error: database down", "r-1"),
        id="5xx-carries-found-reason-not-default",
    ),
    pytest.param(
        ResponseSpec("accepted"),
        OutboundResponse(status=None, error="timed out after 10 s"),
        Interpretation(ERROR, "timed out after 10 s"),
        id="no-response-is-error-with-transport-reason",
    ),
    pytest.param(
        ResponseSpec(),
        OutboundResponse(status=None),
        Interpretation(ERROR, "no response"),
        id="no-response-without-error-text",
    ),
    pytest.param(
        ResponseSpec("accepted"),
        answer("accepted", status=429),
        Interpretation(ERROR, "HTTP 429 Too Many Requests"),
        id="429-is-error-retryable",
    ),
    pytest.param(
        ResponseSpec(),
        answer("gone", status=410),
        Interpretation(FAILURE, "HTTP 410 Gone"),
        id="410-is-failure-gone",
    ),
    pytest.param(
        ResponseSpec(reason_path="error"),
        as_json({"error": "bad phone"}, status=400),
        Interpretation(SUCCESS, "bad phone"),
        id="4xx-without-term-is-success-per-design",
    ),
    pytest.param(
        ResponseSpec("accepted"),
        answer("nope", status=400),
        Interpretation(FAILURE, "HTTP 400 Bad Request: did not match /accepted/"),
        id="4xx-with-term-match-decides-reason-names-status",
    ),
    pytest.param(
        ResponseSpec(default_reason="Sent"),
        answer(b"", status=204),
        Interpretation(SUCCESS, "Sent"),
        id="no-term-any-status-is-success-default-reason",
    ),
    # --- SOAP -----------------------------------------------------------------
    pytest.param(
        ResponseSpec("accepted"),
        answer(soap11_fault("soap:Client", "Lead not found"), "text/xml", 500),
        Interpretation(FAILURE, "Lead not found"),
        id="soap11-client-fault-is-failure-despite-500",
    ),
    pytest.param(
        ResponseSpec(),
        answer(soap11_fault("soap:Client.Authentication", "Bad key"), "text/xml", 500),
        Interpretation(FAILURE, "Bad key"),
        id="soap11-dotted-client-subcode-is-failure",
    ),
    pytest.param(
        ResponseSpec(),
        answer(soap11_fault("soap:Server", "Database unavailable"), "text/xml", 500),
        Interpretation(ERROR, "Database unavailable"),
        id="soap11-server-fault-is-error",
    ),
    pytest.param(
        ResponseSpec(),
        answer(soap12_fault("env:Sender", "Unknown reason code"), "", 400),
        Interpretation(FAILURE, "Unknown reason code"),
        id="soap12-sender-fault-is-failure-sniffed",
    ),
    pytest.param(
        ResponseSpec(),
        answer(soap12_fault("env:Receiver", "Overloaded"), "application/soap+xml", 500),
        Interpretation(ERROR, "Overloaded"),
        id="soap12-receiver-fault-is-error",
    ),
    pytest.param(
        ResponseSpec(),
        answer(soap11_fault("soap:Server", ""), "text/xml", 500),
        Interpretation(ERROR, "SOAP fault soap:Server"),
        id="soap-fault-without-message-names-code",
    ),
    pytest.param(
        ResponseSpec(
            "^accepted$",
            "SubmitLeadResponse.Result.Status",
            reason_path="SubmitLeadResponse.Result.Errors.Error",
            reference_path="SubmitLeadResponse.Result.@code",
        ),
        answer(SOAP_RESULT, "text/xml"),
        Interpretation(SUCCESS, "late, slow", "A-17"),
        id="soap-result-dotted-path-from-envelope",
    ),
    pytest.param(
        ResponseSpec("^accepted$", "/*/*/*/*[local-name()='Result']/*[1]"),
        answer(SOAP_RESULT, "text/xml"),
        Interpretation(SUCCESS),
        id="soap-result-xpath-over-envelope",
    ),
    # --- hostile and odd bodies -----------------------------------------------
    pytest.param(
        ResponseSpec("lollollol", "/lolz/status", reason_path="/lolz/status"),
        as_xml(BILLION_LAUGHS),
        Interpretation(FAILURE, "did not match /lollollol/"),
        id="xml-billion-laughs-not-expanded",
    ),
    pytest.param(
        ResponseSpec("root:", "/r/status", reason_path="/r/status"),
        as_xml(EXTERNAL_ENTITY),
        Interpretation(FAILURE, "did not match /root:/"),
        id="xml-external-entity-not-resolved",
    ),
    pytest.param(
        ResponseSpec("lollollol", "p", reason_path="p"),
        as_html(
            BILLION_LAUGHS.replace("<lolz><status>", "<html><body><p>").replace(
                "</status></lolz>", "</p></body></html>"
            )
        ),
        Interpretation(FAILURE, "&lol9;"),
        id="html-billion-laughs-not-expanded",
    ),
    pytest.param(
        ResponseSpec("accepted"),
        answer(b" " * MAX_RESPONSE_BYTES + b"accepted", "text/plain"),
        Interpretation(FAILURE, "did not match /accepted/"),
        id="huge-body-capped-before-matching",
    ),
    pytest.param(
        ResponseSpec("accepted", "status"),
        answer("[" * 50_000 + "]" * 50_000, "application/json"),
        Interpretation(FAILURE, "did not match /accepted/"),
        id="deep-json-refused-not-crashing",
    ),
    pytest.param(
        ResponseSpec("accepted", "status", reason_path="message"),
        answer('{"status": "accepted", "message": ', "application/json"),
        Interpretation(SUCCESS),
        id="invalid-json-falls-back-to-raw-text",
    ),
    pytest.param(
        ResponseSpec("^ok$", "status", reference_path="id"),
        answer('  {"status": "ok", "id": "S-1"}'),
        Interpretation(SUCCESS, "", "S-1"),
        id="sniff-json-without-content-type",
    ),
    pytest.param(
        ResponseSpec("^ok$", "status", reference_path="id"),
        as_html('{"status": "ok", "id": "J-1"}'),
        Interpretation(SUCCESS, "", "J-1"),
        id="json-labelled-html-read-as-json",
    ),
    pytest.param(
        ResponseSpec("^ok$", "/r/s"),
        answer("<r><s>ok</s></r>", "text/plain"),
        Interpretation(SUCCESS),
        id="sniff-xml-from-text-plain",
    ),
    pytest.param(
        ResponseSpec("^ok$", "p.s"),
        answer("<!DOCTYPE html><html><body><p class='s'>ok</p></body></html>"),
        Interpretation(SUCCESS),
        id="sniff-html-doctype",
    ),
    pytest.param(
        ResponseSpec("^ok$", "/r/s"),
        answer("<r><s>ok</s>", "application/xml"),
        Interpretation(FAILURE, "did not match /^ok$/"),
        id="malformed-xml-falls-back-to-raw-text",
    ),
    # --- configuration mistakes are errors, never failures --------------------
    pytest.param(
        ResponseSpec("(unclosed"),
        answer("anything"),
        Interpretation(
            ERROR,
            "invalid outcome_search_term: missing ), unterminated subpattern at "
            "position 0",
        ),
        id="invalid-term-is-error",
    ),
    pytest.param(
        ResponseSpec("ok", "//status["),
        as_xml("<r><status>ok</status></r>"),
        Interpretation(ERROR, "bad outcome_search_path: Invalid expression"),
        id="bad-xpath-is-error",
    ),
    pytest.param(
        ResponseSpec("ok", "x:status"),
        as_xml("<r><status>ok</status></r>"),
        Interpretation(ERROR, "bad outcome_search_path: Undefined namespace prefix"),
        id="xpath-eval-error-is-error",
    ),
    pytest.param(
        ResponseSpec("ok", "div[", reason_path="div["),
        as_html("<html><body><div>ok</div></body></html>"),
        Interpretation(
            ERROR, "bad outcome_search_path: Expected ident or '*', got <EOF at 4>"
        ),
        id="bad-css-is-error-and-bad-reason-path-ignored",
    ),
]


@pytest.mark.parametrize(("spec", "response", "expected"), CASES)
def test_interpret(spec, response, expected):
    assert interpret(spec, response) == expected


def test_hostile_bodies_are_fast():
    # The cases above prove correctness; this proves none of them did real work.
    bodies = [
        as_xml(BILLION_LAUGHS),
        answer("[" * 400_000 + "]" * 400_000, "application/json"),
        answer(b"<a>" * 300_000, "application/xml"),
        answer(b"{" + b'"a":' * 200_000, "text/plain"),
        # An unterminated string full of escaped quotes: quadratic for a naive scan.
        answer(b'["' + b'\\"' * 400_000, "application/json"),
        answer(b"<div><p>" * 120_000, "text/html"),
    ]
    spec = ResponseSpec("zzz", "a", reason_path="a", reference_path="a")
    started = time.monotonic()
    for body in bodies:
        assert interpret(spec, body).outcome == FAILURE
    assert time.monotonic() - started < 5


def test_json_at_the_depth_limit_is_still_read():
    nested: object = "accepted"
    for _ in range(MAX_JSON_DEPTH):
        nested = {"a": nested}
    path = ".".join(["a"] * MAX_JSON_DEPTH)
    assert (
        interpret(ResponseSpec("^accepted$", path), as_json(nested)).outcome == SUCCESS
    )
    # One level more and it is searched as text, where the anchored term fails.
    deeper = as_json({"a": nested})
    assert interpret(ResponseSpec("^accepted$", "a." + path), deeper).outcome == FAILURE


def test_on_match_given_as_model_string():
    spec = ResponseSpec("duplicate", outcome_on_match="failure")  # type: ignore[arg-type]
    assert interpret(spec, answer("duplicate")) == Interpretation(
        FAILURE, "matched /duplicate/"
    )


def test_unknown_on_match_is_a_config_error():
    spec = ResponseSpec("x", outcome_on_match="maybe")  # type: ignore[arg-type]
    result = interpret(spec, answer("x"))
    assert result == Interpretation(ERROR, "invalid outcome_on_match: 'maybe'")


def test_overlong_term_is_a_config_error():
    result = interpret(ResponseSpec("a" * 501), answer("a"))
    assert result.outcome == ERROR
    assert result.reason == "invalid outcome_search_term: longer than 500 characters"


def test_reason_and_reference_are_capped():
    body = as_json(
        {"errors": [f"{i:04d} " + "x" * 50 for i in range(100)], "id": "r" * 900}
    )
    result = interpret(ResponseSpec(reason_path="errors", reference_path="id"), body)
    assert len(result.reason) == responses.MAX_REASON_CHARS
    assert result.reason.startswith("0000 x")
    assert result.reason.endswith("…")
    assert len(result.reference) == responses.MAX_REFERENCE_CHARS


def test_charset_from_content_type_is_honoured():
    body = "Réponse: acceptée".encode("latin-1")
    result = interpret(
        ResponseSpec("acceptée", reason_path="(R.ponse)"),
        answer(body, "text/plain; charset=ISO-8859-1"),
    )
    assert result == Interpretation(SUCCESS, "Réponse")


def test_search_term_patterns_are_compiled_once():
    responses.spec.compile_pattern.cache_clear()
    for _ in range(3):
        interpret(ResponseSpec("cached-term"), answer("cached-term"))
    info = responses.spec.compile_pattern.cache_info()
    assert (info.misses, info.hits) == (1, 2)


# --- SOAP results handed over by the transport ------------------------------------


@pytest.mark.parametrize(
    ("soap", "expected"),
    [
        pytest.param(
            SoapResult(None, "soap12:Sender", " Invalid lead id "),
            Interpretation(FAILURE, "Invalid lead id"),
            id="sender",
        ),
        pytest.param(
            SoapResult(None, f"{{{SOAP11}}}Client", "Refused"),
            Interpretation(FAILURE, "Refused"),
            id="clark-notation-client",
        ),
        pytest.param(
            SoapResult(None, "soap12:Receiver", "Try later"),
            Interpretation(ERROR, "Try later"),
            id="receiver",
        ),
        pytest.param(
            SoapResult(None, "soap:VersionMismatch", ""),
            Interpretation(ERROR, "SOAP fault soap:VersionMismatch"),
            id="other-codes-are-errors",
        ),
        pytest.param(
            SoapResult({"Response.Status": "OK", "Response.Id": "Z-3"}),
            Interpretation(SUCCESS, "", "Z-3"),
            id="values-match",
        ),
        pytest.param(
            SoapResult({"Response.Status": "Denied", "Response.Id": "Z-4"}),
            Interpretation(FAILURE, "did not match /^ok$/", "Z-4"),
            id="values-no-match",
        ),
    ],
)
def test_interpret_with_soap_result(soap, expected):
    spec = ResponseSpec("^ok$", "Response.Status", reference_path="Response.Id")
    # The body is irrelevant once the transport has read the envelope.
    assert interpret(spec, answer("<ignored/>", "text/xml", 200), soap=soap) == expected


def test_soap_values_with_indexes_read_like_json_lists():
    soap = SoapResult(
        {
            "R.Errors.Error.0.Code": "E1",
            "R.Errors.Error.0.Text": "bad phone",
            "R.Errors.Error.1.Code": "E2",
            "R.Errors.Error.1.Text": "bad email",
        }
    )
    spec = ResponseSpec(
        "^E2$", "R.Errors.Error.*.Code", FAILURE, reason_path="R.Errors.Error.Text"
    )
    result = interpret(spec, answer(b"", status=200), soap=soap)
    assert result == Interpretation(FAILURE, "bad email, bad phone")


def test_parse_soap_envelope_flattens_by_local_names():
    result = parse_soap_envelope(SOAP_RESULT.encode())
    assert result == SoapResult(
        values={
            "SubmitLeadResponse.Result.@code": "A-17",
            "SubmitLeadResponse.Result.Status": "Accepted",
            "SubmitLeadResponse.Result.Errors.Error.0": "slow",
            "SubmitLeadResponse.Result.Errors.Error.1": "late",
            # The same, from inside the result (as zeep unwraps it, DESIGN §9).
            "@code": "A-17",
            "Status": "Accepted",
            "Errors.Error.0": "slow",
            "Errors.Error.1": "late",
        }
    )
    assert not result.is_fault


@pytest.mark.parametrize(
    ("body", "code", "message", "client"),
    [
        (
            soap11_fault("soap:Client", "No such lead"),
            "soap:Client",
            "No such lead",
            True,
        ),
        (soap11_fault("soap:Server", "Down"), "soap:Server", "Down", False),
        (soap12_fault("env:Sender", "Bad input"), "env:Sender", "Bad input", True),
        (soap12_fault("env:Receiver", "Down"), "env:Receiver", "Down", False),
    ],
    ids=["11-client", "11-server", "12-sender", "12-receiver"],
)
def test_parse_soap_envelope_reads_faults(body, code, message, client):
    result = parse_soap_envelope(body.encode())
    assert result == SoapResult(None, code, message)
    assert result.is_fault
    assert result.is_client_fault is client


@pytest.mark.parametrize(
    "body",
    [
        b"<r><status>ok</status></r>",
        b'{"status": "ok"}',
        BILLION_LAUGHS.encode(),
        b'<Envelope xmlns="urn:not-soap"><Body/></Envelope>',
    ],
    ids=["plain-xml", "json", "billion-laughs", "foreign-envelope"],
)
def test_parse_soap_envelope_ignores_anything_else(body):
    assert parse_soap_envelope(body) is None


def test_parse_soap_envelope_empty_body():
    body = f'<s:Envelope xmlns:s="{SOAP12}"><s:Body/></s:Envelope>'.encode()
    assert parse_soap_envelope(body) == SoapResult(values={})


# --- validation for admin save and import -----------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        ResponseSpec(),
        ResponseSpec("/^accepted$/", "results.*.status", FAILURE, "errors.0", "x"),
        ResponseSpec("ok", "//*[local-name()='status']/@code"),
        ResponseSpec("ok", "div.result > span", reason_path="ul li:nth-child(2)"),
        ResponseSpec("ok", reference_path="input[name=id]::attr(value)"),
        ResponseSpec("ok", reason_path=r"ERROR: (.+)$", reference_path=r"id=(\d+)"),
        ResponseSpec("ok", "$.data.-1.Error Message"),
    ],
    ids=["empty", "dot-paths", "xpath", "css", "css-attr", "text-regexes", "dollar"],
)
def test_validate_accepts_good_specs(spec):
    assert validate_response_spec(spec) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            ResponseSpec("(accepted"),
            [
                "outcome_search_term is not a valid regular expression: missing ), "
                "unterminated subpattern at position 0."
            ],
            id="bad-term",
        ),
        pytest.param(
            ResponseSpec("/[z-a]/"),
            [
                "outcome_search_term is not a valid regular expression: bad character"
                " range z-a at position 1."
            ],
            id="bad-term-in-slashes",
        ),
        pytest.param(
            ResponseSpec(default_reason="x" * 501),
            ["default_reason is longer than 500 characters."],
            id="too-long",
        ),
        pytest.param(
            ResponseSpec(outcome_on_match="maybe"),  # type: ignore[arg-type]
            ["outcome_on_match must be one of success, failure, error."],
            id="bad-on-match",
        ),
    ],
)
def test_validate_reports_problems(spec, expected):
    assert validate_response_spec(spec) == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("outcome_search_path", "//status["),
        ("outcome_search_path", "div > > p"),
        ("outcome_search_path", "results.*.[status]"),
        ("reason_path", "//error[@code="),
        ("reference_path", "(unclosed"),
    ],
)
def test_validate_names_the_field_of_a_bad_path(field, value):
    problems = validate_response_spec(ResponseSpec("ok", **{field: value}))
    assert len(problems) == 1
    assert problems[0].startswith(f"{field} is not a valid dot path, XPath or CSS")
    assert "XPath says" in problems[0]
    assert "CSS says" in problems[0]


def test_validate_allows_a_regex_only_where_text_reads_one():
    # "(\d+" is no path at all; "(\d+)" is a fine reason regex for text bodies but
    # means nothing as a search path, which text bodies ignore.
    assert validate_response_spec(ResponseSpec("ok", reason_path=r"id=(\d+)")) == []
    problems = validate_response_spec(ResponseSpec("ok", r"id=(\d+)"))
    assert [p.split(":")[0] for p in problems] == [
        "outcome_search_path is not a valid dot path, XPath or CSS selector"
    ]
