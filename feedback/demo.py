"""Demo data for `make demo`: sources, flows, buyers with portal users and API keys,
and months of deliveries and feedback, generated deterministically from a seed.

The bulk of it (leads, deliveries, feedback) is written with `bulk_create` rather
than through `delivery_event_record` / `feedback_receive`: those stamp "now" on
what they store and take a few queries per item, while the demo needs four months
of history in a few seconds. Refused feedback is stored exactly as
`feedback_receive` stores it (outcome failure, the same `outcome_reason` text);
tests/feedback/test_seed_demo.py holds the two in step.

The demo sources forward feedback to the built-in demo receiver
(feedback/demo_receiver.py): a real-time JSON config, an XML one and a SOAP one.
The history is not forwarded (it never went through the engine); feedback posted
while the demo runs is, by its worker, so the admin shows real notifications and
attempts.
"""

import random
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone

from feedback.intake.judge import ALREADY_RETURNED_REASON, FORBIDDEN_REASON
from feedback.models import (
    ApiKey,
    Buyer,
    BuyerMembership,
    BuyerPolicy,
    DeliveryEvent,
    Feedback,
    Flow,
    Lead,
    OutcomeCode,
)
from feedback.services import (
    DeliveryInput,
    api_key_create,
    api_key_revoke,
    normalize_email,
    normalize_phone,
)
from sources.models import FeedbackConfig, FieldMapping, Kind, Source
from sources.services import feedback_config_validate

# Printed at the end of `make demo`: a demo login, not a secret.
DEMO_PASSWORD = "leadback-demo"  # noqa: S105
ADMIN_USERNAME = "admin"
DEMO_KEY_NAME = "demo"
# Every demo lead's public id starts with this: it is how a second run knows the
# history is already there (and how tests tell demo rows from others).
LEAD_ID_PREFIX = "demo-"
# Where the demo runs; the demo configs send to its receiver under RECEIVER_PATH.
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
RECEIVER_PATH = "/demo/receiver/"
DEFAULT_LEADS = 5000
DEFAULT_SEED = 2026
HISTORY_DAYS = 120
BATCH_SIZE = 500

# Shares of deliveries. Returns are aimed a little above 8% because some of them
# are refused (a source that takes no returns, a late return).
CONVERSION_RATE = 0.10
RETURN_RATE = 0.10
STATUS_RATE = 0.30
SHARED_LEAD_RATE = 0.20


@dataclass(frozen=True)
class SourceSpec:
    slug: str
    name: str
    weight: float
    price_cents: tuple[int, int]
    accepts_return: bool = True
    return_reasons: tuple[str, ...] = ()
    status_reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuyerSpec:
    slug: str
    name: str
    flow: str
    weight: float
    username: str
    reference_prefix: str
    return_max_age_days: int = BuyerPolicy.DEFAULT_MAX_AGE_DAYS
    status_enabled: bool = True


SOURCES = (
    SourceSpec(
        "bluesky-leads",
        "Bluesky Leads",
        0.45,
        (2800, 4500),
        return_reasons=(
            "Duplicate",
            "Bad phone",
            "Not interested",
            "Wrong state",
            "Fraud",
        ),
    ),
    SourceSpec(
        "northwind-media",
        "Northwind Media",
        0.35,
        (1800, 3200),
        return_reasons=("Duplicate", "Bad phone", "Disconnected phone", "Fraud"),
        status_reasons=("Contacted", "Appointment set", "Left voicemail", "No answer"),
    ),
    # Sells non-refundable leads: every return sent for them is refused.
    SourceSpec(
        "harbor-digital",
        "Harbor Digital",
        0.20,
        (1200, 2000),
        accepts_return=False,
    ),
)
FLOWS = (
    ("auto-insurance", "Auto Insurance", 0.55),
    ("home-services", "Home Services", 0.45),
)
BUYERS = (
    BuyerSpec(
        "acme-insurance", "Acme Insurance", "auto-insurance", 0.6, "acme", "ACME"
    ),
    BuyerSpec(
        "zenith-direct",
        "Zenith Direct",
        "auto-insurance",
        0.4,
        "zenith",
        "ZD",
        return_max_age_days=30,
    ),
    BuyerSpec(
        "pinnacle-home",
        "Pinnacle Home Pros",
        "home-services",
        0.55,
        "pinnacle",
        "PHP",
        return_max_age_days=60,
    ),
    # Status updates are switched off for this buyer, yet its CRM sends a few:
    # those are refused as "Feedback is forbidden".
    BuyerSpec(
        "crestline-solar",
        "Crestline Solar",
        "home-services",
        0.45,
        "crestline",
        "CS",
        status_enabled=False,
    ),
)
PRINTED_BUYER = BUYERS[0].slug

