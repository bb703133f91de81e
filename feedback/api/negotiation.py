"""Parsers, renderers and variable handling for the LeadConduit-compatible URL.

Content negotiation itself is DRF's: these classes only add safe XML in and a
`<result>` document out.
"""

from collections.abc import Mapping
from typing import IO, Any

from django.http import QueryDict
from lxml import etree
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer

from sources.outbound.safexml import UnsafeXmlError, element_to_value, parse_xml

MAX_XML_BYTES = 256 * 1024


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
        try:
            root = parse_xml(stream.read(MAX_XML_BYTES + 1), max_bytes=MAX_XML_BYTES)
        except UnsafeXmlError as exc:
            raise ParseError(str(exc)) from None
        value = element_to_value(root)
        if not isinstance(value, dict):
            raise ParseError("XML parse error - the root element has no fields.")
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


def nest_dotted(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"lead.email": "a@b", "type": "x"} → {"lead": {"email": "a@b"}, "type": "x"}."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        parts = str(key).split(".")
        node = nested
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        leaf = parts[-1]
        if isinstance(value, Mapping):
            existing = node.get(leaf)
            merged = nest_dotted(value)
            node[leaf] = (
                deep_merge(existing, merged) if isinstance(existing, dict) else merged
            )
        else:
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
