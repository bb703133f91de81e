"""Deciding the outcome, reason and reference of one response (DESIGN §5.5)."""

import http

from sources.outbound.responses.reading import Document, path_values, read_document
from sources.outbound.responses.spec import (
    MAX_REASON_CHARS,
    MAX_REFERENCE_CHARS,
    NO_MATCH,
    PathError,
    ResponseSpec,
    SoapResult,
    term_pattern,
)
from sources.outbound.types import (
    Interpretation,
    OutboundResponse,
    Outcome,
)


def interpret(
    spec: ResponseSpec, response: OutboundResponse, *, soap: SoapResult | None = None
) -> Interpretation:
    """Decide what a source's answer means. Never raises for anything a source sends.

    `soap` is the SOAP transport's reading of the answer; without it a SOAP envelope
    in the body is parsed here.
    """
    if response.status is None:
        return Interpretation(Outcome.ERROR, reason=response.error or "no response")

    status = response.status
    doc = read_document(response, soap)
    reference = _reference(spec, doc)

    if status == 429:
        reason = _with_found_reason(_status_label(status), spec, doc)
        return Interpretation(Outcome.ERROR, reason, reference)
    if status == 410:
        reason = _with_found_reason(_status_label(status), spec, doc)
        return Interpretation(Outcome.FAILURE, reason, reference)
    if doc.soap is not None and doc.soap.is_fault:
        fault = doc.soap
        reason = _clean(fault.fault_message) or f"SOAP fault {fault.fault_code}".strip()
        outcome = Outcome.FAILURE if fault.is_client_fault else Outcome.ERROR
        return Interpretation(outcome, _cap(reason, MAX_REASON_CHARS), reference)
    if status >= 500:
        reason = _with_found_reason(_status_label(status), spec, doc)
        return Interpretation(Outcome.ERROR, reason, reference)

    if not spec.outcome_search_term:
        reason = _found_reason(spec, doc) or spec.default_reason.strip()
        return Interpretation(Outcome.SUCCESS, reason, reference)

    if spec.outcome_on_match not in NO_MATCH:
        reason = f"invalid outcome_on_match: {spec.outcome_on_match!r}"
        return Interpretation(Outcome.ERROR, _cap(reason, MAX_REASON_CHARS), reference)
    on_match = Outcome(spec.outcome_on_match)
    try:
        pattern = term_pattern(spec.outcome_search_term)
    except ValueError as exc:
        return Interpretation(Outcome.ERROR, f"invalid {exc}", reference)
    try:
        values = path_values(doc, spec.outcome_search_path, text_regex=False)
    except PathError as exc:
        reason = f"bad outcome_search_path: {exc}"
        return Interpretation(Outcome.ERROR, _cap(reason, MAX_REASON_CHARS), reference)

    matched = any(pattern.search(value) for value in values)
    outcome = on_match if matched else NO_MATCH[on_match]
    reason = _found_reason(spec, doc) or spec.default_reason.strip()
    if not reason and outcome != Outcome.SUCCESS:
        verb = "matched" if matched else "did not match"
        reason = f"{verb} /{pattern.pattern}/"
        if status >= 400:
            reason = f"{_status_label(status)}: {reason}"
    return Interpretation(outcome, _cap(reason, MAX_REASON_CHARS), reference)


def _status_label(status: int) -> str:
    try:
        return f"HTTP {status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _with_found_reason(label: str, spec: ResponseSpec, doc: Document) -> str:
    found = _found_reason(spec, doc)
    return _cap(f"{label}: {found}" if found else label, MAX_REASON_CHARS)


def _found_reason(spec: ResponseSpec, doc: Document) -> str:
    """Every value at reason_path: trimmed, blanks dropped, de-duplicated, sorted."""
    if not spec.reason_path:
        return ""
    try:
        values = path_values(doc, spec.reason_path, text_regex=True)
    except PathError:
        # Checked when the config is saved; a body of an unexpected type (an HTML
        # error page where JSON was promised) simply has no reason to offer.
        return ""
    found = sorted({cleaned for value in values if (cleaned := _clean(value))})
    return _cap(", ".join(found), MAX_REASON_CHARS)


def _reference(spec: ResponseSpec, doc: Document) -> str:
    if not spec.reference_path:
        return ""
    try:
        values = path_values(doc, spec.reference_path, text_regex=True)
    except PathError:
        return ""
    first = next((cleaned for value in values if (cleaned := _clean(value))), "")
    return _cap(first, MAX_REFERENCE_CHARS)


def _clean(value: str) -> str:
    # Collapsing inner whitespace too keeps HTML and pretty-printed XML readable.
    return " ".join(value.split())


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
