"""Reads of the monitoring app."""

from django.db.models import QuerySet

from monitoring.models import Alert, Monitor


def alert_list() -> QuerySet[Alert]:
    """Every alert, newest first, with its monitor and scope."""
    return Alert.objects.select_related(
        "monitor__source", "monitor__buyer", "monitor__flow"
    ).order_by("-at", "-id")


def monitor_list() -> QuerySet[Monitor]:
    return Monitor.objects.select_related("source", "buyer", "flow").order_by("slug")
