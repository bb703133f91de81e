"""Reading a source's answer into an outcome, a reason and a reference (DESIGN §5.5).

A config says what to look for (`ResponseSpec`); `interpret` applies it to one
`OutboundResponse`. Everything here is pure: no I/O, no database, no exceptions for
anything a source can send. Bodies come from outside, so parsing is safe and bounded:
cut to MAX_RESPONSE_BYTES first, XML through `safexml` (no DTD, no entities, no
network), HTML through a network-less lxml parser (libxml2's HTML parser expands no
declared entities), JSON only up to MAX_JSON_DEPTH levels. A body that fails to parse
is searched as raw text.

Paths follow the body: a dot path for JSON and SOAP results (`a.b.0.c`, `a.*.c`), an
XPath for XML, a CSS selector for HTML (`::attr(name)` at the end reads an attribute);
for plain text `outcome_search_path` is ignored and `reason_path` / `reference_path`
are regexes whose group 1 (else the whole match) is the value.

Decisions where DESIGN is silent:
- No match flips the outcome: on_match success -> failure; failure or error -> success.
- Configuration mistakes (a bad regex, a bad search path) give ERROR, never FAILURE:
  FAILURE is final and the source refused nothing; ERROR is retried and shows up.
- 429 is ERROR (retryable); 410 is FAILURE "HTTP 410 Gone" (the engine disables the
  config). Other 1xx-4xx statuses follow DESIGN literally: with no search term they
  are SUCCESS, with one the match decides.
- SOAP faults come before the 5xx rule, because SOAP 1.1 sends every fault as 500:
  Client/Sender faults are FAILURE, all others ERROR. 429 and 410 still come first.
- default_reason is for outcomes read from the body; transport-level outcomes (no
  response, 5xx, 429, 410, faults) say what happened instead.
"""

import codecs
import functools
import http
import json
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from itertools import islice
from typing import Any

import lxml.html
from cssselect import HTMLTranslator, SelectorError
from lxml import etree

from sources.outbound.safexml import UnsafeXmlError, element_to_value, parse_xml
from sources.outbound.types import (
    MAX_RESPONSE_BYTES,
    Interpretation,
    OutboundResponse,
    Outcome,
)

__all__ = [
    "MAX_EXPRESSION_LENGTH",
    "MAX_JSON_DEPTH",
    "ResponseSpec",
    "SoapResult",
    "interpret",
    "parse_soap_envelope",
    "validate_response_spec",
]

# Every field of a spec fits the model's CharField(max_length=500).
MAX_EXPRESSION_LENGTH = 500
# Deeper JSON is refused before json.loads can hit the recursion limit.
MAX_JSON_DEPTH = 100
# A path may select many nodes; nobody needs more than this many to decide or explain.
MAX_VALUES = 1000
# Room enough for any honest explanation; the caller stores the result in a row.
MAX_REASON_CHARS = 1000
MAX_REFERENCE_CHARS = 255

SOAP_11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_12_NS = "http://www.w3.org/2003/05/soap-envelope"

_NO_MATCH = {
    Outcome.SUCCESS: Outcome.FAILURE,
    Outcome.FAILURE: Outcome.SUCCESS,
    Outcome.ERROR: Outcome.SUCCESS,
}


@dataclass(frozen=True)
class ResponseSpec:
    """How to read a source's answer; mirrors the response fields of a config.

    When `outcome_search_term` matches (any value found at `outcome_search_path`, or
    the raw body when there is no path) the outcome is `outcome_on_match`; when it
    does not, a SUCCESS on match becomes FAILURE, and FAILURE or ERROR on match
    become SUCCESS.
    """

    outcome_search_term: str = ""
    outcome_search_path: str = ""
    outcome_on_match: Outcome = Outcome.SUCCESS
    reason_path: str = ""
    default_reason: str = ""
    reference_path: str = ""