# Realistic but fictional people: example.* mail domains, 555 exchanges.
FIRST_NAMES = (  # noqa: SIM905 - a word list reads better as text
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William "
    "Barbara Richard Susan Joseph Jessica Thomas Sarah Carlos Karen Daniel Lisa "
    "Matthew Nancy Anthony Betty Mark Sandra Steven Ashley Andrew Kimberly Joshua "
    "Emily Kevin Donna Brian Michelle Luis Carol Jose Amanda Ryan Melissa Jacob "
    "Deborah Nicole Sofia Mateo Aaliyah Wei Priya Omar Fatima Hiroshi Aisha"
).split()
LAST_NAMES = (  # noqa: SIM905
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez "
    "Hernandez Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee "
    "Perez Thompson White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young "
    "Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall "
    "Rivera Campbell Mitchell Carter Roberts Patel Kim Chen Okafor Schmidt"
).split()
MAIL_DOMAINS = ("example.com", "example.net", "example.org")
# state: (area codes, ZIP prefixes, weight)
STATES: dict[str, tuple[tuple[str, ...], tuple[str, ...], float]] = {
    "TX": (("512", "214", "713", "210"), ("787", "752", "770", "782"), 0.16),
    "FL": (("305", "407", "813", "904"), ("331", "328", "336", "322"), 0.13),
    "CA": (("213", "415", "619", "916"), ("900", "941", "921", "958"), 0.15),
    "NY": (("212", "718", "516", "585"), ("100", "112", "115", "146"), 0.09),
    "GA": (("404", "770", "912"), ("303", "300", "314"), 0.07),
    "OH": (("614", "216", "513"), ("432", "441", "452"), 0.07),
    "NC": (("704", "919", "336"), ("282", "276", "274"), 0.07),
    "AZ": (("602", "480", "520"), ("850", "852", "857"), 0.06),
    "IL": (("312", "773", "847"), ("606", "604", "600"), 0.07),
    "PA": (("215", "412", "717"), ("191", "152", "171"), 0.07),
    "CO": (("303", "720", "719"), ("802", "801", "809"), 0.06),
}
VEHICLE_MAKES = ("Toyota", "Ford", "Honda", "Chevrolet", "Nissan", "Hyundai", "Subaru")
PROJECTS = ("Solar", "Roofing", "Windows", "HVAC", "Solar", "Bathroom remodel")

# A return reason -> the outcome code a CRM would send with it.
RETURN_CODES = {
    "Duplicate": "duplicate",
    "Bad phone": "bad_info",
    "Disconnected phone": "bad_info",
    "Wrong state": "bad_info",
    "Fraud": "returned",
    "Not interested": "returned",
}
# Reasons buyers send that a source's list does not accept: refused, then resent.
UNLISTED_RETURN_REASONS = ("Wrong number", "Bad lead", "Invalid")
STATUS_REASONS = {
    "contacted": ("Spoke with customer", "Appointment set", ""),
    "no_contact": ("Left voicemail", "No answer", ""),
    "not_interested": ("Not shopping now", "Already covered", ""),
}
STATUS_LISTED_REASONS = {
    "contacted": ("Contacted", "Appointment set"),
    "no_contact": ("Left voicemail", "No answer"),
    "not_interested": ("Contacted",),
}
RETURN_NOTES = {
    "Fraud": "Person says they never filled out a form.",
    "Wrong state": "Lives outside our licensed states.",
    "Duplicate": "Already in our CRM from another vendor.",
}
CHANNELS = (
    (Feedback.Channel.API, 0.55),
    (Feedback.Channel.LC_COMPAT, 0.25),
    (Feedback.Channel.PORTAL, 0.15),
    (Feedback.Channel.CSV, 0.05),
)


@dataclass(frozen=True)
class ConfigSpec:
    """A demo feedback config: where one kind of feedback for a source goes."""

    source: str
    kind: Kind
    method: FeedbackConfig.Method
    endpoint: str  # under RECEIVER_PATH
    mappings: tuple[tuple[str, str], ...]
    outcome_search_term: str
    outcome_search_path: str
    reason_path: str
    reference_path: str
    soap_operation: str = ""


