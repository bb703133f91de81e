"""The demo's cast: sources, flows, buyers, fictional people, reasons, and the
forwarding configs that show each method against the demo receiver."""

from dataclasses import dataclass

from feedback.models import (
    BuyerPolicy,
    Feedback,
)
from sources.models import FeedbackConfig, Kind

# Every demo lead's public id starts with this: it is how a second run knows the
# history is already there (and how tests tell demo rows from others).
LEAD_ID_PREFIX = "demo-"


# Where the demo runs; the demo configs send to its receiver under RECEIVER_PATH.
DEFAULT_BASE_URL = "http://127.0.0.1:8000"


RECEIVER_PATH = "/demo/receiver/"


HISTORY_DAYS = 120


BATCH_SIZE = 500


# Shares of deliveries. Returns are aimed a little above 8% because some of them
# are refused (a source that takes no returns, a late return).
CONVERSION_RATE = 0.10


RETURN_RATE = 0.10


# How far back a source's recent_return_rate applies.
RECENT_DAYS = 14


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
    # A source going bad: its return rate for deliveries of the last
    # RECENT_DAYS days, so the demo's monitor has something to alert on.
    recent_return_rate: float | None = None


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
    # How its returns are decided, capped and credited (DESIGN §10).
    review: BuyerPolicy.Review = BuyerPolicy.Review.AUTO
    cap_percent: int | None = None
    cap_min: int = 0
    credit_percent: int = 100
    dispute_days: int = 7


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
        recent_return_rate=0.30,
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
        # Its returns wait for staff: the demo's review queue (reviews.py).
        review=BuyerPolicy.Review.MANUAL,
        credit_percent=100,
        dispute_days=7,
    ),
    BuyerSpec(
        "pinnacle-home",
        "Pinnacle Home Pros",
        "home-services",
        0.55,
        "pinnacle",
        "PHP",
        return_max_age_days=60,
        # About 8% of its deliveries come back, so 10% binds now and then; this
        # month is shaped to leave CAP_REMAINING returns (caps.py).
        cap_percent=10,
        cap_min=3,
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


# A capped buyer's returns left for this month's deliveries when the demo starts.
# A month with no deliveries yet leaves the whole floor (cap_min): keep both small.
CAP_REMAINING = 2


# A buyer on manual review (DESIGN §10): the newest returns wait for a decision,
# a few rejected ones were disputed and wait for the second one, and the older
# ones were decided: mostly approved, some rejected, some of those disputed.
REVIEW_PENDING_SHARE = 0.2


REVIEW_PENDING_MAX = 30


REVIEW_OPEN_DISPUTES = 3


REVIEW_REJECT_RATE = 0.12


REVIEW_DISPUTE_RATE = 0.3


# What staff say when they reject a return for this reason...
REJECT_NOTES = {
    "Bad phone": "Lead answered on second call.",
    "Disconnected phone": "Number rang through when we called it.",
    "Duplicate": "First delivery of this lead to you; no earlier match.",
    "Wrong state": "The lead's address is in a state you buy.",
    "Fraud": "Consent on file with the form's IP address and time.",
    "Not interested": "Not interested is not a return reason in your agreement.",
}


# ...what the buyer answers when it disputes the rejection...
DISPUTE_COMMENTS = {
    "Bad phone": "Called three times on two days; the number is out of service.",
    "Disconnected phone": "Carrier message says the number is disconnected.",
    "Duplicate": "Same person came in from another vendor the day before.",
    "Wrong state": "Customer moved last year; the address on the lead is old.",
    "Fraud": "Customer says they never asked for a quote.",
    "Not interested": "Customer asked us never to call again.",
}


# ...and the second, final decision.
DISPUTE_APPROVED_NOTE = "Accepted on the buyer's evidence."


DISPUTE_REJECTED_NOTE = "Call log shows a conversation before the return."


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
