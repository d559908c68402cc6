from django.db import migrations


class Migration(migrations.Migration):
    """The channels and deliveries moved to the notifications app, with their rows."""

    dependencies = [
        ("core", "0004_delivery_records"),
        ("alerts", "0002_channels_from_notifications"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="Delivery"),
                migrations.DeleteModel(name="NotificationChannel"),
            ],
        ),
    ]
