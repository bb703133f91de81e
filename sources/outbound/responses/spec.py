"""What a config says to look for in a response, and the limits on it."""

import functools
import re
from dataclasses import dataclass

from sources.outbound.types import (
    Outcome,
)

# Every field of a spec fits the model's CharField(max_length=500).
MAX_EXPRESSION_LENGTH = 500


# Deeper JSON is refused before json.loads can hit the recursion limit.
MAX_JSON_DEPTH = 100


# A path may select many nodes; nobody needs more than this many to decide or explain.
MAX_VALUES = 1000


# Room enough for any honest explanation; the caller stores the result in a row.
MAX_REASON_CHARS = 1000


MAX_REFERENCE_CHARS = 255


SOAP_11_NS = "http://schemas.xmlsoap.org/soap/envelope/"


SOAP_12_NS = "http://www.w3.org/2003/05/soap-envelope"


NO_MATCH = {
    Outcome.SUCCESS: Outcome.FAILURE,
    Outcome.FAILURE: Outcome.SUCCESS,
    Outcome.ERROR: Outcome.SUCCESS,
}


@dataclass(frozen=True)
class ResponseSpec:
    """How to read a source's answer; mirrors the response fields of a config.

    When `outcome_search_term` matches (any value found at `outcome_search_path`, or
    the raw body when there is no path) the outcome is `outcome_on_match`; when it
    does not, a SUCCESS on match becomes FAILURE, and FAILURE or ERROR on match
    become SUCCESS.
    """

    outcome_search_term: str = ""
    outcome_search_path: str = ""
    outcome_on_match: Outcome = Outcome.SUCCESS
    reason_path: str = ""
    default_reason: str = ""
    reference_path: str = ""


@dataclass(frozen=True)
class SoapResult:
    """A SOAP answer: a fault, or the result flattened by dotted local names.

    Keys start at the Body's first child, the operation's response element, e.g.
    {"SubmitLeadResponse.Result.Status": "Accepted"}; repeated elements get indexes
    ("Errors.Error.0") and attributes "@name" segments.
    """

    values: dict[str, str] | None
    fault_code: str = ""
    fault_message: str = ""

    @property
    def is_fault(self) -> bool:
        return bool(self.fault_code or self.fault_message)

    @property
    def is_client_fault(self) -> bool:
        """True when the fault blames the request: the source refused it."""
        code = self.fault_code.strip().rsplit("}", 1)[-1].rsplit(":", 1)[-1]
        # SOAP 1.1 allows dotted subcodes such as "Client.Authentication".
        first = code.split(".", 1)[0]
        return first in {"Client", "Sender"} or code.endswith(("Client", "Sender"))


class PathError(ValueError):
    """A path that cannot be evaluated against this body."""


def term_pattern(term: str) -> re.Pattern[str]:
    """The search term as a compiled regex; raises ValueError naming the field."""
    if len(term) > MAX_EXPRESSION_LENGTH:
        raise ValueError(
            f"outcome_search_term: longer than {MAX_EXPRESSION_LENGTH} characters"
        )
    pattern = term[1:-1] if len(term) > 1 and term[0] == term[-1] == "/" else term
    try:
        return compile_pattern(pattern)
    except re.error as exc:
        raise ValueError(f"outcome_search_term: {exc}") from None


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    # Patterns come from staff-edited configs and are length-capped; bodies are
    # capped too, which bounds (but cannot rule out) slow backtracking.
    return re.compile(pattern, re.IGNORECASE)
