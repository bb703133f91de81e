"""Data migrations, run against rows that exist before them."""

import datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from feedback.forwarding.models import Notification
from sources.models import FeedbackConfig, Kind
from tests.factories import DeliveryEventFactory, FeedbackFactory

UTC = datetime.UTC


def migrate(target: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(target)


@pytest.mark.django_db(transaction=True)
def test_existing_notifications_take_their_delivery_time():
    delivered = [
        datetime.datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC),
        datetime.datetime(2025, 11, 30, 23, 59, tzinfo=UTC),
    ]
    ids = []
    for when in delivered:
        feedback = FeedbackFactory(
            delivery=DeliveryEventFactory(delivered_at=when), kind=Kind.CONVERSION
        )
        config = FeedbackConfig.objects.create(
            source=feedback.source, kind=Kind.CONVERSION, url="https://example.com/"
        )
        notification = Notification.objects.create(
            feedback=feedback,
            config=config,
            source=feedback.source,
            kind=feedback.kind,
            # A wrong value: the column is dropped and rebuilt from the delivery.
            lead_delivered_at=datetime.datetime(2000, 1, 1, tzinfo=UTC),
        )
        ids.append(notification.pk)

    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    migrate([("feedback", "0008_drop_indexes_covered_by_composites")])
    try:
        migrate([("feedback", "0009_notification_lead_delivered_at")])
    finally:
        migrate(leaves)

    found = dict(
        Notification.objects.filter(pk__in=ids).values_list("pk", "lead_delivered_at")
    )
    assert [found[pk] for pk in ids] == delivered
