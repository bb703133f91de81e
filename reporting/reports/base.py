"""What every report shares: columns, tables, rates, labels, the Report class."""

import datetime
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from django.db import connection
from django.db.models import (
    Aggregate,
    FloatField,
    Func,
)
from django.utils.safestring import SafeString

from feedback.models import Feedback
from reporting.filters import ReportFilters
from reporting.models import VIEW_REPORTS
from sources.models import Kind, Source

SUCCESS = Feedback.Outcome.SUCCESS


FAILURE = Feedback.Outcome.FAILURE


CHART_BARS = 15


CENT = Decimal("0.01")


@dataclass(frozen=True)
class Column:
    """One column: `kind` says how to show it (count, money, rate, score, seconds,
    number, text, date, month). A column not shown by `default` is offered by
    the page's column chooser (the CSV has every column); a `compare` column
    shows the previous period's figure beside its own when the table has one."""

    key: str
    label: str
    kind: str = "count"
    default: bool = True
    compare: bool = False
    # A permission needed to see the column at all (credits are money).
    permission: str = ""


@dataclass(frozen=True)
class Section:
    """One table of a report that has several, under its own heading. Its CSV is
    the page's URL with `export=csv&table=<key>`; `permissions` are needed on top
    of the report's own (credits are money: billing's permission). Consecutive
    sections of one `group` share its heading."""

    key: str
    title: str
    description: str
    permissions: tuple[str, ...] = ()
    group: str = ""


@dataclass
class ReportTable:
    columns: list[Column]
    rows: list[dict[str, Any]]
    totals: dict[str, Any] | None = None
    # The filters of the period compared with, when the report counted one:
    # rows (and totals) then hold its figures under "previous".
    previous: Any = None

    def csv_rows(self) -> Iterable[list[Any]]:
        """Rows as CSV cells: rates as percentages, durations in seconds."""
        for row in self.rows:
            yield self._cells(row)
        if self.totals is not None:
            cells = self._cells(self.totals)
            # The total row says what it is where its first column is empty.
            if cells and cells[0] in (None, ""):
                cells[0] = self.totals.get("label") or "Total"
            yield cells

    def csv_header(self) -> list[str]:
        header = []
        for column in self.columns:
            header.append(csv_label(column))
            if column.kind == "count_share":
                header.append(f"{column.label}, share (%)")
            if self.compares(column):
                header.append(csv_label(column, previous=True))
        return header

    def compares(self, column: Column) -> bool:
        return column.compare and self.previous is not None

    def _cells(self, row: dict[str, Any]) -> list[Any]:
        cells: list[Any] = []
        for column in self.columns:
            value = row.get(column.key)
            if column.kind == "count_share":
                count, share = value or (None, None)
                cells += [count, None if share is None else round(share * 100, 2)]
                continue
            cells.append(csv_value(column, value))
            if self.compares(column):
                before = (row.get("previous") or {}).get(column.key)
                cells.append(csv_value(column, before))
        return cells


def csv_label(column: Column, *, previous: bool = False) -> str:
    suffix = {"rate": " (%)", "seconds": " (seconds)"}.get(column.kind, "")
    return column.label + (", previous period" if previous else "") + suffix


def csv_value(column: Column, value: Any) -> Any:
    if value is None:
        return None
    if column.kind == "rate":
        return round(value * 100, 2)
    if column.kind == "money":
        # SQLite's sums lose the trailing zeros: 80, not 80.00.
        return Decimal(value).quantize(CENT)
    if column.kind in ("seconds", "number", "score"):
        return round(value, 2)
    if column.kind == "month":
        return value.strftime("%Y-%m")
    return value


def rate(numerator: int | float, denominator: int | float) -> float | None:
    return numerator / denominator if denominator else None


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


