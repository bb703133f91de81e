"""Writes for the feedback app. Every state change goes through a function here."""

import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from feedback.bulk import instances_copy
from feedback.forwarding.engine import (
    Configs,
    notification_deliver,
    notifications_claim_due,
    notifications_create,
    notifications_enqueue,
    notifications_enqueue_on_commit,
    notifications_forget,
    notifications_remember,
)
from feedback.forwarding.models import Notification
from feedback.models import (
    EVENT_ID_PATTERN,
    ApiKey,
    Buyer,
    BuyerPolicy,
    DeliveryEvent,
    Feedback,
    Flow,
    IdempotencyKey,
    Lead,
    OutcomeCode,
)
from feedback.rows import Columns, Insert
from feedback.variables import feedback_variables
from sources import rules
from sources.models import FeedbackConfig, Kind, Source

API_KEY_PREFIX = "lb_"


class ConflictError(Exception):
    """The request contradicts what is already recorded (HTTP 409)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# API keys -------------------------------------------------------------------


def hash_api_key(raw_key: str) -> str:
    # Keys are 240-bit random tokens, so a fast hash is enough: there is nothing to
    # brute-force, and lookups stay one indexed equality.
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(
    *,
    scope: str,
    name: str,
    buyer: Buyer | None = None,
    created_by: User | None = None,
) -> tuple[ApiKey, str]:
    """Create an API key; returns the row and the raw key, which is never stored."""
    if scope == ApiKey.Scope.BUYER and buyer is None:
        raise ValueError("A buyer key needs a buyer.")
    if scope == ApiKey.Scope.INTEGRATION and buyer is not None:
        raise ValueError("An integration key belongs to no buyer.")
    visible = secrets.token_hex(4)
    raw_key = f"{API_KEY_PREFIX}{visible}_{secrets.token_urlsafe(30)}"
    api_key = ApiKey.objects.create(
        name=name,
        scope=scope,
        buyer=buyer,
        prefix=f"{API_KEY_PREFIX}{visible}",
        key_hash=hash_api_key(raw_key),
        created_by=created_by,
    )
    return api_key, raw_key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key; it is refused from the next request on."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


# Touching last_used_at on every request would turn each read into a write; a
# minute's precision is plenty for "when was this key last used".
LAST_USED_RESOLUTION_SECONDS = 60


def api_key_mark_used(*, api_key: ApiKey) -> None:
    now = timezone.now()
    last = api_key.last_used_at
    if last is not None and (now - last).total_seconds() < LAST_USED_RESOLUTION_SECONDS:
        return
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now


# Buyers, sources, flows -------------------------------------------------------


def buyer_get_or_create(*, slug: str, name: str | None = None) -> Buyer:
    buyer, _ = Buyer.objects.get_or_create(
        slug=slug, defaults={"name": name or _title_from_slug(slug)}
    )
    return buyer


def source_get_or_create(*, slug: str, name: str | None = None) -> Source:
    source, _ = Source.objects.get_or_create(
        slug=slug, defaults={"name": name or _title_from_slug(slug)}
    )
    return source


def flow_get_or_create(*, slug: str, name: str | None = None) -> Flow:
    flow, _ = Flow.objects.get_or_create(
        slug=slug, defaults={"name": name or _title_from_slug(slug)}
    )
    return flow


def _title_from_slug(slug: str) -> str:
    return slug.replace("-", " ").replace("_", " ").title()


# Leads and delivery events ----------------------------------------------------


def as_utc(value: datetime) -> datetime:
    """An aware datetime in UTC; naive ones are read in the current time zone.

    Raises ValueError for instants that cannot be stored (e.g. year 1 with a
    positive offset), so every edge can answer 4xx instead of a database error.
    """
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("Date-time out of range.") from None


def normalize_email(value: object) -> str:
    return str(value or "").strip().lower()[:254]


def normalize_phone(value: object) -> str:
    """Digits only, without the North American trunk prefix (1-512-789-1111)."""
    digits = re.sub(r"\D", "", str(value or ""))
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return digits[:20]


def generate_event_id() -> str:
    return secrets.token_hex(12)


@dataclass(frozen=True)
class DeliveryInput:
    """A validated delivery as the lead distribution system reports it."""

    buyer: str
    source: str
    flow: str
    event_id: str | None = None
    delivered_at: datetime | None = None
    price: Decimal = Decimal("0")
    step: str = ""
    reference: str = ""
    lead_id: str | None = None
    lead_data: dict[str, Any] | None = None

    def fingerprint(self) -> str:
        """A hash of what was asked, to tell a retry from a conflicting reuse."""
        document = {
            "buyer": self.buyer,
            "source": self.source,
            "flow": self.flow,
            "delivered_at": self.delivered_at.isoformat()
            if self.delivered_at
            else None,
            "price": str(self.price),
            "step": self.step,
            "reference": self.reference,
            "lead_id": self.lead_id,
            "lead": self.lead_data or {},
        }
        encoded = json.dumps(document, sort_keys=True, default=str).encode()
        return hashlib.sha256(encoded).hexdigest()


def delivery_event_record(*, data: DeliveryInput) -> tuple[DeliveryEvent, bool]:
    """Record a delivery, idempotently on its event id.

    Returns (event, created). Repeating a recorded event id with the same payload
    returns the stored event; with another payload it raises ConflictError.
    """
    fingerprint = data.fingerprint()
    if data.event_id:
        existing = DeliveryEvent.objects.filter(event_id=data.event_id).first()
        if existing is not None:
            return _same_or_conflict(existing, fingerprint), False
    try:
        with transaction.atomic():
            return _delivery_event_create(data, fingerprint), True
    except IntegrityError:
        # Two requests raced on the same event id (or lead id): the loser reads
        # what the winner wrote and answers as a repeat would.
        if data.event_id:
            existing = DeliveryEvent.objects.filter(event_id=data.event_id).first()
            if existing is not None:
                return _same_or_conflict(existing, fingerprint), False
        raise


def _same_or_conflict(existing: DeliveryEvent, fingerprint: str) -> DeliveryEvent:
    if existing.payload_hash != fingerprint:
        raise ConflictError(
            "This event_id is already recorded with a different payload.",
            field="event_id",
        )
    return existing


def _delivery_event_create(data: DeliveryInput, fingerprint: str) -> DeliveryEvent:
    buyer = buyer_get_or_create(slug=data.buyer)
    source = source_get_or_create(slug=data.source)
    flow = flow_get_or_create(slug=data.flow)
    delivered_at = data.delivered_at or timezone.now()
    lead = _lead_get_or_create(data, source=source, flow=flow, received_at=delivered_at)
    return DeliveryEvent.objects.create(
        event_id=data.event_id or generate_event_id(),
        lead=lead,
        buyer=buyer,
        source=source,
        flow=flow,
        step=data.step,
        reference=data.reference,
        price=data.price,
        delivered_at=delivered_at,
        payload_hash=fingerprint,
    )


def _lead_get_or_create(
    data: DeliveryInput, *, source: Source, flow: Flow, received_at: datetime
) -> Lead:
    lead_data = dict(data.lead_data or {})
    if data.lead_id:
        lead = Lead.objects.filter(public_id=data.lead_id).first()
        if lead is not None:
            return lead
    return Lead.objects.create(
        public_id=data.lead_id or generate_event_id(),
        source=source,
        flow=flow,
        data=lead_data,
        email_normalized=normalize_email(lead_data.get("email")),
        phone_normalized=normalize_phone(lead_data.get("phone_1")),
        received_at=received_at,
    )


# Feedback intake ------------------------------------------------------------

CLOCK_SKEW = timedelta(minutes=5)
MAX_CUSTOM_BYTES = 4096
MAX_NOTE_CHARS = 2000
MAX_REASON_CHARS = 255
# Kind.values builds a new list on every access; items are parsed by the thousand.
KINDS = frozenset(Kind.values)
FORBIDDEN_REASON = "Feedback is forbidden"
ALREADY_RETURNED_REASON = "Lead already returned"
# From this many items an intake takes its bulk paths: the sources and flows of
# the deliveries are read once rather than joined to every row, and feedback is
# written with COPY (one statement to reserve the ids, one to stream the rows).
# Below, joins and one INSERT make fewer round trips.
BULK_MIN_ITEMS = 20
KNOWN_FIELDS = frozenset(
    {
        "event_id",
        "reference",
        "type",
        "outcome_code",
        "reason",
        "revenue",
        "quality_score",
        "occurred_at",
        "custom",
        "note",
    }
)


class ReceiveStatus(StrEnum):
    """How one feedback ended. Only NOT_FOUND and INVALID store nothing."""

    ACCEPTED = "accepted"
    REFUSED = "refused"
    FORBIDDEN = "forbidden"
    ALREADY_RETURNED = "already_returned"
    NOT_FOUND = "not_found"
    INVALID = "invalid"


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass
class ReceiveResult:
    status: ReceiveStatus
    feedback: Feedback | None = None
    errors: list[FieldError] = field(default_factory=list)

    @property
    def reason(self) -> str:
        if self.feedback is not None and self.feedback.outcome_reason:
            return self.feedback.outcome_reason
        return _join_errors(self.errors)


def _join_errors(errors: list[FieldError]) -> str:
    return "; ".join(
        f"{error.field}: {error.message}" if error.field else error.message
        for error in errors
    )


@dataclass
class _Parsed:
    """One item after the checks that need no database."""

    event_id: str = ""
    reference: str = ""
    kind: str = ""
    outcome_code: OutcomeCode | None = None
    reason: str = ""
    revenue: Decimal | None = None
    quality_score: int | None = None
    occurred_at: datetime | None = None
    custom: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    fatal: list[FieldError] = field(default_factory=list)  # nothing can be stored
    errors: list[FieldError] = field(default_factory=list)  # stored as refused


def feedback_receive(
    *,
    buyer: Buyer,
    data: Mapping[str, Any],
    channel: str,
    api_key: ApiKey | None = None,
    user: User | None = None,
) -> ReceiveResult:
    """Validate and record one feedback from any channel (DESIGN §4.4).

    `buyer` is the caller's scope: another buyer's delivery is NOT_FOUND.
    """
    return feedback_receive_many(
        buyer=buyer, items=[data], channel=channel, api_key=api_key, user=user
    )[0]


def feedback_receive_many(
    *,
    buyer: Buyer,
    items: Sequence[Mapping[str, Any]],
    channel: str,
    api_key: ApiKey | None = None,
    user: User | None = None,
) -> list[ReceiveResult]:
    """Validate and record many feedbacks; each item succeeds or fails on its own.

    The database work is a fixed number of queries whatever the number of items:
    deliveries, policies and earlier returns are read in bulk, rows written in bulk.
    """
    now = timezone.now()
    # Only items that name an outcome code need the vocabulary.
    codes: dict[str, OutcomeCode] = {}
    if any(isinstance(i, Mapping) and i.get("outcome_code") for i in items):
        codes = {c.code: c for c in OutcomeCode.objects.filter(is_active=True)}
    parsed = [_parse_item(item, codes=codes, now=now) for item in items]
    known = _known_one(buyer, parsed) or _known_many(buyer, parsed)
    deliveries, policies, returned = known.deliveries, known.policies, known.returned

    results: list[ReceiveResult] = []
    pending: list[tuple[ReceiveResult, Feedback]] = []
    for item in parsed:
        if item.fatal:
            results.append(ReceiveResult(ReceiveStatus.INVALID, errors=item.fatal))
            continue
        delivery = deliveries.get(_lookup_key(item))
        if delivery is None:
            results.append(_not_found(item))
            continue
        feedback = Feedback(
            delivery=delivery,
            lead=delivery.lead,
            buyer=delivery.buyer,
            source=delivery.source,
            flow=delivery.flow,
            kind=item.kind,
            outcome_code=item.outcome_code,
            reason=item.reason,
            revenue=item.revenue,
            quality_score=item.quality_score,
            occurred_at=item.occurred_at or now,
            received_at=now,
            custom=item.custom,
            note=item.note,
            channel=channel,
            api_key=api_key,
            submitted_by=user,
            outcome=Feedback.Outcome.SUCCESS,
        )
        result = _judge(item, feedback, policies=policies, returned=returned, now=now)
        results.append(result)
        pending.append((result, feedback))

    if pending:
        notifications = _store(pending, configs=known.configs)
        _deliver_sync(pending, notifications)
    return results


@dataclass
class _Known:
    """What judging and storing items needs from the database."""

    deliveries: dict[tuple[str, str], DeliveryEvent | None]
    policies: dict[tuple[int | None, str], BuyerPolicy]
    # Deliveries of returns that were returned before; for one item the INSERT
    # finds out instead (`_known_one`).
    returned: set[int]
    # The enabled configs by (source, kind), when read with the deliveries;
    # otherwise notifications_create reads them.
    configs: Configs | None = None


# The parts of `_known_one`'s rows, in order; a config's columns come last.
_ONE_CONFIG = Columns(FeedbackConfig, "c")
_ONE_PARTS = (
    Columns(DeliveryEvent, "d"),
    Columns(Lead, "l"),
    Columns(Source, "s"),
    Columns(Flow, "f"),
    Columns(BuyerPolicy, "pf"),  # the flow's policy for the kind
    Columns(BuyerPolicy, "pb"),  # the buyer-wide one
    _ONE_CONFIG,
)


@cache
def _known_one_sql() -> str:
    d, lead, source, flow, flow_policy, buyer_policy, config = _ONE_PARTS
    return (
        f"SELECT {', '.join(part.sql for part in _ONE_PARTS)} "  # noqa: S608 - names from _meta
        f"FROM {d.table} "
        f"JOIN {lead.table} ON l.id = d.lead_id "
        f"JOIN {source.table} ON s.id = d.source_id "
        f"JOIN {flow.table} ON f.id = d.flow_id "
        f"LEFT JOIN {flow_policy.table} "
        "ON pf.buyer_id = d.buyer_id AND pf.flow_id = d.flow_id AND pf.kind = %s "
        f"LEFT JOIN {buyer_policy.table} "
        "ON pb.buyer_id = d.buyer_id AND pb.flow_id IS NULL AND pb.kind = %s "
        f"LEFT JOIN {config.table} "
        "ON c.source_id = d.source_id AND c.kind = %s AND c.enabled "
        "WHERE d.buyer_id = %s AND d.event_id = %s "
        "ORDER BY c.id"
    )


def _known_one(buyer: Buyer, parsed: list[_Parsed]) -> _Known | None:
    """For one item quoting an event id: everything in one statement.

    The delivery with its lead, source and flow; the two policies that can apply
    to its kind; and the source's enabled configs for the kind, one row each
    (the delivery repeats on every row). It is the hot path of the intake: the
    reads of `_known_many` in one round trip, without compiling querysets
    (feedback/rows.py).

    Whether the delivery was returned before is not read: for one item the
    INSERT asks the database's constraint, which has the last word anyway
    (`_store_one`). Reading it here would put the feedback table, the one that
    grows fastest, into a statement whose plan PostgreSQL keeps.
    """
    if len(parsed) != 1 or parsed[0].fatal or not parsed[0].event_id:
        return None
    item = parsed[0]
    params: list[str | int] = [item.kind, item.kind, item.kind, buyer.pk, item.event_id]
    with connection.cursor() as cursor:
        cursor.execute(_known_one_sql(), params)
        rows = cursor.fetchall()
    known = _Known({}, {}, set(), {})
    if not rows:
        return known
    first, start = rows[0], 0
    loaded: list[Any] = []
    for part in _ONE_PARTS[:-1]:
        loaded.append(part.load(first, start))
        start += len(part)
    delivery, lead, source, flow, flow_policy, buyer_policy = loaded
    delivery.buyer, delivery.lead, delivery.source, delivery.flow = (
        buyer,
        lead,
        source,
        flow,
    )
    known.deliveries[("event_id", item.event_id)] = delivery
    for policy in (flow_policy, buyer_policy):
        if policy is not None:
            known.policies[(policy.flow_id, policy.kind)] = policy
    configs = [_ONE_CONFIG.load(row, start) for row in rows]
    known.configs = {(source.pk, item.kind): [c for c in configs if c is not None]}
    return known


def _known_many(buyer: Buyer, parsed: list[_Parsed]) -> _Known:
    deliveries = _deliveries_for(buyer=buyer, parsed=parsed)
    # Only a return cares whether the delivery was returned before.
    return_keys = {_lookup_key(p) for p in parsed if p.kind == Kind.RETURN}
    returned = _returned_delivery_ids(
        [d for k, d in deliveries.items() if d is not None and k in return_keys]
    )
    return _Known(deliveries, _policies_for(buyer=buyer), returned)


def _returned_delivery_ids(deliveries: list[DeliveryEvent]) -> set[int]:
    if not deliveries:
        return set()
    return set(
        Feedback.objects.filter(
            delivery__in=deliveries,
            kind=Kind.RETURN,
            outcome=Feedback.Outcome.SUCCESS,
        ).values_list("delivery_id", flat=True)
    )


def _store(
    pending: list[tuple[ReceiveResult, Feedback]], *, configs: Configs | None
) -> list[Notification]:
    """Insert the feedback and, in the same transaction, its notifications."""
    feedbacks = [feedback for _, feedback in pending]
    if _nothing_to_notify(feedbacks, configs):
        # A single INSERT is a transaction of its own: no BEGIN and COMMIT.
        for result, feedback in pending:
            _store_one(result, feedback)
        notifications_remember(feedbacks, [])  # the answer reads none back
        return []
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql" and len(feedbacks) >= BULK_MIN_ITEMS:
                instances_copy(feedbacks)
            else:
                Feedback.objects.bulk_create(feedbacks)
            notifications = notifications_create(feedbacks=feedbacks, configs=configs)
    except IntegrityError:
        # Another request returned one of these deliveries since we looked. Store
        # one by one so only the loser of that race becomes "already returned".
        with transaction.atomic():
            for result, feedback in pending:
                _store_one(result, feedback)
            notifications = notifications_create(feedbacks=feedbacks, configs=configs)
    # Sync configs are sent right here once committed (_deliver_sync), unless an
    # outer transaction is open: then they take the queue like the others.
    outer = connection.in_atomic_block
    notifications_enqueue_on_commit(
        [n for n in notifications if outer or not _is_sync(n)]
    )
    return notifications


def _is_sync(notification: Notification) -> bool:
    return notification.config is not None and notification.config.sync


def _deliver_sync(
    pending: list[tuple[ReceiveResult, Feedback]], notifications: list[Notification]
) -> None:
    """Send to sync configs while the buyer waits (DESIGN §4.4), within the
    deadline. A source's refusal makes the feedback refused with its reason; a
    timeout or error leaves it accepted, and the notification retries as usual."""
    sync = [
        n
        for n in notifications
        if n.status == Notification.Status.PENDING and _is_sync(n)
    ]
    if not sync or connection.in_atomic_block:
        return
    deadline = time.monotonic() + settings.LEADBACK_SYNC_DEADLINE_S
    refusals: dict[int, list[str]] = {}
    for claim in notifications_claim_due(ids=[n.pk for n in sync]):
        remaining = deadline - time.monotonic()
        if remaining <= 0.1:
            notifications_enqueue([claim])
            continue
        row = notification_deliver(claim=claim, deadline_s=remaining)
        if row is not None and row.status == Notification.Status.FAILED:
            source = next(n.source for n in sync if n.pk == row.pk)
            refusals.setdefault(row.feedback_id, []).append(
                f"{source.name} refused it: {row.reason or 'no reason given'}"
            )
    sent = {n.feedback_id for n in sync}
    for result, feedback in pending:
        if feedback.pk in sent:
            # Their rows changed while being sent: the answer reads them again.
            notifications_forget(feedback)
        reasons = refusals.get(feedback.pk)
        if reasons:
            feedback_refuse_by_source(feedback=feedback, reason="; ".join(reasons))
            result.status = ReceiveStatus.REFUSED
            result.errors = [FieldError("", feedback.outcome_reason)]


def feedback_refuse_by_source(*, feedback: Feedback, reason: str) -> Feedback:
    """Record that a sync source refused an accepted feedback: it becomes refused."""
    feedback.outcome = Feedback.Outcome.FAILURE
    feedback.outcome_reason = reason[:500]
    feedback.save(update_fields=["outcome", "outcome_reason"])
    return feedback


def _nothing_to_notify(feedbacks: list[Feedback], configs: Configs | None) -> bool:
    if len(feedbacks) != 1 or configs is None:
        return False
    feedback = feedbacks[0]
    return feedback.outcome != Feedback.Outcome.SUCCESS or not configs.get(
        (feedback.source_id, feedback.kind)
    )


_insert_feedback = Insert(Feedback)


def _store_one(result: ReceiveResult, feedback: Feedback) -> None:
    feedback.pk = None
    try:
        if connection.in_atomic_block:
            with transaction.atomic():  # a savepoint: the outer block stays usable
                _insert_feedback(feedback)
        else:
            _insert_feedback(feedback)  # commits on its own
    except IntegrityError:
        feedback.pk = None
        result.status = ReceiveStatus.ALREADY_RETURNED
        result.errors = [FieldError("event_id", ALREADY_RETURNED_REASON)]
        feedback.outcome = Feedback.Outcome.FAILURE
        feedback.outcome_reason = _join_errors(result.errors)  # as `_judge` words it
        _insert_feedback(feedback)


def _lookup_key(item: _Parsed) -> tuple[str, str]:
    return (
        ("event_id", item.event_id) if item.event_id else ("reference", item.reference)
    )


def _not_found(item: _Parsed) -> ReceiveResult:
    name = _lookup_key(item)[0]
    message = "Unknown event id." if name == "event_id" else "Unknown reference."
    return ReceiveResult(ReceiveStatus.NOT_FOUND, errors=[FieldError(name, message)])


def _deliveries_for(
    *, buyer: Buyer, parsed: list[_Parsed]
) -> dict[tuple[str, str], DeliveryEvent | None]:
    event_ids = {p.event_id for p in parsed if p.event_id and not p.fatal}
    references = {p.reference for p in parsed if not p.event_id and not p.fatal}
    found: dict[tuple[str, str], DeliveryEvent | None] = {}
    bulk = len(event_ids) + len(references) >= BULK_MIN_ITEMS
    scoped = DeliveryEvent.objects.filter(buyer=buyer).select_related(
        *(["lead"] if bulk else ["source", "lead", "flow"])
    )
    read: list[DeliveryEvent] = []
    if event_ids:
        for delivery in scoped.filter(event_id__in=event_ids):
            read.append(delivery)
            found[("event_id", delivery.event_id)] = delivery
    by_reference: dict[str, list[DeliveryEvent]] = {}
    if references:
        for delivery in scoped.filter(reference__in=references):
            read.append(delivery)
            by_reference.setdefault(delivery.reference, []).append(delivery)
    sources = Source.objects.in_bulk({d.source_id for d in read}) if bulk else {}
    flows = Flow.objects.in_bulk({d.flow_id for d in read}) if bulk else {}
    for delivery in read:
        # The buyer is the caller's, and in a batch a few sources and flows are
        # shared by every row: one instance each rather than a copy per row.
        delivery.buyer = buyer
        if bulk:
            delivery.source = sources[delivery.source_id]
            delivery.flow = flows[delivery.flow_id]
    if references:
        for reference, matches in by_reference.items():
            if len(matches) == 1:
                found[("reference", reference)] = matches[0]
        for item in parsed:
            matches = by_reference.get(item.reference, [])
            if not item.event_id and len(matches) > 1:
                item.fatal.append(
                    FieldError(
                        "reference",
                        f"{len(matches)} deliveries have this reference; "
                        "send event_id instead.",
                    )
                )
    return found


def _policies_for(*, buyer: Buyer) -> dict[tuple[int | None, str], BuyerPolicy]:
    return {
        (policy.flow_id, policy.kind): policy
        for policy in BuyerPolicy.objects.filter(buyer=buyer)
    }


def _policy(
    policies: dict[tuple[int | None, str], BuyerPolicy], flow_id: int, kind: str
) -> BuyerPolicy:
    """The flow's policy for `kind`, else the buyer-wide one, else the defaults."""
    return (
        policies.get((flow_id, kind))
        or policies.get((None, kind))
        or BuyerPolicy(kind=kind, enabled=True)
    )


