import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.configuration import config_dumps, config_export


class Command(BaseCommand):
    help = (
        "Write buyers and sources as one JSON configuration document (see "
        "docs/configuration.md), to standard output or to --output FILE. Secrets "
        'are written as "<redacted>" unless --include-secrets.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output", "-o", metavar="FILE", help="write to FILE, not standard output"
        )
        parser.add_argument(
            "--include-secrets",
            action="store_true",
            help='write secrets themselves instead of "<redacted>"',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        include_secrets: bool = options["include_secrets"]
        document = config_export(include_secrets=include_secrets)
        text = config_dumps(document)
        if not options["output"]:
            self.stdout.write(text, ending="")
            return
        path = Path(options["output"])
        try:
            path.write_text(text, encoding="utf-8")
            if include_secrets:
                # The file now holds credentials: keep it to its owner.
                os.chmod(path, 0o600)
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc.strerror}") from None
        buyers, sources = len(document["buyers"]), len(document["sources"])
        self.stderr.write(
            f"Wrote {buyers} buyer{'s' * (buyers != 1)} and "
            f"{sources} source{'s' * (sources != 1)} to {path}."
        )
