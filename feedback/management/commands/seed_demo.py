import shlex
from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import Resolver404, resolve

from feedback.demo.data import DEFAULT_BASE_URL
from feedback.demo.seed import (
    DEFAULT_LEADS,
    DEFAULT_SEED,
    DemoLogin,
    DemoSeed,
    demo_seed,
)
from feedback.returns.selectors import AWAITING
from sources.models import FeedbackConfig
from sources.outbound.guard import destination_problem

CURL_REVENUE = "1250.00"
NOTIFICATIONS_PATH = "/admin/feedback/notification/"


class Command(BaseCommand):
    help = (
        "Seed demo data (sources, flows, four buyers with portal users and API keys, "
        "months of deliveries and feedback, returns under review and a return cap, "
        "feedback configs forwarding to the built-in demo receiver) and print the "
        "logins, a buyer API key and a curl "
        "command. Safe to run again: existing data is kept and the printed buyer "
        "gets a fresh demo key."
    )
    base_url = DEFAULT_BASE_URL

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
        parser.add_argument(
            "--base-url",
            default=DEFAULT_BASE_URL,
            help="where the demo app runs: the printed URLs and the demo receiver "
            f"the new feedback configs send to (default {DEFAULT_BASE_URL})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["leads"] < 0:
            raise CommandError("--leads cannot be negative.")
        base_url = options["base_url"].rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise CommandError(
                f"--base-url must be like {DEFAULT_BASE_URL}, not {base_url!r}."
            )
        problem = destination_problem(parts.hostname or "")
        if problem:
            # The demo's configs send to the receiver at --base-url, and configs
            # on internal addresses are refused unless allow-listed.
            raise CommandError(
                f"The demo sources send to the demo receiver at {base_url}, which "
                f"the SSRF guard refuses: {problem} Set LEADBACK_OUTBOUND_ALLOWLIST "
                "(make demo sets 127.0.0.1/32)."
            )
        self.base_url = base_url
        result = demo_seed(
            leads=options["leads"], seed=options["seed"], base_url=base_url
        )
        self._summary(result)
        self._logins(result)
        self._curl(result)
        self._forwarding(result)

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
        for buyer, states in result.reviews:
            waiting = ", ".join(f"{states[s]:,} {s}" for s in AWAITING if s in states)
            self.stdout.write(
                f"Returns from {buyer.name} wait for review ({waiting}) in the admin's "
                "Returns review queue."
            )
        if result.forwarding is not None:
            sent = result.forwarding.notifications
            runs = result.forwarding.batch_runs
            self.stdout.write(
                "Forwarding history for the last days: "
                + ", ".join(f"{n:,} {fate}" for fate, n in sorted(sent.items()))
                + " notifications; batch runs "
                + ", ".join(f"{n:,} {state}" for state, n in sorted(runs.items()))
                + " (admin: Notifications, Dead letters, Batch runs)."
            )
        for buyer, line in result.allowances:
            scope = "" if line.scope == "All flows" else f" ({line.scope})"
            self.stdout.write(
                f"{buyer.name}{scope} has a return cap: {line.used:,} of "
                f"{line.allowed:,} returns used for {line.month:%B %Y} deliveries, "
                f"{line.remaining:,} left."
            )

    def _logins(self, result: DemoSeed) -> None:
        # The portal may not be installed in this build; then only the login shows.
        portal = f"{self.base_url}/portal/  " if _routed("/portal/") else ""
        self.stdout.write("")
        self.stdout.write(f"Admin      {self.base_url}/admin/  {_login(result.admin)}")
        self.stdout.write(f"Portal     {portal}{_login(result.buyer_login)}")
        self.stdout.write(
            f"           ({result.buyer.name}; also "
            f"{', '.join(result.other_buyer_usernames)}, same password)"
        )
        self.stdout.write(
            f"API key    {result.raw_key}  ({result.buyer.name}; shown once, "
            "stored hashed; a new one on every run)"
        )
        self.stdout.write(f"API docs   {self.base_url}/api/docs/")

    def _curl(self, result: DemoSeed) -> None:
        self.stdout.write("")
        if result.target is None:
            self.stdout.write(
                f"No delivery to {result.buyer.name} without feedback: no curl example."
            )
            return
        url = f"{self.base_url}/feedback?event_id={result.target.event_id}"
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

    def _forwarding(self, result: DemoSeed) -> None:
        if not result.configs:
            return
        like = " (like the conversion above)" if result.target else ""
        self.stdout.write("")
        self.stdout.write(
            f"New feedback{like} is forwarded by the worker to the built-in demo "
            "receiver:"
        )
        for config in result.configs:
            self.stdout.write(f"  {_config_line(config)}")
        self.stdout.write(
            "Watch the notifications and their attempts at "
            f"{self.base_url}{NOTIFICATIONS_PATH}"
        )


def _config_line(config: FeedbackConfig) -> str:
    kind = config.get_kind_display().lower()
    return (
        f"{config.source.name} {kind}s: {config.get_method_display()} to {config.url}"
    )


def _login(login: DemoLogin) -> str:
    password = login.password or "(its existing password, not the demo one)"
    return f"user {login.username}  password {password}"


def _routed(path: str) -> bool:
    try:
        resolve(path)
    except Resolver404:
        return False
    return True
