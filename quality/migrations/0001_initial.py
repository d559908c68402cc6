import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

from core.model_moves import move_content_types


class Migration(migrations.Migration):
    """LLM usage, prices, feedback and the daily rollups were runs': their tables are renamed, every row kept."""

    initial = True

    dependencies = [
        ("runs", "0008_metricpoint_covering_index"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ChangedDay',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('day', models.DateField(db_index=True)),
                    ],
                    options={
                        'db_table': 'runs_changedday',
                    },
                ),
                migrations.CreateModel(
                    name='ModelPrice',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('model', models.CharField(max_length=200, unique=True)),
                        ('provider', models.CharField(blank=True, default='', max_length=100)),
                        ('tier', models.CharField(choices=[('cheap', 'Cheap'), ('capable', 'Capable'), ('premium', 'Premium')], max_length=10)),
                        ('input_per_mtok', models.DecimalField(decimal_places=6, max_digits=12, verbose_name='input $/Mtok')),
                        ('output_per_mtok', models.DecimalField(decimal_places=6, max_digits=12, verbose_name='output $/Mtok')),
                        ('cache_read_per_mtok', models.DecimalField(decimal_places=6, default=0, max_digits=12, verbose_name='cache read $/Mtok')),
                        ('cache_write_per_mtok', models.DecimalField(decimal_places=6, default=0, max_digits=12, verbose_name='cache write $/Mtok')),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        'db_table': 'runs_modelprice',
                        'ordering': ['tier', 'model'],
                    },
                ),
                migrations.CreateModel(
                    name='FeedbackEntry',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('event_id', models.CharField(max_length=100, unique=True)),
                        ('timestamp', models.DateTimeField(default=django.utils.timezone.now)),
                        ('agent_name', models.CharField(blank=True, default='', max_length=200)),
                        ('workflow_name', models.CharField(max_length=200)),
                        ('stage_name', models.CharField(max_length=200)),
                        ('tier', models.CharField(choices=[('cheap', 'Cheap'), ('capable', 'Capable'), ('premium', 'Premium')], max_length=10)),
                        ('quality_score', models.FloatField()),
                        ('metadata', models.JSONField(blank=True, null=True)),
                    ],
                    options={
                        'db_table': 'runs_feedbackentry',
                        'verbose_name_plural': 'feedback entries',
                        'ordering': ['-timestamp', '-id'],
                        'indexes': [models.Index(fields=['workflow_name', 'stage_name', 'tier', 'timestamp'], name='feedback_stage_tier_time')],
                        'constraints': [models.CheckConstraint(condition=models.Q(('quality_score__gte', 0), ('quality_score__lte', 1)), name='feedback_score_0_1')],
                    },
                ),
                migrations.CreateModel(
                    name='RunDay',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('day', models.DateField()),
                        ('agent_name', models.CharField(max_length=200)),
                        ('job_type', models.CharField(max_length=200)),
                        ('status', models.CharField(choices=[('running', 'Running'), ('success', 'Success'), ('failed', 'Failed'), ('partial', 'Partial'), ('timeout', 'Timeout'), ('cancelled', 'Cancelled')], max_length=20)),
                        ('run_count', models.PositiveIntegerField()),
                        ('items_succeeded_sum', models.PositiveBigIntegerField()),
                        ('items_failed_sum', models.PositiveBigIntegerField()),
                        ('duration_ms_sum', models.PositiveBigIntegerField()),
                        ('created_at_max', models.DateTimeField()),
                        ('runs_under_1s', models.PositiveIntegerField()),
                        ('runs_under_5s', models.PositiveIntegerField()),
                        ('runs_under_30s', models.PositiveIntegerField()),
                        ('runs_under_1min', models.PositiveIntegerField()),
                        ('runs_under_5min', models.PositiveIntegerField()),
                        ('runs_under_30min', models.PositiveIntegerField()),
                        ('runs_longer', models.PositiveIntegerField()),
                    ],
                    options={
                        'db_table': 'runs_runday',
                        'indexes': [models.Index(fields=['agent_name', 'day'], name='runday_agent_day')],
                        'constraints': [models.UniqueConstraint(fields=('day', 'agent_name', 'job_type', 'status'), name='runday_unique')],
                    },
                ),
                migrations.CreateModel(
                    name='TemplateFeedback',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('event_id', models.CharField(max_length=100, unique=True)),
                        ('timestamp', models.DateTimeField(default=django.utils.timezone.now)),
                        ('agent_name', models.CharField(blank=True, default='', max_length=200)),
                        ('template_id', models.CharField(max_length=200)),
                        ('good', models.BooleanField()),
                    ],
                    options={
                        'db_table': 'runs_templatefeedback',
                        'verbose_name_plural': 'template feedback',
                        'ordering': ['-timestamp', '-id'],
                        'indexes': [models.Index(fields=['template_id', 'good'], name='template_feedback_rating')],
                    },
                ),
                migrations.CreateModel(
                    name='UsageDay',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('call_count', models.PositiveIntegerField()),
                        ('ok_count', models.PositiveIntegerField()),
                        ('fallback_count', models.PositiveIntegerField()),
                        ('cost_sum', models.DecimalField(decimal_places=8, max_digits=18)),
                        ('fallback_cost_sum', models.DecimalField(decimal_places=8, max_digits=18)),
                        ('day', models.DateField()),
                        ('agent_name', models.CharField(max_length=200)),
                        ('model', models.CharField(max_length=200)),
                        ('tier', models.CharField(blank=True, choices=[('cheap', 'Cheap'), ('capable', 'Capable'), ('premium', 'Premium')], max_length=10)),
                        ('input_tokens_sum', models.PositiveBigIntegerField()),
                        ('output_tokens_sum', models.PositiveBigIntegerField()),
                        ('cache_read_tokens_sum', models.PositiveBigIntegerField()),
                        ('cache_write_tokens_sum', models.PositiveBigIntegerField()),
                        ('latency_ms_sum', models.PositiveBigIntegerField()),
                    ],
                    options={
                        'db_table': 'runs_usageday',
                        'indexes': [models.Index(fields=['agent_name', 'day'], name='usageday_agent_day')],
                        'constraints': [models.UniqueConstraint(fields=('day', 'agent_name', 'model', 'tier'), name='usageday_unique')],
                    },
                ),
                migrations.CreateModel(
                    name='UsageStageDay',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('call_count', models.PositiveIntegerField()),
                        ('ok_count', models.PositiveIntegerField()),
                        ('fallback_count', models.PositiveIntegerField()),
                        ('cost_sum', models.DecimalField(decimal_places=8, max_digits=18)),
                        ('fallback_cost_sum', models.DecimalField(decimal_places=8, max_digits=18)),
                        ('day', models.DateField()),
                        ('workflow', models.CharField(max_length=200)),
                        ('stage', models.CharField(max_length=200)),
                        ('task_type', models.CharField(max_length=200)),
                        ('model', models.CharField(max_length=200)),
                        ('tier', models.CharField(blank=True, choices=[('cheap', 'Cheap'), ('capable', 'Capable'), ('premium', 'Premium')], max_length=10)),
                    ],
                    options={
                        'db_table': 'runs_usagestageday',
                        'constraints': [models.UniqueConstraint(fields=('day', 'workflow', 'stage', 'task_type', 'model', 'tier'), name='usagestageday_unique')],
                    },
                ),
                migrations.CreateModel(
                    name='LlmUsage',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('event_id', models.CharField(max_length=100, unique=True)),
                        ('timestamp', models.DateTimeField(default=django.utils.timezone.now)),
                        ('agent_name', models.CharField(max_length=200)),
                        ('workflow', models.CharField(blank=True, default='', max_length=200)),
                        ('stage', models.CharField(blank=True, default='', max_length=200)),
                        ('task_type', models.CharField(blank=True, default='', max_length=200)),
                        ('provider', models.CharField(blank=True, default='', max_length=100)),
                        ('model', models.CharField(max_length=200)),
                        ('tier', models.CharField(blank=True, choices=[('cheap', 'Cheap'), ('capable', 'Capable'), ('premium', 'Premium')], default='', max_length=10)),
                        ('input_tokens', models.PositiveBigIntegerField(default=0)),
                        ('output_tokens', models.PositiveBigIntegerField(default=0)),
                        ('cache_read_tokens', models.PositiveBigIntegerField(default=0)),
                        ('cache_write_tokens', models.PositiveBigIntegerField(default=0)),
                        ('cost', models.DecimalField(decimal_places=8, default=0, max_digits=14)),
                        ('latency_ms', models.PositiveIntegerField(default=0)),
                        ('success', models.BooleanField(default=True)),
                        ('fallback', models.BooleanField(default=False, help_text='Retried on this model after a cheaper tier failed')),
                        ('run', models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='llm_usage', to='runs.run')),
                    ],
                    options={
                        'db_table': 'runs_llmusage',
                        'verbose_name': 'LLM usage',
                        'verbose_name_plural': 'LLM usage',
                        'ordering': ['-timestamp', '-id'],
                        'indexes': [models.Index(fields=['timestamp'], name='usage_time'), models.Index(fields=['agent_name', 'timestamp'], name='usage_agent_time'), models.Index(fields=['model', 'timestamp'], name='usage_model_time'), models.Index(fields=['tier', 'timestamp'], name='usage_tier_time'), models.Index(fields=['run'], name='usage_run')],
                    },
                ),
            ],
        ),
        migrations.AlterModelTable(name="changedday", table=None),
        migrations.AlterModelTable(name="modelprice", table=None),
        migrations.AlterModelTable(name="feedbackentry", table=None),
        migrations.AlterModelTable(name="runday", table=None),
        migrations.AlterModelTable(name="templatefeedback", table=None),
        migrations.AlterModelTable(name="usageday", table=None),
        migrations.AlterModelTable(name="usagestageday", table=None),
        migrations.AlterModelTable(name="llmusage", table=None),
        move_content_types("runs", "quality", "changedday", "modelprice", "feedbackentry", "runday", "templatefeedback", "usageday", "usagestageday", "llmusage"),
    ]
