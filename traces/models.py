from __future__ import annotations

from django.db import models
from django.utils import timezone


class SpanKind(models.TextChoices):
    INTERNAL = "internal"
    SERVER = "server"
    CLIENT = "client"
    PRODUCER = "producer"
    CONSUMER = "consumer"


class SpanStatus(models.TextChoices):
    UNSET = "unset"
    OK = "ok"
    ERROR = "error"


class Span(models.Model):
    """One timed operation of a trace: its ids (W3C: 32 and 16 hex digits), parent, name, kind,
    status, attributes and events, and the run it belongs to when it names one. `event_id` is the
    trace and span ids together: a span sent twice is stored once."""

    event_id = models.CharField(max_length=48, unique=True)
    trace_id = models.CharField(max_length=32)
    span_id = models.CharField(max_length=16)
    parent_span_id = models.CharField(max_length=16, blank=True, default="")
    name = models.CharField(max_length=300)
    span_kind = models.CharField(max_length=10, choices=SpanKind.choices, default=SpanKind.INTERNAL)
    status = models.CharField(max_length=10, choices=SpanStatus.choices, default=SpanStatus.UNSET)
    status_message = models.TextField(blank=True, default="")
    start_time = models.DateTimeField()
    end_time = models.DateTimeField()
    agent_name = models.CharField(max_length=200)
    service_name = models.CharField(max_length=200, blank=True, default="")
    attributes = models.JSONField(default=dict, blank=True)
    events = models.JSONField(default=list, blank=True, help_text="[{name, timestamp, attributes}]")
    run = models.ForeignKey("runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="spans", db_index=False)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["start_time", "id"]
        indexes = [
            models.Index(fields=["trace_id"], name="span_trace"),
            models.Index(fields=["start_time"], name="span_start"),
            models.Index(fields=["run"], name="span_run"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.trace_id[:8]}/{self.span_id})"

    @property
    def duration_ms(self) -> float:
        return (self.end_time - self.start_time).total_seconds() * 1000


class ExportMark(models.Model):
    """How far an export has got (the last id it sent), so the next one sends only what is new."""

    name = models.CharField(max_length=100, unique=True)
    position = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}: {self.position}"
