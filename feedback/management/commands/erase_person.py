import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.privacy.models import Erasure
from feedback.privacy.services import (
    ErasureInputError,
    erasure_request_clean,
    person_erase,
)


class Command(BaseCommand):
    help = (
        "Erase a person's data (DESIGN §12, docs/privacy.md) by email, phone or "
        "lead id: their leads' personal data, the request and response bodies "
        "about them, their lines in batch and import files. Ids, dates, prices, "
        "outcomes and reasons stay for reports; a receipt is written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", default="", help="the person's email")
        parser.add_argument("--phone", default="", help="the person's phone")
        parser.add_argument("--lead-id", default="", help="a lead id (the seller's)")
        parser.add_argument(
            "--suppression-list",
            default="",
            metavar="SLUG",
            help="also add the person's digests to this suppression list",
        )
        parser.add_argument(
            "--by", default="", help="who asked, for the receipt (default: you)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            request = erasure_request_clean(
                email=options["email"],
                phone=options["phone"],
                lead_id=options["lead_id"],
            )
            erasure = person_erase(
                request=request,
                via=Erasure.Via.COMMAND,
                requested_by=options["by"] or _operator(),
                suppression_list=options["suppression_list"],
            )
        except ErasureInputError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Erasure {erasure.public_id}: {erasure.leads} lead(s) erased, "
            f"{erasure.notices} notice(s) queued."
        )
        for kind, count in erasure.counts.items():
            self.stdout.write(f"  {kind}: {count}")


def _operator() -> str:
    try:
        return f"command ({getpass.getuser()})"
    except (KeyError, OSError):
        return "command"
