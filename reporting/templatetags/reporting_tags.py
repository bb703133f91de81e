"""Cell formatting for report tables: one place decides how a figure reads."""

import datetime
from decimal import Decimal
from typing import Any

from django import template

from reporting.reports import Column

register = template.Library()

NUMERIC = frozenset(
    {"count", "count_share", "money", "rate", "number", "score", "seconds"}
)
# Money at or above this reads in whole units on the page (the CSV keeps cents).
WHOLE_MONEY = Decimal(10_000)


def duration(seconds: float) -> str:
    """Seconds as the two largest units that matter: `3 h 12 min`, `4 d 6 h`."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 60:
        return f"{minutes:.0f} min"
    hours, minutes = divmod(int(minutes), 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


@register.filter
def cell(row: dict[str, Any], column: Column) -> str:
    value = row.get(column.key)
    if column.key == "label" and value is None:
        return ""
    if value is None:
        return "—"
    kind = column.kind
    if kind == "count" and isinstance(value, int):
        return f"{value:,}"
    if kind == "money":
        return money(Decimal(value))
    if kind == "count_share":
        count, share = value
        return f"{count:,}" if share is None else f"{count:,} ({share * 100:.0f} %)"
    if kind == "rate":
        return f"{value * 100:.1f} %"
    if kind == "number":
        return f"{value:,.2f}"
    if kind == "score":
        return f"{value:.1f}"
    if kind == "seconds":
        return duration(float(value))
    if kind == "month" and isinstance(value, datetime.date):
        return value.strftime("%Y-%m")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


def money(value: Decimal) -> str:
    return f"{value:,.0f}" if abs(value) >= WHOLE_MONEY else f"{value:,.2f}"


@register.filter
def previous_cell(row: dict[str, Any], column: Column) -> str:
    """The previous period's figure under a compared one: "was 108 (+12)", or
    for a rate "was 4.2 % (+1.1 pt)". A group absent then had none of it; a
    figure the previous period does not give (a total's share) is left out."""
    previous = row.get("previous")
    if previous is None or (previous and column.key not in previous):
        return ""
    before = previous.get(column.key)
    if before is None and column.kind == "count":
        before = 0
    if before is None:
        return "was —"
    text = "was " + cell({"v": before}, Column("v", "", column.kind))
    now = row.get(column.key)
    if now is None:
        return text
    if column.kind == "rate":
        return f"{text} ({(now - before) * 100:+.1f} pt)"
    if column.kind == "count":
        return f"{text} ({now - before:+,})" if now != before else text
    if column.kind == "score":
        return f"{text} ({now - before:+.1f})"
    return text


@register.filter
def has_optional(columns: list[Column]) -> bool:
    return any(not column.default for column in columns)


@register.filter
def shown(columns: list[Column], chosen: Any) -> list[Column]:
    """The columns the page shows: the chosen keys, else the defaults; the first
    column always."""
    keys = set(chosen or ()) & {column.key for column in columns}
    return [
        column
        for n, column in enumerate(columns)
        if n == 0 or (column.key in keys if keys else column.default)
    ]


@register.filter
def is_numeric(column: Column) -> bool:
    return column.kind in NUMERIC
