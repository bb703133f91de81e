from typing import Any

from django.core.management.base import BaseCommand

from monitoring.services import alert_actions_run, monitors_evaluate


class Command(BaseCommand):
    help = "Evaluate every monitor now, then run the alert actions that are due."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--no-actions",
            action="store_true",
            help="Only record alerts; a worker or the next beat runs their actions.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = monitors_evaluate()
        self.stdout.write(
            f"Evaluated {result.monitors} monitor(s): {result.fired} fired, "
            f"{result.resolved} resolved."
        )
        if not options["no_actions"]:
            ran = alert_actions_run()
            self.stdout.write(f"Ran {ran} alert action(s).")
