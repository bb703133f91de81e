import csv
import datetime
import io
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sources.csvcells import FORMULA_TRIGGERS, safe_cell, write_csv


def _would_run_as_formula(cell: str) -> bool:
    return cell.lstrip(" ").startswith(FORMULA_TRIGGERS)


@given(st.text())
def test_no_written_text_cell_starts_a_formula(text):
    stream = io.StringIO()
    write_csv(stream, [[text, "x"]], header=[text])

    rows = list(csv.reader(io.StringIO(stream.getvalue(), newline="")))

    assert len(rows) == 2
    for cell in (rows[0][0], rows[1][0]):
        assert not _would_run_as_formula(cell)
        # Nothing is lost: the cell is the text, or the text behind an apostrophe.
        assert cell in (text, "'" + text)
    assert rows[1][1] == "x"


@pytest.mark.parametrize(
    "text",
    ['=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "  =1+1"],
)
def test_formula_text_is_quoted(text):
    assert safe_cell(text) == "'" + text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        (True, "true"),
        (Decimal("-12.50"), Decimal("-12.50")),
        (-3, -3),
        (datetime.date(2026, 1, 2), "2026-01-02"),
        ("plain", "plain"),
    ],
)
def test_typed_values_are_written_as_themselves(value, expected):
    assert safe_cell(value) == expected
