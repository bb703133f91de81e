from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.audit.context import audit_scope, command_actor
from feedback.audit.models import AuditEntry
from feedback.models import ApiKey, Buyer
from feedback.services import api_key_create


class Command(BaseCommand):
    help = (
        "Create an API key for a buyer (--buyer SLUG) or for the lead distribution "
        "system (--integration NAME). The key is printed alone on the last line; it "
        "is stored only as a hash and cannot be shown again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--buyer", metavar="SLUG", help="the buyer's slug")
        group.add_argument("--integration", metavar="NAME", help="a name for the key")
        parser.add_argument("--name", help="a label for a buyer key (default: cli)")

    def handle(self, *args: Any, **options: Any) -> None:
        with audit_scope(
            via=AuditEntry.Via.COMMAND, actor=command_actor("create_api_key")
        ):
            self._create(options)

    def _create(self, options: dict[str, Any]) -> None:
        if options["buyer"]:
            try:
                buyer = Buyer.objects.get(slug=options["buyer"])
            except Buyer.DoesNotExist:
                raise CommandError(
                    f"No buyer with slug {options['buyer']!r}."
                ) from None
            api_key, raw_key = api_key_create(
                scope=ApiKey.Scope.BUYER, name=options["name"] or "cli", buyer=buyer
            )
            self.stderr.write(f"Buyer key {api_key.prefix}… for {buyer.slug}:")
        else:
            api_key, raw_key = api_key_create(
                scope=ApiKey.Scope.INTEGRATION, name=options["integration"]
            )
            self.stderr.write(f"Integration key {api_key.prefix}… ({api_key.name}):")
        self.stdout.write(raw_key)
