"""Reading suppression lists: the check the distribution system calls before
buying a lead, and what the admin and the API list."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from feedback.suppression.models import SuppressionEntry, SuppressionList
from feedback.suppression.services import ListRule, suppression_rules


@dataclass(frozen=True, slots=True)
class Hit:
    list: str
    field: str
    added_at: datetime


class UnknownLists(Exception):
    """A check named lists that do not exist (HTTP 422)."""

    def __init__(self, slugs: Sequence[str]) -> None:
        super().__init__(", ".join(slugs))
        self.slugs = list(slugs)


def _rules_named(slugs: Sequence[str] | None) -> tuple[ListRule, ...]:
    rules = suppression_rules()
    if slugs is None:
        return rules
    by_slug = {rule.slug: rule for rule in rules}
    if any(slug not in by_slug for slug in slugs):
        # A list created in another process since this one read them.
        by_slug = {rule.slug: rule for rule in suppression_rules(fresh=True)}
        unknown = [slug for slug in slugs if slug not in by_slug]
        if unknown:
            raise UnknownLists(unknown)
    return tuple(by_slug[slug] for slug in dict.fromkeys(slugs))


def suppression_check(
    *, digests: Sequence[tuple[str, str]], lists: Sequence[str] | None = None
) -> list[Hit]:
    """The lists holding any of these (field, sha256) pairs and not expired:
    one index lookup on the entries' digest, whatever the number of lists."""
    rules = _rules_named(lists)
    wanted = set(digests)
    if not wanted:
        return []
    slugs = {rule.id: rule.slug for rule in rules}
    # A digest asked as an email is no phone hit.
    rows = [
        row
        for row in _entries_matching(sorted({sha256 for _, sha256 in wanted}))
        if (row[1], row[2]) in wanted
    ]
    if lists is None and any(row[0] not in slugs for row in rows):
        # A list created in another process since this one read them.
        slugs = {rule.id: rule.slug for rule in suppression_rules(fresh=True)}
    hits = [
        Hit(list=slugs[list_id], field=field, added_at=added_at)
        for list_id, field, _, added_at in rows
        # Not a list asked for, or one deleted since: no hit.
        if list_id in slugs
    ]
    return sorted(hits, key=lambda hit: (hit.list, hit.field))


# The check runs on every lead the distribution system considers buying: on
# PostgreSQL one statement whose text never changes, so it is prepared once
# per connection and never compiled by the ORM again.
_CHECK_SQL = (
    "SELECT list_id, field, sha256, added_at FROM {entry} "
    "WHERE sha256 = ANY(%s) AND (expires_at IS NULL OR expires_at > now())"
)


def _entries_matching(digests: list[str]) -> list[tuple[int, str, str, datetime]]:
    """The live entries holding any of these SHA-256 digests, on any list."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                _CHECK_SQL.format(entry=SuppressionEntry._meta.db_table), [digests]
            )
            return list(cursor.fetchall())
    return list(
        SuppressionEntry.objects.filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()),
            sha256__in=digests,
        ).values_list("list_id", "field", "sha256", "added_at")
    )


def suppression_list_list() -> QuerySet[SuppressionList]:
    """The lists, each with its number of entries (`entry_count`)."""
    return SuppressionList.objects.annotate(entry_count=Count("entries")).order_by(
        "slug"
    )


def suppression_list_get(*, slug: str) -> SuppressionList | None:
    return SuppressionList.objects.filter(slug=slug).first()


def suppression_entry_list(
    *, suppression_list: SuppressionList | None = None
) -> QuerySet[SuppressionEntry]:
    entries = SuppressionEntry.objects.select_related("list")
    if suppression_list is not None:
        entries = entries.filter(list=suppression_list)
    return entries.order_by("-added_at", "-pk")
