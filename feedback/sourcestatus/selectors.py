"""Reads of source status."""

from django.db.models import QuerySet

from feedback.sourcestatus.models import SourceStatusChange
from sources.models import Source


def source_get(*, slug: str) -> Source | None:
    return Source.objects.filter(slug=slug).first()


def source_status_changes(*, source: Source) -> QuerySet[SourceStatusChange]:
    """The source's pauses and resumes, newest first, with who made them."""
    return SourceStatusChange.objects.filter(source=source).select_related(
        "user", "api_key"
    )