@dataclass(frozen=True)
class SoapResult:
    """A SOAP answer: a fault, or the result flattened by dotted local names.

    Keys start at the Body's first child, the operation's response element, e.g.
    {"SubmitLeadResponse.Result.Status": "Accepted"}; repeated elements get indexes
    ("Errors.Error.0") and attributes "@name" segments.
    """

    values: dict[str, str] | None
    fault_code: str = ""
    fault_message: str = ""

    @property
    def is_fault(self) -> bool:
        return bool(self.fault_code or self.fault_message)

    @property
    def is_client_fault(self) -> bool:
        """True when the fault blames the request: the source refused it."""
        code = self.fault_code.strip().rsplit("}", 1)[-1].rsplit(":", 1)[-1]
        # SOAP 1.1 allows dotted subcodes such as "Client.Authentication".
        first = code.split(".", 1)[0]
        return first in {"Client", "Sender"} or code.endswith(("Client", "Sender"))


class _PathError(ValueError):
    """A path that cannot be evaluated against this body."""


class _Kind(StrEnum):
    JSON = "json"
    XML = "xml"
    HTML = "html"
    TEXT = "text"


@dataclass(frozen=True)
class _Document:
    kind: _Kind
    text: str
    data: Any = None  # parsed JSON, or SOAP values unflattened into the same shape
    root: Any = None  # lxml root element for XML and HTML
    namespaces: tuple[tuple[str, str], ...] = ()
    unparsed: bool = False  # looked structured but did not parse: raw text only
    soap: SoapResult | None = None


# --- the entry point -------------------------------------------------------------


def interpret(
    spec: ResponseSpec, response: OutboundResponse, *, soap: SoapResult | None = None
) -> Interpretation:
    """Decide what a source's answer means. Never raises for anything a source sends.

    `soap` is the SOAP transport's reading of the answer; without it a SOAP envelope
    in the body is parsed here.
    """
    if response.status is None:
        return Interpretation(Outcome.ERROR, reason=response.error or "no response")

    status = response.status
    doc = _read(response, soap)
    reference = _reference(spec, doc)

    if status == 429:
        reason = _with_found_reason(_status_label(status), spec, doc)
        return Interpretation(Outcome.ERROR, reason, reference)
    if status == 410:
        reason = _with_found_reason(_status_label(status), spec, doc)
        return Interpretation(Outcome.FAILURE, reason, reference)
    if doc.soap is not None and doc.soap.is_fault:
        fault = doc.soap
        reason = _clean(fault.fault_message) or f"SOAP fault {fault.fault_code}".strip()
        outcome = Outcome.FAILURE if fault.is_client_fault else Outcome.ERROR
        return Interpretation(outcome, _cap(reason, MAX_REASON_CHARS), reference)
    if status >= 500:
        reason = _with_found_reason(_status_label(status), spec, doc)
        return Interpretation(Outcome.ERROR, reason, reference)

    if not spec.outcome_search_term:
        reason = _found_reason(spec, doc) or spec.default_reason.strip()
        return Interpretation(Outcome.SUCCESS, reason, reference)

    if spec.outcome_on_match not in _NO_MATCH:
        reason = f"invalid outcome_on_match: {spec.outcome_on_match!r}"
        return Interpretation(Outcome.ERROR, _cap(reason, MAX_REASON_CHARS), reference)
    on_match = Outcome(spec.outcome_on_match)
    try:
        pattern = _term_pattern(spec.outcome_search_term)
    except ValueError as exc:
        return Interpretation(Outcome.ERROR, f"invalid {exc}", reference)
    try:
        values = _values(doc, spec.outcome_search_path, text_regex=False)
    except _PathError as exc:
        reason = f"bad outcome_search_path: {exc}"
        return Interpretation(Outcome.ERROR, _cap(reason, MAX_REASON_CHARS), reference)

    matched = any(pattern.search(value) for value in values)
    outcome = on_match if matched else _NO_MATCH[on_match]
    reason = _found_reason(spec, doc) or spec.default_reason.strip()
    if not reason and outcome != Outcome.SUCCESS:
        verb = "matched" if matched else "did not match"
        reason = f"{verb} /{pattern.pattern}/"
        if status >= 400:
            reason = f"{_status_label(status)}: {reason}"
    return Interpretation(outcome, _cap(reason, MAX_REASON_CHARS), reference)


def _status_label(status: int) -> str:
    try:
        return f"HTTP {status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _with_found_reason(label: str, spec: ResponseSpec, doc: _Document) -> str:
    found = _found_reason(spec, doc)
    return _cap(f"{label}: {found}" if found else label, MAX_REASON_CHARS)


