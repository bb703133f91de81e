"""Query-string method: the fields as GET parameters on the config's URL."""

from collections.abc import Sequence

from sources.outbound.payloads import append_query, flat_pairs
from sources.transports import HttpTransport


class QueryTransport(HttpTransport):
    name = "query"
    http_method = "GET"

    def target_url(self, url: str, fields: Sequence[tuple[str, str]]) -> str:
        return append_query(url, flat_pairs(fields))
