"""Parsers, renderers and variable handling for the API and the LeadConduit URL.

Content negotiation itself is DRF's: these classes add a cap on the body, a
bound on nesting and the text check (feedback/safetext.py) to every body
format, safe XML in, and a `<result>` document out.
"""

import io
import re
from collections.abc import Iterable, Mapping
from itertools import accumulate
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import QueryDict
from lxml import etree
from rest_framework.exceptions import ParseError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser, FormParser, JSONParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.utils import json

from feedback.api.errors import InputRefused
from feedback.safetext import (
    MAX_DEPTH,
    TOO_DEEP_MESSAGE,
    find_problem,
    find_variable_problem,
    join,
    shown,
)
from sources.outbound.safexml import UnsafeXmlError, element_to_value, parse_xml

MAX_XML_BYTES = 256 * 1024


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, answered without parsing in the common cases: a body
    of exactly the first parser's media type, and a client that leaves the answer's
    format to the view (no `Accept`, as most API clients send, `*/*`, or exactly
    the first renderer's media type, and no `?format=`). DRF's own matching
    reaches the same parser and renderer, after building the request's whole
    header map and parsing each media type."""

    def select_renderer(
        self,
        request: Request,
        renderers: Iterable[BaseRenderer],
        format_suffix: str | None = None,
    ) -> Any:
        # DRF passes lists; anything else goes the long way.
        if isinstance(renderers, list | tuple) and renderers and not format_suffix:
            first = renderers[0]
            accept = request.META.get("HTTP_ACCEPT", "*/*")
            if (accept == "*/*" or accept == first.media_type) and not (
                request.META.get("QUERY_STRING") and self._format_asked(request)
            ):
                return first, first.media_type
        return super().select_renderer(request, renderers, format_suffix)

    def select_parser(
        self, request: Request, parsers: Iterable[BaseParser]
    ) -> BaseParser | None:
        # A body sent as exactly the first parser's media type is that parser's,
        # which is what DRF's matching would conclude after parsing both types.
        if (
            isinstance(parsers, list | tuple)
            and parsers
            and request.content_type == parsers[0].media_type
        ):
            return parsers[0]
        return super().select_parser(request, parsers)

    def _format_asked(self, request: Request) -> bool:
        name = self.settings.URL_FORMAT_OVERRIDE
        return bool(name and request.query_params.get(name))


def read_body(stream: IO[bytes], limit: int | None = None) -> bytes:
    """The body, refused past `limit` (DATA_UPLOAD_MAX_MEMORY_SIZE): DRF's parsers
    read the stream directly, where Django's own cap does not apply."""
    cap: int | None = settings.DATA_UPLOAD_MAX_MEMORY_SIZE if limit is None else limit
    if cap is None:  # Django's way of saying "no limit"
        return stream.read()
    data = stream.read(cap + 1)
    if len(data) > cap:
        raise RequestDataTooBig(f"The request body is larger than {cap:,} bytes.")
    return data


def _refuse_problems(value: Any) -> None:
    problem = find_problem(value)
    if problem is not None:
        raise InputRefused.from_problem(problem)


# Strings (whatever brackets they hold) and everything that is not a bracket.
_NOT_BRACKETS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[^\[\]{}"]+', re.DOTALL)
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1, '"': 0}
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}:,]', re.DOTALL)


def json_too_deep(text: str, limit: int = MAX_DEPTH) -> str | None:
    """The path to where the JSON `text` nests deeper than `limit`, or None.

    Read before parsing: Python's parser recurses, and a body of a few thousand
    brackets would exhaust the interpreter's stack instead of answering 400.
    """
    brackets = _NOT_BRACKETS.sub("", text)
    if not brackets or max(accumulate(map(_STEP.__getitem__, brackets))) <= limit:
        return None
    return _deep_path(text, limit)


def _deep_path(text: str, limit: int) -> str:
    # Only for refused bodies: walk the tokens to name the place, e.g. custom.a.b.
    containers: list[str] = []
    path: list[str] = []  # the current member of each open container
    last_string = ""
    for match in _TOKENS.finditer(text):
        piece = match.group()
        if piece in "{[":
            if len(containers) == limit:
                break
            containers.append(piece)
            path.append("0" if piece == "[" else "")
        elif piece in "}]":
            if containers:
                containers.pop()
                path.pop()
        elif piece == ",":
            if containers and containers[-1] == "[":
                path[-1] = str(int(path[-1]) + 1)
        elif piece == ":":
            if containers and containers[-1] == "{":
                path[-1] = _key(last_string)
        else:
            last_string = piece
    return ".".join(path)


