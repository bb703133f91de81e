from typing import Any

from django.core.management.base import BaseCommand

from feedback.suppression.services import suppression_entries_expire


class Command(BaseCommand):
    help = (
        "Delete the suppression entries older than their list's ttl_days, as beat "
        "does every LEADBACK_SUPPRESSION_EXPIRE_INTERVAL_S seconds (for installs "
        "that run cron instead of beat)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = suppression_entries_expire()
        noun = "entry" if deleted == 1 else "entries"
        self.stdout.write(f"Deleted {deleted} expired suppression {noun}.")
