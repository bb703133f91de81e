"""One lease mechanism for work a worker claims: notifications, batch runs, imports.

A row leased to a token belongs to whoever holds the token until
`lease_expires_at`. Queueing a row leases it, starting work leases it again for
as long as the work may take, and a lease that runs out makes the row fair game:
that is how a lost message, a flushed broker or a killed worker delays work but
never loses it (DESIGN §5.4). On PostgreSQL concurrent claimers skip each
other's rows (FOR UPDATE SKIP LOCKED); on SQLite the immediate transaction
serialises them, which claims just as safely.
"""

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import models, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Leased(models.Model):
    """Who may work on the row (`lease_token`) until when."""

    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        abstract = True


class Scheduled(Leased):
    """Leased work that is tried on a schedule until it succeeds or gives up:
    its status says whether it is open, `next_attempt_at` when it is due."""

    # Statuses the engine still has to work on; every other status is final.
    OPEN_STATUSES = ("pending", "sending", "retrying")

    attempt_count = models.PositiveSmallIntegerField(default=0)
    # Tries since the schedule last started (a resend starts it again).
    schedule_tries = models.PositiveSmallIntegerField(default=0, editable=False)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


def lease_until(seconds: float, *, now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + timedelta(seconds=seconds)


def unleased(now: datetime) -> Q:
    return Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)


def due(now: datetime) -> Q:
    """Scheduled rows to work on now: waiting and due, or abandoned mid-send
    (the worker died or was cut off, and its lease ran out)."""
    waiting = Q(status__in=["pending", "retrying"], next_attempt_at__lte=now)
    abandoned = Q(status="sending", lease_expires_at__lt=now)
    return (waiting & unleased(now)) | abandoned


def leases_claim(
    queryset: QuerySet[Any],
    *,
    seconds: float,
    limit: int | None = None,
    order_by: Sequence[str] = (),
    fields: Sequence[str] = ("pk",),
    skip_locked: bool = True,
    **also: Any,
) -> tuple[uuid.UUID, list[tuple[Any, ...]]]:
    """Lease the rows of `queryset` (at most `limit`) to a new token; returns
    the token and each row's `fields` (the pk first). `also` are other
    columns to set in the same UPDATE. `skip_locked=False` waits for a row
    another transaction holds, for a claim by id that must see its outcome."""
    token = uuid.uuid4()
    now = timezone.now()
    with transaction.atomic():
        locked = queryset.order_by(*order_by).select_for_update(skip_locked=skip_locked)
        rows = list(locked.values_list(*fields)[:limit])
        if rows:
            queryset.model._default_manager.filter(
                pk__in=[row[0] for row in rows]
            ).update(
                lease_token=token,
                lease_expires_at=lease_until(seconds, now=now),
                **also,
            )
    return token, rows


def leases_take(
    queryset: QuerySet[Any], *, token: uuid.UUID, seconds: float, **also: Any
) -> int:
    """Start work under `token` on the rows it holds, or on due rows whose
    holder let the lease run out; returns how many rows are now held. A row
    someone else holds, or that is final, is left alone: the claim was stale."""
    now = timezone.now()
    mine = Q(lease_token=token, status__in=Scheduled.OPEN_STATUSES)
    return int(
        queryset.filter(mine | due(now)).update(
            lease_token=token, lease_expires_at=lease_until(seconds, now=now), **also
        )
    )


def leases_extend(queryset: QuerySet[Any], *, token: uuid.UUID, seconds: float) -> int:
    """Stretch the lease of the rows `token` holds."""
    return int(
        queryset.filter(lease_token=token).update(lease_expires_at=lease_until(seconds))
    )


def leases_release(queryset: QuerySet[Any]) -> int:
    """Make the rows due again at once (their work was not queued)."""
    return int(queryset.update(lease_expires_at=None))


def messages_send(
    messages: Iterable[T], send: Callable[[T], object], *, what: str
) -> tuple[list[T], list[T]]:
    """Queue each message with `send`; returns (queued, failed). A broker that
    is down fails a message without raising: its rows wait for the sweep."""
    queued: list[T] = []
    failed: list[T] = []
    for message in messages:
        try:
            send(message)
        except Exception as exc:  # the broker's errors vary by transport
            failed.append(message)
            logger.warning("could not queue %s: %r", what, exc)
        else:
            queued.append(message)
    return queued, failed
