import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback.audit.context import audit_scope, command_actor
from feedback.audit.models import AuditEntry
from feedback.configuration import ConfigurationError, config_import, config_loads


class Command(BaseCommand):
    help = (
        "Create or update buyers and sources, by slug, from a JSON configuration "
        "document (see docs/configuration.md). Nothing is written unless the whole "
        "file is valid; --check only reports what would change."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "file", metavar="FILE", help='the JSON document ("-" for standard input)'
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="validate and report what would change, but write nothing",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["file"]
        text = self._read(name)
        try:
            with audit_scope(
                via=AuditEntry.Via.COMMAND, actor=command_actor("import_config")
            ):
                report = config_import(
                    document=config_loads(text), dry_run=options["check"]
                )
        except ConfigurationError as exc:
            count = len(exc.problems)
            lines = "\n".join(f"  {problem}" for problem in exc.problems)
            noun = "problem" if count == 1 else "problems"
            raise CommandError(
                f"{name}: {count} {noun}, nothing was written:\n{lines}"
            ) from None
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"Warning: {warning}"))
        for change in report.changes:
            self.stdout.write(f"  {change}")
        self.stdout.write(report.summary())

    def _read(self, name: str) -> str:
        if name == "-":
            return sys.stdin.read()
        try:
            return Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot read {name}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{name}: not UTF-8 text.") from None
