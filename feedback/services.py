"""Writes for the feedback app. Every state change goes through a function here."""

import hashlib
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from feedback.models import (
    ApiKey,
    Buyer,
    DeliveryEvent,
    Flow,
    IdempotencyKey,
    Lead,
)
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