def _found_reason(spec: ResponseSpec, doc: _Document) -> str:
    """Every value at reason_path: trimmed, blanks dropped, de-duplicated, sorted."""
    if not spec.reason_path:
        return ""
    try:
        values = _values(doc, spec.reason_path, text_regex=True)
    except _PathError:
        # Checked when the config is saved; a body of an unexpected type (an HTML
        # error page where JSON was promised) simply has no reason to offer.
        return ""
    found = sorted({cleaned for value in values if (cleaned := _clean(value))})
    return _cap(", ".join(found), MAX_REASON_CHARS)


def _reference(spec: ResponseSpec, doc: _Document) -> str:
    if not spec.reference_path:
        return ""
    try:
        values = _values(doc, spec.reference_path, text_regex=True)
    except _PathError:
        return ""
    first = next((cleaned for value in values if (cleaned := _clean(value))), "")
    return _cap(first, MAX_REFERENCE_CHARS)


def _clean(value: str) -> str:
    # Collapsing inner whitespace too keeps HTML and pretty-printed XML readable.
    return " ".join(value.split())


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- regexes ---------------------------------------------------------------------


def _term_pattern(term: str) -> re.Pattern[str]:
    """The search term as a compiled regex; raises ValueError naming the field."""
    if len(term) > MAX_EXPRESSION_LENGTH:
        raise ValueError(
            f"outcome_search_term: longer than {MAX_EXPRESSION_LENGTH} characters"
        )
    pattern = term[1:-1] if len(term) > 1 and term[0] == term[-1] == "/" else term
    try:
        return _compile(pattern)
    except re.error as exc:
        raise ValueError(f"outcome_search_term: {exc}") from None


@functools.lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    # Patterns come from staff-edited configs and are length-capped; bodies are
    # capped too, which bounds (but cannot rule out) slow backtracking.
    return re.compile(pattern, re.IGNORECASE)


# --- reading the body ------------------------------------------------------------


def _read(response: OutboundResponse, soap: SoapResult | None) -> _Document:
    """Decode, detect and parse the body; falls back to raw text, never raises."""
    body = response.body[:MAX_RESPONSE_BYTES]
    charset = _charset(response.headers)
    text = body.decode(charset, errors="replace")
    kind = _declared_kind(response.content_type)
    head = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:256]
    if kind is None:
        kind = _sniff(head)
    elif kind == _Kind.HTML and head.startswith((b"{", b"[")):
        # Plenty of endpoints answer JSON labelled text/html.
        doc = _read_json(text)
        if not doc.unparsed:
            return _with_soap(doc, soap)

    if kind == _Kind.JSON:
        doc = _read_json(text)
    elif kind == _Kind.XML:
        doc = _read_xml(body, text)
    elif kind == _Kind.HTML:
        doc = _read_html(body, text, charset)
    else:
        doc = _Document(_Kind.TEXT, text)
    return _with_soap(doc, soap)


def _with_soap(doc: _Document, soap: SoapResult | None) -> _Document:
    if soap is None and doc.root is not None and doc.kind == _Kind.XML:
        soap = _soap_from_root(doc.root)
    if soap is None:
        return doc
    data = _unflatten(soap.values) if soap.values is not None else None
    return _Document(
        doc.kind, doc.text, data, doc.root, doc.namespaces, doc.unparsed, soap
    )


def _charset(headers: dict[str, str]) -> str:
    for name, value in headers.items():
        if name.lower() == "content-type":
            match = re.search(r"charset=[\"']?([\w.:-]+)", value, re.IGNORECASE)
            if match:
                try:
                    codec = codecs.lookup(match.group(1)).name
                except LookupError:
                    break
                return "utf-8-sig" if codec == "utf-8" else codec
    # utf-8-sig also reads plain UTF-8, and json.loads refuses a leading BOM.
    return "utf-8-sig"


def _declared_kind(content_type: str) -> _Kind | None:
    if content_type in {"text/html", "application/xhtml+xml"}:
        return _Kind.HTML
    if content_type.endswith(("/json", "+json")):
        return _Kind.JSON
    if content_type.endswith(("/xml", "+xml")):
        return _Kind.XML
    return None


