from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from reporting.rollups import rollups_refresh


class Command(BaseCommand):
    help = (
        "Bring the reports' daily rollups up to date now (what beat does every "
        "LEADBACK_ROLLUP_INTERVAL_S seconds). With --full, rebuild every day: after "
        "changing TIME_ZONE, or after editing deliveries or feedback in the database."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--full", action="store_true", help="rebuild the rollups of every day"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        written = rollups_refresh(full=options["full"])
        self.stdout.write(f"Wrote {written} rollup row(s).")