# Each shows one method of DESIGN §5.1 and reads the receiver's answer (§5.5).
# Only ids leave Leadback: no lead's name, email or phone goes to the demo source.
DEMO_CONFIGS = (
    ConfigSpec(
        "bluesky-leads",
        Kind.RETURN,
        FeedbackConfig.Method.JSON,
        "json/",
        (
            ("event_id", "{{ event.id }}"),
            ("lead.id", "{{ lead.id }}"),
            ("return.reason", "{{ feedback.reason }}"),
            ("return.code", "{{ feedback.outcome_code }}"),
            ("return.at", "{{ feedback.timestamp }}"),
        ),
        outcome_search_term="^accepted$",
        outcome_search_path="status",
        reason_path="message",
        reference_path="id",
    ),
    ConfigSpec(
        "bluesky-leads",
        Kind.CONVERSION,
        FeedbackConfig.Method.SOAP,
        "soap/?wsdl",
        (
            ("EventId", "{{ event.id }}"),
            ("Amount", "{{ feedback.revenue }}"),
            ("Reason", "{{ feedback.reason }}"),
        ),
        outcome_search_term="^Accepted$",
        outcome_search_path="RecordConversionResponse.Status",
        reason_path="RecordConversionResponse.Message",
        reference_path="RecordConversionResponse.ConfirmationId",
        soap_operation="RecordConversion",
    ),
    ConfigSpec(
        "northwind-media",
        Kind.RETURN,
        FeedbackConfig.Method.XML,
        "xml/",
        (
            ("event_id", "{{ event.id }}"),
            ("lead@id", "{{ lead.id }}"),
            ("reason", "{{ feedback.reason }}"),
            ("occurred_at", "{{ feedback.timestamp }}"),
        ),
        outcome_search_term="^ok$",
        outcome_search_path="/response/status",
        reason_path="/response/message",
        reference_path="/response/id",
    ),
    ConfigSpec(
        "northwind-media",
        Kind.CONVERSION,
        FeedbackConfig.Method.JSON,
        "json/",
        (
            ("event_id", "{{ event.id }}"),
            ("lead.id", "{{ lead.id }}"),
            ("conversion.revenue", "{{ feedback.revenue }}"),
            ("conversion.at", "{{ feedback.timestamp }}"),
        ),
        outcome_search_term="^accepted$",
        outcome_search_path="status",
        reason_path="message",
        reference_path="id",
    ),
)


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
    seconds: float = 0.0
    feedback_by_outcome: dict[str, int] = field(default_factory=dict)
    # The enabled configs of the demo sources, whatever created them.
    configs: list[FeedbackConfig] = field(default_factory=list)


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
    The history is generated once: when demo leads exist it is kept as it is. The
    printed buyer's demo API key is rotated on every run, because only a new key
    can be shown.
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
            _history_generate(
                rng=random.Random(seed),  # noqa: S311 - reproducible demo data
                leads=leads,
                now=now,
                sources=sources,
                flows=flows,
                buyers=buyers,
                keys={slug: key for slug, (key, _raw) in keys.items()},
                users={slug: login[0] for slug, login in logins.items()},
            )
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
        seconds=(timezone.now() - started).total_seconds(),
        configs=list(
            FeedbackConfig.objects.select_related("source").filter(
                source__slug__in=[spec.slug for spec in SOURCES], enabled=True
            )
        ),
    )


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


# Configuration ----------------------------------------------------------------


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
            Kind.RETURN: {"enabled": True, "max_age_days": spec.return_max_age_days},
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


# History ----------------------------------------------------------------------


T = TypeVar("T")


def _batched(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), BATCH_SIZE):
        yield items[start : start + BATCH_SIZE]


