"""Report pages in the admin's look: staff only (urls.py wraps them in
`admin_site.admin_view`) with the report permissions (docs/roles.md), one shared
filter bar, HTML or CSV."""

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from reporting.exports import report_csv_response
from reporting.filters import ALL_KINDS, filter_form_for
from reporting.models import VIEW_REPORTS
from reporting.replica import ReplicaStatus, replica_reads
from reporting.reports import REPORTS, Column, Report, Section

# The order of the index and the tabs.
SECTIONS: list[tuple[str, list[str]]] = [
    ("Trends", ["trends"]),
    ("Breakdowns", ["by-reason", "by-source", "by-flow", "by-buyer", "by-kind"]),
    (
        "Sources and buyers",
        ["scorecard", "time-to-feedback-by-source", "time-to-feedback-by-buyer"],
    ),
    ("Returns", ["returns-by-source-and-reason", "returns-resolution"]),
    ("Forwarding and billing", ["delivery-health", "billing"]),
]


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {
        **admin.site.each_context(request),
        "sections": reports_for(request),
        "nav_query": _nav_query(request),
        # Wide tables need the width: the admin's app list stays on its index.
        "is_nav_sidebar_enabled": False,
        "chosen": [],
        "table": None,
        **extra,
    }


def _nav_query(request: HttpRequest) -> str:
    """The filters the tabs carry to the other reports: not the chosen columns
    (each report has its own), and not "all kinds", so each report opens at its
    own kind (by reason at returns) unless one kind was chosen."""
    query = request.GET.copy()
    for key in ("col", "export", "table"):
        query.pop(key, None)
    if query.get("kind") == ALL_KINDS:
        query.pop("kind")
    return query.urlencode()


def reports_for(request: HttpRequest) -> list[tuple[str, list[type[Report]]]]:
    """The index's sections with only the reports this user may open."""
    sections = [
        (
            title,
            [
                REPORTS[code]
                for code in codes
                if request.user.has_perms(REPORTS[code].permissions)
            ],
        )
        for title, codes in SECTIONS
    ]
    return [(title, reports) for title, reports in sections if reports]


def _require_reports(request: HttpRequest) -> None:
    # Staff status opens the admin, not the figures: revenue and what buyers are
    # worth need the report permission.
    if not request.user.has_perm(VIEW_REPORTS):
        raise PermissionDenied("Reports need the view reports permission.")


def report_index(request: HttpRequest) -> TemplateResponse:
    _require_reports(request)
    return TemplateResponse(
        request,
        "reporting/report_index.html",
        _context(request, title="Reports"),
    )


def report_detail(request: HttpRequest, code: str) -> HttpResponse:
    _require_reports(request)
    try:
        report_class = REPORTS[code]
    except KeyError:
        raise Http404(f"There is no report {code!r}.") from None
    if not request.user.has_perms(report_class.permissions):
        raise PermissionDenied(f"{report_class.name} needs its own permission.")
    # The figures (and the page built from them) are read from the replica when
    # there is one; who may see them was settled above, on the primary.
    with replica_reads() as replica:
        response = _report_detail(request, report_class, replica)
        if isinstance(response, TemplateResponse):
            response.render()
    return response


def _report_detail(
    request: HttpRequest, report_class: type[Report], replica: ReplicaStatus | None
) -> HttpResponse:
    form = filter_form_for(request.GET.dict(), default_kind=report_class.default_kind)
    context = _context(
        request,
        title=report_class.name,
        report_class=report_class,
        form=form,
        replica=replica,
    )
    if not form.is_valid():
        # Bad filters show their errors above an empty page; nothing is counted.
        return TemplateResponse(
            request, "reporting/report_detail.html", context, status=400
        )
    report: Report = report_class(form.filters())
    if report_class.sections:
        return _sections_detail(request, report, context)
    table = report.generate()
    table.columns = _columns_for(request, table.columns)
    if request.GET.get("export") == "csv":
        return report_csv_response(report, table)
    query = request.GET.copy()
    query["export"] = "csv"
    query.pop("col", None)
    context.update(
        report=report,
        table=table,
        chosen=request.GET.getlist("col"),
        charts=report.charts(table),
        csv_query=query.urlencode(),
    )
    return TemplateResponse(request, "reporting/report_detail.html", context)


def _columns_for(request: HttpRequest, columns: list[Column]) -> list[Column]:
    """The columns this user may see (on the page and in the CSV alike)."""
    return [
        c for c in columns if not c.permission or request.user.has_perm(c.permission)
    ]


def _sections_detail(
    request: HttpRequest, report: Report, context: dict[str, Any]
) -> HttpResponse:
    """A report of several tables: each the user may see under its heading with
    its own CSV (`table=<key>`); the others named, with what they need."""
    allowed = [s for s in report.sections if request.user.has_perms(s.permissions)]
    if request.GET.get("export") == "csv":
        section = _section_for_csv(report, allowed, request.GET.get("table"))
        (table,) = report.generate_sections([section])
        return report_csv_response(report, table, name=section.key)
    sections = []
    for section, table in zip(allowed, report.generate_sections(allowed), strict=True):
        query = request.GET.copy()
        query.update({"export": "csv", "table": section.key})
        sections.append(
            {
                "section": section,
                "table": table,
                "charts": report.section_charts(section, table),
                "csv_query": query.urlencode(),
            }
        )
    hidden = [s for s in report.sections if s not in allowed]
    context.update(
        report=report,
        sections_shown=sections,
        sections_hidden=_hidden_notes(request, hidden),
    )
    return TemplateResponse(request, "reporting/report_detail.html", context)


def _section_for_csv(
    report: Report, allowed: list[Section], key: str | None
) -> Section:
    """The table a CSV asks for; without `table`, the first the user may see."""
    if not key:
        if not allowed:
            raise PermissionDenied(f"No table of {report.name} is open to you.")
        return allowed[0]
    for section in report.sections:
        if section.key == key:
            if section not in allowed:
                raise PermissionDenied(f"{section.title} needs its own permission.")
            return section
    raise Http404(f"{report.name} has no table {key!r}.")


def _hidden_notes(request: HttpRequest, sections: list[Section]) -> list[str]:
    """One sentence per heading left out: what it needs that the user lacks."""
    notes: dict[str, set[str]] = {}
    for section in sections:
        missing = {p for p in section.permissions if not request.user.has_perm(p)}
        notes.setdefault(section.group or section.title, set()).update(missing)
    return [
        f"{heading} needs the "
        + " and ".join(sorted(p.split(".")[-1].replace("_", " ") for p in missing))
        + " permission (the Analyst and Seller admin roles have it)."
        for heading, missing in notes.items()
    ]
