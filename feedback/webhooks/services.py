"""Emitting webhook events and keeping endpoints (DESIGN §11).

`webhook_emit` runs inside the caller's transaction: the event's messages are
written with the change that caused it and queued once it commits, so an
event is sent exactly when its change is committed, and never for a change
rolled back. Delivery is `feedback.webhooks.delivery`'s work.
"""

import json
import uuid
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from feedback.leases import lease_until
from feedback.webhooks.models import EVENT_TYPES, WebhookEndpoint, WebhookMessage
from sources.outbound.signing import SigningSecretError, secret_key

Status = WebhookMessage.Status


class UnknownEvent(ValueError):
    """An event type Leadback does not send (a programming error)."""


def webhook_body(*, event: str, data: Mapping[str, Any], at: Any = None) -> str:
    """The Standard Webhooks envelope as sent: type, timestamp and data."""
    envelope = {
        "type": event,
        "timestamp": (at or timezone.now()).isoformat().replace("+00:00", "Z"),
        "data": dict(data),
    }
    return json.dumps(envelope, cls=DjangoJSONEncoder, separators=(",", ":"))


def webhook_emit(*, event: str, payload: dict[str, Any]) -> int:
    """Write one message of `event` for each enabled endpoint subscribed to it,
    in the caller's transaction, and queue them once it commits. `payload` is
    the event's `data`; the envelope ({"type", "timestamp", "data"}) is added
    here. Returns how many messages were written."""
    if event not in EVENT_TYPES:
        raise UnknownEvent(f"Unknown webhook event {event!r}.")
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(enabled=True).order_by("pk")
        if event in (endpoint.events or [])
    ]
    if not endpoints:
        return 0
    now = timezone.now()
    body = webhook_body(event=event, data=payload, at=now)
    # Born leased, so the commit hook queues them without claiming them again;
    # without the hook they wait, unleased, for the sweep.
    on_commit = settings.LEADBACK_QUEUE_ON_COMMIT
    token = uuid.uuid4() if on_commit else None
    lease = lease_until(settings.LEADBACK_QUEUE_LEASE_S, now=now) if on_commit else None
    messages = WebhookMessage.objects.bulk_create(
        [
            WebhookMessage(
                endpoint=endpoint,
                event=event,
                body=body,
                created_at=now,
                next_attempt_at=now,
                lease_token=token,
                lease_expires_at=lease,
            )
            for endpoint in endpoints
        ]
    )
    if token is not None:
        ids = [message.pk for message in messages]

        def enqueue() -> None:
            from feedback.webhooks.delivery import webhook_messages_enqueue

            webhook_messages_enqueue([(pk, token) for pk in ids])

        transaction.on_commit(enqueue)
    return len(messages)


# Endpoints ----------------------------------------------------------------------


def webhook_endpoint_problems(*, url: str, secret: str, events: Any) -> dict[str, str]:
    """What is wrong with an endpoint's values, by field (empty: nothing)."""
    problems: dict[str, str] = {}
    if not url.startswith(("https://", "http://")):
        problems["url"] = "Must be an http or https URL."
    try:
        secret_key(secret)
    except SigningSecretError as exc:
        problems["secret"] = str(exc)
    if not isinstance(events, list) or not events:
        problems["events"] = "List at least one event."
    else:
        unknown = [e for e in events if e not in EVENT_TYPES]
        if unknown:
            problems["events"] = (
                f"Unknown event {unknown[0]!r} (known: {', '.join(EVENT_TYPES)})."
            )
        elif len(set(events)) != len(events):
            problems["events"] = "An event is listed twice."
    return problems


def webhook_endpoint_save(
    *,
    slug: str,
    url: str,
    secret: str,
    events: list[str],
    enabled: bool = True,
    description: str = "",
    timeout_s: float = 10.0,
) -> WebhookEndpoint:
    """Create or update the endpoint `slug`. Enabling it clears the reason it
    was disabled for."""
    problems = webhook_endpoint_problems(url=url, secret=secret, events=events)
    if problems:
        raise ValidationError(problems)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().filter(
            slug=slug
        ).first() or WebhookEndpoint(slug=slug)
        endpoint.url = url
        endpoint.secret = secret
        endpoint.events = list(events)
        endpoint.description = description
        endpoint.timeout_s = timeout_s
        if enabled and not endpoint.enabled:
            endpoint.disabled_reason = ""
        endpoint.enabled = enabled
        endpoint.full_clean()
        endpoint.save()
    return endpoint
