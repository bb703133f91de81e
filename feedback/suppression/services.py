"""Writing suppression lists and their entries (DESIGN §11).

The intake's store and the return decisions call `suppression_add_for_feedback`
inside their own transaction, so an entry exists exactly when the feedback that
added it was committed. The intake is the hot path: the lists are read from a
per-process copy refreshed every LEADBACK_SUPPRESSION_CACHE_S seconds (and at
once in the process that changes them), and the entries are written in one
statement that joins the lists again, so a list deleted meanwhile adds nothing.
"""

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from feedback.models import Feedback
from feedback.suppression.digests import Digest, lead_digests
from feedback.suppression.models import SuppressionEntry, SuppressionList
from sources.models import Kind

# Rows a DELETE of expired entries takes at a time: short transactions, so the
# intake's inserts never queue behind one long one.
EXPIRE_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class ListRule:
    """What the intake needs of a list to decide whether a feedback adds to it."""

    id: int
    slug: str
    kinds: frozenset[str]
    reasons: frozenset[str]  # case-folded; empty: any reason

    def takes(self, feedback: Any) -> bool:
        if feedback.kind not in self.kinds:
            return False
        if feedback.kind == Kind.RETURN and (
            feedback.review_state != Feedback.ReviewState.APPROVED
        ):
            return False  # a return adds once approved, not while it waits
        return not self.reasons or (feedback.reason or "").casefold() in self.reasons


_cached: tuple[float, tuple[ListRule, ...]] | None = None


def suppression_rules(*, fresh: bool = False) -> tuple[ListRule, ...]:
    """Every list as a `ListRule`, from this process's copy unless it is older
    than LEADBACK_SUPPRESSION_CACHE_S (or `fresh`)."""
    global _cached
    now = time.monotonic()
    if (
        not fresh
        and _cached is not None
        and now - _cached[0] < settings.LEADBACK_SUPPRESSION_CACHE_S
    ):
        return _cached[1]
    rules = tuple(
        ListRule(
            id=row.pk,
            slug=row.slug,
            kinds=frozenset(str(k) for k in row.add_kinds or ()),
            reasons=frozenset(str(r).casefold() for r in row.add_reasons or ()),
        )
        for row in SuppressionList.objects.order_by("slug")
    )
    _cached = (now, rules)
    return rules


def suppression_rules_forget(*, none_exist: bool = False) -> None:
    """Read the lists again on next use (after a change), or, with
    `none_exist`, take it that there are none (tests start from no list)."""
    global _cached
    _cached = (time.monotonic(), ()) if none_exist else None


def suppression_wanted(feedbacks: Sequence[Any]) -> bool:
    """Whether any of these feedback could add to a list, were it accepted."""
    rules = suppression_rules()
    if not rules:
        return False
    kinds = {f.kind for f in feedbacks}
    return any(rule.kinds & kinds for rule in rules)


# Lists ----------------------------------------------------------------------


def suppression_list_save(
    *,
    slug: str,
    name: str,
    ttl_days: int | None,
    add_kinds: Sequence[str],
    add_reasons: Sequence[str] = (),
) -> SuppressionList:
    """Create or update the list `slug`. A new ttl_days applies to the entries
    already on it, counted from when each was added."""
    with transaction.atomic():
        row = SuppressionList.objects.select_for_update().filter(slug=slug).first()
        now = timezone.now()
        if row is None:
            row = SuppressionList.objects.create(
                slug=slug,
                name=name,
                ttl_days=ttl_days,
                add_kinds=list(add_kinds),
                add_reasons=list(add_reasons),
                created_at=now,
                updated_at=now,
            )
        else:
            ttl_changed = row.ttl_days != ttl_days
            row.name = name
            row.ttl_days = ttl_days
            row.add_kinds = list(add_kinds)
            row.add_reasons = list(add_reasons)
            row.updated_at = now
            row.save(
                update_fields=[
                    "name",
                    "ttl_days",
                    "add_kinds",
                    "add_reasons",
                    "updated_at",
                ]
            )
            if ttl_changed:
                entries = SuppressionEntry.objects.filter(list=row)
                if ttl_days is None:
                    entries.update(expires_at=None)
                else:
                    entries.update(expires_at=F("added_at") + timedelta(days=ttl_days))
    suppression_rules_forget()
    return row


def suppression_list_delete(*, suppression_list: SuppressionList) -> int:
    """Delete a list and its entries; how many entries went with it."""
    with transaction.atomic():
        entries = SuppressionEntry.objects.filter(list=suppression_list).count()
        suppression_list.delete()
    suppression_rules_forget()
    return entries


# Entries --------------------------------------------------------------------


def _expiry(ttl_days: int | None, at: datetime) -> datetime | None:
    return None if ttl_days is None else at + timedelta(days=ttl_days)