def _key(quoted: str) -> str:
    try:
        return shown(str(json.loads(quoted)))
    except ValueError:
        return shown(quoted[1:-1])


class JSONBodyParser(JSONParser):
    """JSON within the body limit, nested at most MAX_DEPTH levels, with text the
    database can store (else 413, 400 or 422 naming the field)."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = read_body(stream).decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise ParseError(
                f"JSON parse error - the body is not valid {encoding} text."
            ) from None
        # Fewer brackets than the limit cannot nest past it: one feedback skips
        # the scan, a batch pays for it.
        if text.count("{") + text.count("[") > MAX_DEPTH:
            where = json_too_deep(text)
            if where is not None:
                raise InputRefused(where, TOO_DEEP_MESSAGE, status_code=400)
        try:
            data = json.loads(text)  # DRF's: NaN and Infinity are refused
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        # Decoded text holds no lone surrogate and the parser refuses a raw NUL
        # in a string: JSON carries either only as a \u escape.
        if "\\u" in text:
            _refuse_problems(data)
        return data


class FormBodyParser(FormParser):
    """A form within the body limit and DATA_UPLOAD_MAX_NUMBER_FIELDS (Django's
    QueryDict counts them), with text the database can store."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        data = super().parse(io.BytesIO(read_body(stream)), media_type, parser_context)
        problem = find_variable_problem(data.lists())
        if problem is not None:
            raise InputRefused.from_problem(problem)
        return data


class XMLParser(BaseParser):
    """`<feedback><type>return</type>…</feedback>` → {"type": "return", …}.

    The root element is dropped, as LeadConduit does.
    """

    media_type = "application/xml"

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        data = read_body(stream, MAX_XML_BYTES)
        try:
            root = parse_xml(data, max_bytes=MAX_XML_BYTES)
        except UnsafeXmlError as exc:
            raise ParseError(str(exc)) from None
        value = element_to_value(root)
        if not isinstance(value, dict):
            raise ParseError("XML parse error - the root element has no fields.")
        _refuse_problems(value)
        return value


class TextXMLParser(XMLParser):
    media_type = "text/xml"


class ResultXMLRenderer(BaseRenderer):
    """Renders a dict as `<result>…</result>`; None becomes an empty element."""

    media_type = "application/xml"
    format = "xml"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        root = etree.Element("result")
        _append(root, data)
        return etree.tostring(root, xml_declaration=True, encoding="utf-8")


class TextXMLRenderer(ResultXMLRenderer):
    media_type = "text/xml"


def _append(parent: etree._Element, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _append(etree.SubElement(parent, _tag(str(key))), item)
    elif isinstance(value, list | tuple):
        for item in value:
            _append(etree.SubElement(parent, "item"), item)
    elif value is not None:
        parent.text = str(value).lower() if isinstance(value, bool) else str(value)


def _tag(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-." else "_" for c in name)
    return cleaned if cleaned[:1].isalpha() or cleaned[:1] == "_" else f"_{cleaned}"


def nest_dotted(
    flat: Mapping[str, Any], *, path: str = "", depth: int = 1
) -> dict[str, Any]:
    """{"lead.email": "a@b", "type": "x"} → {"lead": {"email": "a@b"}, "type": "x"}.

    A name of n parts is n levels deep, as in JSON; past MAX_DEPTH it is refused
    (400) before the merges below can recurse that far.
    """
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        parts = str(key).split(".")
        if depth + len(parts) - 1 > MAX_DEPTH:
            raise InputRefused(
                join(path, shown(str(key))), TOO_DEEP_MESSAGE, status_code=400
            )
        node = nested
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        leaf = parts[-1]
        if isinstance(value, Mapping):
            existing = node.get(leaf)
            merged = nest_dotted(
                value, path=join(path, str(key)), depth=depth + len(parts)
            )
            node[leaf] = (
                deep_merge(existing, merged) if isinstance(existing, dict) else merged
            )
        else:
            # Lists keep their shape; their nesting counts from where they land.
            problem = find_problem(
                value, join(path, str(key)), depth=depth + len(parts) - 1
            )
            if problem is not None and problem.too_deep:
                raise InputRefused.from_problem(problem)
            node[leaf] = value
    return nested


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` wins, key by key, at every depth."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def querydict_to_dict(query: QueryDict | Mapping[str, Any]) -> dict[str, Any]:
    """A QueryDict's last value per key (a repeated key keeps its last value)."""
    if isinstance(query, QueryDict):
        return {key: query[key] for key in query}
    return dict(query)
