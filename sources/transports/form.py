"""Form method: the fields as an application/x-www-form-urlencoded body."""

from collections.abc import Sequence
from urllib.parse import urlencode

from sources.outbound.payloads import flat_pairs
from sources.transports import HttpTransport


class FormTransport(HttpTransport):
    name = "form"
    content_type = "application/x-www-form-urlencoded"

    def body(self, fields: Sequence[tuple[str, str]]) -> bytes:
        return urlencode(flat_pairs(fields)).encode("ascii")
