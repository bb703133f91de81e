"""Helpers shared by the feedback app's admin pages: searches, counts, layout."""

import json
import logging
import re
from typing import Any, TypeVar

from django.contrib import admin
from django.db.models import Count, IntegerField, Model, OuterRef, Q, QuerySet
from django.db.models.expressions import Subquery
from django.db.models.functions import Coalesce
from django.http import (
    HttpRequest,
)
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from feedback.services import (
    normalize_email,
    normalize_phone,
)

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=Model)
P = TypeVar("P", bound=Model)

# Helpers ----------------------------------------------------------------------


def count_of(model: type[Model], field: str, **filters: Any) -> Coalesce:
    """A per-row count of `model` rows pointing at the outer row through `field`.

    A correlated subquery rather than annotate(Count(join)): the changelist
    computes it only for the page it shows, and its count(*) query drops it.
    """
    rows = (
        model._default_manager.filter(**{field: OuterRef("pk")}, **filters)
        .order_by()
        .values(field)
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


PHONE_LIKE = re.compile(r"[\d\s()+.\-]+")


def contact_q(term: str, *, lead: str = "lead__") -> Q | None:
    """Exact matches on a lead's normalised email or phone, however it is typed.

    The admin's own search splits "(512) 789-1111" into words and compares them
    as typed; this compares the whole term in the stored (indexed) form.
    """
    term = term.strip()
    if "@" in term:
        return Q(**{f"{lead}email_normalized": normalize_email(term)})
    phone = normalize_phone(term)
    # Seven digits at least, so an id like "CRM-12" is not read as a phone.
    if PHONE_LIKE.fullmatch(term) and len(phone) >= 7:
        return Q(**{f"{lead}phone_normalized": phone})
    return None


def pretty_json(value: object) -> SafeString:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


def short_text(text: str, chars: int = 50) -> SafeString:
    """A long text cut for a list column; hovering shows all of it."""
    return format_html('<span title="{}">{}</span>', text, Truncator(text).chars(chars))


class ContactSearchAdmin(admin.ModelAdmin[M]):
    """Search on `search_fields`, plus the lead's email or phone (see contact_q)."""

    lead_path = "lead__"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[M], bool]:
        results, may_have_duplicates = super().get_search_results(
            request, queryset, search_term
        )
        contact = contact_q(search_term, lead=self.lead_path)
        if contact is not None:
            results = results | queryset.filter(contact)
        return results, may_have_duplicates


class ReadOnlyAdmin(admin.ModelAdmin[M]):
    """Records of what happened: they arrive through the API and stay as they are."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: M | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: M | None = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline[M, P]):
    """Rows shown under their parent as they were recorded: nothing to add,
    change or delete there."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: P | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: P | None = None) -> bool:
        return False