_HTML_START = re.compile(
    rb"<(?:!doctype\s+html|html|head|body|title|meta|div|p|span|table|form|h[1-6]|ul"
    rb"|ol|br|pre)[\s/>]",
    re.IGNORECASE,
)


def _sniff(head: bytes) -> _Kind:
    if head.startswith((b"{", b"[")):
        return _Kind.JSON
    if _HTML_START.match(head):
        return _Kind.HTML
    if head.startswith(b"<"):
        return _Kind.XML
    return _Kind.TEXT


# The closing quote is optional so an unterminated string runs to the end in one
# match: a mandatory quote would retry from every escaped quote, quadratic time.
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")


def _json_depth(text: str) -> int:
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    depth = deepest = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    break
        else:
            depth -= 1
    return deepest


def _read_json(text: str) -> _Document:
    if _json_depth(text) > MAX_JSON_DEPTH:
        return _unparsed(text)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return _unparsed(text)
    return _Document(_Kind.JSON, text, data)


def _read_xml(body: bytes, text: str) -> _Document:
    try:
        root = parse_xml(body, max_bytes=MAX_RESPONSE_BYTES)
    except UnsafeXmlError:
        return _unparsed(text)
    namespaces = tuple(sorted((k, v) for k, v in root.nsmap.items() if k))
    return _Document(_Kind.XML, text, root=root, namespaces=namespaces)


def _read_html(body: bytes, text: str, charset: str) -> _Document:
    encoding = None if charset == "utf-8-sig" else charset
    try:
        parser = lxml.html.HTMLParser(
            encoding=encoding,
            no_network=True,
            remove_comments=True,
            remove_pis=True,
            huge_tree=False,
        )
    except LookupError:  # a codec Python knows and libxml2 does not
        return _read_html(body, text, "utf-8-sig") if encoding else _unparsed(text)
    try:
        root = lxml.html.document_fromstring(body, parser=parser)
    except (etree.LxmlError, ValueError):
        return _unparsed(text)
    return _Document(_Kind.HTML, text, root=root)


def _unparsed(text: str) -> _Document:
    return _Document(_Kind.TEXT, text, unparsed=True)


# --- paths -----------------------------------------------------------------------


def _values(doc: _Document, path: str, *, text_regex: bool) -> list[str]:
    """The values `path` selects, or the raw body where the path does not apply.

    `text_regex` says how a plain-text body reads the path: as a regex (reason and
    reference) or not at all (the search path, which then sees the whole body).
    """
    if not path:
        return [doc.text]
    if len(path) > MAX_EXPRESSION_LENGTH:
        raise _PathError(f"longer than {MAX_EXPRESSION_LENGTH} characters")
    if doc.data is not None and doc.soap is not None and not path.startswith("/"):
        return _dot_values(doc.data, path)
    if doc.unparsed:
        # A path written for JSON or XML means nothing to text that failed to parse.
        return [] if text_regex else [doc.text]
    if doc.kind == _Kind.JSON:
        return _dot_values(doc.data, path)
    if doc.kind == _Kind.XML:
        return _xpath_values(doc.root, path, doc.namespaces)
    if doc.kind == _Kind.HTML:
        return _css_values(doc.root, path)
    if not text_regex:
        return [doc.text]
    try:
        pattern = _compile(path)
    except re.error as exc:
        raise _PathError(str(exc)) from None
    return [
        (match.group(1) if pattern.groups else match.group(0)) or ""
        for match in islice(pattern.finditer(doc.text), MAX_VALUES)
    ]


_INDEX = re.compile(r"-?\d+")


def _dot_values(data: Any, path: str) -> list[str]:
    """Follow a dot path: keys, numeric list indexes, `*` over list items and object
    values. A key applied to a list applies to each item, so `errors.message` reads
    every error's message."""
    path = path.removeprefix("$").removeprefix(".")
    nodes = [data]
    for segment in path.split("."):
        following: list[Any] = []
        for node in nodes:
            following.extend(_step(node, segment))
        nodes = following[:MAX_VALUES]
    rendered: list[str] = []
    for node in nodes:
        if isinstance(node, list):
            rendered.extend(_render(item) for item in node)
        else:
            rendered.append(_render(node))
    return rendered[:MAX_VALUES]


