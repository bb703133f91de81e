"""Reading a source's answer: the spec, the body as JSON, XML, HTML or text
(safely and within bounds), and the values a path selects in it."""

import codecs
import functools
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

from sources.outbound.responses.soap import (
    soap_from_root,
    unflatten,
)
from sources.outbound.responses.spec import (
    MAX_EXPRESSION_LENGTH,
    MAX_JSON_DEPTH,
    MAX_VALUES,
    PathError,
    SoapResult,
    compile_pattern,
)
from sources.outbound.safexml import UnsafeXmlError, parse_xml
from sources.outbound.types import (
    MAX_RESPONSE_BYTES,
    OutboundResponse,
)


class BodyKind(StrEnum):
    JSON = "json"
    XML = "xml"
    HTML = "html"
    TEXT = "text"


@dataclass(frozen=True)
class Document:
    kind: BodyKind
    text: str
    data: Any = None  # parsed JSON, or SOAP values unflattened into the same shape
    root: Any = None  # lxml root element for XML and HTML
    namespaces: tuple[tuple[str, str], ...] = ()
    unparsed: bool = False  # looked structured but did not parse: raw text only
    soap: SoapResult | None = None


def read_document(response: OutboundResponse, soap: SoapResult | None) -> Document:
    """Decode, detect and parse the body; falls back to raw text, never raises."""
    body = response.body[:MAX_RESPONSE_BYTES]
    charset = _charset(response.headers)
    text = body.decode(charset, errors="replace")
    kind = _declared_kind(response.content_type)
    head = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:256]
    if kind is None:
        kind = _sniff(head)
    elif kind == BodyKind.HTML and head.startswith((b"{", b"[")):
        # Plenty of endpoints answer JSON labelled text/html.
        doc = _read_json(text)
        if not doc.unparsed:
            return _with_soap(doc, soap)

    if kind == BodyKind.JSON:
        doc = _read_json(text)
    elif kind == BodyKind.XML:
        doc = _read_xml(body, text)
    elif kind == BodyKind.HTML:
        doc = _read_html(body, text, charset)
    else:
        doc = Document(BodyKind.TEXT, text)
    return _with_soap(doc, soap)


def _with_soap(doc: Document, soap: SoapResult | None) -> Document:
    if soap is None and doc.root is not None and doc.kind == BodyKind.XML:
        soap = soap_from_root(doc.root)
    if soap is None:
        return doc
    data = unflatten(soap.values) if soap.values is not None else None
    return Document(
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


def _declared_kind(content_type: str) -> BodyKind | None:
    if content_type in {"text/html", "application/xhtml+xml"}:
        return BodyKind.HTML
    if content_type.endswith(("/json", "+json")):
        return BodyKind.JSON
    if content_type.endswith(("/xml", "+xml")):
        return BodyKind.XML
    return None


_HTML_START = re.compile(
    rb"<(?:!doctype\s+html|html|head|body|title|meta|div|p|span|table|form|h[1-6]|ul"
    rb"|ol|br|pre)[\s/>]",
    re.IGNORECASE,
)


def _sniff(head: bytes) -> BodyKind:
    if head.startswith((b"{", b"[")):
        return BodyKind.JSON
    if _HTML_START.match(head):
        return BodyKind.HTML
    if head.startswith(b"<"):
        return BodyKind.XML
    return BodyKind.TEXT


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


def _read_json(text: str) -> Document:
    if _json_depth(text) > MAX_JSON_DEPTH:
        return _unparsed(text)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return _unparsed(text)
    return Document(BodyKind.JSON, text, data)


def _read_xml(body: bytes, text: str) -> Document:
    try:
        root = parse_xml(body, max_bytes=MAX_RESPONSE_BYTES)
    except UnsafeXmlError:
        return _unparsed(text)
    namespaces = tuple(sorted((k, v) for k, v in root.nsmap.items() if k))
    return Document(BodyKind.XML, text, root=root, namespaces=namespaces)


def _read_html(body: bytes, text: str, charset: str) -> Document:
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
    return Document(BodyKind.HTML, text, root=root)


def _unparsed(text: str) -> Document:
    return Document(BodyKind.TEXT, text, unparsed=True)


def path_values(doc: Document, path: str, *, text_regex: bool) -> list[str]:
    """The values `path` selects, or the raw body where the path does not apply.

    `text_regex` says how a plain-text body reads the path: as a regex (reason and
    reference) or not at all (the search path, which then sees the whole body).
    """
    if not path:
        return [doc.text]
    if len(path) > MAX_EXPRESSION_LENGTH:
        raise PathError(f"longer than {MAX_EXPRESSION_LENGTH} characters")
    if doc.data is not None and doc.soap is not None and not path.startswith("/"):
        return _dot_values(doc.data, path)
    if doc.unparsed:
        # A path written for JSON or XML means nothing to text that failed to parse.
        return [] if text_regex else [doc.text]
    if doc.kind == BodyKind.JSON:
        return _dot_values(doc.data, path)
    if doc.kind == BodyKind.XML:
        return _xpath_values(doc.root, path, doc.namespaces)
    if doc.kind == BodyKind.HTML:
        return _css_values(doc.root, path)
    if not text_regex:
        return [doc.text]
    try:
        pattern = compile_pattern(path)
    except re.error as exc:
        raise PathError(str(exc)) from None
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
        raise PathError(str(exc)) from None
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
def css_selector(selector: str) -> tuple[Any, str | None]:
    """A compiled selector and the attribute a trailing `::attr(name)` asks for."""
    attribute = None
    if match := _ATTR_SUFFIX.search(selector):
        attribute = match.group(1)
        selector = selector[: match.start()]
    try:
        expression = HTMLTranslator().css_to_xpath(selector)
    except SelectorError as exc:
        raise PathError(str(exc) or "invalid CSS selector") from None
    return _xpath(expression, ()), attribute


def _css_values(root: Any, selector: str) -> list[str]:
    xpath, attribute = css_selector(selector)
    try:
        elements = xpath(root)
    except etree.XPathError as exc:
        raise PathError(str(exc)) from None
    if attribute is None:
        return ["".join(el.itertext()) for el in islice(elements, MAX_VALUES)]
    return [
        value
        for el in islice(elements, MAX_VALUES)
        if (value := el.get(attribute)) is not None
    ]
