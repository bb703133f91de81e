"""An index on the review steps that approve or reject a return, by date: the
returns report (reporting/reports/returns.py) reads the decisions of a period
from it instead of every step ever written. The single-column index on the
steps' feedback goes: the (feedback, created_at) index leads with it."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("feedback", "0014_returns_resolution_backfill")]

    operations = [
        migrations.AddIndex(
            model_name="returntransition",
            index=models.Index(
                fields=["created_at"],
                condition=models.Q(to_state__in=["approved", "rejected"]),
                name="return_step_decisions",
            ),
        ),
        migrations.AlterField(
            model_name="returntransition",
            name="feedback",
            field=models.ForeignKey(
                db_index=False,
                on_delete=models.deletion.CASCADE,
                related_name="transitions",
                to="feedback.feedback",
            ),
        ),
    ]
