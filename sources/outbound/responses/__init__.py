"""Reading a source's answer into an outcome, a reason and a reference (DESIGN §5.5).

A config says what to look for (`ResponseSpec`); `interpret` applies it to one
`OutboundResponse`. Everything here is pure: no I/O, no database, no exceptions for
anything a source can send. Bodies come from outside, so parsing is safe and bounded:
cut to MAX_RESPONSE_BYTES first, XML through `safexml` (no DTD, no entities, no
network), HTML through a network-less lxml parser (libxml2's HTML parser expands no
declared entities), JSON only up to MAX_JSON_DEPTH levels. A body that fails to parse
is searched as raw text.

Paths follow the body: a dot path for JSON and SOAP results (`a.b.0.c`, `a.*.c`), an
XPath for XML, a CSS selector for HTML (`::attr(name)` at the end reads an attribute);
for plain text `outcome_search_path` is ignored and `reason_path` / `reference_path`
are regexes whose group 1 (else the whole match) is the value.

Decisions where DESIGN is silent:
- No match flips the outcome: on_match success -> failure; failure or error -> success.
- Configuration mistakes (a bad regex, a bad search path) give ERROR, never FAILURE:
  FAILURE is final and the source refused nothing; ERROR is retried and shows up.
- 429 is ERROR (retryable); 410 is FAILURE "HTTP 410 Gone" (the engine disables the
  config). Other 1xx-4xx statuses follow DESIGN literally: with no search term they
  are SUCCESS, with one the match decides.
- SOAP faults come before the 5xx rule, because SOAP 1.1 sends every fault as 500:
  Client/Sender faults are FAILURE, all others ERROR. 429 and 410 still come first.
- default_reason is for outcomes read from the body; transport-level outcomes (no
  response, 5xx, 429, 410, faults) say what happened instead.
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
