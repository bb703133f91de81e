# "Delivery" names lead deliveries only; a try at forwarding a notification is a
# notification attempt. RenameModel renames the table in place: no row is copied.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0009_notification_lead_delivered_at"),
    ]

    operations = [
        migrations.RenameModel(old_name="DeliveryAttempt", new_name="NotificationAttempt"),
    ]
