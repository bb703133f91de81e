"""Every change the admin makes, recorded once: from Django's change log.

Each add, change and delete of any ModelAdmin writes a LogEntry; its audit row
is written beside it in the same transaction. Deleting several objects at once
writes their entries with bulk_create, which sends no post_save, so the site's
"Delete selected" action records those itself.
"""

import functools
from typing import Any

from django.contrib import admin
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import QuerySet
from django.db.models.signals import post_save
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from feedback.audit.services import audit_log_entry


def log_entry_saved(
    sender: type[LogEntry], instance: LogEntry, created: bool, raw: bool, **kwargs: Any
) -> None:
    if created and not raw:
        audit_log_entry(instance)


@functools.wraps(django_delete_selected)
def delete_selected(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]
) -> HttpResponse | None:
    chosen = [str(pk) for pk in queryset.values_list("pk", flat=True)]
    started = timezone.now()
    response: HttpResponse | None = django_delete_selected(
        modeladmin, request, queryset
    )
    user_id = request.user.pk
    if response is None and len(chosen) > 1 and user_id is not None:
        # Deleted, and logged with bulk_create.
        entries = LogEntry.objects.filter(
            user_id=user_id,
            action_flag=DELETION,
            content_type=ContentType.objects.get_for_model(
                queryset.model, for_concrete_model=False
            ),
            object_id__in=chosen,
            action_time__gte=started,
        ).select_related("content_type", "user")
        for entry in entries:
            audit_log_entry(entry)
    return response


def adminlog_connect() -> None:
    """Record the admin's changes from now on (called once, from apps.py)."""
    post_save.connect(log_entry_saved, sender=LogEntry, dispatch_uid="audit-log")
    admin.site.add_action(delete_selected, "delete_selected")
