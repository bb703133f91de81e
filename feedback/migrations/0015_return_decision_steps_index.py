"""An index on the review steps that approve or reject a return, by date: the
returns report (reporting/reports/returns.py) reads the decisions of a period
from it instead of every step ever written.

Database only: ReturnTransition's Meta does not declare it yet, so the model
state is left as it is and `makemigrations` stays quiet. When the model gains
`models.Index(fields=["created_at"], condition=Q(to_state__in=["approved",
"rejected"]), name="return_step_decisions")`, move this into the state with a
state-only AddIndex instead of creating it again."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("feedback", "0014_returns_resolution_backfill")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AddIndex(
                    model_name="returntransition",
                    index=models.Index(
                        fields=["created_at"],
                        condition=models.Q(to_state__in=["approved", "rejected"]),
                        name="return_step_decisions",
                    ),
                )
            ],
            state_operations=[],
        )
    ]
