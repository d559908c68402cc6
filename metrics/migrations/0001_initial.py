import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

from core.model_moves import move_content_types


class Migration(migrations.Migration):
    """The metric series, points and minute rollups were runs': their tables are renamed, every row kept."""

    initial = True

    dependencies = [
        ("runs", "0008_metricpoint_covering_index"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='MetricSeries',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=200)),
                        ('labels_key', models.CharField(help_text='The labels as sorted JSON: one series per name and labels', max_length=2000)),
                        ('labels', models.JSONField(default=dict)),
                        ('metric_type', models.CharField(choices=[('counter', 'Counter'), ('gauge', 'Gauge'), ('histogram', 'Histogram')], max_length=10)),
                        ('value', models.FloatField(default=0)),
                        ('count', models.BigIntegerField(default=0)),
                        ('sum', models.FloatField(default=0)),
                        ('buckets', models.JSONField(default=list)),
                        ('last_at', models.DateTimeField(help_text='When the latest point was taken', null=True)),
                    ],
                    options={
                        'db_table': 'runs_metricseries',
                        'verbose_name_plural': 'metric series',
                        'constraints': [models.UniqueConstraint(fields=('name', 'labels_key'), name='metricseries_unique')],
                    },
                ),
                migrations.CreateModel(
                    name='MetricPoint',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('event_id', models.CharField(max_length=100, unique=True)),
                        ('timestamp', models.DateTimeField(default=django.utils.timezone.now)),
                        ('agent_name', models.CharField(max_length=200)),
                        ('value', models.FloatField()),
                        ('series', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='points', to='metrics.metricseries')),
                    ],
                    options={
                        'db_table': 'runs_metricpoint',
                        'indexes': [models.Index(fields=['series', 'timestamp'], include=('value',), name='metricpoint_series_time'), models.Index(fields=['timestamp'], name='metricpoint_time')],
                    },
                ),
                migrations.CreateModel(
                    name='MetricMinute',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('minute', models.DateTimeField()),
                        ('count', models.PositiveIntegerField()),
                        ('sum', models.FloatField()),
                        ('min', models.FloatField()),
                        ('max', models.FloatField()),
                        ('series', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='minutes', to='metrics.metricseries')),
                    ],
                    options={
                        'db_table': 'runs_metricminute',
                        'indexes': [models.Index(fields=['minute'], name='metricminute_minute')],
                        'constraints': [models.UniqueConstraint(fields=('series', 'minute'), name='metricminute_unique')],
                    },
                ),
            ],
        ),
        migrations.AlterModelTable(name="metricseries", table=None),
        migrations.AlterModelTable(name="metricpoint", table=None),
        migrations.AlterModelTable(name="metricminute", table=None),
        move_content_types("runs", "metrics", "metricseries", "metricpoint", "metricminute"),
    ]
