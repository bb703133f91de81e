"""Build the exact HTTP request for one notification from a config and its fields.

Pure functions over plain values: the model layer turns a FeedbackConfig into a
`RequestSpec` and renders its mappings into `(target, value)` pairs; what comes
back is the `OutboundRequest` that is previewed in the admin and sent as is.

How targets are read, per method (DESIGN §5.1):

- query, form: a target is the parameter name, dots and all (`lead.email` is sent
  as `lead.email=...`), except that numeric segments are dropped so `tags.0` and
  `tags.1` send `tags` twice. Repeating a target repeats the parameter.
- json: a dotted path; names make objects, numeric segments make arrays, ordered
  by index (gaps close up). `a` and `a.b` together, or a target given twice, is a
  BuildError naming both targets.
- xml: a dotted path of elements under `xml_root`, `lead@id` sets an attribute,
  a numeric segment repeats the element before it (`phone.0`, `phone.1` make two
  `<phone>`). With an empty `xml_root` the first segment is the document element.
- soap: a dotted path into the operation's arguments (see soap.py).

Values are strings and stay strings (a JSON number needs the source to accept a
string); escaping is the serialiser's job (json, lxml, urlencode).
"""

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from lxml import etree
from requests.structures import CaseInsensitiveDict

from sources.outbound import signing
from sources.outbound.types import OutboundRequest

if TYPE_CHECKING:
    from zeep import Client

METHODS = ("query", "form", "json", "xml", "soap")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH")
AUTH_TYPES = ("none", "basic", "bearer", "header", "wsse")
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'

CONTENT_TYPES = {
    "form": "application/x-www-form-urlencoded",
    "json": "application/json",
    "xml": "application/xml; charset=utf-8",
}
# Set by the HTTP client or by the signing; a configured header may not replace them.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class BuildError(ValueError):
    """The config and fields cannot make a request; the message says which part."""


@dataclass(frozen=True)
class Auth:
    """How the request authenticates; only the fields its `type` needs are read."""

    type: str = "none"  # none | basic | bearer | header | wsse
    username: str = ""  # basic, wsse
    password: str = ""  # basic, wsse
    token: str = ""  # bearer
    name: str = ""  # header: the header's name
    value: str = ""  # header: its value
    password_digest: bool = False  # wsse: PasswordDigest instead of PasswordText


@dataclass(frozen=True)
class RequestSpec:
    """Everything about a config that shapes the request, minus the field values."""

    method: str  # query | form | json | xml | soap
    url: str  # for SOAP, the WSDL's URL; the request goes to its service address
    http_method: str = ""  # empty: GET for query, POST otherwise; SOAP always POSTs
    headers: dict[str, str] = field(default_factory=dict)
    auth: Auth = field(default_factory=Auth)
    signing_secret: str = ""  # a whsec_ secret; empty: not signed
    soap_operation: str = ""
    soap_version: str = "1.1"  # "1.1" | "1.2"
    xml_root: str = "feedback"
    timeout_s: float = 10.0


