from __future__ import annotations

from django.db import models, transaction
from django.utils import timezone

from runs.changes import runs_changed


class RunStatus(models.TextChoices):
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    PARTIAL = "partial"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


class CommitSource(models.TextChoices):
    MANUAL = "manual"
    LLM = "llm"
    CI = "ci"


class Run(models.Model):
    """One run of an agent: what it did, how it ended, what it cost.

    `event_id` is the client's idempotency key: the same event_id twice stores one run.
    `run_id` is the client's own name for the run and need not be unique.
    """

    event_id = models.CharField(max_length=100, unique=True)
    run_id = models.CharField(max_length=200, db_index=True)
    parent_run_id = models.CharField(max_length=200, blank=True, default="", db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    agent_name = models.CharField(max_length=200)
    agent_owner = models.CharField(max_length=200, blank=True, default="")
    job_type = models.CharField(max_length=200)
    trigger_type = models.CharField(max_length=100, blank=True, default="")
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.RUNNING)

    start_time = models.DateTimeField()
    end_time = models.DateTimeField(null=True, blank=True)
    duration_ms = models.BigIntegerField(default=0)

    items_discovered = models.PositiveIntegerField(default=0)
    items_succeeded = models.PositiveIntegerField(default=0)
    items_failed = models.PositiveIntegerField(default=0)
    items_skipped = models.PositiveIntegerField(default=0)

    input_summary = models.TextField(blank=True, default="")
    output_summary = models.TextField(blank=True, default="")
    error_summary = models.TextField(blank=True, default="")
    error_details = models.TextField(blank=True, default="")
    source_ref = models.CharField(max_length=500, blank=True, default="")
    target_ref = models.CharField(max_length=500, blank=True, default="")
    metrics_json = models.JSONField(null=True, blank=True)
    context_json = models.JSONField(null=True, blank=True)

    insight_id = models.CharField(max_length=200, blank=True, default="")
    product = models.CharField(max_length=200, blank=True, default="")
    product_family = models.CharField(max_length=200, blank=True, default="")
    platform = models.CharField(max_length=200, blank=True, default="")
    subdomain = models.CharField(max_length=200, blank=True, default="")
    website = models.CharField(max_length=500, blank=True, default="")
    website_section = models.CharField(max_length=200, blank=True, default="")
    item_name = models.CharField(max_length=500, blank=True, default="")

    git_repo = models.CharField(max_length=500, blank=True, default="")
    git_branch = models.CharField(max_length=200, blank=True, default="")
    git_run_tag = models.CharField(max_length=200, blank=True, default="")
    git_commit_hash = models.CharField(max_length=40, blank=True, default="")
    git_commit_source = models.CharField(max_length=10, choices=CommitSource.choices, blank=True, default="")
    git_commit_author = models.CharField(max_length=300, blank=True, default="")
    git_commit_timestamp = models.DateTimeField(null=True, blank=True)

    host = models.CharField(max_length=200, blank=True, default="")
    environment = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["agent_name", "-created_at"], name="run_agent_created"),
            models.Index(fields=["status", "-created_at"], name="run_status_created"),
            models.Index(fields=["job_type", "-created_at"], name="run_job_created"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(duration_ms__gte=0), name="run_duration_ms_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_name}/{self.job_type} {self.run_id} ({self.status})"

    def save(self, *args, **kwargs) -> None:
        with transaction.atomic(savepoint=False):
            super().save(*args, **kwargs)
            runs_changed.send(Run, moments=[self.created_at])

    def delete(self, *args, **kwargs):
        with transaction.atomic(savepoint=False):
            runs_changed.send(Run, moments=[self.created_at])
            return super().delete(*args, **kwargs)

    def apply(self, changes: dict) -> None:
        """Set fields from an update; a new end_time without a duration re-derives the duration."""
        for name, value in changes.items():
            setattr(self, name, value)
        if "end_time" in changes and "duration_ms" not in changes:
            self.duration_ms = 0
            self.fill_duration()

    def fill_duration(self) -> None:
        """Derive duration_ms from the start and end times when the agent did not send it."""
        if self.end_time and not self.duration_ms and self.end_time >= self.start_time:
            self.duration_ms = int((self.end_time - self.start_time).total_seconds() * 1000)

    @property
    def repo_url(self) -> str | None:
        """The repository's web address, for https and git@ remotes alike."""
        repo = self.git_repo.strip()
        if not repo:
            return None
        if repo.startswith("git@") and ":" in repo:
            host, path = repo[4:].split(":", 1)
            repo = f"https://{host}/{path}"
        return repo.removesuffix(".git").rstrip("/")

    @property
    def commit_url(self) -> str | None:
        if not (self.repo_url and self.git_commit_hash):
            return None
        separator = "/-/commit/" if "gitlab" in self.repo_url else "/commit/"
        return f"{self.repo_url}{separator}{self.git_commit_hash}"


class RunEvent(models.Model):
    """Something that happened inside a run (`log_event`); idempotent on `event_id`."""

    event_id = models.CharField(max_length=100, unique=True)
    # No index of its own: the (run, timestamp) index below serves lookups by run.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events", db_index=False)
    event_type = models.CharField(max_length=200)
    timestamp = models.DateTimeField(default=timezone.now)
    payload = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["timestamp", "id"]
        indexes = [models.Index(fields=["run", "timestamp"], name="runevent_run_time")]

    def __str__(self) -> str:
        return f"{self.event_type} @ {self.timestamp:%Y-%m-%d %H:%M:%S}"
