"""The values passed between building, sending and reading one outbound request."""

from dataclasses import dataclass, field
from enum import StrEnum

# Bodies are cut here before anything parses them.
MAX_RESPONSE_BYTES = 1_000_000
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH")


class Outcome(StrEnum):
    """What a source said about one notification (DESIGN §5.5)."""

    SUCCESS = "success"
    FAILURE = "failure"  # the source refused it: final
    ERROR = "error"  # 5xx, timeout, no answer: retried


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
    # Empty: the document element comes from the targets (outbound/payloads.py).
    xml_root: str = ""
    timeout_s: float = 10.0


@dataclass(frozen=True)
class OutboundRequest:
    """Exactly what goes on the wire; the admin preview shows this."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class OutboundResponse:
    """What came back. `status` is None when there was no response at all."""

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str = ""  # why there was no response (timeout, refused, SSRF guard, ...)
    elapsed_ms: int = 0

    @property
    def content_type(self) -> str:
        for name, value in self.headers.items():
            if name.lower() == "content-type":
                return value.split(";")[0].strip().lower()
        return ""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Interpretation:
    """How a response was read: the outcome, a readable reason and the source's id."""

    outcome: Outcome
    reason: str = ""
    reference: str = ""
