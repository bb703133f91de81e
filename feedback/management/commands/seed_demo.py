import shlex
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import Resolver404, resolve

from feedback.demo import DEFAULT_LEADS, DEFAULT_SEED, DemoLogin, DemoSeed, demo_seed

BASE_URL = "http://127.0.0.1:8000"
CURL_REVENUE = "1250.00"


class Command(BaseCommand):
    help = (
        "Seed demo data (sources, flows, four buyers with portal users and API keys, "
        "months of deliveries and feedback) and print the logins, a buyer API key "
        "and a curl command. Safe to run again: existing data is kept and the "
        "printed buyer gets a fresh demo key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--leads",
            type=int,
            default=DEFAULT_LEADS,
            help=f"leads to generate on the first run (default {DEFAULT_LEADS})",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=DEFAULT_SEED,
            help="random seed; the same seed generates the same data",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["leads"] < 0:
            raise CommandError("--leads cannot be negative.")
        result = demo_seed(leads=options["leads"], seed=options["seed"])
        self._summary(result)
        self._logins(result)
        self._curl(result)

    def _summary(self, result: DemoSeed) -> None:
        outcomes = result.feedback_by_outcome
        counts = (
            f"{result.leads:,} leads, {result.deliveries:,} deliveries, "
            f"{result.feedback:,} feedback ({outcomes.get('success', 0):,} accepted, "
            f"{outcomes.get('failure', 0):,} refused)"
        )
        if result.created:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo data created in {result.seconds:.1f} s: {counts}."
                )
            )
        else:
            self.stdout.write(f"Demo data already present, kept: {counts}.")

    def _logins(self, result: DemoSeed) -> None:
        # The portal may not be installed in this build; then only the login shows.
        portal = f"{BASE_URL}/portal/  " if _routed("/portal/") else ""
        self.stdout.write("")
        self.stdout.write(f"Admin      {BASE_URL}/admin/  {_login(result.admin)}")
        self.stdout.write(f"Portal     {portal}{_login(result.buyer_login)}")
        self.stdout.write(
            f"           ({result.buyer.name}; also "
            f"{', '.join(result.other_buyer_usernames)}, same password)"
        )
        self.stdout.write(
            f"API key    {result.raw_key}  ({result.buyer.name}; shown once, "
            "stored hashed; a new one on every run)"
        )
        self.stdout.write(f"API docs   {BASE_URL}/api/docs/")

    def _curl(self, result: DemoSeed) -> None:
        self.stdout.write("")
        if result.target is None:
            self.stdout.write(
                f"No delivery to {result.buyer.name} without feedback: no curl example."
            )
            return
        url = f"{BASE_URL}/feedback?event_id={result.target.event_id}"
        command = shlex.join(
            [
                "curl",
                "-X",
                "POST",
                url,
                "-H",
                f"X-API-Key: {result.raw_key}",
                "-d",
                "type=conversion",
                "-d",
                f"revenue={CURL_REVENUE}",
            ]
        )
        self.stdout.write(
            f"Report a conversion for one of {result.buyer.name}'s deliveries "
            "(LeadConduit-compatible URL):"
        )
        self.stdout.write(command)


def _login(login: DemoLogin) -> str:
    password = login.password or "(its existing password, not the demo one)"
    return f"user {login.username}  password {password}"


def _routed(path: str) -> bool:
    try:
        resolve(path)
    except Resolver404:
        return False
    return True