def _step(node: Any, segment: str) -> list[Any]:
    if segment == "*":
        if isinstance(node, dict):
            return list(node.values())
        return list(node) if isinstance(node, list) else []
    if isinstance(node, dict):
        return [node[segment]] if segment in node else []
    if isinstance(node, list):
        if _INDEX.fullmatch(segment):
            index = int(segment)
            return [node[index]] if -len(node) <= index < len(node) else []
        return [
            item[segment] for item in node if isinstance(item, dict) and segment in item
        ]
    return []


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@functools.lru_cache(maxsize=256)
def _xpath(path: str, namespaces: tuple[tuple[str, str], ...]) -> Any:
    # No extension functions and no EXSLT regexes: plain XPath 1.0 only.
    return etree.XPath(
        path, namespaces=dict(namespaces), regexp=False, smart_strings=False
    )


def _xpath_values(
    root: Any, path: str, namespaces: tuple[tuple[str, str], ...] = ()
) -> list[str]:
    try:
        result = _xpath(path, namespaces)(root)
    except etree.XPathError as exc:
        raise _PathError(str(exc)) from None
    if isinstance(result, bool):
        return ["true" if result else "false"]
    if isinstance(result, float):
        if math.isfinite(result) and result.is_integer():
            return [str(int(result))]
        return [str(result)]
    if isinstance(result, str):
        return [result]
    values: list[str] = []
    for item in islice(result, MAX_VALUES):
        if etree.iselement(item):
            values.append("".join(item.itertext()))
        elif isinstance(item, str):
            values.append(item)
        elif isinstance(item, tuple):  # a namespace node: (prefix, uri)
            values.append(str(item[-1]))
        else:
            values.append(str(item))
    return values


_ATTR_SUFFIX = re.compile(r"::attr\(\s*([^()\s]+)\s*\)\s*$")


@functools.lru_cache(maxsize=256)
def _css(selector: str) -> tuple[Any, str | None]:
    """A compiled selector and the attribute a trailing `::attr(name)` asks for."""
    attribute = None
    if match := _ATTR_SUFFIX.search(selector):
        attribute = match.group(1)
        selector = selector[: match.start()]
    try:
        expression = HTMLTranslator().css_to_xpath(selector)
    except SelectorError as exc:
        raise _PathError(str(exc) or "invalid CSS selector") from None
    return _xpath(expression, ()), attribute


def _css_values(root: Any, selector: str) -> list[str]:
    xpath, attribute = _css(selector)
    try:
        elements = xpath(root)
    except etree.XPathError as exc:
        raise _PathError(str(exc)) from None
    if attribute is None:
        return ["".join(el.itertext()) for el in islice(elements, MAX_VALUES)]
    return [
        value
        for el in islice(elements, MAX_VALUES)
        if (value := el.get(attribute)) is not None
    ]


# --- SOAP ------------------------------------------------------------------------


def parse_soap_envelope(body: bytes) -> SoapResult | None:
    """Read a SOAP 1.1 or 1.2 envelope safely; None when `body` is not one."""
    try:
        root = parse_xml(body[:MAX_RESPONSE_BYTES], max_bytes=MAX_RESPONSE_BYTES)
    except UnsafeXmlError:
        return None
    return _soap_from_root(root)


