"""Cell formatting for report tables: one place decides how a figure reads."""

import datetime
from decimal import Decimal
from typing import Any

from django import template

from reporting.reports import Column

register = template.Library()

NUMERIC = frozenset({"count", "money", "rate", "number", "score", "seconds"})


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
        return f"{Decimal(value):,.2f}"
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


@register.filter
def is_numeric(column: Column) -> bool:
    return column.kind in NUMERIC
