from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from feedback.forwarding.engine import notifications_deliver_due, notifications_sweep
from feedback.webhooks.delivery import (
    webhook_messages_deliver_due,
    webhook_messages_sweep,
)


class Command(BaseCommand):
    help = (
        "Deliver due notifications and webhook messages. With --once, claim and "
        "send them in this process and exit (no broker needed: cron-less "
        "installs, debugging); without it, queue them for the Celery workers, "
        "like the beat sweepers."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="send due notifications here and now, then exit",
        )
        parser.add_argument(
            "--limit",
            type=int,
            default=None,
            help="at most this many (default: a batch)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            count = notifications_deliver_due(limit=options["limit"])
            self.stdout.write(f"Delivered {count} notification(s).")
            hooks = webhook_messages_deliver_due(limit=options["limit"])
            verb = "Delivered"
        else:
            count = notifications_sweep()
            self.stdout.write(f"Queued {count} notification(s).")
            hooks = webhook_messages_sweep()
            verb = "Queued"
        if hooks:
            self.stdout.write(f"{verb} {hooks} webhook message(s).")
