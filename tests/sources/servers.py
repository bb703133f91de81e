"""Real local servers for outbound tests: they record what actually arrived.

Both are context managers listening on 127.0.0.1 on an ephemeral port, served from
a daemon thread and shut down cleanly on exit, so fixtures can be one-liners:

    @pytest.fixture
    def server():
        with RecordingServer() as server:
            yield server

`RecordingServer` answers every request with a configurable `Reply` (status, body,
headers, a delay before answering, a slow byte-by-byte body) and keeps each
request's method, target, headers and body. `SoapServer` is a spyne service whose
operations record the arguments spyne decoded.
"""

import io
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import ThreadingMixIn
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from spyne import Application, ComplexModel, Fault, ServiceBase, Unicode, rpc
from spyne import Array as SpyneArray
from spyne import Decimal as SpyneDecimal
from spyne.protocol.soap import Soap11, Soap12
from spyne.server.wsgi import WsgiApplication

# -- Recording HTTP server -------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it."""

    method: str
    target: str  # path and query string, as sent
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(urlsplit(self.target).query, keep_blank_values=True)

    @property
    def form(self) -> list[tuple[str, str]]:
        return parse_qsl(self.body.decode("ascii"), keep_blank_values=True)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def header_dict(self) -> dict[str, str]:
        return dict(self.headers)


