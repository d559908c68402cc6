import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

from core.model_moves import move_content_types


class Migration(migrations.Migration):
    """The spans and export marks were runs': their tables are renamed, every row kept."""

    initial = True

    dependencies = [
        ("runs", "0008_metricpoint_covering_index"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ExportMark',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100, unique=True)),
                        ('position', models.BigIntegerField(default=0)),
                    ],
                    options={
                        'db_table': 'runs_exportmark',
                    },
                ),
                migrations.CreateModel(
                    name='Span',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('event_id', models.CharField(max_length=48, unique=True)),
                        ('trace_id', models.CharField(max_length=32)),
                        ('span_id', models.CharField(max_length=16)),
                        ('parent_span_id', models.CharField(blank=True, default='', max_length=16)),
                        ('name', models.CharField(max_length=300)),
                        ('span_kind', models.CharField(choices=[('internal', 'Internal'), ('server', 'Server'), ('client', 'Client'), ('producer', 'Producer'), ('consumer', 'Consumer')], default='internal', max_length=10)),
                        ('status', models.CharField(choices=[('unset', 'Unset'), ('ok', 'Ok'), ('error', 'Error')], default='unset', max_length=10)),
                        ('status_message', models.TextField(blank=True, default='')),
                        ('start_time', models.DateTimeField()),
                        ('end_time', models.DateTimeField()),
                        ('agent_name', models.CharField(max_length=200)),
                        ('service_name', models.CharField(blank=True, default='', max_length=200)),
                        ('attributes', models.JSONField(blank=True, default=dict)),
                        ('events', models.JSONField(blank=True, default=list, help_text='[{name, timestamp, attributes}]')),
                        ('received_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('run', models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='spans', to='runs.run')),
                    ],
                    options={
                        'db_table': 'runs_span',
                        'ordering': ['start_time', 'id'],
                        'indexes': [models.Index(fields=['trace_id'], name='span_trace'), models.Index(fields=['start_time'], name='span_start'), models.Index(fields=['run'], name='span_run')],
                    },
                ),
            ],
        ),
        migrations.AlterModelTable(name="exportmark", table=None),
        migrations.AlterModelTable(name="span", table=None),
        move_content_types("runs", "traces", "exportmark", "span"),
    ]