def suppression_add_for_feedback(feedbacks: Iterable[Any]) -> int:
    """Add the leads of accepted feedback (approved returns) to the lists that
    take them, in the caller's transaction; an entry already there is added
    again (its expiry starts over). How many (list, digest) pairs were written."""
    rules = suppression_rules()
    if not rules:
        return 0
    wanted: dict[tuple[int, str, str], Digest] = {}
    for feedback in feedbacks:
        if feedback.outcome != Feedback.Outcome.SUCCESS or feedback.pk is None:
            continue
        taking = [rule for rule in rules if rule.takes(feedback)]
        if not taking:
            continue
        lead = feedback.lead
        for found in lead_digests(lead.data if lead is not None else None):
            for rule in taking:
                wanted[(rule.id, found.field, found.sha256)] = found
    if not wanted:
        return 0
    _entries_write(wanted, origin=SuppressionEntry.Origin.FEEDBACK)
    return len(wanted)


def suppression_remove_for_feedback(feedback: Any) -> int:
    """Take out the entries a feedback added, now that it is retracted, in the
    caller's transaction: those on lists that took it, unless another live
    feedback about the same lead would have added them too. How many."""
    taking = [rule for rule in suppression_rules(fresh=True) if rule.takes(feedback)]
    if not taking:
        return 0
    others = (
        Feedback.objects.filter(
            lead_id=feedback.lead_id,
            outcome=Feedback.Outcome.SUCCESS,
            retracted_at__isnull=True,
        )
        .exclude(pk=feedback.pk)
        .only("kind", "reason", "review_state")
    )
    kept = {rule.id for other in others for rule in taking if rule.takes(other)}
    removed = 0
    for found in lead_digests(feedback.lead.data):
        for rule in taking:
            if rule.id in kept:
                continue
            removed += SuppressionEntry.objects.filter(
                list_id=rule.id,
                field=found.field,
                sha256=found.sha256,
                origin=SuppressionEntry.Origin.FEEDBACK,
            ).delete()[0]
    return removed


# One statement whatever the number of entries (its text never changes, so a
# prepared statement serves every call). The join drops lists deleted since
# this process read them.
_INSERT_SQL = (
    "INSERT INTO {entry} (list_id, field, sha256, md5, origin, added_at, expires_at) "
    "SELECT l.id, v.field, v.sha256, v.md5, %s, %s, "
    "CASE WHEN l.ttl_days IS NULL THEN NULL "
    "ELSE %s::timestamptz + l.ttl_days * interval '1 day' END "
    "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[]) "
    "AS v(list_id, field, sha256, md5) "
    "JOIN {list} l ON l.id = v.list_id "
    "ON CONFLICT (sha256, field, list_id) DO UPDATE "
    "SET added_at = EXCLUDED.added_at, expires_at = EXCLUDED.expires_at"
)


def _entries_write(wanted: dict[tuple[int, str, str], Digest], *, origin: str) -> None:
    now = timezone.now()
    keys = sorted(wanted)  # one order for every writer: no deadlock between them
    if connection.vendor == "postgresql":
        sql = _INSERT_SQL.format(
            entry=SuppressionEntry._meta.db_table, list=SuppressionList._meta.db_table
        )
        with connection.cursor() as cursor:
            cursor.execute(
                sql,
                [
                    origin,
                    now,
                    now,
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [k[2] for k in keys],
                    [wanted[k].md5 for k in keys],
                ],
            )
        return
    ttl = dict(
        SuppressionList.objects.filter(pk__in={k[0] for k in keys}).values_list(
            "pk", "ttl_days"
        )
    )
    SuppressionEntry.objects.bulk_create(
        [
            SuppressionEntry(
                list_id=k[0],
                field=k[1],
                sha256=k[2],
                md5=wanted[k].md5,
                origin=origin,
                added_at=now,
                expires_at=_expiry(ttl[k[0]], now),
            )
            for k in keys
            if k[0] in ttl
        ],
        update_conflicts=True,
        unique_fields=["sha256", "field", "list"],
        update_fields=["added_at", "expires_at"],
    )


def suppression_entries_add(
    *, suppression_list: SuppressionList, digests: Sequence[Digest]
) -> int:
    """Add contacts to a list by hand (admin, API); how many were written."""
    wanted = {(suppression_list.pk, d.field, d.sha256): d for d in digests}
    if not wanted:
        return 0
    with transaction.atomic():
        _entries_write(wanted, origin=SuppressionEntry.Origin.MANUAL)
    return len(wanted)


def suppression_entries_remove(
    *, suppression_list: SuppressionList, digests: Sequence[tuple[str, str]]
) -> int:
    """Remove contacts, as (field, sha256) pairs, from a list; how many were."""
    if not digests:
        return 0
    removed = 0
    with transaction.atomic():
        for field, sha256 in sorted(set(digests)):
            removed += SuppressionEntry.objects.filter(
                list=suppression_list, field=field, sha256=sha256
            ).delete()[0]
    return removed


def suppression_entries_remove_ids(*, ids: Sequence[int]) -> int:
    """Remove the entries with these ids (the admin's action)."""
    with transaction.atomic():
        return SuppressionEntry.objects.filter(pk__in=list(ids)).delete()[0]


def suppression_entries_expire(*, now: datetime | None = None) -> int:
    """Delete the entries whose list's ttl_days have passed; how many."""
    now = now or timezone.now()
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(
                SuppressionEntry.objects.filter(expires_at__lte=now)
                .order_by()
                .values_list("pk", flat=True)[:EXPIRE_BATCH]
            )
            if not ids:
                return deleted
            deleted += SuppressionEntry.objects.filter(pk__in=ids).delete()[0]
