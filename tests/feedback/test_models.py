import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from feedback.forwarding.models import Notification
from feedback.models import DeliveryEvent, Feedback, Lead, OutcomeCode
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


@pytest.mark.parametrize(
    "model", [Lead, DeliveryEvent, Feedback, Notification], ids=lambda m: m.__name__
)
def test_no_index_is_the_leading_part_of_another(model):
    """Every insert maintains every index: a plain index on columns another
    index or unique constraint starts with is pure cost. Read from the database
    the migrations built, not from the models."""
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, model._meta.db_table)
    partial = {
        index.name
        for index in [*model._meta.indexes, *model._meta.constraints]
        if getattr(index, "condition", None) is not None
    }
    full = {
        name: tuple(info["columns"])
        for name, info in found.items()
        if (info["index"] or info["unique"]) and name not in partial
    }
    # An expression index (the portal's search by last name) has no plain
    # columns to lead with.
    plain = {
        name: columns
        for name, columns in full.items()
        if found[name]["index"] and not found[name]["unique"] and any(columns)
    }

    covered = [
        (name, other)
        for name, columns in plain.items()
        for other, longer in full.items()
        if other != name
        and len(longer) > len(columns)
        and longer[: len(columns)] == columns
    ]

    assert covered == []
    assert plain  # the introspection saw the table's indexes
