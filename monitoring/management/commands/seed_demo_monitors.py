"""The demo's monitors, added as code (the `monitors` section) after `seed_demo`,
then evaluated: Northwind Media's returns climbed over the last two weeks of
the seeded history, so its monitor fires and the alerts page has an alert."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from feedback.configuration import ConfigurationError, config_import
from monitoring.services import monitors_evaluate

DEMO_MONITORS: list[dict[str, Any]] = [
    {
        "slug": "northwind-returns",
        "name": "Northwind returns",
        "scope": {"source": "northwind-media"},
        "metric": "return_rate",
        "window_days": 14,
        "condition": {
            "op": "above",
            "threshold": 0.15,
            "min_sample": 50,
            "confidence": 0.95,
        },
        "actions": [{"type": "email", "to": ["ops@seller.example"]}],
    },
    {
        "slug": "bluesky-returns",
        "name": "Bluesky returns",
        "scope": {"source": "bluesky-leads"},
        "metric": "return_rate",
        "window_days": 14,
        "condition": {
            "op": "above",
            "threshold": 0.15,
            "min_sample": 50,
            "confidence": 0.95,
        },
        "actions": [{"type": "email", "to": ["ops@seller.example"]}],
    },
    {
        "slug": "conversions",
        "name": "Conversions, every source",
        "metric": "conversion_rate",
        "window_days": 30,
        "condition": {"op": "below", "threshold": 0.05, "min_sample": 100},
        "actions": [],
    },
]


class Command(BaseCommand):
    help = "Add the demo's monitors (after seed_demo) and evaluate them once."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = config_import(document={"monitors": DEMO_MONITORS}, dry_run=False)
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(report.summary())
        result = monitors_evaluate()
        self.stdout.write(
            f"Evaluated {result.monitors} monitor(s): {result.fired} fired, "
            f"{result.resolved} resolved. Alerts: /admin/monitoring/alert/"
        )
