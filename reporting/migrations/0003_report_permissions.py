from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("reporting", "0002_timing_rollups"),
    ]

    operations = [
        migrations.CreateModel(
            name="ReportAccess",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
            ],
            options={
                "permissions": [
                    ("view_reports", "Can view reports and download their CSV"),
                    ("view_billing", "Can view the billing report"),
                ],
                "managed": False,
                "default_permissions": (),
            },
        ),
    ]
