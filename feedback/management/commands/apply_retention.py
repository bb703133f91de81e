from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from feedback.privacy.services import retention_apply, retention_due


class Command(BaseCommand):
    help = (
        "Clear what the LEADBACK_RETAIN_* settings no longer keep (attempt bodies, "
        "import files, batch files, lead personal data), as beat does every "
        "LEADBACK_RETENTION_INTERVAL_S seconds. --dry-run prints the counts only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="print what would be cleared, per kind, and change nothing",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["dry_run"]:
            counts = retention_due()
            self.stdout.write("Would clear:")
        else:
            counts = retention_apply()
            self.stdout.write("Cleared:")
        for kind, count in counts.items():
            self.stdout.write(f"  {kind}: {count}")
