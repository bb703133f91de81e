"""SOAP through zeep: load a WSDL, build an operation's envelope, read the reply.

zeep does the SOAP; this module is the glue. WSDLs and the schemas they import are
fetched through the guarded session (http and https only, no redirects, a size
cap) and kept for a few minutes. Requests are built, not sent, by zeep: they come
back as an `OutboundRequest` for sending.send(), like every other method.
"""

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import zeep
from lxml import etree
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import Fault
from zeep.helpers import serialize_object
from zeep.wsdl import Document
from zeep.wsdl.bindings.soap import Soap11Binding, Soap12Binding
from zeep.wsse.username import UsernameToken

from sources.outbound.guard import DestinationRefused
from sources.outbound.payloads import XML_DECLARATION, BuildError, nest_fields
from sources.outbound.safexml import UnsafeXmlError, parse_xml
from sources.outbound.sending import network_reason, read_body, shared_session
from sources.outbound.types import MAX_RESPONSE_BYTES, OutboundRequest

logger = logging.getLogger(__name__)

WSDL_CACHE_TTL_S = 300.0
WSDL_MAX_BYTES = 10 * 1024 * 1024
SOAP_11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_12_ENV = "http://www.w3.org/2003/05/soap-envelope"
_BINDINGS: dict[str, type] = {"1.1": Soap11Binding, "1.2": Soap12Binding}

_cache: dict[str, tuple[float, Any]] = {}
_cache_lock = threading.Lock()


class WsdlError(Exception):
    """The WSDL (or a schema it imports) could not be fetched or understood."""


class SoapResponseError(ValueError):
    """The body is not a SOAP envelope this operation can be read from."""


@dataclass(frozen=True)
class SoapFault:
    """A SOAP fault. `code` drops the namespace prefix and joins SOAP 1.2 subcodes
    with dots, so 1.1 gives e.g. "Client.UnknownEvent" and 1.2
    "Sender.UnknownEvent"."""

    code: str
    message: str


class GuardedTransport(zeep.Transport):
    """zeep's transport on a guarded session, loading only http(s) documents."""

    def __init__(self, session: requests.Session, timeout: float) -> None:
        # Transport.__init__ is skipped on purpose: it mounts a file:// adapter on
        # the session (a WSDL could then import local files, and the session is
        # shared with sending) and rewrites the session's User-Agent.
        self.cache = None
        self.load_timeout = timeout
        self.operation_timeout = timeout
        self.logger = logger
        self._close_session = False
        self.session = session

    def load(self, url: str) -> bytes:
        if urlsplit(url).scheme not in ("http", "https"):
            raise DestinationRefused(f"Only http and https documents load: {url!r}.")
        return self._load_remote_data(url)

    def _load_remote_data(self, url: str) -> bytes:
        deadline = time.monotonic() + self.load_timeout
        with self.session.get(
            url, timeout=self.load_timeout, allow_redirects=False, stream=True
        ) as response:
            if response.status_code != 200:
                raise WsdlError(f"{url} answered HTTP {response.status_code}.")
            try:
                content = read_body(
                    response, max_bytes=WSDL_MAX_BYTES + 1, deadline=deadline
                )
            except TimeoutError:
                raise WsdlError(f"{url} did not finish in time.") from None
        if len(content) > WSDL_MAX_BYTES:
            raise WsdlError(f"{url} is larger than {WSDL_MAX_BYTES} bytes.")
        return content


def _settings() -> zeep.Settings:
    return zeep.Settings(
        strict=False,
        xml_huge_tree=False,
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
    )


def soap_client(
    wsdl_url: str, *, session: requests.Session | None = None, timeout: float = 10.0
) -> zeep.Client:
    """A zeep client for `wsdl_url`; the parsed WSDL is cached for a few minutes.

    The WSDL is fetched with `session` (default: this thread's shared session).

    Raises WsdlError when the WSDL cannot be loaded (network, SSRF guard, HTTP
    status, size, or a document zeep cannot read).
    """
    transport = GuardedTransport(session or shared_session(), timeout)
    settings = _settings()
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(wsdl_url)
    if cached is not None and now - cached[0] < WSDL_CACHE_TTL_S:
        document = cached[1]
    else:
        try:
            # zeep annotates the transport as a class; it takes an instance.
            document = Document(wsdl_url, transport, settings=settings)  # type: ignore[arg-type]
        except WsdlError:
            raise
        except (requests.RequestException, DestinationRefused) as exc:
            reason = network_reason(exc, urlsplit(wsdl_url).hostname or "")
            raise WsdlError(f"Could not load the WSDL: {reason}") from exc
        except Exception as exc:
            # zeep and lxml raise many kinds of errors for documents they cannot
            # read; to the caller they all mean "this WSDL does not work".
            raise WsdlError(f"Could not load the WSDL: {exc}") from exc
        with _cache_lock:
            for url, (loaded_at, _) in list(_cache.items()):
                if now - loaded_at >= WSDL_CACHE_TTL_S:
                    del _cache[url]
            _cache[wsdl_url] = (now, document)
    return zeep.Client(document, transport=transport, settings=settings)


