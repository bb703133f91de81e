"""Seeding the demo for `make demo`: sources, flows, buyers with portal users and
API keys, and months of deliveries and feedback, generated deterministically
from a seed.

The bulk of it (leads, deliveries, feedback) is written with `bulk_create` rather
than through `delivery_event_record` / `feedback_receive`: those stamp "now" on
what they store and take a few queries per item, while the demo needs four months
of history in a few seconds. Refused feedback is stored exactly as
`feedback_receive` stores it (outcome failure, the same `outcome_reason` text),
and so are returns past a buyer's cap (caps.py); tests/feedback/test_seed_demo.py
holds the two in step. The accepted returns then get their review state and
the rows the intake writes with it, and a buyer on manual review the decisions
made since, through the returns services (reviews.py); last, the month counters
that caps read are rebuilt from the rows.

The demo sources forward feedback to the built-in demo receiver
(feedback/demo/receiver.py): a real-time JSON config, an XML one and a SOAP one.
The history's last days come with the forwarding the engine would have left
(forwarding.py): notifications in every state with their attempts, and a daily
email batch config's runs, so delivery health, dead letters and batch runs have
something to show; feedback posted while the demo runs is forwarded for real by
its worker.
"""

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone

from feedback.demo.data import (
    BUYERS,
    DEFAULT_BASE_URL,
    DEMO_CONFIGS,
    FLOWS,
    LEAD_ID_PREFIX,
    PRINTED_BUYER,
    RECEIVER_PATH,
    SOURCES,
    BuyerSpec,
)
from feedback.demo.forwarding import ForwardingHistory, forwarding_history_generate
from feedback.demo.history import history_generate
from feedback.demo.reviews import reviews_record
from feedback.models import (
    ApiKey,
    Buyer,
    BuyerMembership,
    BuyerPolicy,
    DeliveryEvent,
    Feedback,
    Flow,
    Lead,
)
from feedback.months import month_of, months_recount
from feedback.returns.selectors import (
    Allowance,
    allowances_for,
    returns_awaiting_review,
)
from feedback.services import (
    api_key_create,
    api_key_revoke,
)
from sources.models import FeedbackConfig, FieldMapping, Kind, Source
from sources.services import feedback_config_validate

# Printed at the end of `make demo`: a demo login, not a secret.
DEMO_PASSWORD = "leadback-demo"  # noqa: S105


ADMIN_USERNAME = "admin"


DEMO_KEY_NAME = "demo"


DEFAULT_LEADS = 5000


DEFAULT_SEED = 2026


@dataclass
class DemoLogin:
    username: str
    # None when the account existed before with a password of its own.
    password: str | None


@dataclass
class DemoSeed:
    """What `demo_seed` did and what to tell the person running the demo."""

    created: bool
    leads: int
    deliveries: int
    feedback: int
    admin: DemoLogin
    buyer: Buyer
    buyer_login: DemoLogin
    other_buyer_usernames: list[str]
    api_key: ApiKey
    raw_key: str
    target: DeliveryEvent | None
    # Per demo buyer with returns waiting for a decision: how many per state.
    reviews: list[tuple[Buyer, dict[str, int]]] = field(default_factory=list)
    # This month's return allowance of the capped demo buyers.
    allowances: list[tuple[Buyer, Allowance]] = field(default_factory=list)
    seconds: float = 0.0
    feedback_by_outcome: dict[str, int] = field(default_factory=dict)
    # The enabled configs of the demo sources, whatever created them.
    configs: list[FeedbackConfig] = field(default_factory=list)
    # The forwarding history written with a new history (None when kept).
    forwarding: ForwardingHistory | None = None