def _history_generate(
    *,
    rng: random.Random,
    leads: int,
    now: datetime,
    sources: dict[str, Source],
    flows: dict[str, Flow],
    buyers: dict[str, Buyer],
    keys: dict[str, ApiKey],
    users: dict[str, User],
) -> None:
    lead_rows: list[Lead] = []
    deliveries: list[DeliveryEvent] = []
    source_specs = {spec.slug: spec for spec in SOURCES}
    buyer_specs = {spec.slug: spec for spec in BUYERS}
    sequence = {spec.slug: 100_000 + rng.randrange(50_000) for spec in BUYERS}
    for number in range(1, leads + 1):
        flow_slug = _weighted(rng, [(slug, w) for slug, _name, w in FLOWS])
        source_spec = _weighted(rng, [(spec, spec.weight) for spec in SOURCES])
        received_at = _delivery_time(rng, now)
        data = _person(rng, flow_slug)
        lead = Lead(
            public_id=f"{LEAD_ID_PREFIX}{number:06d}",
            source=sources[source_spec.slug],
            flow=flows[flow_slug],
            data=data,
            email_normalized=normalize_email(data["email"]),
            phone_normalized=normalize_phone(data["phone_1"]),
            received_at=received_at,
        )
        lead_rows.append(lead)
        flow_buyers = [spec for spec in BUYERS if spec.flow == flow_slug]
        if rng.random() < SHARED_LEAD_RATE:
            chosen = flow_buyers
        else:
            chosen = [_weighted(rng, [(spec, spec.weight) for spec in flow_buyers])]
        delivered_at = received_at
        for spec in chosen:
            delivered_at = min(
                delivered_at + timedelta(seconds=rng.randint(2, 40)), now
            )
            sequence[spec.slug] += rng.randint(1, 3)
            price = Decimal(rng.randint(*source_spec.price_cents)) / 100
            if flow_slug == "home-services":
                price = (price * Decimal("1.8")).quantize(Decimal("0.01"))
            reference = f"{spec.reference_prefix}-{sequence[spec.slug]}"
            step = f"Deliver to {spec.name}"
            event_id = secrets.token_hex(12)  # ids stay unguessable
            # The fingerprint the events API would have stored, so the lead
            # distribution system re-posting a demo event gets a harmless repeat.
            fingerprint = DeliveryInput(
                buyer=spec.slug,
                source=source_spec.slug,
                flow=flow_slug,
                event_id=event_id,
                delivered_at=delivered_at,
                price=price,
                step=step,
                reference=reference,
                lead_id=lead.public_id,
                lead_data=data,
            ).fingerprint()
            deliveries.append(
                DeliveryEvent(
                    event_id=event_id,
                    lead=lead,
                    buyer=buyers[spec.slug],
                    source=lead.source,
                    flow=lead.flow,
                    step=step,
                    reference=reference,
                    price=price,
                    delivered_at=delivered_at,
                    payload_hash=fingerprint,
                )
            )
    for lead_batch in _batched(lead_rows):
        Lead.objects.bulk_create(lead_batch)
    for delivery_batch in _batched(deliveries):
        DeliveryEvent.objects.bulk_create(delivery_batch)

    writer = _FeedbackWriter(
        rng=rng,
        now=now,
        codes={code.code: code for code in OutcomeCode.objects.all()},
        keys=keys,
        users=users,
        policies={
            (policy.buyer_id, policy.kind): policy
            for policy in BuyerPolicy.objects.filter(
                buyer__in=buyers.values(), flow__isnull=True
            )
        },
    )
    for delivery in deliveries:
        writer.write_for(
            delivery,
            source_spec=source_specs[delivery.source.slug],
            buyer_spec=buyer_specs[delivery.buyer.slug],
        )
    for feedback_batch in _batched(writer.rows):
        Feedback.objects.bulk_create(feedback_batch)


def _weighted(rng: random.Random, choices: Sequence[tuple[T, float]]) -> T:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def _delivery_time(rng: random.Random, now: datetime) -> datetime:
    """A moment in the last HISTORY_DAYS, busier on weekdays and in US hours."""
    while True:
        day = now - timedelta(days=rng.randrange(HISTORY_DAYS))
        if day.weekday() >= 5 and rng.random() < 0.55:
            continue
        # 13:00-03:00 UTC is 8 am to 10 pm on the US east coast.
        hour = (13 + int(rng.triangular(0, 14, 5))) % 24
        moment = day.replace(
            hour=hour, minute=rng.randrange(60), second=rng.randrange(60), microsecond=0
        )
        if moment <= now - timedelta(minutes=10):
            return moment


