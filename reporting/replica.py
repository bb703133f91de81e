"""Report reads from a read replica, when `DATABASE_REPLICA_URL` names one.

Reports read a lot and write nothing, so a seller who outgrows one database
points them at a PostgreSQL streaming replica: the report pages and their CSV
exports (and the rollups they read) run their queries there, while everything
a buyer, a CRM, the worker or a staff member's edits do stays on the primary.
Only the code inside `replica_reads()` reads from the replica, so nothing else
can see data a moment old. A replica that cannot be reached is passed over:
the report reads from the primary and says so.
"""

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.models import Model

REPLICA = "replica"

_reading_replica: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "reading_replica", default=False
)


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


@dataclass(frozen=True)
class ReplicaStatus:
    """Where a report's figures came from, as a sentence for the page."""

    used: bool
    lag_seconds: float | None = None
    problem: str = ""

    def __str__(self) -> str:
        if self.problem:
            return (
                f"The read replica {self.problem}; "
                "these figures were read from the primary."
            )
        if self.lag_seconds is None:
            return "These figures were read from the read replica."
        if self.lag_seconds == 0:
            return "These figures were read from the read replica, which is up to date."
        return (
            "These figures were read from the read replica, "
            f"{_duration(self.lag_seconds)} behind the primary."
        )


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def replica_status() -> ReplicaStatus | None:
    """How far behind the primary the replica is; None when there is none.

    Caught up means it has replayed all the WAL the primary has written; behind,
    the lag is the time since the last transaction it replayed (how old the
    newest figures it can show are).
    """
    if not replica_configured():
        return None
    try:
        with connections[REPLICA].cursor() as cursor:
            cursor.execute(
                "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
                "EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())"
            )
            in_recovery, replayed, since = cursor.fetchone()
    except DatabaseError:
        return ReplicaStatus(used=False, problem="could not be reached")
    if not in_recovery:
        return ReplicaStatus(used=True)  # not a streaming standby: no lag to show
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", [replayed]
        )
        (behind_bytes,) = cursor.fetchone()
    if behind_bytes <= 0 or since is None:
        return ReplicaStatus(used=True, lag_seconds=0.0)
    return ReplicaStatus(used=True, lag_seconds=max(float(since), 0.0))


@contextmanager
def replica_reads() -> Iterator[ReplicaStatus | None]:
    """Run the block's reads on the replica, if one is configured and reachable.

    Yields the replica's status (None without a replica) for the page to show.
    """
    status = replica_status()
    token = _reading_replica.set(bool(status and status.used))
    try:
        yield status
    finally:
        _reading_replica.reset(token)


class ReplicaRouter:
    """Sends reads to the replica inside `replica_reads()`; all else to the primary."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return REPLICA if _reading_replica.get() else None

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        # Both hold the same rows: a row read from one relates to the other's.
        aliases = {DEFAULT_DB_ALIAS, REPLICA}
        if obj1._state.db in aliases and obj2._state.db in aliases:
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        # A replica follows the primary's schema; it is never migrated itself.
        return db != REPLICA
