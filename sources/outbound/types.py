"""The values passed between building, sending and reading one outbound request."""

from dataclasses import dataclass, field
from enum import StrEnum

# Bodies are cut here before anything parses them.
MAX_RESPONSE_BYTES = 1_000_000


class Outcome(StrEnum):
    """What a source said about one notification (DESIGN §5.5)."""

    SUCCESS = "success"
    FAILURE = "failure"  # the source refused it: final
    ERROR = "error"  # 5xx, timeout, no answer: retried


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
