from django.db import migrations, models


def rebuild_on_next_refresh(apps, schema_editor):
    # Rows written before this column hold 0 for it: until the next refresh
    # rebuilds every day, the reports count live (docs/reports.md).
    apps.get_model("reporting", "RollupState").objects.update(refreshed_at=None)


class Migration(migrations.Migration):
    dependencies = [
        ("reporting", "0005_rollup_gaps"),
    ]

    operations = [
        migrations.AddField(
            model_name="dailyrollup",
            name="returned_cost",
            field=models.DecimalField(decimal_places=2, default=0, max_digits=16),
        ),
        migrations.RunPython(rebuild_on_next_refresh, migrations.RunPython.noop),
    ]
