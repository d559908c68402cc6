"""What agents' work cost and how good it was: LLM usage and prices, quality feedback, and the
daily rollups of runs and usage that reports and /analytics/ read."""

from __future__ import annotations

from datetime import datetime

from django.db import models, transaction
from django.utils import timezone

from core.fastpaths.bulk_insert import insert_rows
from runs.selectors import RunStatus


class ModelTier(models.TextChoices):
    """What a model costs and can do, cheapest first."""

    CHEAP = "cheap"
    CAPABLE = "capable"
    PREMIUM = "premium"


TIER_ORDER = [ModelTier.CHEAP, ModelTier.CAPABLE, ModelTier.PREMIUM]


class ModelPrice(models.Model):
    """What a model costs, in dollars per million tokens; operators keep it current in the admin.
    A usage record sent without a cost is priced from here when it arrives."""

    model = models.CharField(max_length=200, unique=True)
    provider = models.CharField(max_length=100, blank=True, default="")
    tier = models.CharField(max_length=10, choices=ModelTier.choices)
    input_per_mtok = models.DecimalField("input $/Mtok", max_digits=12, decimal_places=6)
    output_per_mtok = models.DecimalField("output $/Mtok", max_digits=12, decimal_places=6)
    cache_read_per_mtok = models.DecimalField("cache read $/Mtok", max_digits=12, decimal_places=6, default=0)
    cache_write_per_mtok = models.DecimalField("cache write $/Mtok", max_digits=12, decimal_places=6, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tier", "model"]

    def __str__(self) -> str:
        return f"{self.model} ({self.tier})"


class LlmUsage(models.Model):
    """One model call: who made it for what, which model, the tokens and what they cost."""

    event_id = models.CharField(max_length=100, unique=True)
    run = models.ForeignKey(
        "runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="llm_usage", db_index=False
    )
    timestamp = models.DateTimeField(default=timezone.now)
    agent_name = models.CharField(max_length=200)
    workflow = models.CharField(max_length=200, blank=True, default="")
    stage = models.CharField(max_length=200, blank=True, default="")
    task_type = models.CharField(max_length=200, blank=True, default="")
    provider = models.CharField(max_length=100, blank=True, default="")
    model = models.CharField(max_length=200)
    tier = models.CharField(max_length=10, choices=ModelTier.choices, blank=True, default="")
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cache_read_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    success = models.BooleanField(default=True)
    fallback = models.BooleanField(default=False, help_text="Retried on this model after a cheaper tier failed")

    class Meta:
        ordering = ["-timestamp", "-id"]
        verbose_name = "LLM usage"
        verbose_name_plural = "LLM usage"
        indexes = [
            models.Index(fields=["timestamp"], name="usage_time"),
            models.Index(fields=["agent_name", "timestamp"], name="usage_agent_time"),
            models.Index(fields=["model", "timestamp"], name="usage_model_time"),
            models.Index(fields=["tier", "timestamp"], name="usage_tier_time"),
            models.Index(fields=["run"], name="usage_run"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_name} {self.model} {self.input_tokens}+{self.output_tokens} tokens"

    def save(self, *args, **kwargs) -> None:
        with transaction.atomic(savepoint=False):
            super().save(*args, **kwargs)
            ChangedDay.note(self.timestamp)

    def delete(self, *args, **kwargs):
        with transaction.atomic(savepoint=False):
            ChangedDay.note(self.timestamp)
            return super().delete(*args, **kwargs)


class FeedbackEntry(models.Model):
    """How good one LLM response was, 0 to 1, for a workflow's stage."""

    event_id = models.CharField(max_length=100, unique=True)
    timestamp = models.DateTimeField(default=timezone.now)
    agent_name = models.CharField(max_length=200, blank=True, default="")
    workflow_name = models.CharField(max_length=200)
    stage_name = models.CharField(max_length=200)
    tier = models.CharField(max_length=10, choices=ModelTier.choices)
    quality_score = models.FloatField()
    metadata = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-timestamp", "-id"]
        verbose_name_plural = "feedback entries"
        indexes = [models.Index(fields=["workflow_name", "stage_name", "tier", "timestamp"], name="feedback_stage_tier_time")]
        constraints = [
            models.CheckConstraint(condition=models.Q(quality_score__gte=0, quality_score__lte=1), name="feedback_score_0_1"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_name}/{self.stage_name} {self.tier}: {self.quality_score:.2f}"


class TemplateFeedback(models.Model):
    """A good or bad rating of a (help) template; its confidence is good / (good + bad)."""

    event_id = models.CharField(max_length=100, unique=True)
    timestamp = models.DateTimeField(default=timezone.now)
    agent_name = models.CharField(max_length=200, blank=True, default="")
    template_id = models.CharField(max_length=200)
    good = models.BooleanField()

    class Meta:
        ordering = ["-timestamp", "-id"]
        verbose_name_plural = "template feedback"
        indexes = [models.Index(fields=["template_id", "good"], name="template_feedback_rating")]

    def __str__(self) -> str:
        return f"{self.template_id}: {'good' if self.good else 'bad'}"


# --- Daily rollups: what reports and /analytics/ read instead of millions of rows (runs.rollups) ---


class ChangedDay(models.Model):
    """A day (in TIME_ZONE) whose runs or LLM usage changed after its rollups were computed. Every
    write adds one in its own transaction; runs.rollups recomputes the day and deletes the rows it
    saw. A row per write rather than a flag per day: writers never wait on each other, and a write
    that commits while a day is being recomputed leaves its row behind for the next time."""

    day = models.DateField(db_index=True)

    def __str__(self) -> str:
        return f"{self.day} changed"

    @classmethod
    def note(cls, *moments: datetime) -> None:
        insert_rows(cls, [{"day": day} for day in {timezone.localdate(moment) for moment in moments}], on_conflict="")


# Ended runs by duration: each bucket's name and upper bound in seconds (None: no bound).
DURATION_BUCKETS = {
    "runs_under_1s": 1,
    "runs_under_5s": 5,
    "runs_under_30s": 30,
    "runs_under_1min": 60,
    "runs_under_5min": 300,
    "runs_under_30min": 1800,
    "runs_longer": None,
}


class RunDay(models.Model):
    """The runs created on one day by one agent, of one job type, in one status, counted."""

    day = models.DateField()
    agent_name = models.CharField(max_length=200)
    job_type = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=RunStatus.choices)
    run_count = models.PositiveIntegerField()
    items_succeeded_sum = models.PositiveBigIntegerField()
    items_failed_sum = models.PositiveBigIntegerField()
    duration_ms_sum = models.PositiveBigIntegerField()
    created_at_max = models.DateTimeField()
    runs_under_1s = models.PositiveIntegerField()
    runs_under_5s = models.PositiveIntegerField()
    runs_under_30s = models.PositiveIntegerField()
    runs_under_1min = models.PositiveIntegerField()
    runs_under_5min = models.PositiveIntegerField()
    runs_under_30min = models.PositiveIntegerField()
    runs_longer = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "agent_name", "job_type", "status"], name="runday_unique")]
        indexes = [models.Index(fields=["agent_name", "day"], name="runday_agent_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.agent_name}/{self.job_type} {self.status}: {self.run_count}"


class UsageCounts(models.Model):
    call_count = models.PositiveIntegerField()
    ok_count = models.PositiveIntegerField()
    fallback_count = models.PositiveIntegerField()
    cost_sum = models.DecimalField(max_digits=18, decimal_places=8)
    fallback_cost_sum = models.DecimalField(max_digits=18, decimal_places=8)

    class Meta:
        abstract = True


class UsageDay(UsageCounts):
    """One day's model calls by one agent on one model (and tier), summed."""

    day = models.DateField()
    agent_name = models.CharField(max_length=200)
    model = models.CharField(max_length=200)
    tier = models.CharField(max_length=10, choices=ModelTier.choices, blank=True)
    input_tokens_sum = models.PositiveBigIntegerField()
    output_tokens_sum = models.PositiveBigIntegerField()
    cache_read_tokens_sum = models.PositiveBigIntegerField()
    cache_write_tokens_sum = models.PositiveBigIntegerField()
    latency_ms_sum = models.PositiveBigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "agent_name", "model", "tier"], name="usageday_unique")]
        indexes = [models.Index(fields=["agent_name", "day"], name="usageday_agent_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.agent_name} {self.model}: {self.call_count} calls"


class UsageStageDay(UsageCounts):
    """One day's model calls for one workflow stage and task type on one model, summed (agents
    together: kept apart from UsageDay so that neither multiplies the other's rows)."""

    day = models.DateField()
    workflow = models.CharField(max_length=200)
    stage = models.CharField(max_length=200)
    task_type = models.CharField(max_length=200)
    model = models.CharField(max_length=200)
    tier = models.CharField(max_length=10, choices=ModelTier.choices, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "workflow", "stage", "task_type", "model", "tier"], name="usagestageday_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.workflow}/{self.stage} {self.model}: {self.call_count} calls"
