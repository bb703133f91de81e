"""CSV exports of report tables, every cell formula-safe (sources/csvcells.py)."""

import io

from django.http import HttpResponse

from reporting.reports import Report, ReportTable
from sources.csvcells import write_csv


def report_csv_response(
    report: Report, table: ReportTable, *, name: str = ""
) -> HttpResponse:
    """The table as a CSV download named after the report (and the table `name`
    of a report with several) and its dates."""
    buffer = io.StringIO()
    write_csv(buffer, table.csv_rows(), header=table.csv_header())
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{report.filename(name)}"'
    return response
