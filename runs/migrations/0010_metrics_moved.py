from django.db import migrations


class Migration(migrations.Migration):
    """The metric series, points and minute rollups moved to the metrics app, with their rows."""

    dependencies = [
        ("runs", "0009_traces_moved"),
        ("metrics", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="MetricMinute"),
                migrations.DeleteModel(name="MetricPoint"),
                migrations.DeleteModel(name="MetricSeries"),
            ],
        ),
    ]
