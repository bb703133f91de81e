# The lease fields now come from one abstract model (feedback.leases); the
# lease end is set by the engine only, as imports already had it. No SQL.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('feedback', '0010_rename_deliveryattempt_notificationattempt'),
    ]

    operations = [
        migrations.AlterField(
            model_name='batchrun',
            name='lease_expires_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AlterField(
            model_name='notification',
            name='lease_expires_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
    ]
