import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

import notifications.models
from core.model_moves import move_content_types


class Migration(migrations.Migration):
    """The channels and deliveries were core's: their tables are renamed, every row kept."""

    initial = True

    dependencies = [
        ("core", "0004_delivery_records"),
        ("alerts", "0001_initial"),  # its rules' channels: their table made before this renames it
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='NotificationChannel',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100, unique=True)),
                        ('kind', models.CharField(choices=[('email', 'e-mail'), ('webhook', 'JSON webhook'), ('slack', 'Slack-compatible webhook')], max_length=10)),
                        ('target', models.CharField(help_text="E-mail addresses (comma-separated), or the webhook's URL.", max_length=1000)),
                        ('topics', models.JSONField(blank=True, default=list, help_text='Notifications it hears, e.g. ["approval.requested"]; empty: every one (none if it forwards records).')),
                        ('forwards', models.JSONField(blank=True, default=list, help_text='Records it receives: event types whose every event is sent here as it happens, e.g. ["run.ended"].')),
                        ('secret', models.CharField(default=notifications.models.new_secret, help_text='Webhook bodies are signed with it: X-Telemetry-Signature: sha256=<HMAC-SHA256 of the body>.', max_length=64)),
                        ('enabled', models.BooleanField(default=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                    ],
                    options={
                        'db_table': 'core_notificationchannel',
                        'ordering': ['name'],
                    },
                ),
                migrations.CreateModel(
                    name='Delivery',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('topic', models.CharField(db_index=True, max_length=200)),
                        ('record_id', models.CharField(blank=True, default='', help_text="Forwarded events' type and first..last stream ids: sent once.", max_length=300)),
                        ('notification', models.JSONField(help_text='What is sent: topic, subject, text, link, data.')),
                        ('records', models.PositiveIntegerField(default=0, help_text='The forwarded events it carries (0: a notification).')),
                        ('records_json', models.TextField(blank=True, default='', help_text='The forwarded events: their JSON array, as sent.')),
                        ('status', models.CharField(choices=[('pending', 'Pending'), ('delivered', 'Delivered'), ('failed', 'Failed')], default='pending', max_length=10)),
                        ('attempts', models.PositiveIntegerField(default=0)),
                        ('last_error', models.TextField(blank=True, default='')),
                        ('created_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ('next_attempt_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('delivered_at', models.DateTimeField(blank=True, null=True)),
                        ('channel', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='notifications.notificationchannel')),
                    ],
                    options={
                        'db_table': 'core_delivery',
                        'verbose_name_plural': 'deliveries',
                        'ordering': ['-created_at'],
                        'indexes': [models.Index(fields=['status', 'next_attempt_at'], name='delivery_due')],
                        'constraints': [models.UniqueConstraint(condition=models.Q(('record_id', ''), _negated=True), fields=('channel', 'record_id'), name='delivery_record_once')],
                    },
                ),
            ],
        ),
        migrations.AlterModelTable(name="notificationchannel", table=None),
        migrations.AlterModelTable(name="delivery", table=None),
        move_content_types("core", "notifications", "notificationchannel", "delivery"),
    ]
