from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from reporting.digests.services import digests_due, digests_send_due


class Command(BaseCommand):
    help = (
        "Send the source digests that are due now (what beat does every "
        "LEADBACK_DIGEST_INTERVAL_S seconds); each period is sent once. With "
        "--dry-run, list them and send nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="list the due digests only"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["dry_run"]:
            due = digests_due()
            for item in due:
                self.stdout.write(
                    f"{item.digest.slug}: {item.period.start} to {item.period.end} "
                    f"by {item.digest.channel}"
                )
            self.stdout.write(f"{len(due)} digest(s) due; nothing sent.")
            return
        sends = digests_send_due()
        for send in sends:
            self.stdout.write(
                f"{send.digest.slug}: {send.period_start} to {send.period_end} "
                f"{send.status}: {send.detail}"
            )
        self.stdout.write(f"{len(sends)} digest(s) handled.")
