"""Reading a SOAP envelope's result or fault into flat values a dot path reads."""

from typing import Any

from lxml import etree

from sources.outbound.responses.spec import (
    MAX_VALUES,
    SOAP_11_NS,
    SOAP_12_NS,
    SoapResult,
)
from sources.outbound.safexml import UnsafeXmlError, element_to_value, parse_xml
from sources.outbound.types import (
    MAX_RESPONSE_BYTES,
)


def parse_soap_envelope(body: bytes) -> SoapResult | None:
    """Read a SOAP 1.1 or 1.2 envelope safely; None when `body` is not one."""
    try:
        root = parse_xml(body[:MAX_RESPONSE_BYTES], max_bytes=MAX_RESPONSE_BYTES)
    except UnsafeXmlError:
        return None
    return soap_from_root(root)


def soap_from_root(root: Any) -> SoapResult | None:
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


def unflatten(values: dict[str, str]) -> Any:
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
