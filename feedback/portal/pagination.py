"""Keyset pagination for the portal's lists: newer / older links, no COUNT.

A page is read as page_size + 1 rows after (or before) the cursor row, so a
page costs the same at the start of a ten-million-row table as at its end.
The cursor is the row's (delivered_at, event_id), which is also the order.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Q, QuerySet

from feedback.models import DeliveryEvent

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TOKEN_PATTERN = re.compile(r"^(-?\d{1,20})-([0-9a-f]{24})$")


@dataclass(frozen=True)
class KeysetPage:
    items: list[DeliveryEvent]
    newer: str | None
    older: str | None


def cursor_token(delivery: DeliveryEvent) -> str:
    micros = (delivery.delivered_at - EPOCH) // timedelta(microseconds=1)
    return f"{micros}-{delivery.event_id}"


def parse_token(token: str | None) -> tuple[datetime, str] | None:
    """The cursor in `token`, or None for a missing or mangled one (first page)."""
    match = TOKEN_PATTERN.match(token or "")
    if match is None:
        return None
    try:
        at = EPOCH + timedelta(microseconds=int(match.group(1)))
    except OverflowError:
        return None
    return at, match.group(2)


def keyset_page(
    queryset: QuerySet[DeliveryEvent],
    *,
    older: str | None,
    newer: str | None,
    page_size: int,
) -> KeysetPage:
    """One page of `queryset` (ordered newest first) around a cursor."""
    before = parse_token(older)
    after = parse_token(newer) if before is None else None
    if after is not None:
        at, event_id = after
        rows = list(
            queryset.filter(
                Q(delivered_at__gt=at) | Q(delivered_at=at, event_id__gt=event_id)
            ).order_by("delivered_at", "event_id")[: page_size + 1]
        )
        more_newer = len(rows) > page_size
        items = rows[:page_size][::-1]
        return KeysetPage(
            items=items,
            newer=cursor_token(items[0]) if more_newer and items else None,
            # The cursor row, at least, is older than this page.
            older=cursor_token(items[-1]) if items else None,
        )
    if before is not None:
        at, event_id = before
        queryset = queryset.filter(
            Q(delivered_at__lt=at) | Q(delivered_at=at, event_id__lt=event_id)
        )
    rows = list(queryset.order_by("-delivered_at", "-event_id")[: page_size + 1])
    items = rows[:page_size]
    return KeysetPage(
        items=items,
        newer=cursor_token(items[0]) if before is not None and items else None,
        older=cursor_token(items[-1]) if len(rows) > page_size else None,
    )
