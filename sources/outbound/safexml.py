"""Safe XML parsing for anything that comes from outside: intake bodies, source
responses, SOAP. Entities are not resolved, DTDs are neither loaded nor allowed,
the network is never touched, and the input is capped before parsing."""

from lxml import etree

DEFAULT_MAX_BYTES = 1024 * 1024


class UnsafeXmlError(ValueError):
    """The document is refused: too large, malformed, or declares a DTD."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_xml(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse `data` into an element tree root, or raise UnsafeXmlError."""
    if len(data) > max_bytes:
        raise UnsafeXmlError(f"XML body is larger than {max_bytes} bytes.")
    # A DOCTYPE is how entity-expansion bombs and external entities get in; no
    # legitimate feedback or source response needs one.
    if b"<!DOCTYPE" in data.upper() or b"<!ENTITY" in data.upper():
        raise UnsafeXmlError("XML with a DOCTYPE or ENTITY declaration is refused.")
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise UnsafeXmlError(f"XML parse error - {exc}") from None
    if root is None:
        raise UnsafeXmlError("XML parse error - empty document.")
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.doctype:
        # Catches declarations the byte check missed (e.g. UTF-16 documents).
        raise UnsafeXmlError("XML with a DOCTYPE or ENTITY declaration is refused.")
    return root


def element_to_value(element: etree._Element) -> object:
    """An element's children as a dict (repeated names become lists), or its text.

    Attributes are kept under "@name" keys so nothing the sender wrote is lost.
    """
    children = [child for child in element if isinstance(child.tag, str)]
    if not children and not element.attrib:
        return (element.text or "").strip()
    value: dict[str, object] = {f"@{k}": v for k, v in element.attrib.items()}
    for child in children:
        name = etree.QName(child).localname
        item = element_to_value(child)
        if name in value:
            existing = value[name]
            if isinstance(existing, list):
                existing.append(item)
            else:
                value[name] = [existing, item]
        else:
            value[name] = item
    if not children and element.text and element.text.strip():
        value["#text"] = element.text.strip()
    return value
