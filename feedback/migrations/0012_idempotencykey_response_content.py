# Stored answers keep their exact bytes; rows from before keep their data and
# are replayed from it until they expire.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0011_shared_lease_fields"),
    ]

    operations = [
        migrations.AddField(
            model_name="idempotencykey",
            name="response_content",
            field=models.BinaryField(null=True),
        ),
        migrations.AlterField(
            model_name="idempotencykey",
            name="response_body",
            field=models.JSONField(blank=True, null=True),
        ),
    ]