def _soap_from_root(root: Any) -> SoapResult | None:
    qname = etree.QName(root)
    if qname.localname != "Envelope" or qname.namespace not in {SOAP_11_NS, SOAP_12_NS}:
        return None
    ns = qname.namespace
    body = root.find(f"{{{ns}}}Body")
    if body is None:
        return SoapResult(values={})
    fault = body.find(f"{{{ns}}}Fault")
    if fault is not None:
        if ns == SOAP_11_NS:
            code = fault.findtext("faultcode") or ""
            message = fault.findtext("faultstring") or ""
        else:
            code = fault.findtext(f"{{{ns}}}Code/{{{ns}}}Value") or ""
            message = fault.findtext(f"{{{ns}}}Reason/{{{ns}}}Text") or ""
        return SoapResult(None, code.strip(), message.strip())
    first = next((child for child in body if isinstance(child.tag, str)), None)
    if first is None:
        return SoapResult(values={})
    values: dict[str, str] = {}
    _flatten(element_to_value(first), etree.QName(first).localname, values)
    # Paths may also start inside the result, as zeep unwraps it: through the
    # response element and any single wrapper (RecordResponse > RecordResult),
    # so "Status" reads RecordResponse.RecordResult.Status (DESIGN §9).
    inner = first
    while True:
        children = [child for child in inner if isinstance(child.tag, str)]
        if len(children) != 1 or not any(isinstance(c.tag, str) for c in children[0]):
            break
        inner = children[0]
    unwrapped = element_to_value(inner)
    if isinstance(unwrapped, dict):
        for key, item in unwrapped.items():
            short: dict[str, str] = {}
            _flatten(item, str(key), short)
            for path, text in short.items():
                values.setdefault(path, text)
    return SoapResult(values=values)


def _flatten(value: object, prefix: str, into: dict[str, str]) -> None:
    if len(into) >= MAX_VALUES:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}", into)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _flatten(item, f"{prefix}.{index}", into)
    else:
        into[prefix] = str(value)


def _unflatten(values: dict[str, str]) -> Any:
    """Dotted keys back into nested objects, so SOAP paths read like JSON paths."""
    tree: dict[str, Any] = {}
    for key, value in values.items():
        node = tree
        *parents, last = key.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {} if child is None else {"#text": child}
            node = child
        if isinstance(node.get(last), dict):
            node[last]["#text"] = value
        else:
            node[last] = value
    return _listify(tree)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {key: _listify(value) for key, value in node.items()}
    if items and set(items) == {str(i) for i in range(len(items))}:
        return [items[str(i)] for i in range(len(items))]
    return items


# --- validation ------------------------------------------------------------------

_DOT_SEGMENT = re.compile(r"\*|-?\d+|[\w\-$@# ]+")


def validate_response_spec(spec: ResponseSpec) -> list[str]:
    """Problems with a spec, one sentence each naming the field; empty when fine.

    Paths are checked against every syntax they might be read with, since the
    body type is only known when the answer arrives.
    """
    problems: list[str] = []
    for name in (
        "outcome_search_term",
        "outcome_search_path",
        "reason_path",
        "default_reason",
        "reference_path",
    ):
        value = getattr(spec, name)
        if not isinstance(value, str):
            problems.append(f"{name} must be text.")
        elif len(value) > MAX_EXPRESSION_LENGTH:
            problems.append(
                f"{name} is longer than {MAX_EXPRESSION_LENGTH} characters."
            )
    if problems:
        return problems

    if spec.outcome_on_match not in set(Outcome):
        problems.append(
            "outcome_on_match must be one of "
            + ", ".join(outcome.value for outcome in Outcome)
            + "."
        )
    if spec.outcome_search_term:
        try:
            _term_pattern(spec.outcome_search_term)
        except ValueError as exc:
            detail = str(exc).removeprefix("outcome_search_term: ")
            problems.append(
                f"outcome_search_term is not a valid regular expression: {detail}."
            )
    for name, regex_allowed in (
        ("outcome_search_path", False),
        ("reason_path", True),
        ("reference_path", True),
    ):
        path = getattr(spec, name)
        if path and (problem := _path_problem(path, regex_allowed=regex_allowed)):
            problems.append(f"{name} {problem}.")
    return problems


def _path_problem(path: str, *, regex_allowed: bool) -> str:
    dotted = path.removeprefix("$").removeprefix(".")
    if all(_DOT_SEGMENT.fullmatch(segment) for segment in dotted.split(".")):
        return ""
    try:
        etree.XPath(path, regexp=False)
    except etree.XPathSyntaxError as exc:
        xpath_error = str(exc)
    else:
        return ""
    try:
        _css(path)
    except _PathError as exc:
        css_error = str(exc)
    else:
        return ""
    if regex_allowed:
        try:
            _compile(path)
        except re.error:
            pass
        else:
            return ""
    kinds = "dot path, XPath or CSS selector" + (" (or regex)" if regex_allowed else "")
    return f"is not a valid {kinds}: XPath says {xpath_error}; CSS says {css_error}"
