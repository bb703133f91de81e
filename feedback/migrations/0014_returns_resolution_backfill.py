"""Returns accepted before review existed were approved at intake; and the
month counters start from the deliveries and returns already recorded."""

from datetime import date, datetime

from django.db import migrations
from django.db.models import Count
from django.db.models.functions import TruncMonth
from django.utils import timezone


def _as_date(value):
    if isinstance(value, datetime):
        return (timezone.localtime(value) if timezone.is_aware(value) else value).date()
    return value


def forwards(apps, schema_editor):
    Feedback = apps.get_model("feedback", "Feedback")
    DeliveryEvent = apps.get_model("feedback", "DeliveryEvent")
    BuyerMonth = apps.get_model("feedback", "BuyerMonth")
    Feedback.objects.filter(kind="return", outcome="success").update(
        review_state="approved"
    )
    counts: dict[tuple[int, int, date], list[int]] = {}
    for row in (
        DeliveryEvent.objects.annotate(month=TruncMonth("delivered_at"))
        .values("buyer_id", "flow_id", "month")
        .annotate(n=Count("id"))
    ):
        key = (row["buyer_id"], row["flow_id"], _as_date(row["month"]))
        counts.setdefault(key, [0, 0])[0] += row["n"]
    for row in (
        Feedback.objects.filter(kind="return", outcome="success")
        .annotate(month=TruncMonth("delivery__delivered_at"))
        .values("buyer_id", "flow_id", "month")
        .annotate(n=Count("id"))
    ):
        key = (row["buyer_id"], row["flow_id"], _as_date(row["month"]))
        counts.setdefault(key, [0, 0])[1] += row["n"]
    BuyerMonth.objects.bulk_create(
        [
            BuyerMonth(buyer_id=b, flow_id=f, month=m, deliveries=d, returns=r)
            for (b, f, m), (d, r) in counts.items()
        ],
        batch_size=1000,
    )


class Migration(migrations.Migration):
    dependencies = [("feedback", "0013_returns_resolution")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