@dataclass
class Reply:
    """What the recording server answers."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # wait this long before answering
    drip_s: float = 0.0  # send the body a byte at a time, pausing this long


class _RecordingHandler(BaseHTTPRequestHandler):
    server: "_RecordingHTTPServer"
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        recorded = Recorded(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
        )
        owner = self.server.owner
        owner._record(recorded)
        reply = owner._reply_for(recorded)
        if reply.delay_s and owner._stopping.wait(reply.delay_s):
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if reply.drip_s:
            for index in range(len(reply.body)):
                self.wfile.write(reply.body[index : index + 1])
                self.wfile.flush()
                if owner._stopping.wait(reply.drip_s):
                    return
        else:
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _RecordingHTTPServer(ThreadingHTTPServer):
    owner: "RecordingServer"


class _ServerThread:
    """Serves a socketserver from a daemon thread; stop() shuts it down and joins."""

    def __init__(self, server: Any) -> None:
        self.server = server
        # A short poll interval keeps shutdown (and so each test's teardown) quick.
        self.thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class RecordingServer:
    """An HTTP server that records every request and answers with `reply`.

    `reply` is a Reply or a function of the Recorded request returning one; it can
    be changed between requests.
    """

    def __init__(self, reply: Reply | Callable[[Recorded], Reply] | None = None):
        self.reply: Reply | Callable[[Recorded], Reply] = reply or Reply()
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _RecordingHTTPServer(("127.0.0.1", 0), _RecordingHandler)
        self._httpd.owner = self
        self._runner = _ServerThread(self._httpd)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    @property
    def last(self) -> Recorded:
        with self._lock:
            return self.requests[-1]

    def _record(self, recorded: Recorded) -> None:
        with self._lock:
            self.requests.append(recorded)

    def _reply_for(self, recorded: Recorded) -> Reply:
        reply = self.reply
        return reply if isinstance(reply, Reply) else reply(recorded)

    def __enter__(self) -> Self:
        self._runner.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._runner.stop()


# -- SOAP service (spyne) --------------------------------------------------------

NAMESPACE = "urn:leadback:test"


class Result(ComplexModel):
    __namespace__ = NAMESPACE
    Status = Unicode
    Message = Unicode


class Contact(ComplexModel):
    __namespace__ = NAMESPACE
    Email = Unicode
    Phones = SpyneArray(Unicode)


@dataclass(frozen=True)
class SoapCall:
    """An operation call as spyne decoded it."""

    operation: str
    arguments: dict[str, Any]


def _feedback_service(calls: list[SoapCall], lock: threading.Lock) -> type:
    def record(operation: str, **arguments: Any) -> None:
        with lock:
            calls.append(SoapCall(operation, arguments))

    # spyne takes the WSDL's operation and argument names from the Python names.
    class FeedbackService(ServiceBase):
        @rpc(Unicode, Unicode, SpyneDecimal, _returns=Result)
        def RecordReturn(ctx, EventId, Reason, Amount):
            record("RecordReturn", EventId=EventId, Reason=Reason, Amount=Amount)
            if EventId == "unknown":
                raise Fault(
                    faultcode="Client.UnknownEvent", faultstring="No such event"
                )
            return Result(Status="ok", Message=f"return {EventId} recorded")

        @rpc(Unicode, Contact, SpyneDecimal, _returns=Result)
        def RecordConversion(ctx, EventId, Contact, Amount):
            contact = None
            if Contact is not None:
                contact = {"Email": Contact.Email, "Phones": list(Contact.Phones or [])}
            record("RecordConversion", EventId=EventId, Contact=contact, Amount=Amount)
            return Result(Status="ok", Message=f"conversion {EventId} recorded")

    return FeedbackService


# spyne only generates SOAP 1.1 bindings, though it speaks SOAP 1.2; this WSDL,
# written by hand for its RecordReturn operation, offers both ports.
BOTH_VERSIONS_WSDL = """<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:soap11="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:soap12="http://schemas.xmlsoap.org/wsdl/soap12/"
    xmlns:tns="urn:leadback:test" targetNamespace="urn:leadback:test"
    name="FeedbackService">
  <wsdl:types>
    <xs:schema targetNamespace="urn:leadback:test" elementFormDefault="qualified">
      <xs:complexType name="Result">
        <xs:sequence>
          <xs:element name="Status" type="xs:string" minOccurs="0"/>
          <xs:element name="Message" type="xs:string" minOccurs="0"/>
        </xs:sequence>
      </xs:complexType>
      <xs:element name="RecordReturn">
        <xs:complexType>
          <xs:sequence>
            <xs:element name="EventId" type="xs:string" minOccurs="0"/>
            <xs:element name="Reason" type="xs:string" minOccurs="0"/>
            <xs:element name="Amount" type="xs:decimal" minOccurs="0"/>
          </xs:sequence>
        </xs:complexType>
      </xs:element>
      <xs:element name="RecordReturnResponse">
        <xs:complexType>
          <xs:sequence>
            <xs:element name="RecordReturnResult" type="tns:Result" minOccurs="0"/>
          </xs:sequence>
        </xs:complexType>
      </xs:element>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="RecordReturn">
    <wsdl:part name="RecordReturn" element="tns:RecordReturn"/>
  </wsdl:message>
  <wsdl:message name="RecordReturnResponse">
    <wsdl:part name="RecordReturnResponse" element="tns:RecordReturnResponse"/>
  </wsdl:message>
  <wsdl:portType name="FeedbackPortType">
    <wsdl:operation name="RecordReturn">
      <wsdl:input message="tns:RecordReturn"/>
      <wsdl:output message="tns:RecordReturnResponse"/>
    </wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="FeedbackSoap11" type="tns:FeedbackPortType">
    <soap11:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="RecordReturn">
      <soap11:operation soapAction="RecordReturn" style="document"/>
      <wsdl:input><soap11:body use="literal"/></wsdl:input>
      <wsdl:output><soap11:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:binding name="FeedbackSoap12" type="tns:FeedbackPortType">
    <soap12:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="RecordReturn">
      <soap12:operation soapAction="RecordReturn" style="document"/>
      <wsdl:input><soap12:body use="literal"/></wsdl:input>
      <wsdl:output><soap12:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="FeedbackService">
    <wsdl:port name="FeedbackSoap11" binding="tns:FeedbackSoap11">
      <soap11:address location="{base}/soap11"/>
    </wsdl:port>
    <wsdl:port name="FeedbackSoap12" binding="tns:FeedbackSoap12">
      <soap12:address location="{base}/soap12"/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"""


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class SoapServer:
    """A spyne SOAP service under wsgiref.

    Operations: RecordReturn(EventId, Reason, Amount) and
    RecordConversion(EventId, Contact{Email, Phones[]}, Amount), both answering
    Result{Status, Message}; RecordReturn faults (Client.UnknownEvent) for the
    event id "unknown". SOAP 1.1 is served at /soap11 with spyne's WSDL at
    `wsdl_url`; SOAP 1.2 at /soap12, described (with the 1.1 port) by the
    handwritten WSDL at `both_wsdl_url`. `calls` holds what spyne decoded,
    `requests` the raw HTTP requests.
    """

    def __init__(self) -> None:
        self.calls: list[SoapCall] = []
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        service = _feedback_service(self.calls, self._lock)
        self._apps = {
            f"/soap{name}": WsgiApplication(
                Application(
                    [service],
                    tns=NAMESPACE,
                    name="FeedbackService",
                    in_protocol=protocol(validator="lxml"),
                    out_protocol=protocol(),
                )
            )
            for name, protocol in (("11", Soap11), ("12", Soap12))
        }
        self._httpd = make_server(
            "127.0.0.1",
            0,
            self._dispatch,
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        self._runner = _ServerThread(self._httpd)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_port}"

    @property
    def wsdl_url(self) -> str:
        return f"{self.base_url}/soap11?wsdl"

    @property
    def both_wsdl_url(self) -> str:
        return f"{self.base_url}/both.wsdl"

    def posts(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST"]

    def _dispatch(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        query = environ.get("QUERY_STRING", "")
        headers = [
            (key[5:].replace("_", "-").title(), value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        ]
        if environ.get("CONTENT_TYPE"):
            headers.append(("Content-Type", environ["CONTENT_TYPE"]))
        path = environ.get("PATH_INFO", "")
        with self._lock:
            self.requests.append(
                Recorded(
                    method=environ["REQUEST_METHOD"],
                    target=path + (f"?{query}" if query else ""),
                    headers=headers,
                    body=body,
                )
            )
        if path == "/both.wsdl":
            start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8")])
            return [BOTH_VERSIONS_WSDL.replace("{base}", self.base_url).encode()]
        app = self._apps.get(path)
        if app is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        return app(environ, start_response)  # type: ignore[no-any-return]

    def __enter__(self) -> Self:
        self._runner.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._runner.stop()


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
