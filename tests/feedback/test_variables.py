"""The variables a forwarded feedback exposes to templates and rules (DESIGN §5.2)."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from feedback.models import OutcomeCode
from feedback.selectors import feedback_list
from feedback.variables import feedback_variables
from sources.variables import VARIABLE_NAMES, sample_variables
from tests.factories import DeliveryEventFactory, FeedbackFactory, LeadFactory

pytestmark = pytest.mark.django_db


def lookup(variables: dict, dotted: str) -> object:
    value: object = variables
    for part in dotted.split("."):
        assert isinstance(value, dict), dotted
        value = value[part]
    return value


def test_a_return_exposes_every_documented_variable():
    lead = LeadFactory(
        public_id="L-77",
        data={"first_name": "Ana", "email": "ana@example.com", "state": "TX"},
    )
    delivery = DeliveryEventFactory(
        lead=lead,
        reference="CRM-9",
        price=Decimal("12.50"),
        delivered_at=datetime(2026, 11, 1, 8, 0, tzinfo=UTC),
    )
    FeedbackFactory(
        delivery=delivery,
        kind="return",
        reason="Wrong number",
        outcome_code=OutcomeCode.objects.get(code="bad_info"),
        quality_score=2,
        occurred_at=datetime(2026, 11, 3, 9, 30, tzinfo=UTC),
        custom={"policy_type": "auto"},
    )

    variables = feedback_variables(feedback=feedback_list().get())

    assert lookup(variables, "lead.id") == "L-77"
    assert lookup(variables, "lead.email") == "ana@example.com"
    assert lookup(variables, "event.id") == delivery.event_id
    assert variables["event_id"] == delivery.event_id
    assert lookup(variables, "event.reference") == "CRM-9"
    assert lookup(variables, "event.price") == "12.50"
    assert lookup(variables, "event.delivered_at") == "2026-11-01T08:00:00Z"
    assert lookup(variables, "buyer.name") == delivery.buyer.name
    assert lookup(variables, "source.name") == delivery.source.name
    assert lookup(variables, "flow.name") == delivery.flow.name
    assert lookup(variables, "feedback.type") == "return"
    assert lookup(variables, "feedback.kind") == "return"
    assert lookup(variables, "feedback.reason") == "Wrong number"
    assert lookup(variables, "feedback.outcome_code") == "bad_info"
    assert lookup(variables, "feedback.revenue") == ""
    assert lookup(variables, "feedback.quality_score") == "2"
    assert lookup(variables, "feedback.timestamp") == "2026-11-03T09:30:00Z"
    assert lookup(variables, "feedback.custom.policy_type") == "auto"


def test_a_lead_field_named_id_does_not_hide_the_lead_id():
    feedback = FeedbackFactory(
        delivery__lead=LeadFactory(public_id="L-1", data={"id": "spoofed"}),
        revenue=Decimal("100.00"),
    )

    variables = feedback_variables(feedback=feedback)

    assert lookup(variables, "lead.id") == "L-1"
    assert lookup(variables, "feedback.revenue") == "100.00"


def test_the_sample_has_every_documented_variable():
    variables = sample_variables(kind="conversion")

    for name in VARIABLE_NAMES:
        if "<" in name:
            continue
        assert lookup(variables, name) is not None, name
    assert lookup(variables, "feedback.revenue") == "250.00"
