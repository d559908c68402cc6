from django.db import migrations


class Migration(migrations.Migration):
    """The spans and export marks moved to the traces app, with their rows."""

    dependencies = [
        ("runs", "0008_metricpoint_covering_index"),
        ("traces", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="Span"),
                migrations.DeleteModel(name="ExportMark"),
            ],
        ),
    ]