def _person(rng: random.Random, flow_slug: str) -> dict[str, object]:
    first = rng.choice(FIRST_NAMES)
    last = rng.choice(LAST_NAMES)
    state = _weighted(rng, [(code, spec[2]) for code, spec in STATES.items()])
    area_codes, zip_prefixes, _weight = STATES[state]
    separator = rng.choice((".", "_", ""))
    email = (
        f"{first}{separator}{last}{rng.randint(1, 99)}@{rng.choice(MAIL_DOMAINS)}"
    ).lower()
    data: dict[str, object] = {
        "first_name": first,
        "last_name": last,
        "email": email,
        "phone_1": f"{rng.choice(area_codes)}555{rng.randrange(10_000):04d}",
        "state": state,
        "postal_code": f"{rng.choice(zip_prefixes)}{rng.randrange(100):02d}",
    }
    if flow_slug == "auto-insurance":
        data["vehicle_year"] = rng.randint(2008, 2025)
        data["vehicle_make"] = rng.choice(VEHICLE_MAKES)
        data["currently_insured"] = rng.random() < 0.75
    else:
        data["homeowner"] = True
        data["project"] = rng.choice(PROJECTS)
    return data


@dataclass
class _FeedbackWriter:
    """Builds the feedback rows a buyer's CRM and people would have sent."""

    rng: random.Random
    now: datetime
    codes: dict[str, OutcomeCode]
    keys: dict[str, ApiKey]
    users: dict[str, User]
    policies: dict[tuple[int, str], BuyerPolicy]
    rows: list[Feedback] = field(default_factory=list)
    # Deliveries returned successfully so far: a second return is refused.
    returned: set[int] = field(default_factory=set)

    def write_for(
        self, delivery: DeliveryEvent, *, source_spec: SourceSpec, buyer_spec: BuyerSpec
    ) -> None:
        roll = self.rng.random()
        if roll < CONVERSION_RATE:
            self._conversion(delivery, contact_first=buyer_spec.status_enabled)
        elif roll < CONVERSION_RATE + RETURN_RATE:
            self._return(delivery, source_spec)
        elif self.rng.random() < (STATUS_RATE if buyer_spec.status_enabled else 0.03):
            self._statuses(delivery, source_spec)

    def _conversion(self, delivery: DeliveryEvent, *, contact_first: bool) -> None:
        first_contact = self._after(delivery.delivered_at, days=2)
        if contact_first and self.rng.random() < 0.5:
            self._add(delivery, Kind.STATUS, at=first_contact, code="contacted")
        at = self._after(first_contact, days=30)
        if delivery.flow.slug == "auto-insurance":
            revenue = Decimal(self.rng.randrange(480, 2400, 5))
        else:
            revenue = Decimal(self.rng.randrange(2500, 18_000, 50))
        custom: dict[str, object] = {}
        if delivery.flow.slug == "auto-insurance" and self.rng.random() < 0.6:
            custom["policy_term"] = self.rng.choice(("6 months", "12 months"))
        self._add(
            delivery,
            Kind.CONVERSION,
            at=at,
            code="converted" if self.rng.random() < 0.8 else None,
            revenue=revenue.quantize(Decimal("0.01")),
            quality_score=self.rng.choice((None, 4, 5, 5)),
            custom=custom,
        )

    def _return(self, delivery: DeliveryEvent, source_spec: SourceSpec) -> None:
        # Most returns come within days; a tail drifts past shorter windows.
        days = 10 if self.rng.random() < 0.88 else 60
        at = self._after(delivery.delivered_at, days=days)
        if not source_spec.return_reasons:
            reason = self.rng.choice(("Bad phone", "Duplicate", "Not interested", ""))
            self._add(delivery, Kind.RETURN, at=at, reason=reason)
            return
        reason = self.rng.choice(source_spec.return_reasons)
        if self.rng.random() < 0.06:
            # The CRM sends its own wording first, is refused, and a person resends.
            self._add(
                delivery,
                Kind.RETURN,
                at=at,
                reason=self.rng.choice(UNLISTED_RETURN_REASONS),
                channel=Feedback.Channel.API,
            )
            at = self._after(at, days=1)
        returned = self._add(
            delivery,
            Kind.RETURN,
            at=at,
            reason=reason,
            code=RETURN_CODES.get(reason) if self.rng.random() < 0.7 else None,
            note=RETURN_NOTES.get(reason, "") if self.rng.random() < 0.5 else "",
        )
        if returned.outcome == Feedback.Outcome.SUCCESS and self.rng.random() < 0.04:
            # A CRM retrying a request that did succeed.
            self._add(
                delivery,
                Kind.RETURN,
                at=returned.occurred_at,
                reason=reason,
                channel=Feedback.Channel(returned.channel),
            )

    def _statuses(self, delivery: DeliveryEvent, source_spec: SourceSpec) -> None:
        at = self._after(delivery.delivered_at, days=4)
        codes = ["no_contact", "contacted"] if self.rng.random() < 0.2 else []
        codes = codes or [
            _weighted(
                self.rng,
                [("contacted", 0.45), ("no_contact", 0.4), ("not_interested", 0.15)],
            )
        ]
        for code in codes:
            if source_spec.status_reasons:
                reason = self.rng.choice(STATUS_LISTED_REASONS[code])
            else:
                reason = self.rng.choice(STATUS_REASONS[code])
            self._add(delivery, Kind.STATUS, at=at, code=code, reason=reason)
            at = self._after(at, days=3)

    def _after(self, start: datetime, *, days: float) -> datetime:
        """A moment after `start`, about `days` later at most, never in the future."""
        latest = self.now - timedelta(minutes=5)
        lag = timedelta(days=self.rng.uniform(0.02, days))
        if start + lag > latest:
            # Not happened yet at this lag: squeeze it into the time there was.
            lag = (latest - start) * self.rng.uniform(0.05, 1.0)
        return max(start + lag, start)

    def _add(
        self,
        delivery: DeliveryEvent,
        kind: Kind,
        *,
        at: datetime,
        code: str | None = None,
        reason: str = "",
        revenue: Decimal | None = None,
        quality_score: int | None = None,
        custom: dict[str, object] | None = None,
        note: str = "",
        channel: Feedback.Channel | None = None,
    ) -> Feedback:
        channel = channel or _weighted(self.rng, CHANNELS)
        received_at = min(at + self._reporting_lag(channel), self.now)
        outcome_reason = demo_refusal(
            kind=kind,
            reason=reason,
            delivery=delivery,
            policy=self.policies[(delivery.buyer_id, kind.value)],
            received_at=received_at,
            already_returned=delivery.pk in self.returned,
        )
        by_person = channel in (Feedback.Channel.PORTAL, Feedback.Channel.CSV)
        row = Feedback(
            delivery=delivery,
            lead_id=delivery.lead_id,
            buyer_id=delivery.buyer_id,
            source_id=delivery.source_id,
            flow_id=delivery.flow_id,
            kind=kind.value,
            outcome_code=self.codes.get(code) if code else None,
            reason=reason,
            revenue=revenue,
            quality_score=quality_score,
            occurred_at=at,
            received_at=received_at,
            custom=custom or {},
            note=note,
            channel=channel.value,
            outcome=Feedback.Outcome.FAILURE
            if outcome_reason
            else Feedback.Outcome.SUCCESS,
            outcome_reason=outcome_reason,
            api_key=None if by_person else self.keys[delivery.buyer.slug],
            submitted_by=self.users[delivery.buyer.slug] if by_person else None,
        )
        self.rows.append(row)
        if kind == Kind.RETURN and not outcome_reason:
            self.returned.add(delivery.pk)
        return row

    def _reporting_lag(self, channel: str) -> timedelta:
        if channel == Feedback.Channel.PORTAL:
            return timedelta(minutes=self.rng.uniform(10, 36 * 60))
        if channel == Feedback.Channel.CSV:
            return timedelta(days=self.rng.uniform(1, 7))
        return timedelta(seconds=self.rng.uniform(1, 300))