def build_request(
    spec: RequestSpec,
    fields: Sequence[tuple[str, str]],
    *,
    message_id: str,
    now: datetime,
    soap_client: "Client | None" = None,
) -> OutboundRequest:
    """The request `spec` makes of `fields`, or BuildError.

    `message_id` is the notification's stable id, always sent as `webhook-id`;
    `now` (timezone-aware) stamps the signature and WS-Security. SOAP needs the
    loaded WSDL: pass `soap.soap_client(spec.url, ...)` as `soap_client`.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware.")
    if spec.method not in METHODS:
        raise BuildError(f"Unknown method {spec.method!r}.")
    if spec.auth.type not in AUTH_TYPES:
        raise BuildError(f"Unknown authentication type {spec.auth.type!r}.")
    if spec.auth.type == "wsse" and spec.method != "soap":
        raise BuildError("WS-Security authentication needs the SOAP method.")

    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    if spec.method == "soap":
        base = _soap_request(spec, fields, now=now, soap_client=soap_client)
        http_method, url, body = "POST", base.url, base.body
        headers.update(base.headers)
    else:
        http_method = _http_method(spec)
        url = _check_url(spec.url)
        body = b""
        if spec.method == "query":
            url = _append_query(url, _flat_pairs(fields))
        elif spec.method == "form":
            body = urlencode(_flat_pairs(fields)).encode("ascii")
        elif spec.method == "json":
            body = json_body(fields)
        else:
            body = xml_body(fields, root=spec.xml_root)
        if spec.method in CONTENT_TYPES:
            headers["Content-Type"] = CONTENT_TYPES[spec.method]

    _add_configured_headers(headers, spec.headers)
    _add_auth(headers, spec.auth, configured=spec.headers)
    headers["webhook-id"] = _header_value("webhook-id", message_id)
    if spec.signing_secret:
        try:
            signature = signing.sign(
                spec.signing_secret, message_id, int(now.timestamp()), body
            )
        except signing.SigningSecretError as exc:
            raise BuildError(str(exc)) from None
        headers.update(signature)
    return OutboundRequest(
        method=http_method, url=url, headers=dict(headers.items()), body=body
    )


def validate_headers(headers: dict[str, str]) -> None:
    """BuildError unless `headers` may be configured (names, values, reserved)."""
    _add_configured_headers(CaseInsensitiveDict(), headers)


# -- URL and method ------------------------------------------------------------


def _http_method(spec: RequestSpec) -> str:
    method = (spec.http_method or ("GET" if spec.method == "query" else "POST")).upper()
    if method not in HTTP_METHODS:
        raise BuildError(f"HTTP method {spec.http_method!r} is not supported.")
    return method


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BuildError(f"{url!r} is not an http or https URL.")
    return url


def _append_query(url: str, pairs: list[tuple[str, str]]) -> str:
    if not pairs:
        return url
    parts = urlsplit(url)
    query = "&".join(part for part in (parts.query, urlencode(pairs)) if part)
    return urlunsplit(parts._replace(query=query))


# -- Headers and auth ----------------------------------------------------------


def _header_value(name: str, value: str) -> str:
    if _BAD_VALUE.search(value):
        raise BuildError(f"Header {name}: line breaks and control characters.")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise BuildError(
            f"Header {name}: only Latin-1 characters can be sent."
        ) from None
    return value.strip()


def _add_configured_headers(
    headers: CaseInsensitiveDict[str], configured: dict[str, str]
) -> None:
    for name, value in configured.items():
        if not _TOKEN.match(name):
            raise BuildError(f"{name!r} is not a valid header name.")
        if name.lower() in RESERVED_HEADERS:
            raise BuildError(
                f"Header {name} is set by Leadback and cannot be configured."
            )
        headers[name] = _header_value(name, str(value))


def _add_auth(
    headers: CaseInsensitiveDict[str], auth: Auth, *, configured: dict[str, str]
) -> None:
    if auth.type == "basic":
        credentials = f"{auth.username}:{auth.password}".encode()
        name, value = "Authorization", "Basic " + base64.b64encode(credentials).decode()
    elif auth.type == "bearer":
        name, value = "Authorization", f"Bearer {auth.token}"
    elif auth.type == "header":
        if not _TOKEN.match(auth.name):
            raise BuildError(f"{auth.name!r} is not a valid header name.")
        if auth.name.lower() in RESERVED_HEADERS:
            raise BuildError(f"Header {auth.name} is set by Leadback.")
        name, value = auth.name, auth.value
    else:  # none, or wsse (in the SOAP envelope)
        return
    if any(existing.lower() == name.lower() for existing in configured):
        raise BuildError(f"Header {name} is set both by the headers and the auth.")
    headers[name] = _header_value(name, value)


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


def _flat_pairs(fields: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
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


def xml_body(fields: Sequence[tuple[str, str]], *, root: str) -> bytes:
    """A UTF-8 XML document of the fields under `root` (see the module docstring)."""
    tree = _tree(fields, attributes=True)
    if root:
        document = _Node(target="", children={root: tree})
    else:
        document = tree
        if document.attributes:
            raise BuildError("An attribute needs an element: set the XML root.")
    if len(document.children) != 1 or document.is_array:
        names = ", ".join(document.children) or "none"
        raise BuildError(
            f"An XML document has one root element; the targets give {names}."
        )
    ((name, element),) = document.children.items()
    holder = etree.Element("holder")
    _xml_element(holder, name, element)
    return XML_DECLARATION + etree.tostring(holder[0], encoding="UTF-8")


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


def _soap_request(
    spec: RequestSpec,
    fields: Sequence[tuple[str, str]],
    *,
    now: datetime,
    soap_client: "Client | None",
) -> OutboundRequest:
    # Imported here: soap.py builds on this module's path rules.
    from sources.outbound import soap

    if soap_client is None:
        raise BuildError("A SOAP request needs its WSDL loaded (soap_client).")
    if not spec.soap_operation:
        raise BuildError("A SOAP request needs an operation.")
    wsse = None
    if spec.auth.type == "wsse":
        wsse = soap.username_token(
            spec.auth.username,
            spec.auth.password,
            digest=spec.auth.password_digest,
            created=now,
        )
    return soap.build_soap_request(
        soap_client,
        spec.soap_operation,
        fields,
        version=spec.soap_version,
        wsse=wsse,
    )
