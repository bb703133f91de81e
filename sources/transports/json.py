"""JSON method: dotted targets nested into one JSON document."""

from collections.abc import Sequence

from sources.outbound.payloads import json_body
from sources.transports import HttpTransport


class JsonTransport(HttpTransport):
    name = "json"
    content_type = "application/json"

    def body(self, fields: Sequence[tuple[str, str]]) -> bytes:
        return json_body(fields)