def demo_seed(
    *,
    leads: int = DEFAULT_LEADS,
    seed: int = DEFAULT_SEED,
    now: datetime | None = None,
    base_url: str = DEFAULT_BASE_URL,
) -> DemoSeed:
    """Create the demo installation, or complete it; safe to run again.

    Sources, flows, buyers, policies and users are created when missing (never
    overwritten); so are the feedback configs, pointing at the demo receiver of
    the app at `base_url`, each only where its source has no config of its kind.
    The history is generated once: when demo leads exist it is kept as it is,
    but for its accepted returns without a review state (a history seeded
    before returns had one), which get it. The printed buyer's demo API key is
    rotated on every run, because only a new key can be shown.
    """
    now = now or timezone.now()
    started = timezone.now()
    with transaction.atomic():
        sources = _sources_ensure()
        _configs_ensure(sources, base_url=base_url)
        flows = _flows_ensure()
        buyers = _buyers_ensure()
        password_hash = _DemoPasswordHash()
        admin = _admin_ensure(password_hash)
        logins = {
            spec.slug: _portal_user_ensure(spec, buyers[spec.slug], password_hash)
            for spec in BUYERS
        }
        keys = {spec.slug: _demo_key_ensure(buyers[spec.slug]) for spec in BUYERS}
        created = not Lead.objects.filter(public_id__startswith=LEAD_ID_PREFIX).exists()
        if created:
            history_generate(
                rng=random.Random(seed),  # noqa: S311 - reproducible demo data
                leads=leads,
                now=now,
                sources=sources,
                flows=flows,
                buyers=buyers,
                keys={slug: key for slug, (key, _raw) in keys.items()},
                users={slug: login[0] for slug, login in logins.items()},
            )
        reviewed = reviews_record(
            rng=random.Random(seed),  # noqa: S311
            now=now,
            buyers=buyers,
            staff=User.objects.get(username=ADMIN_USERNAME),
            users={slug: login[0] for slug, login in logins.items()},
        )
        forwarding = (
            forwarding_history_generate(
                rng=random.Random(seed),  # noqa: S311
                now=now,
                sources=sources,
            )
            if created
            else None
        )
        if created or reviewed:
            # The history and its reviews were written around the month counters.
            months_recount(buyer_ids=[buyer.pk for buyer in buyers.values()])
        buyer = buyers[PRINTED_BUYER]
        api_key, raw_key = keys[PRINTED_BUYER]
        if raw_key is None:
            api_key, raw_key = demo_key_rotate(buyer=buyer)
    demo = Lead.objects.filter(public_id__startswith=LEAD_ID_PREFIX)
    feedback = Feedback.objects.filter(lead__public_id__startswith=LEAD_ID_PREFIX)
    by_outcome = {
        row["outcome"]: row["count"]
        for row in feedback.values("outcome").annotate(count=Count("pk"))
    }
    return DemoSeed(
        created=created,
        leads=demo.count(),
        deliveries=DeliveryEvent.objects.filter(
            lead__public_id__startswith=LEAD_ID_PREFIX
        ).count(),
        feedback=sum(by_outcome.values()),
        feedback_by_outcome=by_outcome,
        admin=admin,
        buyer=buyer,
        buyer_login=logins[PRINTED_BUYER][1],
        other_buyer_usernames=[s.username for s in BUYERS if s.slug != PRINTED_BUYER],
        api_key=api_key,
        raw_key=raw_key,
        target=demo_feedback_target(buyer=buyer, now=timezone.now()),
        reviews=_reviews_awaiting(buyers),
        allowances=[
            (demo_buyer, line)
            for demo_buyer in buyers.values()
            for line in allowances_for(
                buyer_id=demo_buyer.pk, month_list=[month_of(timezone.now())]
            )
        ],
        seconds=(timezone.now() - started).total_seconds(),
        forwarding=forwarding,
        configs=list(
            FeedbackConfig.objects.select_related("source").filter(
                source__slug__in=[spec.slug for spec in SOURCES], enabled=True
            )
        ),
    )


def _reviews_awaiting(buyers: dict[str, Buyer]) -> list[tuple[Buyer, dict[str, int]]]:
    counts: dict[int, dict[str, int]] = {}
    for row in (
        returns_awaiting_review()
        .filter(buyer__in=buyers.values())
        .values("buyer_id", "review_state")
        .annotate(count=Count("pk"))
        .order_by()
    ):
        counts.setdefault(row["buyer_id"], {})[row["review_state"]] = row["count"]
    return [
        (buyer, counts[buyer.pk]) for buyer in buyers.values() if buyer.pk in counts
    ]


def demo_key_rotate(*, buyer: Buyer) -> tuple[ApiKey, str]:
    """Revoke the buyer's demo keys and create a new one (keys are stored hashed,
    so a key can only be shown when it is created)."""
    for old in ApiKey.objects.filter(
        buyer=buyer, name=DEMO_KEY_NAME, revoked_at__isnull=True
    ):
        api_key_revoke(api_key=old)
    return api_key_create(scope=ApiKey.Scope.BUYER, name=DEMO_KEY_NAME, buyer=buyer)


def demo_feedback_target(*, buyer: Buyer, now: datetime) -> DeliveryEvent | None:
    """A demo delivery of `buyer` with no feedback yet, from a source that takes
    conversions and returns: from the last two weeks (inside any return window)
    when there is one, else the newest."""
    candidates = (
        DeliveryEvent.objects.select_related("source")
        .filter(
            buyer=buyer,
            lead__public_id__startswith=LEAD_ID_PREFIX,
            source__accepts_conversion=True,
            source__accepts_return=True,
            delivered_at__lte=now,
        )
        .exclude(Exists(Feedback.objects.filter(delivery=OuterRef("pk"))))
        .order_by("-delivered_at")
    )
    return (
        candidates.filter(delivered_at__gte=now - timedelta(days=14)).first()
        or candidates.first()
    )


