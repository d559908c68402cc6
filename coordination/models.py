from django.db import models


class Agent(models.Model):
    """The registry row of one agent, by the id it acts as (keys are bound to these ids). Its live
    state is in Redis (coordination.heartbeats); this row follows it without a write per beat."""

    agent_id = models.CharField(max_length=200, unique=True)
    display_name = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=50, blank=True, default="", help_text="The last status it reported.")
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    stale_since = models.DateTimeField(null=True, blank=True, help_text="Set while the agent is silent past its threshold.")
    stale_after_seconds = models.FloatField(
        null=True, blank=True, help_text="This agent's staleness threshold; empty: the server's default."
    )

    class Meta:
        ordering = ["agent_id"]

    def __str__(self) -> str:
        return self.display_name or self.agent_id
