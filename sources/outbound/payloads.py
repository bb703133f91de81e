"""The shapes mapped fields take on the wire: nested trees, JSON, XML, flat pairs.

Shared by every outbound method (sources/transports/) and by the SOAP glue, so
none of them needs another's module. How targets are read, per method
(DESIGN §5.1):

- query, form: a target is the parameter name, dots and all (`lead.email` is sent
  as `lead.email=...`), except that numeric segments are dropped so `tags.0` and
  `tags.1` send `tags` twice. Repeating a target repeats the parameter.
- json: a dotted path; names make objects, numeric segments make arrays, ordered
  by index (gaps close up). `a` and `a.b` together, or a target given twice, is a
  BuildError naming both targets.
- xml: a dotted path of elements, `lead@id` sets an attribute, a numeric segment
  repeats the element before it (`phone.0`, `phone.1` make two `<phone>`). As in
  LeadConduit, targets sharing one first segment name the document element
  (`lead.fname`, `lead.lname` give `<lead>…</lead>`); otherwise they go inside
  `<feedback>`. An explicit `xml_root` always wraps them.
- soap: a dotted path into the operation's arguments (see outbound/soap.py).

Values are strings and stay strings (a JSON number needs the source to accept a
string); escaping is the serialiser's job (json, lxml, urlencode).
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from lxml import etree

XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
# The document element when the targets do not name a single one.
DEFAULT_XML_ROOT = "feedback"


class BuildError(ValueError):
    """The config and fields cannot make a request; the message says which part."""


# -- URLs ------------------------------------------------------------------------


def check_url(url: str) -> str:
    """`url`, or BuildError unless it is http(s) with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BuildError(f"{url!r} is not an http or https URL.")
    return url


def append_query(url: str, pairs: list[tuple[str, str]]) -> str:
    """`url` with `pairs` added to its query string."""
    if not pairs:
        return url
    parts = urlsplit(url)
    query = "&".join(part for part in (parts.query, urlencode(pairs)) if part)
    return urlunsplit(parts._replace(query=query))


# -- Paths -----------------------------------------------------------------------


def _is_index(segment: str) -> bool:
    return segment.isascii() and segment.isdigit()


def _segments(target: str, path: str) -> list[str]:
    segments = path.split(".")
    if any(not segment.strip() for segment in segments):
        raise BuildError(f"Target {target!r} has an empty path segment.")
    # "01" and "1" are the same index.
    return [str(int(s)) if _is_index(s) else s.strip() for s in segments]


@dataclass
class _Node:
    """One object, array or value of the tree the targets describe."""

    target: str  # the first target that reached it, for error messages
    text: str | None = None
    children: dict[str, "_Node"] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def is_array(self) -> bool:
        return bool(self.children) and _is_index(next(iter(self.children)))

    def items(self) -> list[tuple[str, "_Node"]]:
        if self.is_array:
            return sorted(self.children.items(), key=lambda item: int(item[0]))
        return list(self.children.items())


def _conflict(first: str, second: str) -> BuildError:
    if first == second:
        return BuildError(f"Target {first!r} is mapped twice.")
    return BuildError(
        f"Targets {first!r} and {second!r} conflict: one needs a value where the "
        "other needs an object or a list."
    )


def _walk(root: _Node, segments: list[str], target: str) -> _Node:
    node = root
    for segment in segments:
        if node.text is not None:
            raise _conflict(node.target, target)
        if node.children and _is_index(segment) != node.is_array:
            raise _conflict(node.target, target)
        node = node.children.setdefault(segment, _Node(target))
    return node


def _tree(fields: Sequence[tuple[str, str]], *, attributes: bool = False) -> _Node:
    root = _Node(target="")
    for raw_target, value in fields:
        target = raw_target.strip()
        if not target:
            raise BuildError("A mapping has no target.")
        path, attribute = target, ""
        if attributes and "@" in target:
            path, _, attribute = target.partition("@")
            if not attribute:
                raise BuildError(f"Target {target!r} names no attribute.")
        node = _walk(root, _segments(target, path) if path else [], target)
        if attribute:
            if node.is_array or attribute in node.attributes:
                raise _conflict(node.target, target)
            node.attributes[attribute] = value
        else:
            if node.text is not None or node.children:
                raise _conflict(node.target, target)
            node.text = value
    return root


def nest_fields(fields: Sequence[tuple[str, str]]) -> Any:
    """The nested dicts and lists dotted targets describe (JSON and SOAP rules)."""
    return _to_python(_tree(fields))


def _to_python(node: _Node) -> Any:
    if node.text is not None:
        return node.text
    if node.is_array:
        return [_to_python(child) for _, child in node.items()]
    return {name: _to_python(child) for name, child in node.items()}


def flat_pairs(fields: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(name, value) parameters: targets as names, numeric segments dropped."""
    pairs = []
    for raw_target, value in fields:
        target = raw_target.strip()
        if not target:
            raise BuildError("A mapping has no target.")
        name = ".".join(s for s in target.split(".") if not _is_index(s)) or target
        pairs.append((name, value))
    return pairs


# -- Bodies ----------------------------------------------------------------------


def json_body(fields: Sequence[tuple[str, str]]) -> bytes:
    """Compact UTF-8 JSON of the nested fields."""
    return json.dumps(
        nest_fields(fields), ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


def xml_body(fields: Sequence[tuple[str, str]], *, root: str = "") -> bytes:
    """A UTF-8 XML document of the fields: under `root` if given, else under the
    one element the targets start with, else under `<feedback>` (see the module
    docstring)."""
    tree = _tree(fields, attributes=True)
    if not root and not _single_element(tree):
        root = DEFAULT_XML_ROOT
    document = _Node(target="", children={root: tree}) if root else tree
    ((name, element),) = document.children.items()
    holder = etree.Element("holder")
    _xml_element(holder, name, element)
    return XML_DECLARATION + etree.tostring(holder[0], encoding="UTF-8")


def _single_element(tree: _Node) -> bool:
    """Whether the targets describe one element to be the document element: one
    first segment, not repeated (`lead.0`), and no attribute of its own (`@v`)."""
    if tree.attributes or len(tree.children) != 1 or tree.is_array:
        return False
    (element,) = tree.children.values()
    return not element.is_array


def _xml_element(parent: etree._Element, name: str, node: _Node) -> None:
    if node.is_array:
        if node.attributes:
            raise BuildError(
                f"Target {node.target!r}: repeated elements take attributes per "
                "item (name.0@attr)."
            )
        for _, item in node.items():
            if item.is_array:
                raise BuildError(f"Target {item.target!r}: XML has no nested lists.")
            _xml_element(parent, name, item)
        return
    try:
        element = etree.SubElement(parent, name)
        for attribute, value in node.attributes.items():
            element.set(attribute, value)
        if node.text is not None:
            element.text = node.text
    except ValueError as exc:
        raise BuildError(f"Target {node.target!r}: {exc}.") from None
    for child_name, child in node.items():
        _xml_element(element, child_name, child)
