"""Months of realistic feedback history for the demo: deliveries, conversions,
returns and status updates, written in batches, some refused as a real hub
would refuse them."""

import random
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from django.contrib.auth.models import User

from feedback.demo.caps import caps_apply
from feedback.demo.data import (
    BATCH_SIZE,
    BUYERS,
    CHANNELS,
    CONVERSION_RATE,
    FIRST_NAMES,
    FLOWS,
    HISTORY_DAYS,
    LAST_NAMES,
    LEAD_ID_PREFIX,
    MAIL_DOMAINS,
    PROJECTS,
    RECENT_DAYS,
    RETURN_CODES,
    RETURN_NOTES,
    RETURN_RATE,
    SHARED_LEAD_RATE,
    SOURCES,
    STATES,
    STATUS_LISTED_REASONS,
    STATUS_RATE,
    STATUS_REASONS,
    UNLISTED_RETURN_REASONS,
    VEHICLE_MAKES,
    BuyerSpec,
    SourceSpec,
)
from feedback.intake.judge import ALREADY_RETURNED_REASON, FORBIDDEN_REASON
from feedback.intake.parse import FieldError, join_errors
from feedback.models import (
    ApiKey,
    Buyer,
    BuyerPolicy,
    DeliveryEvent,
    Feedback,
    Flow,
    Lead,
    OutcomeCode,
)
from feedback.services import (
    DeliveryInput,
    normalize_email,
    normalize_phone,
)
from sources.models import Kind, Source

T = TypeVar("T")


def _batched(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), BATCH_SIZE):
        yield items[start : start + BATCH_SIZE]


def history_generate(
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
    for buyer in buyers.values():
        policy = writer.policies[(buyer.pk, Kind.RETURN.value)]
        if policy.enabled and policy.capped:
            caps_apply(
                writer.rows,
                deliveries=deliveries,
                policy=policy,
                rng=rng,
                now=now,
                add_return=writer.return_add,
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
        return_rate = RETURN_RATE
        recent = self.now - timedelta(days=RECENT_DAYS)
        if (
            source_spec.recent_return_rate is not None
            and delivery.delivered_at >= recent
        ):
            return_rate = source_spec.recent_return_rate
        if roll < CONVERSION_RATE:
            self._conversion(delivery, contact_first=buyer_spec.status_enabled)
        elif roll < CONVERSION_RATE + return_rate:
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

    def return_add(
        self, delivery: DeliveryEvent, *, at: datetime, reason: str, code: str | None
    ) -> Feedback:
        """One more return, occurred at `at` (the caps shape a month with it)."""
        return self._add(delivery, Kind.RETURN, at=at, reason=reason, code=code)

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
        return join_errors([FieldError("type", FORBIDDEN_REASON)])
    errors: list[FieldError] = []
    source = delivery.source
    if not source.accepts(kind):
        errors.append(
            FieldError("type", f"{source.name} does not accept {kind.value} feedback.")
        )
    if kind == Kind.RETURN and received_at - delivery.delivered_at > timedelta(
        days=policy.max_age_days
    ):
        errors.append(
            FieldError(
                "type",
                f"The return window of {policy.max_age_days} days after delivery "
                "has passed.",
            )
        )
    allowed = source.allowed_reasons(kind)
    if allowed and reason and reason.lower() not in {a.lower() for a in allowed}:
        errors.append(
            FieldError(
                "reason",
                f"“{reason}” is not a {kind.value} reason {source.name} accepts. "
                f"It accepts: {', '.join(allowed)}.",
            )
        )
    if not errors and kind == Kind.RETURN and already_returned:
        errors.append(FieldError("event_id", ALREADY_RETURNED_REASON))
    return join_errors(errors)[:500]
