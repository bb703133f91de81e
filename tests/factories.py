"""factory_boy factories for the domain. Persona helpers live in conftest.py."""

import importlib
import secrets
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from feedback.intake.pipeline import feedback_receive
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
from feedback.months import deliveries_counted
from sources.models import Kind, Source


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-9")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class SourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Source
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"source-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())


class FlowFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Flow
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"flow-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())


class BuyerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Buyer
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"buyer-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())


class BuyerPolicyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BuyerPolicy

    buyer = factory.SubFactory(BuyerFactory)
    kind = Kind.RETURN
    enabled = True


class BuyerMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BuyerMembership

    user = factory.SubFactory(UserFactory)
    buyer = factory.SubFactory(BuyerFactory)


class LeadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Lead

    public_id = factory.LazyFunction(lambda: secrets.token_hex(12))
    source = factory.SubFactory(SourceFactory)
    flow = factory.SubFactory(FlowFactory)
    data = factory.Sequence(
        lambda n: {
            "first_name": "Mel",
            "last_name": f"Tester{n}",
            "email": f"mel{n}@example.com",
            "phone_1": f"512555{n % 10000:04d}",
            "state": "TX",
        }
    )
    email_normalized = factory.LazyAttribute(lambda o: o.data.get("email", "").lower())
    phone_normalized = factory.LazyAttribute(lambda o: o.data.get("phone_1", ""))


class DeliveryEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeliveryEvent
        skip_postgeneration_save = True

    event_id = factory.LazyFunction(lambda: secrets.token_hex(12))
    lead = factory.SubFactory(LeadFactory)
    buyer = factory.SubFactory(BuyerFactory)
    source = factory.SelfAttribute("lead.source")
    flow = factory.SelfAttribute("lead.flow")
    step = "Deliver"
    reference = factory.Sequence(lambda n: f"CRM-{n}")
    price = Decimal("25.00")
    delivered_at = factory.LazyFunction(timezone.now)

    @factory.post_generation
    def _count_month(obj, create, extracted, **kwargs):
        # As the services that record deliveries do: return caps read it.
        if create:
            deliveries_counted([obj])


class FeedbackFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Feedback

    delivery = factory.SubFactory(DeliveryEventFactory)
    lead = factory.SelfAttribute("delivery.lead")
    buyer = factory.SelfAttribute("delivery.buyer")
    source = factory.SelfAttribute("delivery.source")
    flow = factory.SelfAttribute("delivery.flow")
    kind = Kind.CONVERSION
    channel = Feedback.Channel.API
    outcome = Feedback.Outcome.SUCCESS
    occurred_at = factory.LazyFunction(timezone.now)
    # An accepted return without review starts approved, as the intake does.
    review_state = factory.LazyAttribute(
        lambda o: (
            "approved"
            if o.kind == Kind.RETURN and o.outcome == Feedback.Outcome.SUCCESS
            else ""
        )
    )


def seeded_outcome_codes() -> dict[str, OutcomeCode]:
    """The vocabulary data migration 0002 seeds, restored if a transactional test
    (a live server's) flushed it, keyed by code."""
    migration = importlib.import_module("feedback.migrations.0002_seed_outcome_codes")
    for position, (code, label, kind, description) in enumerate(
        migration.OUTCOME_CODES
    ):
        OutcomeCode.objects.get_or_create(
            code=code,
            defaults={
                "label": label,
                "kind": kind,
                "description": description,
                "position": position,
            },
        )
    return {c.code: c for c in OutcomeCode.objects.all()}


def return_requested(
    *,
    buyer: Buyer,
    review: str = BuyerPolicy.Review.MANUAL,
    reason: str = "Wrong number",
    api_key: ApiKey | None = None,
    **delivery_fields,
) -> Feedback:
    """A return sent through the real intake about a new delivery to `buyer`,
    whose buyer-wide return policy gets `review` (manual: the return is
    pending). The intake writes its first review step (and a credit if approved
    at once), as in production."""
    BuyerPolicy.objects.update_or_create(
        buyer=buyer, flow=None, kind=Kind.RETURN, defaults={"review": review}
    )
    delivery = DeliveryEventFactory(buyer=buyer, **delivery_fields)
    result = feedback_receive(
        buyer=buyer,
        data={"event_id": delivery.event_id, "type": "return", "reason": reason},
        channel=Feedback.Channel.API,
        api_key=api_key,
    )
    if result.feedback is None or not result.feedback.review_state:
        raise AssertionError(f"the intake did not accept the return: {result}")
    return result.feedback
