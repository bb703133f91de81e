"""Report pages in the admin's look: staff only (urls.py wraps them in
`admin_site.admin_view`), one shared filter bar, HTML or CSV."""

from typing import Any

from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from reporting.exports import report_csv_response
from reporting.filters import filter_form_for
from reporting.reports import REPORTS, Report

# The order of the index and the tabs.
SECTIONS: list[tuple[str, list[str]]] = [
    ("Trends", ["trends"]),
    ("Breakdowns", ["by-reason", "by-source", "by-flow", "by-buyer", "by-kind"]),
    (
        "Sources and buyers",
        ["scorecard", "time-to-feedback-by-source", "time-to-feedback-by-buyer"],
    ),
    ("Forwarding and billing", ["delivery-health", "billing"]),
]


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {
        **admin.site.each_context(request),
        "sections": [
            (title, [REPORTS[code] for code in codes]) for title, codes in SECTIONS
        ],
        **extra,
    }


def report_index(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(
        request,
        "reporting/report_index.html",
        _context(request, title="Reports"),
    )


def report_detail(request: HttpRequest, code: str) -> HttpResponse:
    try:
        report_class = REPORTS[code]
    except KeyError:
        raise Http404(f"There is no report {code!r}.") from None
    form = filter_form_for(request.GET.dict())
    context = _context(
        request,
        title=report_class.name,
        report_class=report_class,
        form=form,
    )
    if not form.is_valid():
        # Bad filters show their errors above an empty page; nothing is counted.
        return TemplateResponse(
            request, "reporting/report_detail.html", context, status=400
        )
    report: Report = report_class(form.filters())
    table = report.generate()
    if request.GET.get("export") == "csv":
        return report_csv_response(report, table)
    query = request.GET.copy()
    query["export"] = "csv"
    context.update(
        report=report,
        table=table,
        charts=report.charts(table),
        csv_query=query.urlencode(),
    )
    return TemplateResponse(request, "reporting/report_detail.html", context)