def clear_wsdl_cache() -> None:
    """Forget every loaded WSDL (after a config's WSDL URL or the WSDL changed)."""
    with _cache_lock:
        _cache.clear()


def username_token(
    username: str, password: str, *, digest: bool, created: datetime
) -> UsernameToken:
    """A WS-Security UsernameToken (PasswordText, or PasswordDigest with a nonce)."""
    return UsernameToken(username, password, use_digest=digest, created=created)


def _service(client: zeep.Client, version: str) -> Any:
    """The client's service proxy for the first port of the given SOAP version."""
    binding_class = _BINDINGS.get(version)
    if binding_class is None:
        raise BuildError(f"SOAP version {version!r} is not supported.")
    for service_name, service in client.wsdl.services.items():
        for port_name, port in service.ports.items():
            if isinstance(port.binding, binding_class):
                return client.bind(service_name, port_name)
    raise BuildError(f"The WSDL has no SOAP {version} port.")


def _operation(service: Any, name: str) -> Any:
    try:
        return service._binding.get(name)
    except ValueError:
        known = ", ".join(sorted(service._binding._operations)) or "none"
        raise BuildError(
            f"The WSDL has no operation {name!r} (it has: {known})."
        ) from None


def build_soap_request(
    client: zeep.Client,
    operation: str,
    fields: Sequence[tuple[str, str]],
    *,
    version: str = "1.1",
    wsse: UsernameToken | None = None,
) -> OutboundRequest:
    """The POST that calls `operation` with `fields` as its (dotted) arguments.

    `Contact.Email` fills the Email of the Contact argument; numeric segments
    make repeated values. The URL is the port's address in the WSDL. SOAP 1.1
    carries the action in a SOAPAction header, SOAP 1.2 in the Content-Type.
    """
    service = _service(client, version)
    _operation(service, operation)
    arguments = nest_fields(fields)
    if not isinstance(arguments, dict):
        raise BuildError("SOAP arguments are named, not numbered.")
    try:
        # zeep's create_message() without the header dropping: the binding's
        # _create() also returns the HTTP headers zeep would send.
        envelope, headers = service._binding._create(
            operation,
            (),
            arguments,
            client=client,
            options=service._binding_options,
        )
    except (TypeError, ValueError, ZeepError) as exc:
        raise BuildError(f"SOAP arguments for {operation}: {exc}") from None
    if wsse is not None:
        envelope, headers = wsse.apply(envelope, headers)
    headers = dict(headers)
    if version == "1.2":
        headers.pop("SOAPAction", None)
    body = XML_DECLARATION + etree.tostring(envelope, encoding="UTF-8")
    return OutboundRequest(
        method="POST",
        url=service._binding_options["address"],
        headers=headers,
        body=body,
    )


def parse_soap_response(
    client: zeep.Client, operation: str, body: bytes
) -> dict[str, str] | SoapFault:
    """The operation's result as flat dotted paths (`Status`, `Items.0.Id`), or the
    fault the source answered with. SoapResponseError if it is not SOAP at all."""
    try:
        root = parse_xml(body, max_bytes=MAX_RESPONSE_BYTES)
    except UnsafeXmlError as exc:
        raise SoapResponseError(str(exc)) from None
    namespace = etree.QName(root).namespace
    versions = {SOAP_11_ENV: "1.1", SOAP_12_ENV: "1.2"}
    if namespace not in versions:
        raise SoapResponseError("The response is not a SOAP envelope.")
    try:
        service = _service(client, versions[namespace])
        operation_obj = _operation(service, operation)
    except BuildError as exc:
        raise SoapResponseError(str(exc)) from None
    binding = service._binding
    if root.find("soap-env:Body/soap-env:Fault", namespaces=binding.nsmap) is not None:
        try:
            binding.process_error(root, operation_obj)
        except Fault as fault:
            return _fault(fault)
    try:
        result = operation_obj.process_reply(root)
    except (ZeepError, ValueError, TypeError) as exc:
        raise SoapResponseError(
            f"Could not read the {operation} reply: {exc}"
        ) from None
    flat: dict[str, str] = {}
    _flatten(serialize_object(result, dict), "", flat)
    return flat


def _fault(fault: Fault) -> SoapFault:
    parts = [str(fault.code or "").rpartition(":")[2]]
    parts += [etree.QName(subcode).localname for subcode in fault.subcodes or ()]
    return SoapFault(code=".".join(p for p in parts if p), message=fault.message or "")


def _flatten(value: Any, path: str, into: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{path}.{key}" if path else str(key), into)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _flatten(item, f"{path}.{index}" if path else str(index), into)
    elif value is None:
        if path:
            into[path] = ""
    elif isinstance(value, bool):
        into[path or "result"] = "true" if value else "false"
    else:
        into[path or "result"] = str(value)
