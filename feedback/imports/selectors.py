"""Reads of CSV imports: lists, one import for a buyer, per-row results, the
refused rows as a file to correct and upload again."""

import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from feedback.imports.csvfile import (
    FAILURE,
    IMPORT_ID_PATTERN,
    REPORT_COLUMNS,
    REPORT_REASON_COLUMN,
    REPORT_ROW_COLUMN,
    SUCCESS,
    decode,
    normalise_header,
    read_layout,
)
from feedback.imports.models import FeedbackImport, FeedbackImportChunk
from feedback.models import (
    Buyer,
)
from sources.csvcells import write_csv

logger = logging.getLogger(__name__)

Status = FeedbackImport.Status

# Reading --------------------------------------------------------------------------


def feedback_import_list(*, buyer: Buyer | None = None) -> QuerySet[FeedbackImport]:
    """Imports, newest first, without their files; a buyer's only if given."""
    queryset = (
        FeedbackImport.objects.select_related("buyer", "user")
        .defer("content")
        .order_by("-created_at", "-pk")
    )
    if buyer is not None:
        queryset = queryset.filter(buyer=buyer)
    return queryset


def get_feedback_import_for_buyer(*, buyer: Buyer, public_id: str) -> FeedbackImport:
    """The buyer's own import; another buyer's raises Http404 like an unknown id."""
    # Anything else (a NUL byte, say) never reaches the database.
    if not IMPORT_ID_PATTERN.fullmatch(public_id):
        raise Http404("Unknown import id.")
    feedback_import = (
        feedback_import_list(buyer=buyer).filter(public_id=public_id).first()
    )
    if feedback_import is None:
        raise Http404("Unknown import id.")
    return feedback_import


@dataclass(frozen=True)
class ImportRowResult:
    """What became of one row of an import."""

    row_number: int
    outcome: str  # success or failure
    status: str  # a ReceiveStatus value: accepted, refused, not_found...
    reason: str
    feedback_id: str | None  # stored feedback, accepted or refused
    event_id: str
    reference: str


def feedback_import_results(
    *,
    feedback_import: FeedbackImport,
    outcome: str | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> list[ImportRowResult]:
    """Per-row results in file order, optionally only one outcome, paged.

    Reads only the chunks the page needs: skipped chunks are counted, not loaded.
    """
    chunks = FeedbackImportChunk.objects.filter(
        feedback_import=feedback_import
    ).order_by("index")
    rows: list[ImportRowResult] = []
    skip = offset
    for chunk_id, row_count, succeeded in chunks.values_list(
        "pk", "row_count", "succeeded"
    ):
        if limit is not None and len(rows) >= limit:
            break
        matching = {
            None: row_count,
            SUCCESS: succeeded,
            FAILURE: row_count - succeeded,
        }.get(outcome, row_count)
        if skip >= matching:
            skip -= matching
            continue
        results = FeedbackImportChunk.objects.values_list("results", flat=True).get(
            pk=chunk_id
        )
        for entry in results:
            if outcome is not None and entry[1] != outcome:
                continue
            if skip:
                skip -= 1
                continue
            rows.append(ImportRowResult(*entry))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def feedback_import_refused_csv(*, feedback_import: FeedbackImport) -> str:
    """The refused rows as CSV: the original columns, then `row` (the row in the
    uploaded file) and `refusal_reason`. Named so because `reason` is an input
    column; the report can be corrected and uploaded again as it is."""
    refused = {
        r.row_number: r.reason
        for r in feedback_import_results(
            feedback_import=feedback_import, outcome=FAILURE
        )
    }
    content = (
        FeedbackImport.objects.filter(pk=feedback_import.pk)
        .values_list("content", flat=True)
        .get()
    )
    if not content:
        # The file was cleared by the retention settings (docs/privacy.md):
        # the row numbers and the reasons are all that is left.
        stream = io.StringIO()
        write_csv(
            stream,
            ([number, reason] for number, reason in sorted(refused.items())),
            header=[REPORT_ROW_COLUMN, REPORT_REASON_COLUMN],
        )
        return stream.getvalue()
    layout, rows = read_layout(decode(bytes(content)))
    # An uploaded report brings the two report columns: write them afresh.
    keep = [
        index
        for index, name in enumerate(layout.header)
        if normalise_header(name) not in REPORT_COLUMNS
    ]
    header = [layout.header[i].strip() for i in keep]

    def lines() -> Iterator[Sequence[Any]]:
        for row in rows:
            if row.number not in refused:
                continue
            cells = row.cells + [""] * (len(layout.header) - len(row.cells))
            yield [*(cells[i] for i in keep), row.number, refused[row.number]]

    stream = io.StringIO()
    write_csv(
        stream, lines(), header=[*header, REPORT_ROW_COLUMN, REPORT_REASON_COLUMN]
    )
    return stream.getvalue()
