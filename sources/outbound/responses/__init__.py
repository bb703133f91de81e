"""Reading a source's answer into an outcome, a reason and a reference (DESIGN §5.5).

A config says what to look for (`ResponseSpec`); `interpret` applies it to one
`OutboundResponse`. Everything here is pure and bounded: no I/O, no exceptions for
anything a source can send, XML without DTDs or entities, JSON to a fixed depth,
bodies cut before parsing. The order of checks, the paths per type of answer and
the decisions DESIGN leaves open are documented in docs/configuration.md,
"Reading the answer".
"""

from sources.outbound.responses.interpret import interpret
from sources.outbound.responses.soap import parse_soap_envelope
from sources.outbound.responses.spec import (
    MAX_EXPRESSION_LENGTH,
    MAX_JSON_DEPTH,
    MAX_REASON_CHARS,
    MAX_REFERENCE_CHARS,
    MAX_VALUES,
    ResponseSpec,
    SoapResult,
)
from sources.outbound.responses.validation import validate_response_spec

__all__ = [
    "MAX_EXPRESSION_LENGTH",
    "MAX_JSON_DEPTH",
    "MAX_REASON_CHARS",
    "MAX_REFERENCE_CHARS",
    "MAX_VALUES",
    "ResponseSpec",
    "SoapResult",
    "interpret",
    "parse_soap_envelope",
    "validate_response_spec",
]