def _sources_ensure() -> dict[str, Source]:
    sources = {}
    for spec in SOURCES:
        source, _ = Source.objects.get_or_create(
            slug=spec.slug,
            defaults={
                "name": spec.name,
                "accepts_return": spec.accepts_return,
                "return_reasons": list(spec.return_reasons),
                "status_reasons": list(spec.status_reasons),
            },
        )
        sources[spec.slug] = source
    return sources


def _configs_ensure(sources: dict[str, Source], *, base_url: str) -> None:
    receiver = base_url.rstrip("/") + RECEIVER_PATH
    for spec in DEMO_CONFIGS:
        source = sources[spec.source]
        if FeedbackConfig.objects.filter(source=source, kind=spec.kind).exists():
            continue
        config = FeedbackConfig(
            source=source,
            kind=spec.kind,
            method=spec.method,
            url=receiver + spec.endpoint,
            soap_operation=spec.soap_operation,
            outcome_search_term=spec.outcome_search_term,
            outcome_search_path=spec.outcome_search_path,
            reason_path=spec.reason_path,
            reference_path=spec.reference_path,
        )
        feedback_config_validate(config)
        config.save()
        FieldMapping.objects.bulk_create(
            FieldMapping(config=config, position=position, target=target, value=value)
            for position, (target, value) in enumerate(spec.mappings)
        )


def _flows_ensure() -> dict[str, Flow]:
    return {
        slug: Flow.objects.get_or_create(slug=slug, defaults={"name": name})[0]
        for slug, name, _weight in FLOWS
    }


def _buyers_ensure() -> dict[str, Buyer]:
    buyers = {}
    for spec in BUYERS:
        buyer, _ = Buyer.objects.get_or_create(
            slug=spec.slug, defaults={"name": spec.name}
        )
        policies: dict[Kind, dict[str, Any]] = {
            Kind.CONVERSION: {"enabled": True},
            Kind.RETURN: {
                "enabled": True,
                "max_age_days": spec.return_max_age_days,
                "review": spec.review,
                "cap_percent": spec.cap_percent,
                "cap_min": spec.cap_min,
                "credit_percent": spec.credit_percent,
                "dispute_days": spec.dispute_days,
            },
            Kind.STATUS: {"enabled": spec.status_enabled},
        }
        for kind, defaults in policies.items():
            BuyerPolicy.objects.get_or_create(
                buyer=buyer, flow=None, kind=kind, defaults=defaults
            )
        buyers[spec.slug] = buyer
    return buyers


class _DemoPasswordHash:
    """The demo password hashed once per run: a hash costs about half a second,
    and every demo account has the same printed password anyway."""

    def __init__(self) -> None:
        self._hash: str | None = None

    def __str__(self) -> str:
        if self._hash is None:
            self._hash = make_password(DEMO_PASSWORD)
        return self._hash


def _admin_ensure(password_hash: _DemoPasswordHash) -> DemoLogin:
    user = User.objects.filter(username=ADMIN_USERNAME).first()
    if user is None:
        user = User.objects.create_superuser(
            ADMIN_USERNAME, "admin@leadback.example", password=None
        )
        user.password = str(password_hash)
        user.save(update_fields=["password"])
        return DemoLogin(ADMIN_USERNAME, DEMO_PASSWORD)
    return DemoLogin(ADMIN_USERNAME, _password_if_demo(user))


def _portal_user_ensure(
    spec: BuyerSpec, buyer: Buyer, password_hash: _DemoPasswordHash
) -> tuple[User, DemoLogin]:
    user = User.objects.filter(username=spec.username).first()
    if user is None:
        user = User.objects.create(
            username=spec.username,
            email=f"{spec.username}@{spec.slug}.example",
            password=str(password_hash),
        )
        password: str | None = DEMO_PASSWORD
    else:
        # Checking a password costs a hash; only the printed login needs to know.
        password = _password_if_demo(user) if spec.slug == PRINTED_BUYER else None
    BuyerMembership.objects.get_or_create(user=user, buyer=buyer)
    return user, DemoLogin(spec.username, password)


def _password_if_demo(user: User) -> str | None:
    return DEMO_PASSWORD if user.check_password(DEMO_PASSWORD) else None


def _demo_key_ensure(buyer: Buyer) -> tuple[ApiKey, str | None]:
    """The buyer's active demo key; the raw key only when created just now."""
    existing = ApiKey.objects.filter(
        buyer=buyer, name=DEMO_KEY_NAME, revoked_at__isnull=True
    ).first()
    if existing is not None:
        return existing, None
    return api_key_create(scope=ApiKey.Scope.BUYER, name=DEMO_KEY_NAME, buyer=buyer)
