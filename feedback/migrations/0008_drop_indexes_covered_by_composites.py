"""Drop the single-column indexes Django gives foreign keys where a composite
index or constraint already starts with that column: they only slowed inserts.

Only the indexes are dropped; letting AlterField do it would also drop and re-add
(and so re-validate over the whole table) each foreign key constraint.
"""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Index

COVERED = [
    ("lead", "source"),
    ("deliveryevent", "buyer"),
    ("deliveryevent", "flow"),
    ("deliveryevent", "source"),
    ("feedback", "buyer"),
    ("feedback", "delivery"),
    ("feedback", "source"),
    ("notification", "feedback"),
    ("notification", "source"),
]


def drop_indexes(apps, schema_editor):
    for model_name, field_name in COVERED:
        model = apps.get_model("feedback", model_name)
        column = model._meta.get_field(field_name).column
        for name in schema_editor._constraint_names(
            model, [column], index=True, unique=False, type_=Index.suffix
        ):
            schema_editor.execute(schema_editor._delete_index_sql(model, name))


def create_indexes(apps, schema_editor):
    for model_name, field_name in COVERED:
        model = apps.get_model("feedback", model_name)
        field = model._meta.get_field(field_name)
        schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))


class Migration(migrations.Migration):

    dependencies = [
        ('feedback', '0007_merge_0006_batch_runs_0006_feedback_imports'),
        ('sources', '0005_batch_files'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunPython(drop_indexes, create_indexes),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name='deliveryevent',
                    name='buyer',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='deliveries', to='feedback.buyer'),
                ),
                migrations.AlterField(
                    model_name='deliveryevent',
                    name='flow',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='deliveries', to='feedback.flow'),
                ),
                migrations.AlterField(
                    model_name='deliveryevent',
                    name='source',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='deliveries', to='sources.source'),
                ),
                migrations.AlterField(
                    model_name='feedback',
                    name='buyer',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='feedback', to='feedback.buyer'),
                ),
                migrations.AlterField(
                    model_name='feedback',
                    name='delivery',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='feedback', to='feedback.deliveryevent'),
                ),
                migrations.AlterField(
                    model_name='feedback',
                    name='source',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='feedback', to='sources.source'),
                ),
                migrations.AlterField(
                    model_name='lead',
                    name='source',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='leads', to='sources.source'),
                ),
                migrations.AlterField(
                    model_name='notification',
                    name='feedback',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='notifications', to='feedback.feedback'),
                ),
                migrations.AlterField(
                    model_name='notification',
                    name='source',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='notifications', to='sources.source'),
                ),
            ],
        ),
    ]