def demo_refusal(
    *,
    kind: Kind,
    reason: str,
    delivery: DeliveryEvent,
    policy: BuyerPolicy,
    received_at: datetime,
    already_returned: bool,
) -> str:
    """Why `feedback_receive` would refuse this feedback at `received_at`, in its
    words (its outcome_reason), or "" if it would accept it.

    Mirrors the order of services._judge for the cases the demo produces.
    """
    if not policy.enabled:
        return f"type: {FORBIDDEN_REASON}"
    errors: list[str] = []
    source = delivery.source
    if not source.accepts(kind):
        errors.append(f"type: {source.name} does not accept {kind.value} feedback.")
    if kind == Kind.RETURN and received_at - delivery.delivered_at > timedelta(
        days=policy.max_age_days
    ):
        errors.append(
            f"type: Return window of {policy.max_age_days} days after delivery "
            "has passed."
        )
    allowed = source.allowed_reasons(kind)
    if allowed and reason and reason.lower() not in {a.lower() for a in allowed}:
        errors.append(
            f"reason: {reason!r} is not an accepted {kind.value} reason; "
            f"accepted: {', '.join(allowed)}."
        )
    if not errors and kind == Kind.RETURN and already_returned:
        errors.append(f"event_id: {ALREADY_RETURNED_REASON}")
    return "; ".join(errors)[:500]