def _judge(
    item: _Parsed,
    feedback: Feedback,
    *,
    policies: dict[tuple[int | None, str], BuyerPolicy],
    returned: set[int],
    now: datetime,
) -> ReceiveResult:
    """Decide the outcome of one feedback, in the order of DESIGN §4.4."""
    delivery = feedback.delivery
    policy = _policy(policies, delivery.flow_id, item.kind)
    status = ReceiveStatus.REFUSED
    if not policy.enabled:
        status, errors = ReceiveStatus.FORBIDDEN, [FieldError("type", FORBIDDEN_REASON)]
    else:
        errors = [
            *item.errors,
            *_check_against_delivery(item, delivery, policy=policy, now=now),
        ]
        allowed = delivery.source.allowed_reasons(item.kind)
        if allowed and item.reason and not any(e.field == "reason" for e in errors):
            canonical = {reason.lower(): reason for reason in allowed}
            if item.reason.lower() in canonical:
                feedback.reason = canonical[item.reason.lower()]
            else:
                errors.append(
                    FieldError(
                        "reason",
                        f"{item.reason!r} is not an accepted {item.kind} reason; "
                        f"accepted: {', '.join(allowed)}.",
                    )
                )
        if not errors and policy.rules:
            # The buyer's own rule set ("advanced mode"), read against the
            # feedback as it would be stored.
            failed = rules.evaluate(policy.rules, feedback_variables(feedback=feedback))
            if failed:
                errors.append(FieldError("rules", failed))
        if not errors and item.kind == Kind.RETURN and delivery.pk in returned:
            status = ReceiveStatus.ALREADY_RETURNED
            errors = [FieldError("event_id", ALREADY_RETURNED_REASON)]
    if errors:
        feedback.outcome = Feedback.Outcome.FAILURE
        feedback.outcome_reason = _join_errors(errors)[:500]
        return ReceiveResult(status, feedback=feedback, errors=errors)
    if item.kind == Kind.RETURN:
        returned.add(delivery.pk)
    return ReceiveResult(ReceiveStatus.ACCEPTED, feedback=feedback)


