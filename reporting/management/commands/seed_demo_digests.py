import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from reporting.digests.services import digest_save
from sources.models import Source

# The demo's digest: a weekly summary for the largest demo source, by email
# (the demo's mail backend prints messages on the console).
DEMO_SOURCE = "bluesky-leads"
DEMO_DIGEST = "bluesky-leads-weekly"


class Command(BaseCommand):
    help = (
        "Configure the demo's source digest (run after seed_demo): a weekly "
        "digest for Bluesky Leads, ready to preview in the admin. Idempotent."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        source = Source.objects.filter(slug=DEMO_SOURCE).first()
        if source is None:
            raise CommandError(f"No source {DEMO_SOURCE!r}: run seed_demo first.")
        digest = digest_save(
            slug=DEMO_DIGEST,
            source=source,
            enabled=True,
            every="week",
            weekday=0,
            at=datetime.time(8, 0),
            timezone_name="America/Chicago",
            channel="email",
            recipients=["feedback@bluesky.example"],
        )
        self.stdout.write(
            f"Digest {digest.slug}: preview it at "
            f"/admin/reporting/digest/{digest.pk}/preview/"
        )
