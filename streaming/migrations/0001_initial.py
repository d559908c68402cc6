from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="EventStream",
            fields=[("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"))],
            options={
                "permissions": [("trim_eventstream", "Can trim and delete event streams")],
                "managed": False,
                "default_permissions": ("view", "add"),
            },
        ),
    ]
