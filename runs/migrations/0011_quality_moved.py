from django.db import migrations


class Migration(migrations.Migration):
    """LLM usage, prices, feedback and the daily rollups moved to the quality app, with their rows."""

    dependencies = [
        ("runs", "0010_metrics_moved"),
        ("quality", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="LlmUsage"),
                migrations.DeleteModel(name="UsageStageDay"),
                migrations.DeleteModel(name="UsageDay"),
                migrations.DeleteModel(name="TemplateFeedback"),
                migrations.DeleteModel(name="RunDay"),
                migrations.DeleteModel(name="FeedbackEntry"),
                migrations.DeleteModel(name="ModelPrice"),
                migrations.DeleteModel(name="ChangedDay"),
            ],
        ),
    ]