def _check_against_delivery(
    item: _Parsed, delivery: DeliveryEvent, *, policy: BuyerPolicy, now: datetime
) -> list[FieldError]:
    errors: list[FieldError] = []
    source = delivery.source
    if not source.accepts(item.kind):
        errors.append(
            FieldError("type", f"{source.name} does not accept {item.kind} feedback.")
        )
    if item.kind == Kind.RETURN:
        age = now - delivery.delivered_at
        if age > timedelta(days=policy.max_age_days):
            errors.append(
                FieldError(
                    "type",
                    f"Return window of {policy.max_age_days} days after delivery "
                    "has passed.",
                )
            )
    if item.occurred_at is not None and item.occurred_at < delivery.delivered_at:
        errors.append(FieldError("occurred_at", "Cannot be before the delivery."))
    return errors


def _parse_item(
    data: Mapping[str, Any], *, codes: dict[str, OutcomeCode], now: datetime
) -> _Parsed:
    item = _Parsed()
    if not isinstance(data, Mapping):
        item.fatal.append(FieldError("", "Each feedback must be an object."))
        return item

    item.event_id = _text(data.get("event_id")).lower()
    item.reference = _text(data.get("reference"))
    if item.event_id and not re.fullmatch(EVENT_ID_PATTERN, item.event_id):
        item.fatal.append(FieldError("event_id", "Must be 24 hexadecimal characters."))
    if not item.event_id and not item.reference:
        item.fatal.append(FieldError("event_id", "Send event_id or reference."))

    kind = _text(data.get("type")).lower()
    code_name = _text(data.get("outcome_code")).lower()
    if kind and kind not in KINDS:
        item.fatal.append(
            FieldError(
                "type", f"Must be one of {', '.join(Kind.values)}, not {kind!r}."
            )
        )
    if code_name:
        code = codes.get(code_name)
        if code is None:
            item.fatal.append(
                FieldError("outcome_code", f"Unknown outcome code {code_name!r}.")
            )
        elif kind and code.kind != kind:
            item.fatal.append(
                FieldError(
                    "outcome_code",
                    f"{code_name!r} is a {code.kind} outcome, not a {kind}.",
                )
            )
        else:
            item.outcome_code = code
            kind = code.kind
    if not kind and not code_name:
        item.fatal.append(FieldError("type", "Send type or outcome_code."))
    item.kind = kind

    item.reason = _text(data.get("reason"))
    if len(item.reason) > MAX_REASON_CHARS:
        item.errors.append(
            FieldError("reason", f"At most {MAX_REASON_CHARS} characters.")
        )
        item.reason = item.reason[:MAX_REASON_CHARS]
    item.note = _text(data.get("note"))
    if len(item.note) > MAX_NOTE_CHARS:
        item.errors.append(FieldError("note", f"At most {MAX_NOTE_CHARS} characters."))
        item.note = item.note[:MAX_NOTE_CHARS]
    item.revenue = _revenue(data.get("revenue"), item.errors)
    item.quality_score = _quality_score(data.get("quality_score"), item.errors)
    item.occurred_at = _occurred_at(data.get("occurred_at"), item.errors, now=now)
    item.custom = _custom(data.get("custom"), item.errors)
    return item


