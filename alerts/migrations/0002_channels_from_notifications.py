from django.db import migrations, models


class Migration(migrations.Migration):
    """The channels moved from core to notifications, their table renamed: the link table's
    foreign key already follows it."""

    dependencies = [
        ("alerts", "0001_initial"),
        ("notifications", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="alertrule",
                    name="channels",
                    field=models.ManyToManyField(blank=True, related_name="alert_rules", to="notifications.notificationchannel"),
                ),
            ],
        ),
    ]
