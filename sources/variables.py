"""The variables templates and rules read (DESIGN §5.2), and a sample of them.

The feedback app builds the real ones from a feedback row; this module only
knows their shape, so the admin can preview a config before any feedback exists.
"""

from collections.abc import Callable
from typing import Any

# What an admin can use in a template or a rule, for the help text.
VARIABLE_NAMES: tuple[str, ...] = (
    "lead.id",
    "lead.first_name",
    "lead.last_name",
    "lead.email",
    "lead.phone_1",
    "lead.state",
    "lead.postal_code",
    "lead.<any field>",
    "event.id",
    "event_id",
    "event.reference",
    "event.price",
    "event.delivered_at",
    "buyer.name",
    "buyer.slug",
    "source.name",
    "source.slug",
    "flow.name",
    "flow.slug",
    "feedback.id",
    "feedback.type",
    "feedback.kind",
    "feedback.reason",
    "feedback.outcome_code",
    "feedback.revenue",
    "feedback.quality_score",
    "feedback.timestamp",
    "feedback.received_at",
    "feedback.note",
    "feedback.custom.<field>",
)


def sample_variables(*, kind: str = "return") -> dict[str, Any]:
    """Made-up but realistic variables for previews when no delivery is chosen."""
    event_id = "5f3c1e2a9b8d7c6e5f4a3b2c"
    return {
        "lead": {
            "id": "L-1001",
            "first_name": "Jane",
            "last_name": "Example",
            "email": "jane@example.com",
            "phone_1": "5125550100",
            "state": "TX",
            "postal_code": "78701",
        },
        "event": {
            "id": event_id,
            "reference": "CRM-42",
            "price": "12.50",
            "delivered_at": "2026-11-20T15:04:05Z",
        },
        "event_id": event_id,
        "buyer": {"name": "Acme Insurance", "slug": "acme-insurance"},
        "source": {"name": "Bluesky Leads", "slug": "bluesky-leads"},
        "flow": {"name": "Auto insurance", "slug": "auto-insurance"},
        "feedback": {
            "id": "0b7e2c1a-3f4d-4e5f-8a9b-1c2d3e4f5a6b",
            "type": kind,
            "kind": kind,
            "reason": "Wrong number" if kind == "return" else "",
            "outcome_code": "bad_info" if kind == "return" else "",
            "revenue": "250.00" if kind == "conversion" else "",
            "quality_score": "",
            "timestamp": "2026-11-22T09:30:00Z",
            "received_at": "2026-11-22T09:31:12Z",
            "note": "",
            "custom": {},
        },
    }


# Sources cannot import feedback (feedback builds on sources), yet the admin's
# preview reads a real delivery's feedback: the feedback app hands its lookup
# over here when it starts (FeedbackConfig.ready).
EventVariables = Callable[..., dict[str, Any] | None]
_event_variables: list[EventVariables] = []


def event_variables_provide(provider: EventVariables) -> None:
    """Set the lookup behind `event_variables` (called once, at app start)."""
    _event_variables[:] = [provider]


def event_variables(*, event_id: str, kind: str) -> dict[str, Any] | None:
    """The variables of the latest feedback of `kind` (else of any kind) on the
    delivery `event_id`; None when it has none or no app provides them."""
    if not _event_variables:
        return None
    return _event_variables[0](event_id=event_id, kind=kind)


# What a retraction's or an amendment's request may use beside the above
# (DESIGN §12): the notice's own id and the id of the notification that first
# forwarded the feedback, so the source can find what it is told to correct.
CORRECTION_VARIABLE_NAMES: tuple[str, ...] = (
    "notification.id",
    "notification.original_id",
    "correction.id",
    "correction.type",
    "correction.reason",
    "correction.previous_revenue",
    "correction.revenue",
    "correction.timestamp",
)


def sample_correction_variables(*, action: str = "retract") -> dict[str, Any]:
    """Sample variables of a retraction (or, with "amend", an amendment) notice."""
    amend = action == "amend"
    variables = sample_variables(kind="conversion" if amend else "return")
    variables["notification"] = {
        "id": "msg_8c1d2e3f4a5b6c7d8e9f0a1b",
        "original_id": "msg_1a2b3c4d5e6f7a8b9c0d1e2f",
    }
    variables["correction"] = {
        "id": "4d2f6a1b-7c8e-4f9a-b0c1-d2e3f4a5b6c7",
        "type": "amendment" if amend else "retraction",
        "reason": "Corrected the sale amount" if amend else "Sent by mistake",
        "previous_revenue": "250.00" if amend else "",
        "revenue": "225.00" if amend else "",
        "timestamp": "2026-11-23T10:00:00Z",
    }
    return variables
