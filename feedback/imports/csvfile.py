"""A CSV file of feedback as a buyer uploads it: its layout, rows and limits."""

import csv
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import IO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile

from feedback.imports.models import FeedbackImport
from feedback.safetext import text_problem

logger = logging.getLogger(__name__)

Status = FeedbackImport.Status

# Header name (case-insensitive) -> the feedback field it fills.
COLUMN_FIELDS = {
    "event_id": "event_id",
    "reference": "reference",
    "type": "type",
    "outcome_code": "outcome_code",
    "reason": "reason",
    "revenue": "revenue",
    "quality_score": "quality_score",
    "occurred_at": "occurred_at",
    "notes": "note",
    "note": "note",
}
# The refused-rows report adds these two columns; they are ignored on upload so a
# corrected report can be uploaded again as it is.
REPORT_ROW_COLUMN = "row"
REPORT_REASON_COLUMN = "refusal_reason"
REPORT_COLUMNS = frozenset({REPORT_ROW_COLUMN, REPORT_REASON_COLUMN})
DELIMITERS = (",", ";", "\t")
IMPORT_ID_PATTERN = re.compile(r"imp_[0-9a-f]{24}")

SUCCESS = "success"
FAILURE = "failure"


# Reading the file --------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """How to read a checked file: its delimiter and what each column holds."""

    delimiter: str
    header: list[str]
    # Per column: the feedback field, or None for an ignored column.
    fields: list[str | None]


@dataclass(frozen=True)
class DataRow:
    """One non-blank record after the header. `number` is the spreadsheet row:
    the header is row 1 (blank lines count, as a spreadsheet shows them)."""

    number: int
    cells: list[str]


def decode(content: bytes) -> str:
    try:
        # utf-8-sig drops the byte-order mark Excel puts before "CSV UTF-8" files.
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"The file is not UTF-8 text (invalid byte at position {exc.start}). "
            "Save it as “CSV UTF-8” and upload it again.",
            code="encoding",
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        # No cell can hold NUL (PostgreSQL refuses it); a file full of them is
        # usually UTF-16 without its byte-order mark.
        line = text.count("\n", 0, nul) + 1
        raise ValidationError(
            f"The file contains a NUL character (line {line}), so it is not a "
            "UTF-8 text file. Save it as “CSV UTF-8” and upload it again.",
            code="encoding",
        )
    return text


def _sniff_delimiter(text: str) -> str:
    # Spreadsheets in many locales save "CSV" with semicolons; a header line tells
    # which separator the file uses.
    first_line = text.split("\n", 1)[0]
    counts = {d: first_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def normalise_header(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").split())


def _records(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    # strict: an unbalanced quote is an error, not the rest of the file in one cell.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    number = 0
    try:
        for record in reader:
            number += 1
            yield number, record
    except csv.Error as exc:
        raise ValidationError(
            f"Row {number + 1} cannot be read as CSV: {exc}.", code="csv"
        ) from None


def read_layout(text: str) -> tuple[Layout, Iterator[DataRow]]:
    """Check the header; returns the layout and the data rows that follow it."""
    delimiter = _sniff_delimiter(text)
    records = _records(text, delimiter)
    header: list[str] | None = None
    for _, record in records:
        if any(cell.strip() for cell in record):
            header = record
            break
    if header is None:
        raise ValidationError("The file is empty.", code="empty")
    names = [normalise_header(cell) for cell in header]
    duplicates = sorted({n for n in names if n and names.count(n) > 1})
    if duplicates:
        raise ValidationError(
            f"The header repeats the column(s) {', '.join(duplicates)}.",
            code="header",
        )
    unknown = [
        cell.strip()
        for cell, name in zip(header, names, strict=True)
        if name and name not in COLUMN_FIELDS and name not in REPORT_COLUMNS
    ]
    if unknown:
        raise ValidationError(
            f"Unknown column(s): {', '.join(unknown)}. Accepted columns: "
            f"{', '.join(k for k in COLUMN_FIELDS if k != 'note')}.",
            code="header",
        )
    fields = [COLUMN_FIELDS.get(name) for name in names]
    if fields.count("note") > 1:
        raise ValidationError(
            "Send notes in one column (notes or note), not both.", code="header"
        )
    if "event_id" not in fields and "reference" not in fields:
        raise ValidationError(
            "The header needs an event_id or a reference column to identify "
            f"each delivery; found: {', '.join(c.strip() for c in header)}.",
            code="header",
        )
    if "type" not in fields and "outcome_code" not in fields:
        raise ValidationError(
            "The header needs a type or an outcome_code column; found: "
            f"{', '.join(c.strip() for c in header)}.",
            code="header",
        )
    layout = Layout(delimiter=delimiter, header=header, fields=fields)
    rows = (
        DataRow(number, record)
        for number, record in records
        if any(cell.strip() for cell in record)
    )
    return layout, rows


def row_item(layout: Layout, cells: list[str]) -> tuple[dict[str, str], str]:
    """A row as the variables feedback_receive takes, or the reason it has none."""
    width = len(layout.fields)
    extra = cells[width:]
    item = {
        name: cell for name, cell in zip(layout.fields, cells, strict=False) if name
    }
    if any(cell.strip() for cell in extra):
        return item, f"The row has {len(cells)} values but the header {width} columns."
    unnamed = [
        index + 1
        for index, (name, cell) in enumerate(zip(layout.header, cells, strict=False))
        if not name.strip() and cell.strip()
    ]
    if unnamed:
        return item, f"Column {unnamed[0]} has a value but no name in the header."
    return item, ""


def read_upload(file: UploadedFile | bytes | IO[bytes]) -> bytes:
    limit = settings.LEADBACK_IMPORT_MAX_BYTES
    too_large = ValidationError(
        f"The file is larger than {limit // (1024 * 1024)} MB "
        f"({limit:,} bytes); split it into smaller files.",
        code="too_large",
    )
    if isinstance(file, bytes):
        content = file
    else:
        size = getattr(file, "size", None)
        if size is not None and size > limit:
            raise too_large
        if hasattr(file, "seek"):
            file.seek(0)
        content = file.read(limit + 1)
    if len(content) > limit:
        raise too_large
    if not content:
        raise ValidationError("The file is empty.", code="empty")
    return content


def clean_filename(filename: str) -> str:
    """The name to show for an upload; ValidationError (code "filename") if it
    holds what the database cannot store."""
    message = text_problem(filename)
    if message:
        raise ValidationError(f"The file name {message}.", code="filename")
    # Browsers on Windows may send a full path; keep the name only.
    name = PurePath(filename.replace("\\", "/")).name.strip()
    return (name or "feedback.csv")[:255]
