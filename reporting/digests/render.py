"""A digest as the source receives it: HTML and plain text, the period's
returns as CSV, and a summary CSV for the batch channel."""

import io
from dataclasses import dataclass

from django.template.loader import render_to_string

from reporting.digests.figures import DigestFigures
from sources.csvcells import write_csv

RETURNS_HEADER = ("event_id", "lead_id", "reason", "outcome_code", "returned_on")
SUMMARY_HEADER = ("measure", "this_period", "previous_period", "change")


@dataclass(frozen=True)
class RenderedDigest:
    subject: str
    text: str
    html: str
    returns_name: str
    returns_csv: bytes
    summary_name: str
    summary_csv: bytes


def digest_render(figures: DigestFigures) -> RenderedDigest:
    """Everything one digest sends, from its figures (no queries)."""
    period = figures.period
    context = {"figures": figures, "digest": figures.digest}
    stem = (
        f"digest-{figures.digest.source.slug}-{period.start:%Y%m%d}-{period.end:%Y%m%d}"
    )
    return RenderedDigest(
        subject=f"{figures.source_name}: feedback digest for {period.describe()}",
        text=render_to_string("reporting/digests/email.txt", context),
        html=render_to_string("reporting/digests/email.html", context),
        returns_name=f"{stem}-returns.csv",
        returns_csv=returns_csv(figures),
        summary_name=f"{stem}-summary.csv",
        summary_csv=summary_csv(figures),
    )


def returns_csv(figures: DigestFigures) -> bytes:
    """The period's returns, every cell formula-safe."""
    buffer = io.StringIO()
    write_csv(
        buffer,
        (
            (r.event_id, r.lead_id, r.reason, r.outcome_code, r.returned_on)
            for r in figures.returns
        ),
        header=RETURNS_HEADER,
    )
    return buffer.getvalue().encode()


def summary_csv(figures: DigestFigures) -> bytes:
    """The figures beside the previous period's (rates as fractions), then the
    top return reasons."""
    rows: list[tuple[object, ...]] = [
        ("period_start", figures.period.start, figures.previous_period.start, None),
        ("period_end", figures.period.end, figures.previous_period.end, None),
    ]
    for m in figures.measures:
        current, previous = _cell(m.kind, m.current), _cell(m.kind, m.previous)
        rows.append((m.key, current, previous, _change(current, previous)))
    for line in figures.top_reasons:
        rows.append(
            (
                f"returns: {line.reason}",
                line.returns,
                line.previous,
                line.returns - line.previous,
            )
        )
    buffer = io.StringIO()
    write_csv(buffer, rows, header=SUMMARY_HEADER)
    return buffer.getvalue().encode()


def _change(current: float | None, previous: float | None) -> float | None:
    if current is None or previous is None:
        return None
    return round(current - previous, 4)


def _cell(kind: str, value: float | None) -> float | None:
    if value is None:
        return None
    if kind in ("rate", "number"):
        return round(float(value), 4)
    return value