def _text(value: object) -> str:
    if value is None:
        return ""
    return str(value).strip()


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _revenue(value: object, errors: list[FieldError]) -> Decimal | None:
    if _is_blank(value):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        errors.append(FieldError("revenue", "Must be a decimal number."))
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        errors.append(FieldError("revenue", "Must be a decimal number."))
        return None
    exponent = amount.as_tuple().exponent
    if not amount.is_finite() or not isinstance(exponent, int):
        errors.append(FieldError("revenue", "Must be a decimal number."))
        return None
    if amount < 0:
        errors.append(FieldError("revenue", "Cannot be negative."))
        return None
    if exponent < -2:
        errors.append(FieldError("revenue", "At most 2 decimal places."))
        return None
    if amount >= Decimal("10000000000"):
        errors.append(FieldError("revenue", "Must be less than 10,000,000,000."))
        return None
    return amount.quantize(Decimal("0.01"))


def _quality_score(value: object, errors: list[FieldError]) -> int | None:
    if _is_blank(value):
        return None
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"[1-5]", text):
        errors.append(
            FieldError("quality_score", "Must be a whole number from 1 to 5.")
        )
        return None
    return int(text)


def _occurred_at(
    value: object, errors: list[FieldError], *, now: datetime
) -> datetime | None:
    if _is_blank(value):
        return None
    parsed: datetime | None
    try:
        parsed = parse_datetime(str(value).strip())
    except ValueError:
        parsed = None
    if parsed is None:
        errors.append(
            FieldError(
                "occurred_at",
                "Must be an ISO 8601 date-time, e.g. 2026-11-20T10:30:00Z.",
            )
        )
        return None
    try:
        parsed = as_utc(parsed)
    except ValueError:
        errors.append(FieldError("occurred_at", "Is out of range."))
        return None
    if parsed > now + CLOCK_SKEW:
        errors.append(FieldError("occurred_at", "Cannot be in the future."))
        return None
    return parsed


