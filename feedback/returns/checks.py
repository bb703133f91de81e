"""Evidence beside a pending return (DESIGN §10): small checks of a return's
reason against the facts Leadback holds. Each answers for one return and says
whether the facts support the reason, contradict it, or cannot tell.

Which checks apply follows the reason's words: a phone reason ("Wrong number",
"Disconnected phone") gets the phone check, a duplicate reason the duplicate
check, an area reason ("Out of area", "Wrong state") the state check. Rules
review reads the results as `check.phone_valid` and `check.duplicate_of`.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import phonenumbers
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from feedback.models import DeliveryEvent, Feedback, Lead

Verdict = Literal["supports", "contradicts", "unknown"]

PHONE_WORDS = re.compile(r"phone|number|disconnect|unreachable|no answer", re.I)
DUPLICATE_WORDS = re.compile(r"dup", re.I)
AREA_WORDS = re.compile(r"area|state|region|zip|territory|location", re.I)

# How many of the buyer's latest earlier deliveries the state check reads.
STATE_SAMPLE = 1000


@dataclass(frozen=True)
class Check:
    name: str
    label: str
    verdict: Verdict
    detail: str


def phone_valid(lead_data: dict[str, Any]) -> bool | None:
    """Whether the lead's phone is a valid number for its region (the lead's
    country, else LEADBACK_PHONE_REGION); None when the lead has no phone."""
    raw = str(lead_data.get("phone_1") or lead_data.get("phone") or "").strip()
    if not raw:
        return None
    region = str(lead_data.get("country") or settings.LEADBACK_PHONE_REGION).upper()
    try:
        number = phonenumbers.parse(raw, region if len(region) == 2 else "US")
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_valid_number(number))


@dataclass(frozen=True)
class Earlier:
    event_id: str
    delivered_at: datetime
    matched: str  # "email", "phone" or "email and phone"


def duplicate_of(
    *, buyer_id: int, lead: Lead, delivery_id: int, delivered_at: datetime
) -> Earlier | None:
    """The earliest delivery to the same buyer, before this one, of a lead with
    the same email or phone (the same lead sold twice included)."""
    email, phone = lead.email_normalized, lead.phone_normalized
    if not email and not phone:
        return None
    match = Q()
    if email:
        match |= Q(email_normalized=email)
    if phone:
        match |= Q(phone_normalized=phone)
    leads = Lead.objects.filter(match).values("id")
    earlier = (
        DeliveryEvent.objects.filter(
            buyer_id=buyer_id, lead_id__in=leads, delivered_at__lt=delivered_at
        )
        .exclude(pk=delivery_id)
        .select_related("lead")
        .order_by("delivered_at")
        .first()
    )
    if earlier is None:
        return None
    same = [
        name
        for name, mine, theirs in (
            ("email", email, earlier.lead.email_normalized),
            ("phone", phone, earlier.lead.phone_normalized),
        )
        if mine and mine == theirs
    ]
    return Earlier(earlier.event_id, earlier.delivered_at, " and ".join(same))


def states_received(*, buyer_id: int, before: datetime) -> dict[str, int]:
    """The states of the buyer's latest earlier deliveries, with counts."""
    recent = (
        DeliveryEvent.objects.filter(buyer_id=buyer_id, delivered_at__lt=before)
        .order_by("-delivered_at")
        .values_list("lead__data", flat=True)[:STATE_SAMPLE]
    )
    counts: dict[str, int] = {}
    for data in recent:
        state = _state(data)
        if state:
            counts[state] = counts.get(state, 0) + 1
    return counts


def _state(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    return str(data.get("state") or "").strip().upper()[:20]


def applicable(reason: str) -> list[str]:
    """The checks a return reason calls for, by name."""
    names = []
    if PHONE_WORDS.search(reason):
        names.append("phone_valid")
    if DUPLICATE_WORDS.search(reason):
        names.append("duplicate_of")
    if AREA_WORDS.search(reason):
        names.append("state")
    return names


def phone_check(feedback: Feedback) -> Check:
    valid = phone_valid(feedback.lead.data or {})
    if valid is None:
        return Check("phone_valid", "Phone", "unknown", "The lead has no phone.")
    if valid:
        detail = "The lead's phone is a valid number for its region."
        return Check("phone_valid", "Phone", "contradicts", detail)
    detail = "The lead's phone is not a valid number for its region."
    return Check("phone_valid", "Phone", "supports", detail)


def duplicate_check(feedback: Feedback) -> Check:
    delivery = feedback.delivery
    earlier = duplicate_of(
        buyer_id=feedback.buyer_id,
        lead=feedback.lead,
        delivery_id=delivery.pk,
        delivered_at=delivery.delivered_at,
    )
    if earlier is None:
        detail = "No earlier delivery to this buyer has the same email or phone."
        return Check("duplicate_of", "Duplicate", "contradicts", detail)
    when = f"{timezone.localtime(earlier.delivered_at):%Y-%m-%d %H:%M}"
    detail = (
        f"Delivered to this buyer before with the same {earlier.matched}: "
        f"event {earlier.event_id} on {when}."
    )
    return Check("duplicate_of", "Duplicate", "supports", detail)


def state_check(feedback: Feedback) -> Check:
    state = _state(feedback.lead.data)
    if not state:
        return Check("state", "State", "unknown", "The lead has no state.")
    seen = states_received(
        buyer_id=feedback.buyer_id, before=feedback.delivery.delivered_at
    )
    if not seen:
        detail = "The buyer received no leads with a state before."
        return Check("state", "State", "unknown", detail)
    if state in seen:
        detail = (
            f"The buyer received {seen[state]} earlier leads from {state} "
            f"(of its latest {sum(seen.values())} with a state)."
        )
        return Check("state", "State", "contradicts", detail)
    usual = ", ".join(sorted(seen, key=lambda s: -seen[s])[:5])
    detail = f"The buyer never received a lead from {state} before (usually {usual})."
    return Check("state", "State", "supports", detail)


CHECKS = {
    "phone_valid": phone_check,
    "duplicate_of": duplicate_check,
    "state": state_check,
}


def return_checks(feedback: Feedback) -> list[Check]:
    """The checks that apply to one return, with their verdicts."""
    return [CHECKS[name](feedback) for name in applicable(feedback.reason)]


def check_variables(feedback: Any) -> dict[str, Any]:
    """`check.*` for auto-approve rules: `phone_valid` ("true", "false" or ""
    without a phone) and `duplicate_of` (the earlier delivery's event id, or "")."""
    lead = feedback.lead
    if not isinstance(lead, Lead):  # a file chunk's plain row
        lead = Lead.objects.get(pk=feedback.lead_id)
    valid = phone_valid(lead.data or {})
    earlier = duplicate_of(
        buyer_id=feedback.buyer_id,
        lead=lead,
        delivery_id=feedback.delivery_id,
        delivered_at=feedback.delivery.delivered_at,
    )
    return {
        "phone_valid": "" if valid is None else str(valid).lower(),
        "duplicate_of": earlier.event_id if earlier else "",
    }
