"""CSV cells that a spreadsheet will not run as formulas.

Every CSV Leadback writes (report exports, batch files to sources, refused-row
reports) goes through `safe_cell` or `write_csv`: text a buyer or a source typed can
end up in a seller's spreadsheet, and Excel, LibreOffice and Google Sheets run a cell
that starts with `=`, `+`, `-`, `@`, a tab or a carriage return as a formula (OWASP
"CSV injection"). Such text gets a leading apostrophe, which spreadsheets show as
text; numbers, dates and None are written as themselves.
"""

import csv
import datetime
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, TextIO

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d")


def safe_cell(value: Any) -> Any:
    """`value` as a CSV cell that cannot start a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return value
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    text = str(value)
    # Leading spaces do not protect a cell: some spreadsheets trim before parsing.
    if text.lstrip(" ").startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


def write_csv(
    stream: TextIO,
    rows: Iterable[Sequence[Any]],
    *,
    header: Sequence[str] | None = None,
) -> int:
    """Write `rows` (and `header`) to `stream` with every cell made safe.

    Returns the number of data rows written."""
    writer = csv.writer(stream, lineterminator="\r\n")
    if header is not None:
        writer.writerow([safe_cell(name) for name in header])
    count = 0
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
        count += 1
    return count
