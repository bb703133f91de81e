"""One feedback quoting an event id: its own read, in one statement, and its own
write, one INSERT when nothing is forwarded. It must judge exactly as the path
every other request takes, and the reads must build what the ORM builds."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from feedback.forwarding.models import Notification
from feedback.intake.parse import ReceiveStatus
from feedback.intake.pipeline import feedback_receive, feedback_receive_many
from feedback.models import ApiKey, BuyerPolicy, DeliveryEvent, Feedback
from feedback.rows import Columns, Insert
from feedback.selectors import api_key_get_active
from sources.models import FeedbackConfig, Kind
from tests.factories import (
    BuyerPolicyFactory,
    DeliveryEventFactory,
    FeedbackFactory,
    FlowFactory,
    LeadFactory,
    SourceFactory,
    seeded_outcome_codes,
)

pytestmark = pytest.mark.django_db

API = Feedback.Channel.API


# The same item through both paths ---------------------------------------------


def _policy(buyer, kind, *, flow=None, **fields):
    BuyerPolicyFactory(buyer=buyer, flow=flow, kind=kind, **fields)


def _configs(source):
    def config(name, **fields):
        values = {"kind": "return", "url": f"https://returns.example/{name}"}
        FeedbackConfig.objects.create(source=source, **(values | fields))

    config("json")
    config("form", method=FeedbackConfig.Method.FORM)
    config("nightly-file", method=FeedbackConfig.Method.BATCH)
    config("off", enabled=False)
    config("conversions", kind="conversion")
    config(
        "fraud-only",
        criteria={
            "rules": [{"lhv": "feedback.reason", "op": "is equal to", "rhv": "Fraud"}]
        },
    )


# Each case: how to set up the buyer's world, then the item sent.
CASES = {
    "conversion": (None, {"type": "conversion", "revenue": "12.5"}),
    "status with a note": (None, {"type": "status", "note": "Called back"}),
    "return forwarded to each matching config": (
        lambda w: _configs(w["source"]),
        {"type": "return", "reason": "Bad phone"},
    ),
    "kind disabled buyer-wide": (
        lambda w: _policy(w["buyer"], "return", enabled=False),
        {"type": "return"},
    ),
    "the flow's policy wins over the buyer's": (
        lambda w: (
            _policy(w["buyer"], "conversion", enabled=False),
            _policy(w["buyer"], "conversion", flow=w["flow"], enabled=True),
        ),
        {"type": "conversion"},
    ),
    "kind disabled on the flow": (
        lambda w: _policy(w["buyer"], "conversion", flow=w["flow"], enabled=False),
        {"type": "conversion"},
    ),
    "policy of another kind": (
        lambda w: _policy(w["buyer"], "return", enabled=False),
        {"type": "conversion"},
    ),
    "return window passed": (
        lambda w: _policy(w["buyer"], "return", max_age_days=1),
        {"type": "return"},
    ),
    "reason outside the source's list": (
        None,
        {"type": "return", "reason": "Changed my mind"},
    ),
    "reason matched without case": (None, {"type": "return", "reason": "bad PHONE"}),
    "buyer's rules refuse it": (
        lambda w: _policy(
            w["buyer"],
            "conversion",
            rules={
                "rules": [{"lhv": "feedback.reason", "op": "is equal to", "rhv": "X"}]
            },
        ),
        {"type": "conversion", "reason": "Sold"},
    ),
    "occurred before the delivery": (
        None,
        {"type": "conversion", "occurred_at": "2020-01-01T00:00:00Z"},
    ),
    "returned before": ("returned", {"type": "return", "reason": "Fraud"}),
    "source takes no status": (None, {"type": "status"}),
}


def _outcome(result):
    """What a caller and the database see of one result."""
    feedback = result.feedback
    stored = None
    rows = []
    if feedback is not None and feedback.pk is not None:
        feedback = Feedback.objects.get(pk=feedback.pk)
        stored = (
            feedback.kind,
            feedback.outcome,
            feedback.outcome_reason,
            feedback.reason,
            feedback.revenue,
        )
        rows = sorted(
            (n.config.url, n.status, n.reason)
            for n in Notification.objects.filter(feedback=feedback)
        )
    return result.status, result.reason, stored, rows


@pytest.mark.parametrize("case", CASES)
def test_one_item_is_judged_as_in_a_batch(buyer, case):
    setup, item = CASES[case]
    source = SourceFactory(return_reasons=["Bad phone", "Fraud"], accepts_status=False)
    flow = FlowFactory()
    alone, batched = DeliveryEventFactory.create_batch(
        2,
        buyer=buyer,
        lead__source=source,
        lead__flow=flow,
        delivered_at=timezone.now() - timedelta(days=3),
    )
    world = {"buyer": buyer, "source": source, "flow": flow}
    if setup == "returned":
        for delivery in (alone, batched):
            FeedbackFactory(delivery=delivery, kind=Kind.RETURN)
    elif setup is not None:
        setup(world)
    neighbour = DeliveryEventFactory(buyer=buyer)

    one = feedback_receive(
        buyer=buyer, data={"event_id": alone.event_id, **item}, channel=API
    )
    first, _ = feedback_receive_many(
        buyer=buyer,
        items=[
            {"event_id": batched.event_id, **item},
            {"event_id": neighbour.event_id, "type": "conversion"},
        ],
        channel=API,
    )

    assert _outcome(one) == _outcome(first)


def test_another_buyers_event_is_unknown_to_one_item_as_to_a_batch(buyer, other_buyer):
    foreign = DeliveryEventFactory(buyer=other_buyer)
    item = {"event_id": foreign.event_id, "type": "conversion"}

    one = feedback_receive(buyer=buyer, data=item, channel=API)
    first, _ = feedback_receive_many(buyer=buyer, items=[item, item], channel=API)

    assert one.status == first.status == ReceiveStatus.NOT_FOUND
    assert one.reason == first.reason == "No delivery of yours has this event id."
    assert not Feedback.objects.exists()


# Statements -----------------------------------------------------------------------


def _transactions_opened(monkeypatch) -> list[bool]:
    """Every outermost transaction Django opens switches autocommit off."""
    opened: list[bool] = []
    set_autocommit = connection.set_autocommit

    def spy(autocommit: bool, **kwargs):
        if not autocommit:
            opened.append(True)
        return set_autocommit(autocommit, **kwargs)

    monkeypatch.setattr(connection, "set_autocommit", spy)
    return opened


@pytest.mark.django_db(transaction=True)
def test_one_feedback_is_one_read_and_one_insert_outside_a_transaction(
    buyer_client, buyer, monkeypatch
):
    delivery = DeliveryEventFactory(buyer=buyer)
    buyer_client.post("/api/v1/feedback", {"items": [{}]}, format="json")  # key used
    opened = _transactions_opened(monkeypatch)

    with CaptureQueriesContext(connection) as queries:
        response = buyer_client.post(
            "/api/v1/feedback",
            {"event_id": delivery.event_id, "type": "conversion"},
            format="json",
        )

    assert response.status_code == 201, response.content
    statements = [q["sql"] for q in queries.captured_queries]
    assert [sql.split()[0] for sql in statements] == ["SELECT", "SELECT", "INSERT"]
    key_read, delivery_read, insert = statements
    assert 'FROM "feedback_apikey"' in key_read
    assert 'FROM "feedback_deliveryevent"' in delivery_read
    # The feedback table, the one that grows fastest, stays out of the read.
    assert '"feedback_feedback"' not in delivery_read
    assert insert.startswith('INSERT INTO "feedback_feedback"')
    assert opened == []  # a lone INSERT commits on its own
    assert Feedback.objects.get().public_id.hex in response.json()[
        "feedback_id"
    ].replace("-", "")


@pytest.mark.django_db(transaction=True)
def test_a_second_return_is_refused_by_the_constraint(buyer, monkeypatch):
    delivery = DeliveryEventFactory(buyer=buyer)
    data = {"event_id": delivery.event_id, "type": "return"}

    first = feedback_receive(buyer=buyer, data=data, channel=API)
    opened = _transactions_opened(monkeypatch)
    second = feedback_receive(buyer=buyer, data=data, channel=API)

    assert first.status == ReceiveStatus.ACCEPTED
    assert second.status == ReceiveStatus.ALREADY_RETURNED
    assert second.reason == "This lead was already returned."
    # A return is written with its review step, credit and month count in one
    # transaction; the constraint's refusal retries the item on its own.
    assert opened == [True, True]
    refused = Feedback.objects.get(outcome=Feedback.Outcome.FAILURE)
    assert refused.outcome_reason == "This lead was already returned."
    assert Feedback.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_feedback_to_forward_is_stored_with_its_notifications_in_one_transaction(
    buyer, monkeypatch
):
    delivery = DeliveryEventFactory(buyer=buyer)
    FeedbackConfig.objects.create(
        source=delivery.source, kind="conversion", url="https://sold.example/api"
    )
    opened = _transactions_opened(monkeypatch)
    inserts = []

    def record(execute, sql, *args):
        if sql.startswith(("INSERT", "WITH")):
            inserts.append(
                (
                    re.findall(r'INTO "(\w+)"', sql),
                    connection.in_atomic_block,
                    len(opened),
                )
            )
        return execute(sql, *args)

    with connection.execute_wrapper(record):
        result = feedback_receive(
            buyer=buyer,
            data={"event_id": delivery.event_id, "type": "conversion"},
            channel=API,
        )

    assert result.status == ReceiveStatus.ACCEPTED
    if connection.vendor == "postgresql":
        # One statement writes both: it is the transaction.
        assert [(tables[0], tables[-1], *rest) for tables, *rest in inserts] == [
            ("feedback_feedback", "feedback_notification", False, 0)
        ]
    else:
        assert inserts == [
            (["feedback_feedback"], True, 1),
            (["feedback_notification"], True, 1),
        ]
    notification = Notification.objects.get()
    assert notification.feedback == result.feedback
    assert list(result.feedback.notifications.all()) == [notification]


@pytest.mark.django_db(transaction=True)
def test_a_feedback_whose_notification_cannot_be_stored_is_not_stored(
    buyer, monkeypatch
):
    delivery = DeliveryEventFactory(buyer=buyer)
    FeedbackConfig.objects.create(
        source=delivery.source, kind="conversion", url="https://sold.example/api"
    )
    from feedback.forwarding import notifications

    prepare = notifications.notifications_prepare

    def broken(**kwargs):
        rows = prepare(**kwargs)
        rows[0].config_id = 10**9  # no such config: the foreign key refuses it
        return rows

    monkeypatch.setattr("feedback.intake.store.notifications_prepare", broken)
    monkeypatch.setattr(notifications, "notifications_prepare", broken)

    with pytest.raises(IntegrityError):
        feedback_receive(
            buyer=buyer,
            data={"event_id": delivery.event_id, "type": "conversion"},
            channel=API,
        )

    assert not Feedback.objects.exists()
    assert not Notification.objects.exists()


@pytest.mark.service
@pytest.mark.django_db(transaction=True)
def test_the_intake_statements_are_prepared_on_postgresql(buyer, buyer_client):
    deliveries = DeliveryEventFactory.create_batch(8, buyer=buyer)

    for delivery in deliveries:
        response = buyer_client.post(
            "/api/v1/feedback",
            {"event_id": delivery.event_id, "type": "conversion"},
            format="json",
        )
        assert response.status_code == 201

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    if connection.settings_dict["OPTIONS"].get("prepare_threshold") is None:
        # DATABASE_PREPARED_STATEMENTS=false, as behind PgBouncer before 1.21
        # (.ci/pgbouncer): nothing may be prepared on a pooled server connection.
        assert prepared == []
        return
    assert any('FROM "feedback_apikey"' in sql for sql in prepared)
    assert any('FROM "feedback_deliveryevent"' in sql for sql in prepared)
    assert any(sql.startswith('INSERT INTO "feedback_feedback"') for sql in prepared)


# Rows into instances ----------------------------------------------------------------


def _read(columns: Columns, pk: int):
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns.sql} FROM {columns.table} "  # noqa: S608 - names from _meta
            f"WHERE {columns.alias}.id = %s",
            [pk],
        )
        return columns.load(cursor.fetchone())


def _values(instance):
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.fields}


@pytest.mark.parametrize(
    "make",
    [
        lambda buyer: DeliveryEventFactory(buyer=buyer, price=Decimal("45.10")),
        lambda buyer: LeadFactory(data={"nested": {"list": [1, "a", None]}}),
        lambda buyer: SourceFactory(return_reasons=["Bad phone", "Fraud"]),
        lambda buyer: BuyerPolicyFactory(
            buyer=buyer, kind="return", rules={"rules": []}
        ),
        lambda buyer: FeedbackFactory(
            delivery=DeliveryEventFactory(buyer=buyer),
            revenue=Decimal("12.50"),
            custom={"a": [1, 2]},
        ),
        lambda buyer: FeedbackConfig.objects.create(
            source=SourceFactory(), kind="return", url="https://x.example/api"
        ),
    ],
    ids=["delivery", "lead", "source", "policy", "feedback", "config"],
)
def test_rows_load_as_the_orm_loads_them(buyer, make):
    made = make(buyer)
    model = type(made)

    loaded = _read(Columns(model, "t"), made.pk)

    assert type(loaded) is model
    assert _values(loaded) == _values(model.objects.get(pk=made.pk))
    assert loaded._state.adding is False
    assert loaded._state.db == "default"


def test_insert_stores_what_save_stores(buyer):
    delivery = DeliveryEventFactory(buyer=buyer)
    now = timezone.now()

    def make() -> Feedback:
        return Feedback(
            delivery=delivery,
            lead=delivery.lead,
            buyer=buyer,
            source=delivery.source,
            flow=delivery.flow,
            kind=Kind.RETURN,
            outcome_code=seeded_outcome_codes()["bad_info"],
            reason="Bad phone",
            revenue=Decimal("12.50"),
            quality_score=3,
            occurred_at=now - timedelta(hours=2, microseconds=7),
            received_at=now,
            custom={"crm": {"tags": ["a", 1, None]}},
            note="Called twice",
            channel=API,
            outcome=Feedback.Outcome.FAILURE,
            outcome_reason="type: refused",
        )

    saved, inserted = make(), make()
    saved.save(force_insert=True)
    Insert(Feedback)(inserted)

    assert inserted.pk is not None
    assert inserted.pk != saved.pk
    assert inserted._state.adding is False
    stored = {
        f.pk: {k: v for k, v in _values(f).items() if k not in ("id", "public_id")}
        for f in Feedback.objects.all()
    }
    assert stored[inserted.pk] == stored[saved.pk]
    assert Feedback.objects.get(pk=inserted.pk).public_id == inserted.public_id


def test_a_row_a_left_join_missed_loads_as_none(buyer):
    delivery = DeliveryEventFactory(buyer=buyer)
    policy = Columns(BuyerPolicy, "p")

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT d.id, {policy.sql} FROM {Columns(DeliveryEvent, 'd').table} "  # noqa: S608
            f"LEFT JOIN {policy.table} ON p.buyer_id = d.buyer_id WHERE d.id = %s",
            [delivery.pk],
        )
        row = cursor.fetchone()

    assert policy.load(row, 1) is None


def test_the_key_read_finds_active_keys_only(buyer, buyer_key, integration_key):
    (key, raw), (integration, integration_raw) = buyer_key, integration_key

    found = api_key_get_active(raw_key=raw)
    assert found == key
    assert found.buyer == buyer
    assert api_key_get_active(raw_key=integration_raw).buyer is None
    assert api_key_get_active(raw_key=raw + "x") is None

    buyer.is_active = False
    buyer.save()
    assert api_key_get_active(raw_key=raw) is None
    assert api_key_get_active(raw_key=integration_raw) == integration

    ApiKey.objects.filter(pk=integration.pk).update(revoked_at=timezone.now())
    assert api_key_get_active(raw_key=integration_raw) is None