def _custom(value: object, errors: list[FieldError]) -> dict[str, Any]:
    if _is_blank(value):
        return {}
    if not isinstance(value, dict):
        errors.append(FieldError("custom", "Must be a JSON object."))
        return {}
    size = len(json.dumps(value, default=str).encode())
    if size > MAX_CUSTOM_BYTES:
        errors.append(
            FieldError("custom", f"Must be at most {MAX_CUSTOM_BYTES} bytes as JSON.")
        )
        return {}
    return value


# Idempotency keys -------------------------------------------------------------

IDEMPOTENCY_LOCK_TIMEOUT = "10s"


class IdempotencyKeyReusedError(Exception):
    """The key was used before with another request body (HTTP 422)."""


class IdempotencyKeyInFlightError(Exception):
    """A request with this key is still being processed (HTTP 409)."""


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: Any
    content_type: str = ""
    replayed: bool = False


def idempotency_ttl() -> timedelta:
    return timedelta(hours=settings.LEADBACK_IDEMPOTENCY_TTL_HOURS)


def idempotent_call(
    *,
    owner: str,
    key: str,
    request_hash: str,
    handler: Callable[[], StoredResponse],
) -> StoredResponse:
    """Run `handler` once per (owner, key); a retry gets the stored response.

    The handler's writes and the stored response commit together. Concurrent
    requests with one key queue on a lock, then replay the first one's answer.
    """
    with transaction.atomic():
        _lock_idempotency_key(owner, key)
        record = IdempotencyKey.objects.filter(owner=owner, key=key).first()
        if (
            record is not None
            and record.created_at < timezone.now() - idempotency_ttl()
        ):
            record.delete()
            record = None
        if record is not None:
            if record.request_hash != request_hash:
                raise IdempotencyKeyReusedError(
                    "This Idempotency-Key was used with a different request."
                )
            return StoredResponse(
                record.status_code,
                record.response_body,
                record.content_type,
                replayed=True,
            )
        response = handler()
        IdempotencyKey.objects.create(
            owner=owner,
            key=key,
            request_hash=request_hash,
            status_code=response.status_code,
            response_body=response.body,
            content_type=response.content_type,
        )
        return response


def _lock_idempotency_key(owner: str, key: str) -> None:
    if connection.vendor != "postgresql":
        # SQLite runs write transactions one at a time (BEGIN IMMEDIATE): the
        # second request waits for the first to commit, then finds its record.
        return
    digest = hashlib.sha256(f"{owner}\0{key}".encode()).digest()
    lock_id = int.from_bytes(digest[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{IDEMPOTENCY_LOCK_TIMEOUT}'")
        try:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id])
        except OperationalError:
            raise IdempotencyKeyInFlightError(
                "A request with this Idempotency-Key is still in progress."
            ) from None


def idempotency_keys_purge(*, older_than: timedelta | None = None) -> int:
    """Delete stored responses older than the retention period; returns the count."""
    cutoff = timezone.now() - (older_than or idempotency_ttl())
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
