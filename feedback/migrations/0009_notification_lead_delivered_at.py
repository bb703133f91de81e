from django.db import migrations, models

# Every existing row takes its delivery's delivered_at; a correlated subquery,
# which PostgreSQL and SQLite both run.
BACKFILL = """
UPDATE feedback_notification SET lead_delivered_at = (
    SELECT d.delivered_at
    FROM feedback_feedback f
    JOIN feedback_deliveryevent d ON d.id = f.delivery_id
    WHERE f.id = feedback_notification.feedback_id
)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0008_drop_indexes_covered_by_composites"),
    ]

    operations = [
        migrations.AddField(
            model_name="notification",
            name="lead_delivered_at",
            field=models.DateTimeField(editable=False, null=True),
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop, elidable=True),
        migrations.AlterField(
            model_name="notification",
            name="lead_delivered_at",
            field=models.DateTimeField(editable=False),
        ),
    ]
