import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction

from feedback.models import Feedback, OutcomeCode
from sources.models import Kind
from tests.factories import DeliveryEventFactory, FeedbackFactory

pytestmark = pytest.mark.django_db


def test_one_successful_return_per_delivery_is_enforced_by_the_database():
    delivery = DeliveryEventFactory()
    FeedbackFactory(delivery=delivery, kind=Kind.RETURN)

    with pytest.raises(IntegrityError), transaction.atomic():
        FeedbackFactory(delivery=delivery, kind=Kind.RETURN)


def test_refused_returns_and_other_kinds_are_not_limited():
    delivery = DeliveryEventFactory()
    FeedbackFactory(delivery=delivery, kind=Kind.RETURN)
    FeedbackFactory(
        delivery=delivery, kind=Kind.RETURN, outcome=Feedback.Outcome.FAILURE
    )
    FeedbackFactory(
        delivery=delivery, kind=Kind.RETURN, outcome=Feedback.Outcome.FAILURE
    )
    FeedbackFactory(delivery=delivery, kind=Kind.CONVERSION)
    FeedbackFactory(delivery=delivery, kind=Kind.CONVERSION)

    assert delivery.feedback.count() == 5


@pytest.mark.parametrize(
    "fields", [{"revenue": -1}, {"quality_score": 0}, {"quality_score": 6}]
)
def test_feedback_value_ranges_are_database_constraints(fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        FeedbackFactory(**fields)


@pytest.mark.parametrize("event_id", ["ABCDEF0123456789abcdef01", "abc", "g" * 24])
def test_event_id_format_is_a_database_constraint(event_id):
    with pytest.raises(IntegrityError), transaction.atomic():
        DeliveryEventFactory(event_id=event_id)


def test_outcome_codes_are_seeded_with_their_kinds():
    codes = dict(OutcomeCode.objects.values_list("code", "kind"))

    assert codes == {
        "converted": "conversion",
        "contacted": "status",
        "no_contact": "status",
        "bad_info": "return",
        "duplicate": "return",
        "not_interested": "status",
        "returned": "return",
    }


def test_migrations_match_the_models():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.service
@pytest.mark.django_db(transaction=True)
def test_concurrent_successful_returns_leave_exactly_one_on_postgresql():
    import threading

    from django.db import connection

    delivery = DeliveryEventFactory()
    barrier = threading.Barrier(8)
    results: list[str] = []

    def insert_return() -> None:
        try:
            barrier.wait()
            FeedbackFactory(delivery=delivery, kind=Kind.RETURN)
            results.append("ok")
        except IntegrityError:
            results.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=insert_return) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert connection.vendor == "postgresql"
    assert sorted(results) == ["ok"] + ["refused"] * 7
    assert Feedback.objects.filter(delivery=delivery, outcome="success").count() == 1
