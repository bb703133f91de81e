"""Writes for the feedback app. Every state change goes through a function here."""

import hashlib
import json
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import (
    DEFAULT_DB_ALIAS,
    IntegrityError,
    OperationalError,
    connection,
    connections,
    transaction,
)
from django.utils import timezone

from feedback import months
from feedback.audit.models import AuditEntry
from feedback.audit.services import audit_change
from feedback.bulk import instances_copy
from feedback.models import (
    ApiKey,
    Buyer,
    DeliveryEvent,
    Flow,
    IdempotencyKey,
    Lead,
)
from feedback.rows import Columns, Insert
from sources.models import Source

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
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            name=name,
            scope=scope,
            buyer=buyer,
            prefix=f"{API_KEY_PREFIX}{visible}",
            key_hash=hash_api_key(raw_key),
            created_by=created_by,
        )
        audit_change(obj=api_key, kind=AuditEntry.Kind.ADDITION)
    return api_key, raw_key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key; it is refused from the next request on."""
    if api_key.revoked_at is None:
        with transaction.atomic():
            api_key.revoked_at = timezone.now()
            api_key.save(update_fields=["revoked_at"])
            audit_change(
                obj=api_key, kind=AuditEntry.Kind.CHANGE, fields=["revoked_at"]
            )
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


# Deliveries and feedback before this are refused: nothing in lead generation
# happened then, and an epoch-zero or year-1 date is a sender's bug (year 1 also
# overflows when shown in a time zone west of UTC).
EARLIEST_INSTANT = datetime(2000, 1, 1, tzinfo=UTC)


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
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        recorded = _event_record_one(data, fingerprint)
        if recorded is not None:
            return recorded, True
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


# The common case of the busiest call, in two statements and no transaction: one
# read finds the buyer, source and flow by slug, the lead by its id, and whether
# the event id is taken; one INSERT (with the lead's, as a CTE, when it is new)
# writes the delivery. Anything else (an unknown slug, a repeated event id, a
# race on a key) takes the general path below, which handles it.
_ONE_LEAD = Columns(Lead, "l")


@cache
def _event_read_sql() -> str:
    quote = connection.ops.quote_name
    table = {m: quote(m._meta.db_table) for m in (Buyer, Source, Flow, DeliveryEvent)}
    return (
        f"SELECT b.id, s.id, f.id, e.id, {_ONE_LEAD.sql} "  # noqa: S608 - _meta names
        f"FROM (SELECT 1) AS one "
        f"LEFT JOIN {table[Buyer]} b ON b.slug = %s "
        f"LEFT JOIN {table[Source]} s ON s.slug = %s "
        f"LEFT JOIN {table[Flow]} f ON f.slug = %s "
        f"LEFT JOIN {table[DeliveryEvent]} e ON e.event_id = %s "
        f"LEFT JOIN {_ONE_LEAD.table} ON l.public_id = %s"
    )


_insert_event = Insert(DeliveryEvent)
_insert_lead = Insert(Lead)


@cache
def _event_sql(*, with_lead: bool) -> str:
    """One statement, atomic without BEGIN/COMMIT: the delivery's INSERT (after
    its lead's, when the lead is new) and its month's counter (months.py)."""
    quote = connection.ops.quote_name
    event_columns = [str(f.column) for f in _insert_event.fields]
    event_table = quote(DeliveryEvent._meta.db_table)
    columns = ", ".join(quote(c) for c in event_columns)
    if with_lead:
        lead_columns = ", ".join(quote(str(f.column)) for f in _insert_lead.fields)
        values = ", ".join("l.id" if c == "lead_id" else "%s" for c in event_columns)
        lead = (
            f"l AS (INSERT INTO {quote(Lead._meta.db_table)} ({lead_columns}) "  # noqa: S608
            f"VALUES ({', '.join(['%s'] * len(_insert_lead.fields))}) RETURNING id), "
        )
        event = f"INSERT INTO {event_table} ({columns}) SELECT {values} FROM l"  # noqa: S608
    else:
        lead = ""
        placeholders = ", ".join(["%s"] * len(event_columns))
        event = f"INSERT INTO {event_table} ({columns}) VALUES ({placeholders})"  # noqa: S608
    return (
        f"WITH {lead}e AS ({event} RETURNING id, lead_id), "  # noqa: S608
        f"m AS ({months.upsert_sql()}) "
        "SELECT id, lead_id FROM e"
    )


def _event_record_one(data: DeliveryInput, fingerprint: str) -> DeliveryEvent | None:
    """Record a new delivery whose buyer, source and flow exist; None when the
    general path must decide (see above)."""
    event_id = data.event_id or generate_event_id()
    with connection.cursor() as cursor:
        cursor.execute(
            _event_read_sql(),
            [data.buyer, data.source, data.flow, event_id, data.lead_id or ""],
        )
        row = cursor.fetchone()
    buyer_id, source_id, flow_id, taken = row[:4]
    if taken is not None or None in (buyer_id, source_id, flow_id):
        return None
    # Only the slugs are loaded: the answer names them; anything else is read
    # on first use.
    buyer = Buyer.from_db(None, ["id", "slug"], [buyer_id, data.buyer])
    source = Source.from_db(None, ["id", "slug"], [source_id, data.source])
    flow = Flow.from_db(None, ["id", "slug"], [flow_id, data.flow])
    lead = _ONE_LEAD.load(row, 4) if data.lead_id else None
    now = timezone.now()
    delivered_at = data.delivered_at or now
    event = DeliveryEvent(
        event_id=event_id,
        buyer=buyer,
        source=source,
        flow=flow,
        step=data.step,
        reference=data.reference,
        price=data.price.quantize(Decimal("0.01")),
        delivered_at=delivered_at,
        payload_hash=fingerprint,
        created_at=now,
    )
    db = connections[DEFAULT_DB_ALIAS]
    values: list[Any] = []
    with_lead = lead is None
    if lead is None:
        lead = lead_build(data, source=source, flow=flow, received_at=delivered_at)
        values += [
            f.get_db_prep_save(f.pre_save(lead, True), db) for f in _insert_lead.fields
        ]
    else:
        event.lead = lead
    values += [
        f.get_db_prep_save(f.pre_save(event, True), db)
        for f in _insert_event.fields
        if not (with_lead and f.column == "lead_id")
    ]
    values += [buyer_id, flow_id, months.month_of(delivered_at), 1, 0]
    try:
        with connection.cursor() as cursor:
            cursor.execute(_event_sql(with_lead=with_lead), values)
            event.pk, lead.pk = cursor.fetchone()
    except IntegrityError:
        return None  # a concurrent request took the event or lead id first
    for instance in (lead, event):
        instance._state.adding = False
        instance._state.db = DEFAULT_DB_ALIAS
    event.lead = lead
    return event


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
    event = DeliveryEvent.objects.create(
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
    months.deliveries_counted([event])
    return event


def lead_build(
    data: DeliveryInput, *, source: Source, flow: Flow, received_at: datetime
) -> Lead:
    """The unsaved lead a first delivery of `data` records."""
    lead_data = dict(data.lead_data or {})
    return Lead(
        public_id=data.lead_id or generate_event_id(),
        source=source,
        flow=flow,
        data=lead_data,
        email_normalized=normalize_email(lead_data.get("email")),
        phone_normalized=normalize_phone(lead_data.get("phone_1")),
        received_at=received_at,
    )


def _lead_get_or_create(
    data: DeliveryInput, *, source: Source, flow: Flow, received_at: datetime
) -> Lead:
    if data.lead_id:
        lead = Lead.objects.filter(public_id=data.lead_id).first()
        if lead is not None:
            return lead
    lead = lead_build(data, source=source, flow=flow, received_at=received_at)
    lead.save(force_insert=True)
    return lead


# From this many events a batch writes leads and deliveries with COPY on
# PostgreSQL; below, one INSERT each makes fewer round trips.
EVENTS_COPY_MIN = 20


def delivery_events_record_many(
    *, items: Sequence[DeliveryInput]
) -> list[DeliveryEvent | ConflictError]:
    """Record many deliveries in one transaction, each as `delivery_event_record`
    would: a repeat of a recorded event id with the same payload answers with
    the stored event, with another payload with a ConflictError (in the list,
    not raised).

    A fixed number of statements whatever the batch size: the buyers, sources,
    flows, earlier events and leads the items name are read once, what is
    missing is written in bulk. The caller's transaction (or this one) holds
    the whole batch: a process killed halfway leaves nothing. A concurrent
    request that records one of the same event or lead ids first makes the
    bulk write fail; the batch is then recorded item by item, each loser
    answering as a repeat would.
    """
    try:
        with transaction.atomic():
            return _events_record_bulk(items)
    except IntegrityError:
        results: list[DeliveryEvent | ConflictError] = []
        with transaction.atomic():
            for data in items:
                try:
                    with transaction.atomic():
                        results.append(delivery_event_record(data=data)[0])
                except ConflictError as exc:
                    results.append(exc)
        return results


def _events_record_bulk(
    items: Sequence[DeliveryInput],
) -> list[DeliveryEvent | ConflictError]:
    fingerprints = [data.fingerprint() for data in items]
    # Event id -> (the event, or None while it is still to be written; its hash).
    known: dict[str, tuple[DeliveryEvent | None, str]] = {
        event.event_id: (event, event.payload_hash)
        for event in DeliveryEvent.objects.filter(
            event_id__in={d.event_id for d in items if d.event_id}
        ).select_related("lead", "buyer", "source", "flow")
    }
    now = timezone.now()
    # A repeat of an event id written by this batch: (index, event id).
    repeats: list[tuple[int, str]] = []
    results: list[DeliveryEvent | ConflictError | None] = []
    new: list[tuple[int, DeliveryInput, str, str]] = []
    for index, (data, fingerprint) in enumerate(zip(items, fingerprints, strict=True)):
        event_id = data.event_id or generate_event_id()
        if event_id not in known:
            known[event_id] = (None, fingerprint)
            results.append(None)
            new.append((index, data, fingerprint, event_id))
            continue
        event, recorded = known[event_id]
        if recorded != fingerprint:
            results.append(
                ConflictError(
                    "This event_id is already recorded with a different payload.",
                    field="event_id",
                )
            )
        else:
            results.append(event)
            if event is None:
                repeats.append((index, event_id))
    if new:
        created = _events_create(new, now=now)
        for (index, *_), event in zip(new, created, strict=True):
            results[index] = event
        by_id = {event.event_id: event for event in created}
        for index, event_id in repeats:
            results[index] = by_id[event_id]
    return [r for r in results if r is not None]


def _events_create(
    new: list[tuple[int, DeliveryInput, str, str]], *, now: datetime
) -> list[DeliveryEvent]:
    buyers = _by_slug(Buyer, {d.buyer for _, d, _, _ in new})
    sources = _by_slug(Source, {d.source for _, d, _, _ in new})
    flows = _by_slug(Flow, {d.flow for _, d, _, _ in new})
    lead_ids = {d.lead_id for _, d, _, _ in new if d.lead_id}
    leads = {
        lead.public_id: lead for lead in Lead.objects.filter(public_id__in=lead_ids)
    }
    new_leads: list[Lead] = []
    events: list[DeliveryEvent] = []
    for _, data, fingerprint, event_id in new:
        source, flow = sources[data.source], flows[data.flow]
        delivered_at = data.delivered_at or now
        lead = leads.get(data.lead_id) if data.lead_id else None
        if lead is None:
            lead = lead_build(data, source=source, flow=flow, received_at=delivered_at)
            lead.created_at = now  # COPY writes it as it is; bulk_create sets it
            new_leads.append(lead)
            if data.lead_id:
                leads[data.lead_id] = lead
        events.append(
            DeliveryEvent(
                event_id=event_id,
                lead=lead,
                buyer=buyers[data.buyer],
                source=source,
                flow=flow,
                step=data.step,
                reference=data.reference,
                # As the database gives it back, so a first answer and a repeat
                # read the same.
                price=data.price.quantize(Decimal("0.01")),
                delivered_at=delivered_at,
                payload_hash=fingerprint,
                created_at=now,
            )
        )
    _insert_all(new_leads)
    for event in events:
        # By name, not lead_id: that keeps the lead cached for the answer.
        event.lead = event.lead
    _insert_all(events)
    months.deliveries_counted(events)
    return events


def _insert_all(instances: Sequence[Any]) -> None:
    if connection.vendor == "postgresql" and len(instances) >= EVENTS_COPY_MIN:
        instances_copy(instances)
    elif instances:
        type(instances[0]).objects.bulk_create(instances)


def _by_slug(model: type[Any], slugs: set[str]) -> dict[str, Any]:
    """Rows of `model` by slug, created (named after the slug) when unknown."""
    found = {row.slug: row for row in model.objects.filter(slug__in=slugs)}
    missing = slugs - set(found)
    if missing:
        # A concurrent request may create the same slug: whoever loses keeps the
        # winner's row (ignore_conflicts), which the read below finds.
        model.objects.bulk_create(
            [model(slug=slug, name=_title_from_slug(slug)) for slug in sorted(missing)],
            ignore_conflicts=True,
        )
        found.update((row.slug, row) for row in model.objects.filter(slug__in=missing))
    return found


# Idempotency keys -------------------------------------------------------------

IDEMPOTENCY_LOCK_TIMEOUT = "10s"


class IdempotencyKeyReusedError(Exception):
    """The key was used before with another request body (HTTP 422)."""


class IdempotencyKeyInFlightError(Exception):
    """A request with this key is still being processed (HTTP 409)."""


@dataclass(frozen=True)
class StoredResponse:
    """An answer as it went out: status, body bytes and content type."""

    status_code: int
    content: bytes | None
    content_type: str = ""
    replayed: bool = False
    # False for an answer given before the request changed anything (unknown
    # event, invalid input): it is not kept, so a retry with the key runs again.
    keep: bool = True
    # A row stored before the bytes were kept: the data to render the body from.
    data: Any = None


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
    An answer the handler marks not to keep (nothing was done) is not stored, as
    Stripe and the IETF Idempotency-Key draft have it: a retry runs afresh.
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
            content = record.response_content
            return StoredResponse(
                record.status_code,
                bytes(content) if content is not None else None,
                record.content_type,
                replayed=True,
                data=record.response_body,
            )
        response = handler()
        if response.keep:
            IdempotencyKey.objects.create(
                owner=owner,
                key=key,
                request_hash=request_hash,
                status_code=response.status_code,
                response_content=response.content,
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
