"""Keyset pagination for the portal's lists: newer / older links, no COUNT.

A page is read as page_size + 1 rows after (or before) the cursor row, so a
page costs the same at the start of a ten-million-row table as at its end.
The cursor is the row's (time, unique key), which is also the order: for
deliveries (delivered_at, event_id), for returns (received_at, public_id).
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Q, QuerySet

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Keyset:
    """What a list is ordered by, newest first: a time, then a unique key that
    breaks ties; `key_pattern` is what a key looks like in a cursor."""

    time_field: str
    key_field: str
    key_pattern: str
    token_pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = re.compile(rf"^(-?\d{{1,20}})-({self.key_pattern})$")
        object.__setattr__(self, "token_pattern", pattern)


DELIVERIES = Keyset("delivered_at", "event_id", r"[0-9a-f]{24}")


@dataclass(frozen=True)
class KeysetPage:
    items: list[Any]
    newer: str | None
    older: str | None


def cursor_token(item: Any, keyset: Keyset = DELIVERIES) -> str:
    at: datetime = getattr(item, keyset.time_field)
    micros = (at - EPOCH) // timedelta(microseconds=1)
    return f"{micros}-{getattr(item, keyset.key_field)}"


def parse_token(
    token: str | None, keyset: Keyset = DELIVERIES
) -> tuple[datetime, str] | None:
    """The cursor in `token`, or None for a missing or mangled one (first page)."""
    match = keyset.token_pattern.match(token or "")
    if match is None:
        return None
    try:
        at = EPOCH + timedelta(microseconds=int(match.group(1)))
    except OverflowError:
        return None
    return at, match.group(2)


def keyset_page(
    queryset: QuerySet[Any],
    *,
    older: str | None,
    newer: str | None,
    page_size: int,
    keyset: Keyset = DELIVERIES,
) -> KeysetPage:
    """One page of `queryset` (ordered newest first) around a cursor."""
    at_name, key_name = keyset.time_field, keyset.key_field
    before = parse_token(older, keyset)
    after = parse_token(newer, keyset) if before is None else None
    if after is not None:
        at, key = after
        rows = list(
            queryset.filter(
                Q(**{f"{at_name}__gt": at}) | Q(**{at_name: at, f"{key_name}__gt": key})
            ).order_by(at_name, key_name)[: page_size + 1]
        )
        more_newer = len(rows) > page_size
        items = rows[:page_size][::-1]
        return KeysetPage(
            items=items,
            newer=cursor_token(items[0], keyset) if more_newer and items else None,
            # The cursor row, at least, is older than this page.
            older=cursor_token(items[-1], keyset) if items else None,
        )
    if before is not None:
        at, key = before
        queryset = queryset.filter(
            Q(**{f"{at_name}__lt": at}) | Q(**{at_name: at, f"{key_name}__lt": key})
        )
    rows = list(queryset.order_by(f"-{at_name}", f"-{key_name}")[: page_size + 1])
    items = rows[:page_size]
    return KeysetPage(
        items=items,
        newer=cursor_token(items[0], keyset) if before is not None and items else None,
        older=cursor_token(items[-1], keyset) if len(rows) > page_size else None,
    )
