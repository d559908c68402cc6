"""Metrics agents send: raw points and, per series, what /metrics shows."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class MetricType(models.TextChoices):
    COUNTER = "counter"  # each point adds its value (an increment, >= 0)
    GAUGE = "gauge"  # each point sets the value
    HISTOGRAM = "histogram"  # each point is one observation, counted into buckets


class MetricSeries(models.Model):
    """One metric with one set of labels: a counter's total, a gauge's latest value, or a
    histogram's bucket counts (not cumulative; bounds in metrics.services.BUCKETS), with the count and
    sum of its points. /metrics reads these; queries read the points."""

    name = models.CharField(max_length=200)
    labels_key = models.CharField(max_length=2000, help_text="The labels as sorted JSON: one series per name and labels")
    labels = models.JSONField(default=dict)
    metric_type = models.CharField(max_length=10, choices=MetricType.choices)
    value = models.FloatField(default=0)
    count = models.BigIntegerField(default=0)
    sum = models.FloatField(default=0)
    buckets = models.JSONField(default=list)
    last_at = models.DateTimeField(null=True, help_text="When the latest point was taken")

    class Meta:
        verbose_name_plural = "metric series"
        constraints = [models.UniqueConstraint(fields=["name", "labels_key"], name="metricseries_unique")]

    def __str__(self) -> str:
        return f"{self.name}{self.labels_key}"


class MetricPoint(models.Model):
    """One value an agent sent for a series; idempotent on `event_id`."""

    event_id = models.CharField(max_length=100, unique=True)
    series = models.ForeignKey(MetricSeries, on_delete=models.CASCADE, related_name="points", db_index=False)
    timestamp = models.DateTimeField(default=timezone.now)
    agent_name = models.CharField(max_length=200)
    value = models.FloatField()

    class Meta:
        indexes = [
            # On PostgreSQL the values are in the index too: a query's points come from it alone.
            models.Index(fields=["series", "timestamp"], include=["value"], name="metricpoint_series_time"),
            models.Index(fields=["timestamp"], name="metricpoint_time"),
        ]

    def __str__(self) -> str:
        return f"{self.series_id} = {self.value} @ {self.timestamp:%Y-%m-%d %H:%M:%S}"


class MetricMinute(models.Model):
    """A series' points of one minute, summed up: what metric queries read instead of the points
    (kept longer than they are: AGGREGATES_RETENTION_DAYS)."""

    series = models.ForeignKey(MetricSeries, on_delete=models.CASCADE, related_name="minutes", db_index=False)
    minute = models.DateTimeField()
    count = models.PositiveIntegerField()
    sum = models.FloatField()
    min = models.FloatField()
    max = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["series", "minute"], name="metricminute_unique")]
        indexes = [models.Index(fields=["minute"], name="metricminute_minute")]

    def __str__(self) -> str:
        return f"{self.series_id} @ {self.minute:%Y-%m-%d %H:%M}: {self.count} points"
