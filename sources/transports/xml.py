"""XML method: dotted targets as elements (and `@` attributes) under a root."""

from collections.abc import Sequence

from sources.outbound.payloads import xml_body
from sources.transports import HttpTransport


class XmlTransport(HttpTransport):
    name = "xml"
    content_type = "application/xml; charset=utf-8"

    def body(self, fields: Sequence[tuple[str, str]]) -> bytes:
        return xml_body(fields, root=self.spec.xml_root)
