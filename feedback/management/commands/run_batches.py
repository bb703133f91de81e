from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from feedback.forwarding.batches import batch_runs_dispatch, batch_runs_run_due


class Command(BaseCommand):
    help = (
        "Create the batch runs whose period has ended and send the due ones. With "
        "--once, send them in this process and exit (no broker needed); without "
        "it, queue them for the Celery workers, like the beat task."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="send due batch files here and now, then exit",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            count = batch_runs_run_due()
            self.stdout.write(f"Sent {count} batch run(s).")
        else:
            count = batch_runs_dispatch()
            self.stdout.write(f"Queued {count} batch run(s).")
