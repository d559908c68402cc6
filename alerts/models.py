from django.db import models
from django.db.models import Q


class AlertRule(models.Model):
    """When to tell people: a condition beat evaluates every ALERT_EVALUATE_SECONDS. A subject
    (an agent, a job, a request...) that starts matching opens one alert; when it stops, the
    alert closes. Both are sent to the rule's channels and published as events."""

    class Kind(models.TextChoices):
        AGENT_STALE = "agent_stale", "agent stale (closes when it beats again)"
        RUN_FAILED = "run_failed", "run failed or timed out (closes when a later run of that agent and job succeeds)"
        ERROR_RATE = "error_rate", "error rate of an agent's runs over threshold % in the window"
        LLM_COST = "llm_cost", "LLM cost today over threshold (USD), per agent or per model"
        APPROVAL_PENDING = "approval_pending", "approval pending longer than threshold seconds"
        VOLUME_SPIKE = "volume_spike", "more than threshold events a minute of one type, over the window"

    class Per(models.TextChoices):
        AGENT = "agent"
        MODEL = "model"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    channels = models.ManyToManyField("notifications.NotificationChannel", related_name="alert_rules", blank=True)
    agents = models.CharField(
        max_length=200, blank=True, default="", help_text="Only agents matching this glob (e.g. crawler-*); empty: all."
    )
    job_type = models.CharField(max_length=200, blank=True, default="", help_text="run failed: only this job type.")
    threshold = models.FloatField(
        default=0, help_text="error rate: percent; LLM cost: USD a day; approval pending: seconds; volume: events a minute."
    )
    window_minutes = models.PositiveIntegerField(default=15, help_text="error rate and volume: how far back to look.")
    min_runs = models.PositiveIntegerField(default=5, help_text="error rate: fewer ended runs in the window never fire.")
    per = models.CharField(max_length=10, choices=Per.choices, default=Per.AGENT, help_text="LLM cost: summed per.")
    event_type = models.CharField(
        max_length=200, blank=True, default="", help_text="volume: the event type counted, e.g. signal.sent."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Alert(models.Model):
    """One spell of a rule matching one subject: opened once, closed once."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    subject = models.CharField(max_length=500, help_text="What it is about, e.g. agent:crawler-1.")
    summary = models.CharField(max_length=500)
    details = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField(db_index=True)
    closed_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            # One open alert per rule and subject: concurrent evaluations cannot both open it.
            models.UniqueConstraint(fields=["rule", "subject"], condition=Q(closed_at__isnull=True), name="alert_one_open")
        ]

    def __str__(self) -> str:
        return f"{self.rule}: {self.summary}"

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    def as_dict(self) -> dict:
        return {
            "alert_id": self.pk,
            "rule": self.rule.name,
            "kind": self.rule.kind,
            "subject": self.subject,
            "summary": self.summary,
            "details": self.details,
            "opened_at": self.opened_at.isoformat(),
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
        }