class PercentileCont(Aggregate):
    """percentile_cont(fraction) WITHIN GROUP (ORDER BY expression): PostgreSQL."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, *, fraction: float, **extra: Any) -> None:
        # A float literal, never user input: formatted into the SQL as a number.
        super().__init__(expression, fraction=float(fraction), **extra)


class EpochSeconds(Func):
    """Seconds in an interval (PostgreSQL)."""

    template = "EXTRACT(EPOCH FROM %(expressions)s)"
    output_field = FloatField()


def labels_for(model: type[Any], keys: Iterable[Any]) -> dict[Any, str]:
    ids = [key for key in keys if key is not None]
    if not ids:
        return {}
    return dict(model.objects.filter(pk__in=ids).values_list("pk", "name"))


def source_badges(keys: Iterable[Any]) -> dict[Any, str]:
    """ "Paused" for each paused source among `keys` (DESIGN §11): one query for
    a whole table, shown beside the source's name, never in the CSV."""
    ids = [key for key in keys if key is not None]
    if not ids:
        return {}
    paused = Source.objects.filter(pk__in=ids, status=Source.Status.PAUSED)
    return dict.fromkeys(paused.values_list("pk", flat=True), "Paused")


KIND_LABELS = dict(Kind.choices)


class Report:
    """A report: a code for URLs, a title, and a table from the filters."""

    code: ClassVar[str]
    name: ClassVar[str]
    description: ClassVar[str]
    # Whether the date basis applies; billing and queue depth ignore it.
    uses_basis: ClassVar[bool] = True
    # What a user needs to open the page or its CSV (superusers have everything).
    permissions: ClassVar[tuple[str, ...]] = (VIEW_REPORTS,)
    # Templates list report classes: read their attributes, do not instantiate.
    do_not_call_in_templates: ClassVar[bool] = True
    # The kind the filter bar starts at when the query names none (None: all).
    default_kind: ClassVar[str | None] = None
    # A report of several tables names them here and builds them with
    # generate_sections(); its generate() is then not used.
    sections: ClassVar[tuple[Section, ...]] = ()

    def __init__(self, filters: ReportFilters) -> None:
        self.filters = filters
        # Set by generate() when the figures come from the daily rollups.
        self.rollups_as_of: datetime.datetime | None = None
        # Set by generate() when percentiles are read from histograms (within 1%).
        self.estimated = False
        # A sentence generate() may add below the date basis.
        self.summary = ""

    def generate(self) -> ReportTable:
        raise NotImplementedError

    def generate_sections(self, sections: Sequence[Section]) -> list[ReportTable]:
        """The tables of `sections` (those the user may see), in their order."""
        raise NotImplementedError

    def charts(self, table: ReportTable) -> list[SafeString]:
        """Charts drawn from the table, shown above it."""
        return []

    def section_charts(self, section: Section, table: ReportTable) -> list[SafeString]:
        """Charts drawn from one section's table, shown above it."""
        return []

    def describe_dates(self) -> str:
        """The page's sentence on which dates count, where the basis does not
        apply."""
        return ""

    def filename(self, table: str = "") -> str:
        name = f"{self.code}-{table}" if table else self.code
        return (
            f"leadback-{name}-{self.filters.start.isoformat()}-"
            f"{self.filters.end.isoformat()}.csv"
        )


def attach_previous(
    rows: list[dict[str, Any]],
    totals: dict[str, Any] | None,
    before: list[dict[str, Any]],
    before_totals: dict[str, Any] | None,
) -> None:
    """Give each row (by its key) and the totals the previous period's figures,
    under "previous"; a group with nothing then has an empty dict."""
    by_key = {row["key"]: row for row in before}
    for row in rows:
        row["previous"] = by_key.get(row["key"], {})
    if totals is not None:
        totals["previous"] = before_totals or {}


def as_dicts(queryset: Iterable[Any]) -> list[dict[str, Any]]:
    """Rows of a values() queryset as plain dicts (typed, and safe to pop)."""
    return [dict(row) for row in queryset]


def month_of(value: datetime.date | datetime.datetime) -> datetime.date:
    return datetime.date(value.year, value.month, 1)
